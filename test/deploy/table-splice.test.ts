/**
 * The splice of a changed table (src/deploy/table-splice.ts): applied to the base's bytes and the
 * added lines as the node reads them (`head -c` in order from each, the rest of the base last), it
 * gives exactly the next table, for random tables and changes, UTF-8 values included; and the
 * shell command does the same with this machine's /bin/sh and coreutils.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_SPLICE_OPS, spliceOps, spliceScript, type SpliceOp } from '../../src/deploy/table-splice.js';

const table = (lines: string[]) => lines.map((l) => `${l}\n`).join('');
const sorted = (lines: Iterable<string>) => [...lines].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/** What the node's command does, in memory. */
function apply(ops: readonly SpliceOp[], base: Buffer, added: Buffer): Buffer {
  const out: Buffer[] = [];
  let b = 0;
  let a = 0;
  for (const [kind, n] of ops) {
    if (kind === 'copy') out.push(base.subarray(b, b + n));
    if (kind === 'insert') out.push(added.subarray(a, a + n));
    if (kind === 'copy' || kind === 'skip') b += n;
    else a += n;
  }
  out.push(base.subarray(b));
  return Buffer.concat(out);
}

const line = fc
  .tuple(fc.stringMatching(/^@[a-z0-9]{1,6}\.test$/), fc.constantFrom('[r1]:587', 'u:pässwörd', 'x 😀 y', 'v'))
  .map(([k, v]) => `${k} ${v}`);

describe('spliceOps', () => {
  it('rebuilds the next table byte for byte from the base and the added lines', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(line, { minLength: 0, maxLength: 40 }),
        fc.uniqueArray(line, { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.array(fc.nat({ max: 40 }), { maxLength: 8 }),
        (baseLines, candidates, removeAt, cuts) => {
          const base = sorted(baseLines);
          const removed = sorted(new Set(removeAt.filter(() => base.length > 0).map((i) => base[i % base.length]!)));
          const added = sorted(candidates.filter((l) => !base.includes(l)));
          const next = sorted([...base.filter((l) => !removed.includes(l)), ...added]);
          const ops = spliceOps(table(base), removed, added);
          // The base as chunks of whole lines (as a bundle file hands it over) gives the same ops.
          const at = sorted(new Set(cuts.map((c) => String(c % (base.length + 1)).padStart(3, '0')))).map(Number);
          const chunks = [0, ...at, base.length]
            .slice(1)
            .map((end, i, ends) => table(base.slice(i === 0 ? 0 : ends[i - 1], end)))
            .filter((c) => c !== '');
          expect(spliceOps(chunks, removed, added)).toEqual(ops);
          if (ops === null) return; // too many ops: the node merges instead
          const built = apply(ops, Buffer.from(table(base)), Buffer.from(table(added)));
          expect(built.toString('utf8')).toBe(table(next));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('gives up on a removed line that is not a whole line of the base, and on too many ops', () => {
    const base = table(['@a.test x', '@b.test y']);
    expect(spliceOps(base, ['@a.test'], [])).toBeNull();
    expect(spliceOps(base, ['@c.test z'], [])).toBeNull();
    const many = Array.from({ length: MAX_SPLICE_OPS }, (_, i) => `@${String(i).padStart(3, '0')}.test v`);
    const spread = Array.from({ length: MAX_SPLICE_OPS }, (_, i) => `@${String(i).padStart(3, '0')}.test w`);
    expect(spliceOps(table(many), [], spread)).toBeNull();
  });
});

describe('spliceScript with /bin/sh and coreutils', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-splice-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes what the ops describe, the rest of the base after the last op', async () => {
    const base = Array.from({ length: 5000 }, (_, i) => `@d${String(i).padStart(5, '0')}.test [relay]:587`);
    const removed = [base[10]!, base[2500]!];
    const added = ['@d00010.test [other]:2525', '@d02500x.test ü', '@zzz.test last'];
    const next = sorted([...base.filter((l) => !removed.includes(l)), ...added]);
    const ops = spliceOps(table(base), removed, added)!;
    expect(ops).not.toBeNull();
    await writeFile(path.join(dir, 'base'), table(base));
    await writeFile(path.join(dir, 'added'), table(added));
    const r = spawnSync('/bin/sh', ['-c', spliceScript(ops, 'base', 'added', 'next')], {
      cwd: dir,
      encoding: 'utf8',
      env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(await readFile(path.join(dir, 'next'), 'utf8')).toBe(table(next));
  });
});
