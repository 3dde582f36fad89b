/**
 * The reload's shell snippet run by this machine's /bin/sh: it signals the pid in master.pid only
 * when that pid is a running process named master; otherwise it leaves the job to `postfix
 * reload`. `kill` and `postfix` are shell functions here that say what they were asked to do.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RELOAD_COMMAND, reloadCommand } from '../../src/deploy/reload-steps.js';

describe('reloadCommand', () => {
  let dir: string;
  let master: ReturnType<typeof spawn>;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-reload-'));
    await mkdir(path.join(dir, 'pid'));
    // A process whose name is `master`: a copy of sleep.
    const sleep = spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim();
    await copyFile(sleep, path.join(dir, 'master'));
    master = spawn(path.join(dir, 'master'), ['600'], { stdio: 'ignore' });
  });

  afterAll(async () => {
    master?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  const run = async (pidFile: string | null) => {
    const file = path.join(dir, 'pid', 'master.pid');
    await rm(file, { force: true });
    if (pidFile !== null) await writeFile(file, pidFile);
    const stubs = `kill() { echo "kill $*"; }\npostfix() { echo "postfix $*" >&2; }\n`;
    const r = spawnSync('/bin/sh', ['-c', `${stubs}${reloadCommand(dir)}`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    // postfix's output goes to /dev/null in the command: the stub answers on stderr.
    return `${r.stdout}${r.stderr}`.trim();
  };

  it('signals a running master named in the pid file (padded as master writes it)', async () => {
    expect(await run(`${String(master.pid).padStart(11)}\n`)).toBe(`kill -HUP ${master.pid}`);
  });

  it('leaves it to postfix reload when the pid file is missing, not a number, or names another process', async () => {
    expect(await run(null)).toBe('postfix reload');
    expect(await run('12x4\n')).toBe('postfix reload');
    expect(await run('../../self\n')).toBe('postfix reload');
    expect(await run(`${process.pid}\n`)).toBe('postfix reload');
  });

  it('without a queue directory is postfix reload itself', () => {
    expect(reloadCommand('')).toBe(RELOAD_COMMAND);
  });
});
