/**
 * `npm run lint:cycles` (package.json, run by .ci/run): madge fails on an import cycle, a
 * type-only edge included, and src/ has none.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..', '..');
const script = (
  JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
).scripts['lint:cycles']!;

/** The script's command with its directory (the last word, `src`) replaced by `dir`. */
async function cycles(dir: string): Promise<{ code: number; stdout: string }> {
  const command = script
    .replace(/ src$/, ` ${dir}`)
    .replace(/^madge /, `${path.join(root, 'node_modules', '.bin', 'madge')} `);
  try {
    const { stdout } = await promisify(execFile)('sh', ['-c', command], { cwd: root });
    return { code: 0, stdout };
  } catch (error) {
    const e = error as { code: number; stdout: string };
    return { code: e.code, stdout: e.stdout };
  }
}

it('the script checks src/ with madge', () => {
  expect(script).toMatch(/^madge --circular .* src$/);
});

it('fails on a cycle whose closing edge is an import type', async () => {
  const r = await cycles('test/lint/fixtures/cycle');
  expect(r.code).toBe(1);
  expect(r.stdout).toContain('a.ts > b.ts');
}, 120_000);

it('finds no cycle in src/', async () => {
  const r = await cycles('src');
  expect(r.stdout).not.toMatch(/^\d+\) /m);
  expect(Number(/Processed (\d+) files/.exec(r.stdout)?.[1])).toBeGreaterThan(100);
  expect(r.code).toBe(0);
}, 120_000);
