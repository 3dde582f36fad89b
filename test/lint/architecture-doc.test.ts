/**
 * ARCHITECTURE.md stays true as files move: every path it names exists, and every folder of src/
 * has a row in its table of floors.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..', '..');
const doc = readFileSync(path.join(root, 'ARCHITECTURE.md'), 'utf8');

it('every file and folder it names exists', () => {
  const named = [...doc.matchAll(/`((?:src|test)\/[\w./-]+|[\w-]+\.(?:js|json|md))`/g)].map((m) => m[1]!);
  expect(named.length).toBeGreaterThan(40);
  expect(named.filter((p) => !p.includes('*') && !existsSync(path.join(root, p)))).toEqual([]);
  // Globs (src/ssh/*.ts) must match something too.
  for (const glob of named.filter((p) => p.includes('*'))) {
    const dir = path.dirname(glob);
    expect(
      readdirSync(path.join(root, dir)).some((f) => path.matchesGlob(`${dir}/${f}`, glob)),
      glob,
    ).toBe(true);
  }
});

it('every folder of src/ has a row in the table of floors', () => {
  const folders = readdirSync(path.join(root, 'src'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name !== 'generated')
    .map((d) => d.name);
  expect(folders.length).toBeGreaterThan(10);
  expect(folders.filter((f) => !doc.includes(`| \`src/${f}/\` |`))).toEqual([]);
});
