/**
 * SHA256_CHECK (src/deploy/delta-release.ts), the shell function a delta's stage checks each
 * spliced table with: with this machine's /bin/sh, openssl and coreutils it accepts the file whose
 * SHA-256 is the one listed and refuses any other, by `openssl dgst` where openssl is in PATH and
 * by `sha256sum` where it is not; an openssl that fails or answers in another form leaves the
 * answer to sha256sum.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SHA256_CHECK } from '../../src/deploy/delta-release.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** A directory holding `table` and `table.sha256` listing `listed`'s digest, as a delta's stage has them. */
function staged(content: string, listed: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rp-sha-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'table'), content);
  writeFileSync(path.join(dir, 'table.sha256'), `${sha256(listed)}  table\n`);
  return dir;
}

const installed = (tool: string) =>
  spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
/** openssl is not essential on Debian: without it, only the cases that bring their own run. */
const hasOpenssl = installed('openssl') !== '';

/** A PATH of the tools the check may use, each linked from this machine's, with `openssl` as given. */
function toolPath(dir: string, openssl: 'real' | 'absent' | string): string {
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  for (const tool of ['sha256sum', ...(openssl === 'real' ? ['openssl'] : [])]) {
    symlinkSync(installed(tool), path.join(bin, tool));
  }
  if (openssl !== 'real' && openssl !== 'absent') {
    writeFileSync(path.join(bin, 'openssl'), `#!/bin/sh\n${openssl}\n`);
    chmodSync(path.join(bin, 'openssl'), 0o755);
  }
  return bin;
}

function check(dir: string, openssl: 'real' | 'absent' | string): number | null {
  const env = { PATH: toolPath(dir, openssl), LC_ALL: 'C' };
  return spawnSync('/bin/sh', ['-c', `${SHA256_CHECK} && rp_sha256_ok table.sha256`], { cwd: dir, env }).status;
}

const table = Array.from({ length: 5_000 }, (_, i) => `@d${i}.test [r${i % 7}]:587\n`).join('');

describe('SHA256_CHECK', () => {
  for (const openssl of ['real', 'absent'] as const) {
    it.skipIf(openssl === 'real' && !hasOpenssl)(
      `accepts the listed table and refuses any other (openssl ${openssl})`,
      () => {
        expect(check(staged(table, table), openssl)).toBe(0);
        expect(check(staged(`${table}@extra.test v\n`, table), openssl)).not.toBe(0);
        expect(check(staged(table.replace('[r3]', '[r4]'), table), openssl)).not.toBe(0);
      },
    );
  }

  it('leaves the answer to sha256sum when openssl fails or answers in another form', () => {
    const otherForm = `echo "SHA2-256(table)= ${sha256(table)}"`;
    // An openssl that would accept anything it is asked about, were its answer taken.
    const failing = `echo "${sha256(table)} *table"; exit 1`;
    for (const openssl of [otherForm, failing]) {
      expect(check(staged(table, table), openssl)).toBe(0);
      expect(check(staged(`${table}@extra.test v\n`, table), openssl)).not.toBe(0);
    }
  });

  it("takes openssl's answer when it gives one: a wrong digest refuses without asking sha256sum", () => {
    const dir = staged(table, table);
    expect(check(dir, `echo "${'0'.repeat(64)} *table"`)).not.toBe(0);
  });
});
