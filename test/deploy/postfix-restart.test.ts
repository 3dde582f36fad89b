/**
 * The restart's choice between `systemctl restart <unit>` and `postfix stop; postfix start`, made
 * by the script on the node. This machine runs no systemd, so the script runs under /bin/sh against
 * a temp dir standing in for /run/systemd/system and /proc, with fake systemctl, postconf and
 * postfix that record their calls, on a PATH holding nothing else (the real systemctl is installed here).
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  describeRestart,
  parseRestartVia,
  restartAgainCommand,
  restartScript,
  type RestartProbePaths,
} from '../../src/deploy/postfix-restart.js';

const MASTER = 4242;

interface Unit {
  active: boolean;
  mainPid: number;
  /** Exit code of `systemctl restart` (default 0). */
  restartExit?: number;
}

interface Node {
  systemd: boolean;
  systemctl?: boolean;
  /** /proc/<MASTER>/comm; undefined: no such process. */
  comm?: string;
  cgroup?: string;
  units?: Record<string, Unit>;
  pidFile?: boolean;
}

let root: string;
let paths: RestartProbePaths;

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'relayplane-restart-'));
  paths = { systemdDir: path.join(root, 'run-systemd-system'), procDir: path.join(root, 'proc') };
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function script(file: string, body: string): Promise<void> {
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
}

/** Builds the stand-in node under root. */
async function node(spec: Node): Promise<void> {
  const bin = path.join(root, 'bin');
  const calls = path.join(root, 'calls');
  await mkdir(bin);
  // Only what the script needs besides the fakes: no systemctl but the fake one can be found.
  for (const tool of ['cat', 'tr', 'sed', 'head']) await symlink(`/usr/bin/${tool}`, path.join(bin, tool));
  if (spec.systemd) await mkdir(paths.systemdDir);
  const spool = path.join(root, 'spool');
  await mkdir(path.join(spool, 'pid'), { recursive: true });
  // master.pid as Postfix writes it: right-aligned in 10 columns.
  if (spec.pidFile !== false)
    await writeFile(path.join(spool, 'pid', 'master.pid'), `${String(MASTER).padStart(10)}\n`);
  if (spec.comm !== undefined) {
    const proc = path.join(paths.procDir, String(MASTER));
    await mkdir(proc, { recursive: true });
    await writeFile(path.join(proc, 'comm'), `${spec.comm}\n`);
    await writeFile(path.join(proc, 'cgroup'), spec.cgroup ?? '0::/\n');
  }
  await script(
    path.join(bin, 'postconf'),
    `echo "postconf $*" >> ${calls}; [ "$*" = "-h queue_directory" ] && echo ${spool}`,
  );
  await script(path.join(bin, 'postfix'), `echo "postfix $*" >> ${calls}`);
  if (spec.systemctl === false) return;
  const units = path.join(root, 'units');
  await mkdir(units);
  for (const [name, unit] of Object.entries(spec.units ?? {})) {
    await mkdir(path.join(units, name));
    if (unit.active) await writeFile(path.join(units, name, 'active'), '');
    await writeFile(path.join(units, name, 'mainpid'), String(unit.mainPid));
    await writeFile(path.join(units, name, 'restart-exit'), String(unit.restartExit ?? 0));
  }
  // The calls the script makes: show -p MainPID -- U, is-active --quiet -- U, restart -- U.
  await script(
    path.join(bin, 'systemctl'),
    [
      `echo "systemctl $*" >> ${calls}`,
      'for u; do :; done',
      `d=${units}/$u`,
      'case "$1" in',
      `  show) [ -d "$d" ] && echo "MainPID=$(cat "$d/mainpid")" || echo MainPID=0 ;;`,
      `  is-active) [ -e "$d/active" ] ;;`,
      `  restart) exit "$(cat "$d/restart-exit")" ;;`,
      '  *) exit 64 ;;',
      'esac',
    ].join('\n'),
  );
}

function sh(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { env: { PATH: path.join(root, 'bin') } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 255, stdout, stderr }));
  });
}

