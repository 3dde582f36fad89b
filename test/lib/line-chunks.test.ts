import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lineChunks } from '../../src/lib/line-chunks.js';

/** A sorted table of `count` lines like the sender tables. */
const table = (count: number, tag = '') =>
  Array.from(
    { length: count },
    (_, i) => `@d${String(i).padStart(6, '0')}.customer.example user${i}${tag}:sha:${(i * 7919).toString(16)}\n`,
  );

describe('lineChunks', () => {
  it('cuts any text into chunks that give it back exactly, each ending at a line end', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 3000 }),
        fc.array(fc.constantFrom('\n', 'a\n', '\n\n', 'é😀 x'), { maxLength: 400 }),
        (text, pieces) => {
          const input = text + pieces.join('');
          const chunks = lineChunks(input);
          expect(chunks.join('')).toBe(input);
          expect(chunks.every((chunk) => chunk.length > 0)).toBe(true);
          for (const chunk of chunks.slice(0, -1)) expect(chunk.endsWith('\n')).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('makes chunks of about 256 lines, and a one-line change touches at most two of them', () => {
    const lines = table(20_000);
    const before = lineChunks(lines.join(''));
    expect(before.length).toBeGreaterThan(40);
    expect(before.length).toBeLessThan(200);
    const known = new Set(before);
    const edits: Array<(l: string[]) => void> = [
      (l) => l.splice(10_000, 0, '@d010000a.customer.example inserted:sha:1\n'),
      (l) => l.splice(5_000, 1),
      (l) => (l[15_000] = '@d015000.customer.example changed:sha:2\n'),
      (l) => l.push('@zz.customer.example last:sha:3\n'),
    ];
    for (const edit of edits) {
      const next = [...lines];
      edit(next);
      const after = lineChunks(next.join(''));
      expect(after.join('')).toBe(next.join(''));
      expect(after.filter((chunk) => !known.has(chunk)).length).toBeLessThanOrEqual(2);
    }
  });

  it('bounds a chunk where no line is a boundary', () => {
    // Lines of one repeated text hash alike: this one never ends a chunk on its own.
    const line = Array.from({ length: 400 }, (_, i) => `x${i}\n`).find(
      (candidate) => lineChunks(candidate.repeat(2)).length === 1,
    )!;
    const text = line.repeat(600_000);
    const chunks = lineChunks(text);
    expect(chunks.join('')).toBe(text);
    expect(chunks.length).toBeGreaterThan(1);
    expect(Math.max(...chunks.map((chunk) => chunk.length))).toBeLessThanOrEqual((1 << 20) + line.length);
  });
});
