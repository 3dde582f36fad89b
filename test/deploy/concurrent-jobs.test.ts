/**
 * `concurrently` (src/deploy/shell-jobs.ts), the shell list a delta's per-table work runs in:
 * with this machine's /bin/sh, it succeeds only when every job exited 0, waits for every job
 * (also after one failed), and keeps each job's umask to itself.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { concurrently } from '../../src/deploy/shell-jobs.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Runs `script` with /bin/sh in a fresh directory, as the node's remote shell runs a frame (umask 077). */
function run(script: string): { code: number | null; dir: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rp-jobs-'));
  dirs.push(dir);
  const r = spawnSync('/bin/sh', ['-c', `umask 077 && ${script} && touch after`], { cwd: dir, encoding: 'utf8' });
  return { code: r.status, dir };
}

describe('concurrently', () => {
  it('succeeds when every job succeeds, and returns only once all are done', () => {
    const { code, dir } = run(concurrently(['sleep 0.2 && touch slow', 'touch fast', ': > third']));
    expect(code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['after', 'fast', 'slow', 'third']);
  });

  it('fails when any job fails, after the others finished', () => {
    const { code, dir } = run(concurrently(['touch one', 'false', 'sleep 0.2 && touch three']));
    expect(code).not.toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['one', 'three']);
  });

  it('runs a single job inline, its failure failing the list', () => {
    expect(run(concurrently(['true'])).code).toBe(0);
    expect(run(concurrently(['exit 3'])).code).not.toBe(0);
  });

  it('takes jobs that end in a here-document', () => {
    const job = (name: string) => `cat > ${name} <<'EOF'\n${name} line\nEOF`;
    const { code, dir } = run(`${concurrently([job('one'), job('two')])} && ${concurrently([job('three')])}`);
    expect(code).toBe(0);
    expect(readFileSync(path.join(dir, 'two'), 'utf8')).toBe('two line\n');
    expect(readFileSync(path.join(dir, 'three'), 'utf8')).toBe('three line\n');
  });

  it("keeps each job's umask in the job", () => {
    const { code, dir } = run(`${concurrently(['umask 022 && touch open', 'umask 077 && touch closed'])} && touch own`);
    expect(code).toBe(0);
    const mode = (name: string) => statSync(path.join(dir, name)).mode & 0o777;
    expect([mode('open'), mode('closed'), mode('own')]).toEqual([0o644, 0o600, 0o600]);
  });
});