/** Runs the restart script on the stand-in node: what it printed and chose, and the commands it ran. */
async function restart() {
  const r = await sh(restartScript(paths));
  const calls = (await readFile(path.join(root, 'calls'), 'utf8').catch(() => ''))
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('postconf '));
  return { ...r, via: parseRestartVia(r.stdout), calls };
}

const STOP_START = ['postfix stop', 'postfix start'];

describe('the restart script on a node', () => {
  it('without systemd: postfix stop; postfix start, and systemctl is never asked', async () => {
    await node({ systemd: false, comm: 'master', cgroup: '0::/system.slice/postfix@-.service\n', units: {} });
    const r = await restart();
    expect(r.code, r.stderr).toBe(0);
    expect(r.via).toEqual({ kind: 'postfix', why: 'the node does not run systemd' });
    expect(r.calls).toEqual(STOP_START);
    expect(r.stderr).toBe('');
  });

  it('with /run/systemd/system but no systemctl on PATH: postfix stop; postfix start', async () => {
    await node({ systemd: true, systemctl: false, comm: 'master', cgroup: '0::/system.slice/postfix@-.service\n' });
    const r = await restart();
    expect(r.via).toEqual({ kind: 'postfix', why: 'the node does not run systemd' });
    expect(r.calls).toEqual(STOP_START);
  });

  it("Debian's postfix@-.service (cgroup v2, MainPID 0): systemctl restart of that unit", async () => {
    await node({
      systemd: true,
      comm: 'master',
      cgroup: '0::/system.slice/system-postfix.slice/postfix@-.service\n',
      units: { 'postfix@-.service': { active: true, mainPid: 0 } },
    });
    const r = await restart();
    expect(r.code, r.stderr).toBe(0);
    expect(r.via).toEqual({ kind: 'systemd', unit: 'postfix@-.service' });
    expect(r.calls.filter((c) => !c.startsWith('systemctl show') && !c.startsWith('systemctl is-active'))).toEqual([
      'systemctl restart -- postfix@-.service',
    ]);
    expect(r.stderr).toBe('');
  });

  it('a postmulti instance: the unit master runs in, not postfix@-', async () => {
    await node({
      systemd: true,
      comm: 'master',
      cgroup: '0::/system.slice/system-postfix.slice/postfix@postfix-out.service\n',
      units: {
        'postfix@-.service': { active: true, mainPid: 0 },
        'postfix@postfix-out.service': { active: true, mainPid: 0 },
      },
    });
    const r = await restart();
    expect(r.via).toEqual({ kind: 'systemd', unit: 'postfix@postfix-out.service' });
    expect(r.calls).toContain('systemctl restart -- postfix@postfix-out.service');
    expect(r.calls.some((c) => c.includes('postfix@-.service'))).toBe(false);
  });

  it("cgroup v1 (RHEL's postfix.service, PIDFile: MainPID is master)", async () => {
    await node({
      systemd: true,
      comm: 'master',
      cgroup: '11:pids:/system.slice/postfix.service\n1:name=systemd:/system.slice/postfix.service\n',
      units: { 'postfix.service': { active: true, mainPid: MASTER } },
    });
    const r = await restart();
    expect(r.via).toEqual({ kind: 'systemd', unit: 'postfix.service' });
    expect(r.calls).toContain('systemctl restart -- postfix.service');
    expect(r.calls).not.toContain('postfix start');
  });

  it("master in another service's cgroup whose main process it is not (sshd without PAM): stop/start", async () => {
    await node({
      systemd: true,
      comm: 'master',
      cgroup: '0::/system.slice/ssh.service\n',
      units: { 'ssh.service': { active: true, mainPid: 77 } },
    });
    const r = await restart();
    expect(r.via).toEqual({
      kind: 'postfix',
      why: `master ${MASTER} is in ssh.service, whose main process is 77`,
    });
    expect(r.calls.filter((c) => !c.startsWith('systemctl show') && !c.startsWith('systemctl is-active'))).toEqual(
      STOP_START,
    );
  });

  it('master started by hand in a login session, or by an earlier stop/start: stop/start again', async () => {
    await node({
      systemd: true,
      comm: 'master',
      cgroup: '0::/user.slice/user-0.slice/session-3.scope\n',
      units: { 'postfix@-.service': { active: false, mainPid: 0 } },
    });
    const r = await restart();
    expect(r.via).toEqual({ kind: 'postfix', why: `master ${MASTER} runs outside any systemd service` });
    expect(r.calls).toEqual(STOP_START);
  });

  it('a unit that is not active: stop/start', async () => {
    await node({
      systemd: true,
      comm: 'master',
      cgroup: '0::/system.slice/postfix@-.service\n',
      units: { 'postfix@-.service': { active: false, mainPid: 0 } },
    });
    const r = await restart();
    expect(r.via).toEqual({ kind: 'postfix', why: `master ${MASTER} is in postfix@-.service, which is not active` });
    expect(r.calls).not.toContain('systemctl restart -- postfix@-.service');
  });

  it('a stale pid file (the pid is another program, or gone) or none: master is not running', async () => {
    const cases: Node[] = [
      { systemd: true, comm: 'sshd', cgroup: '0::/system.slice/postfix@-.service\n' },
      { systemd: true },
      { systemd: true, pidFile: false, comm: 'master', cgroup: '0::/system.slice/postfix@-.service\n' },
    ];
    for (const spec of cases) {
      await rm(root, { recursive: true, force: true });
      await mkdir(root);
      await node({ ...spec, units: { 'postfix@-.service': { active: true, mainPid: 0 } } });
      const r = await restart();
      expect(r.via, JSON.stringify(spec)).toEqual({ kind: 'postfix', why: 'master is not running' });
      expect(r.calls, JSON.stringify(spec)).toEqual(STOP_START);
    }
  });

  it("exits with the restart's code: a failed systemctl restart fails the script", async () => {
    await node({
      systemd: true,
      comm: 'master',
      cgroup: '0::/system.slice/postfix@-.service\n',
      units: { 'postfix@-.service': { active: true, mainPid: 0, restartExit: 1 } },
    });
    const r = await restart();
    expect(r.code).toBe(1);
    expect(r.via).toEqual({ kind: 'systemd', unit: 'postfix@-.service' });
  });
});

