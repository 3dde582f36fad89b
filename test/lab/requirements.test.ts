/**
 * One list of packages: what the lab gates print (LAB_PACKAGES), what .ci/run installs and what the
 * README's install line says are the same set, so a new user installing from the README gets every
 * tool the suite runs.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { LAB_INSTALL_COMMAND, LAB_PACKAGES, missingTools } from './requirements.js';

const root = path.resolve(import.meta.dirname, '..', '..');
/** The package names of the first `apt-get install` command in text (continuation lines included). */
function aptPackages(text: string): string[] {
  const m = /apt-get install((?:\\\n|[^\n])*)/.exec(text);
  expect(m, 'an apt-get install line').not.toBeNull();
  return m![1]!.replace(/\\\n/g, ' ').replace(/>.*$/, '').split(/\s+/).filter((w) => w !== '' && !w.startsWith('-')).sort();
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
  expect(missingTools(['sh', 'relayplane-no-such-tool'])).toEqual(['binary relayplane-no-such-tool (package relayplane-no-such-tool)']);
  expect(missingTools(['sh'])).toEqual([]);
});
