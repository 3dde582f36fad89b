/**
 * The connection's one shell, started the way sshd starts a command (the login shell runs it with
 * `-c`), here by a local bash whose "dotfiles" print noise and count their runs: frames stay in
 * step whatever commands print, read or exit with, and the environment is the loop's own.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_REMOTE_PATH,
  RemoteShell,
  SKIPPED_EXIT,
  assertRemotePath,
  type ShellChannel,
} from '../../src/ssh/remote-shell.js';
import { perlQuote } from '../../src/ssh/shell-quote.js';
import { channelOf } from '../helpers/local-node.js';

let dir: string;
const shells: RemoteShell[] = [];
/** Writes to every channel opened here (each is one SSH packet or more on a real connection). */
let channelWrites = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'rp-remote-shell-'));
});
afterEach(() => {
  for (const s of shells.splice(0)) s.close();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A login shell with a hostile environment and noisy dotfiles that append to `starts` each run. */
function open(command: string): Promise<ShellChannel> {
  const login = `echo 'Welcome to the node'; echo x >> ${dir}/starts; umask 000; cd /; ${command}`;
  const child = spawn('bash', ['-c', login], {
    env: { PATH: `${dir}/evil-bin:/usr/bin:/bin`, LANG: 'de_DE.UTF-8', LC_ALL: 'de_DE.UTF-8', HOME: dir },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return Promise.resolve(channelOf(child, () => (channelWrites += 1)));
}

async function start(
  loop: 'auto' | 'sh',
  path = DEFAULT_REMOTE_PATH,
): Promise<{ shell: RemoteShell; startMs: number }> {
  const started = await RemoteShell.start(open, { host: 'local', path, timeoutMs: 20_000, loop });
  shells.push(started.shell);
  return started;
}

const text = (r: { code: number; stdout: Buffer; stderr: Buffer }) => ({
  code: r.code,
  stdout: r.stdout.toString(),
  stderr: r.stderr.toString(),
});

/** What runs the frames: the Perl loop where perl runs (as on every Debian node), else the shell loop. */
const loopOf = async (shell: RemoteShell) =>
  (await shell.run('cat /proc/$PPID/comm', undefined, 10_000)).stdout.toString().trim() === 'perl' ? 'perl' : 'sh';

describe.each([
  { loop: 'auto' as const, runs: 'perl' },
  { loop: 'sh' as const, runs: 'sh' },
])('RemoteShell, $runs loop', ({ loop, runs }) => {
  it('runs the loop it was asked for', async () => {
    const { shell } = await start(loop);
    expect(await loopOf(shell)).toBe(runs);
  });

  it('runs every command of a connection in one shell started once, with its own exit code and outputs', async () => {
    const before = await readFile(`${dir}/starts`, 'utf8').catch(() => '');
    const { shell, startMs } = await start(loop);
    expect(startMs).toBeGreaterThan(0);
    expect(text(await shell.run("printf 'no newline'; echo oops >&2", undefined, 10_000))).toEqual({
      code: 0,
      stdout: 'no newline',
      stderr: 'oops\n',
    });
    expect(text(await shell.run('set -e; echo one; false; echo never', undefined, 10_000))).toEqual({
      code: 1,
      stdout: 'one\n',
      stderr: '',
    });
    expect(text(await shell.run('exit 7', undefined, 10_000))).toEqual({ code: 7, stdout: '', stderr: '' });
    // Answers with one output empty, and with both (no process is started to measure them).
    expect(text(await shell.run('echo only-err >&2; exit 3', undefined, 10_000))).toEqual({
      code: 3,
      stdout: '',
      stderr: 'only-err\n',
    });
    expect(text(await shell.run(':', undefined, 10_000))).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(text(await shell.run('cd /tmp; umask 077; pwd', undefined, 10_000)).stdout).toBe('/tmp\n');
    // exit, cd and umask stayed in their own command.
    expect(
      text(await shell.run('umask; echo "$LC_ALL $PATH"; [ -z "$LANG" ] && echo no-lang', undefined, 10_000)).stdout,
    ).toBe(`0022\nC ${DEFAULT_REMOTE_PATH}\nno-lang\n`);
    const after = await readFile(`${dir}/starts`, 'utf8');
    expect(after.length - before.length).toBe(2); // one "x\n": the login ran once
  });

  it('keeps binary output, stdin and output that imitates a frame byte for byte', async () => {
    const { shell } = await start(loop);
    const binary = await shell.run("printf '\\000\\377\\n@@relayplane-0000 0 5 0\\n'", undefined, 10_000);
    expect([...binary.stdout]).toEqual([0, 255, 10, ...Buffer.from('@@relayplane-0000 0 5 0\n')]);
    const input = Buffer.from('line one\nsecret\0bytes');
    const echoed = await shell.run('cat; echo; wc -c', input, 10_000);
    expect(echoed.stdout.toString()).toBe(`${input.toString()}\n0\n`);
    // A command that reads more than it was given sees the end of its input, never the next frame.
    const greedy = shell.run('cat; echo done', 'only this', 10_000);
    const next = shell.run('echo next', undefined, 10_000);
    expect(text(await greedy).stdout).toBe('only thisdone\n');
    expect(text(await next).stdout).toBe('next\n');
  });

  it('answers commands sent before the previous ones answered, in order', async () => {
    const { shell } = await start(loop);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => shell.run(`echo ${i}; exit ${i % 3}`, undefined, 20_000)),
    );
    expect(results.map((r) => [r.stdout.toString(), r.code])).toEqual(
      Array.from({ length: 50 }, (_, i) => [`${i}\n`, i % 3]),
    );
  });

  it('sends the commands given in one turn in one write, each answered on its own', async () => {
    const { shell } = await start(loop);
    const before = channelWrites;
    const sent = [
      shell.run('echo one', undefined, 10_000),
      shell.run('cat', 'two', 10_000),
      shell.run('exit 3', undefined, 10_000, true),
    ];
    expect(channelWrites).toBe(before);
    const results = (await Promise.all(sent)).map(text);
    expect(channelWrites).toBe(before + 1);
    expect(results).toEqual([
      { code: 0, stdout: 'one\n', stderr: '' },
      { code: 0, stdout: 'two', stderr: '' },
      { code: 3, stdout: '', stderr: '' },
    ]);
    expect(text(await shell.run('echo later', undefined, 10_000)).stdout).toBe('later\n');
    expect(channelWrites).toBe(before + 2);
  });

  it('skips gated commands after a failure, all of them, until an ungated one runs', async () => {
    const { shell } = await start(loop);
    const marker = `${dir}/gated-ran`;
    const sent = [
      shell.run('true', undefined, 10_000),
      shell.run('echo one', undefined, 10_000, true),
      shell.run('exit 4', undefined, 10_000, true),
      shell.run(`touch ${marker}`, undefined, 10_000, true),
      shell.run('echo never', undefined, 10_000, true),
      shell.run('echo ungated', undefined, 10_000),
      shell.run('echo gated-again', undefined, 10_000, true),
    ];
    const results = (await Promise.all(sent)).map(text);
    expect(results.map((r) => r.code)).toEqual([0, 0, 4, SKIPPED_EXIT, SKIPPED_EXIT, 0, 0]);
    expect(results.map((r) => r.stdout)).toEqual(['', 'one\n', '', '', '', 'ungated\n', 'gated-again\n']);
    await expect(readFile(marker)).rejects.toThrow(/ENOENT/);
  });

  it("runs a command's Perl body in the Perl loop itself, and its script in the shell loop", async () => {
    const { shell } = await start(loop);
    expect(shell.runsPerl).toBe(runs === 'perl');
    const both = (script: string, perl: string, stdin?: string, gated = false) =>
      shell.run(script, stdin, 10_000, gated, perl).then(text);
    expect(await both('echo sh; echo e >&2; exit 4', 'out("perl\\n"); err("e\\n"); return 5;')).toEqual(
      runs === 'perl' ? { code: 5, stdout: 'perl\n', stderr: 'e\n' } : { code: 4, stdout: 'sh\n', stderr: 'e\n' },
    );
    if (runs === 'perl') {
      // Its input, and the process it runs in: the loop's own (the shell's scripts run in its child).
      const loopPid = text(await shell.run('echo $PPID', undefined, 10_000)).stdout.trim();
      expect(await both(':', 'out(length $_[0], " ", $$); return 0;', 'four')).toEqual({
        code: 0,
        stdout: `4 ${loopPid}`,
        stderr: '',
      });
      // A string put in a body by perlQuote comes back byte for byte.
      const odd = "it's a \\ path\n$HOME @ARGV \\' '\\";
      expect(await both(':', `out(${perlQuote(odd)}); return 0;`)).toEqual({ code: 0, stdout: odd, stderr: '' });
      // capture: a program's stdout and exit code, its stderr into the answer's, its arguments as
      // they are; one that cannot start exits 127, and the loop (its private dir too) goes on.
      const captured = await both(
        ':',
        `my ($rc, $o) = capture("sh", "-c", 'echo out; echo err >&2; printf %s "$0"; exit 3', "it's \\$x"); out("$rc $o"); my ($missing) = capture("/nonexistent/x"); out(" $missing"); return 0;`,
      );
      expect(captured).toMatchObject({ code: 0, stdout: "3 out\nit's $x 127" });
      expect(captured.stderr).toMatch(/^err\n.*nonexistent/s);
      expect(text(await shell.run('echo still; cat', 'input', 10_000))).toEqual({
        code: 0,
        stdout: 'still\ninput',
        stderr: '',
      });
      // A death, and a body that does not compile.
      expect(await both(':', 'die "boom\\n"')).toEqual({ code: 1, stdout: '', stderr: 'boom\n' });
      const broken = await both(':', 'return 0 +;');
      expect(broken.code).toBe(1);
      expect(broken.stderr).toMatch(/syntax error/);
      // strict: a body cannot set the loop's globals by a typo.
      expect((await both(':', '$undeclared = 1; return 0;')).stderr).toMatch(/Global symbol/);
      // rmtree removes a tree (symlinks as links, never what they point at) and takes a missing path.
      const tree = path.join(dir, 'tree');
      await mkdir(path.join(tree, 'a', 'b'), { recursive: true });
      await writeFile(path.join(tree, 'a', 'b', 'f'), 'x');
      await writeFile(path.join(dir, 'kept'), 'x');
      await symlink(path.join(dir, 'kept'), path.join(tree, 'link'));
      const rmtree = `return rmtree(${JSON.stringify(tree)}) && rmtree(${JSON.stringify(`${tree}-missing`)}) ? 0 : 1;`;
      expect(await both(':', rmtree)).toEqual({ code: 0, stdout: '', stderr: '' });
      await expect(stat(tree)).rejects.toThrow(/ENOENT/);
      expect(await readFile(path.join(dir, 'kept'), 'utf8')).toBe('x');
    }
    // A gated body is skipped after a failure like a script; the frames stay in step either way.
    expect((await both('exit 3', 'return 3;')).code).toBe(3);
    expect((await both('echo no', 'out("no"); return 0;', undefined, true)).code).toBe(SKIPPED_EXIT);
    expect(text(await shell.run('echo next', undefined, 10_000))).toEqual({ code: 0, stdout: 'next\n', stderr: '' });
  });

  it('ends the shell when a command outlives its limit: that command and the queued ones fail, none hangs', async () => {
    const { shell } = await start(loop);
    const slow = shell.run('sleep 30', undefined, 300);
    const queued = shell.run('echo late', undefined, 20_000);
    await expect(slow).rejects.toThrow(/timed out after 300 ms/);
    await expect(queued).rejects.toThrow(/timed out/);
    expect(shell.isOpen).toBe(false);
    await expect(shell.run('echo again', undefined, 1000)).rejects.toThrow(/timed out/);
  });

  it('reports a lost shell to every waiting command', async () => {
    const { shell } = await start(loop);
    // The shell whose subshell runs the command ($$): the loop itself, or the Perl loop's runner.
    const dying = shell.run('kill -9 $$; sleep 5', undefined, 20_000);
    await expect(dying).rejects.toThrow(/remote shell on local ended/);
    expect(shell.isOpen).toBe(false);
  });
});

describe('RemoteShell', () => {
  it('runs the shell loop where perl does not run', async () => {
    const broken = path.join(dir, 'broken-perl');
    await mkdir(broken, { recursive: true });
    await writeFile(path.join(broken, 'perl'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const { shell } = await start('auto', `${broken}:${DEFAULT_REMOTE_PATH}`);
    expect(await loopOf(shell)).toBe('sh');
    expect(text(await shell.run('echo fine', undefined, 10_000))).toEqual({ code: 0, stdout: 'fine\n', stderr: '' });
  });

  it('refuses a PATH that is not a plain list of absolute directories', () => {
    expect(() => assertRemotePath('/usr/bin:/bin')).not.toThrow();
    for (const bad of ['', 'usr/bin', '/usr/bin:$HOME/bin', "/bin'; rm -rf /", '/bin:', '/bin\n/sbin']) {
      expect(() => assertRemotePath(bad), bad).toThrow(/absolute directories/);
    }
  });
});