describe('restarting again (the rollback)', () => {
  it('uses the unit chosen before, without deciding again (a failed restart leaves no master)', async () => {
    await node({ systemd: true, units: { 'postfix@-.service': { active: false, mainPid: 0 } } });
    const r = await sh(restartAgainCommand({ kind: 'systemd', unit: 'postfix@-.service' }));
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(path.join(root, 'calls'), 'utf8')).trim()).toBe('systemctl restart -- postfix@-.service');
    expect(await sh(restartAgainCommand({ kind: 'postfix', why: 'x' }))).toMatchObject({ code: 0 });
    expect((await readFile(path.join(root, 'calls'), 'utf8')).trim().split('\n').slice(1)).toEqual(STOP_START);
  });

  it("decides with the node's fixed paths when nothing was chosen yet", () => {
    expect(restartAgainCommand(undefined)).toBe(restartScript());
    expect(restartScript()).toContain('[ -d /run/systemd/system ]');
    expect(restartScript()).toContain('/proc/"$rp_pid"/cgroup');
  });
});

describe('parseRestartVia / describeRestart', () => {
  it('reads the line after the offset, and refuses a unit name no systemd unit has', () => {
    expect(parseRestartVia('1234\nvia systemd postfix@-.service\n')).toEqual({
      kind: 'systemd',
      unit: 'postfix@-.service',
    });
    expect(parseRestartVia('0\nvia postfix master is not running\n')).toEqual({
      kind: 'postfix',
      why: 'master is not running',
    });
    expect(parseRestartVia('0\n')).toBeUndefined();
    expect(parseRestartVia('via systemd x.service; reboot\n')).toBeUndefined();
    expect(describeRestart({ kind: 'systemd', unit: 'postfix@-.service' })).toBe('systemctl restart postfix@-.service');
    expect(describeRestart({ kind: 'postfix', why: 'the node does not run systemd' })).toBe(
      'postfix stop; postfix start (the node does not run systemd)',
    );
  });
});
