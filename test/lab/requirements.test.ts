/**
 * One list of packages: what the lab gates print (LAB_PACKAGES), what .ci/run installs and what the
 * README's install line says are the same set, so a new user installing from the README gets every
 * tool the suite runs.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { LAB_FILES } from '../../vitest.config.js';
import { LAB_INSTALL_COMMAND, LAB_PACKAGES, missingTools } from './requirements.js';

const root = path.resolve(import.meta.dirname, '..', '..');
/** The package names of the first `apt-get install` command in text (continuation lines included). */
function aptPackages(text: string): string[] {
  const m = /apt-get install((?:\\\n|[^\n])*)/.exec(text);
  expect(m, 'an apt-get install line').not.toBeNull();
  return m![1]!
    .replace(/\\\n/g, ' ')
    .replace(/>.*$/, '')
    .split(/\s+/)
    .filter((w) => w !== '' && !w.startsWith('-'))
    .sort();
}

it('.ci/run installs exactly LAB_PACKAGES', () => {
  expect(aptPackages(readFileSync(path.join(root, '.ci', 'run'), 'utf8'))).toEqual([...LAB_PACKAGES].sort());
});

it('the README gives the same install command', () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  expect(readme).toContain(LAB_INSTALL_COMMAND);
  expect(aptPackages(readme.slice(readme.indexOf(LAB_INSTALL_COMMAND)))).toEqual([...LAB_PACKAGES].sort());
});

it('a missing tool is named with its package', () => {
  expect(missingTools(['sh', 'relayplane-no-such-tool'])).toEqual([
    'binary relayplane-no-such-tool (package relayplane-no-such-tool)',
  ]);
  expect(missingTools(['sh'])).toEqual([]);
});

it('every test file that starts a daemon is in the lab part (vitest.config.ts)', () => {
  const testDir = path.join(root, 'test');
  const files = readdirSync(testDir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => `test/${f}`);
  const lab = files.filter((f) => LAB_FILES.some((glob) => path.matchesGlob(f, glob)));
  for (const glob of LAB_FILES)
    expect(
      files.some((f) => path.matchesGlob(f, glob)),
      glob,
    ).toBe(true);
  const daemon = /labGate\(|postfixInstanceGate\(|startDnsServer\(|startPostfixNode\(|startInstance\(/;
  const starting = files.filter((f) => daemon.test(readFileSync(path.join(root, f), 'utf8')));
  expect(starting.filter((f) => !lab.includes(f))).toEqual([]);
});
