/**
 * The chunk-by-chunk reading of a table (src/deploy/table-view.ts) against the whole-text parse
 * that follows postmap(1) (map-source.ts): for texts in the compiler's form it must give the same
 * entries, count, problems (none) and `postmap -s` digest; any other text must not be taken for
 * that form. Tables are large enough to span many chunks (a chunk is about 256 lines).
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { entriesAt, entryCount, parseMapSource, tableProblems, valueOf } from '../../src/deploy/map-source.js';
import { tableView } from '../../src/deploy/table-view.js';
import { lineChunks } from '../../src/lib/line-chunks.js';

/** What a node computes: `postmap -s | LC_ALL=C sort | sha256sum`, from the whole-text parse. */
function wholeDumpDigest(content: string): string {
  const lines = parseMapSource(content).entries.map((e) => Buffer.from(`${e.key}\t${e.value}\n`, 'utf8'));
  lines.sort(Buffer.compare);
  return createHash('sha256').update(Buffer.concat(lines)).digest('hex');
}

const keyChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789.-@[]:_'.split(''));
const key = fc.string({ unit: keyChar, minLength: 1, maxLength: 12 });
const value = fc.string({ unit: fc.constantFrom(...'abcXYZ019 :.-ü\t'.split('')), minLength: 1, maxLength: 16 });

/** A table as the compiler writes it: unique keys, sorted lines, one entry per line. */
const compilerTable = fc
  .uniqueArray(fc.tuple(key, value), { selector: ([k]) => k, minLength: 0, maxLength: 1500, size: 'max' })
  .map((pairs) =>
    pairs
      .map(([k, v]) => `${k} ${v.trim() === '' ? 'x' : v.trim()}`)
      .sort()
      .map((line) => `${line}\n`)
      .join(''),
  );

/** A text with what postmap treats specially somewhere: comments, blanks, continuations, duplicates, upper case, disorder. */
const oddTable = fc
  .tuple(
    compilerTable,
    fc.constantFrom(
      '# comment\n',
      '\n',
      '  continued\n',
      'a.test dup\n',
      'A.TEST upper\n',
      'zzz-last\n',
      'nokey \n',
      'b.test x \r\n',
    ),
    fc.nat(),
  )
  .map(([table, odd, at]) => {
    const lines = table === '' ? [] : table.slice(0, -1).split('\n');
    const position = lines.length === 0 ? 0 : at % (lines.length + 1);
    return [...lines.slice(0, position).map((l) => `${l}\n`), odd, ...lines.slice(position).map((l) => `${l}\n`)].join(
      '',
    );
  });

describe('tableView', () => {
  it('reads a table in the compiler form as postmap does, chunk by chunk', () => {
    fc.assert(
      fc.property(compilerTable, (content) => {
        const view = tableView(content);
        const parsed = parseMapSource(content);
        expect(parsed.problems).toEqual([]);
        expect(view.simple).toBe(content !== '');
        if (!view.simple) return;
        expect(view.count).toBe(parsed.entries.length);
        expect(view.lineCount).toBe(parsed.entries.length);
        expect(view.dumpDigest()).toBe(wholeDumpDigest(content));
        const all = parsed.entries.map((_, i) => i);
        expect(entriesAt({ content }, all)).toEqual(parsed.entries.map(({ key, value }) => ({ key, value })));
        expect(entryCount({ content })).toBe(parsed.entries.length);
        expect(tableProblems({ content })).toEqual([]);
        for (const { key, value } of parsed.entries) expect(valueOf({ content }, key)).toBe(value);
        expect(valueOf({ content }, 'not~a~key')).toBeUndefined();
        // Keys between two of the table's, and before its first ('!' sorts before every key character).
        for (const { key } of parsed.entries) expect(valueOf({ content }, `${key}~`)).toBeUndefined();
        expect(valueOf({ content }, '!')).toBeUndefined();
      }),
      { numRuns: 60 },
    );
    // The runs above spanned several chunks, where the chunk-wise reading could go wrong.
    const sizes = fc.sample(compilerTable, { numRuns: 20, seed: 1 }).map((content) => lineChunks(content).length);
    expect(Math.max(...sizes)).toBeGreaterThan(2);
  });

  it('never takes a text postmap reads otherwise for the compiler form, and then answers with the whole parse', () => {
    fc.assert(
      fc.property(oddTable, (content) => {
        const view = tableView(content);
        const parsed = parseMapSource(content);
        // Postmap reads it differently from one line per entry, or warns: not the simple form.
        const oneEntryPerLine =
          parsed.problems.length === 0 &&
          parsed.entries.length === content.split('\n').length - 1 &&
          parsed.entries.every((e, i, all) => i === 0 || all[i - 1]!.key < e.key);
        if (!oneEntryPerLine) expect(view.simple).toBe(false);
        expect(tableProblems({ content })).toEqual(parsed.problems);
        expect(entryCount({ content })).toBe(parsed.entries.length);
        if (view.simple) expect(view.dumpDigest()).toBe(wholeDumpDigest(content));
        // The first entry of a key is the one postmap keeps.
        for (const { key } of parsed.entries)
          expect(valueOf({ content }, key)).toBe(parsed.entries.find((e) => e.key === key)!.value);
      }),
      { numRuns: 200 },
    );
  });

  it('lists only the lines of chunks the other version does not share', () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `@d${String(i).padStart(5, '0')}.test [127.0.0.1]:2525`);
    const base = `${lines.join('\n')}\n`;
    const next = base.replace('@d02500.test [127.0.0.1]:2525\n', '@d02500.test [127.0.0.1]:2526\n');
    expect(lineChunks(base).length).toBeGreaterThan(5);
    const before = tableView(base);
    const after = tableView(next);
    const removed = before.linesNotIn(after);
    const added = after.linesNotIn(before);
    expect(removed).toContain('@d02500.test [127.0.0.1]:2525');
    expect(added).toContain('@d02500.test [127.0.0.1]:2526');
    // One chunk (two if the changed line ends one), not the table.
    expect(removed.length).toBeLessThan(lines.length / 5);
    expect(added.length).toBe(removed.length);
  });
});
