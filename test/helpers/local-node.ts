/**
 * A NodeConnection that runs its commands in a local bash instead of over SSH: the same shell
 * commands (stat, head, tail, postconf) against real files, for fast tests of what runs on a node.
 * localLoopConnection runs them through the connection's own loop (src/ssh/remote-shell.ts), the
 * Perl one (commands' Perl bodies included) or the shell one, started by a local `sh`.
 * The SSH transport itself is proven by the lab tests (test/lab, test/e2e).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import type { ExecResult, NodeConnection } from '../../src/ssh/index.js';
import { DEFAULT_REMOTE_PATH, RemoteShell, type ShellChannel } from '../../src/ssh/remote-shell.js';

function run(command: string, stdin?: string | Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code: code ?? 255, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }),
    );
    child.stdin.end(stdin);
  });
}

export function localConnection(): NodeConnection {
  return {
    host: 'localhost',
    async exec(command, options = {}): Promise<ExecResult> {
      const r = await run(
        options.cwd === undefined ? command : `cd '${options.cwd}' && { ${command}\n}`,
        options.stdin,
      );
      return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
    },
    execBytes: (command) => run(command),
    async writeFile(path, content, mode) {
      await writeFile(path, content, { mode });
    },
    close() {},
  };
}

/** A local child process as the channel an SSH exec would give; `onWrite` counts the writes to it. */
export function channelOf(child: ChildProcessWithoutNullStreams, onWrite = () => {}): ShellChannel {
  const channel = {
    write: (data: Buffer | string) => {
      onWrite();
      return child.stdin.write(data);
    },
    end: () => child.stdin.end(),
    close: () => void child.kill('SIGTERM'),
    on(event: 'data' | 'close', listener: ((chunk: Buffer) => void) & (() => void)) {
      if (event === 'data') child.stdout.on('data', listener);
      else child.on('close', listener);
      return channel;
    },
    stderr: { on: (_event: 'data', listener: (chunk: Buffer) => void) => void child.stderr.on('data', listener) },
  } as ShellChannel;
  return channel;
}

/** A local `sh -c` as the channel an SSH exec would give. */
const localChannel = (command: string) =>
  Promise.resolve(channelOf(spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'] })));

/** Commands run by a local loop, `auto` (Perl, as on a Debian node) or `sh` (a node without perl). */
export async function localLoopConnection(
  loop: 'auto' | 'sh',
  path = DEFAULT_REMOTE_PATH,
): Promise<NodeConnection & { runsPerl: boolean }> {
  const { shell } = await RemoteShell.start(localChannel, {
    host: 'localhost',
    path,
    timeoutMs: 20_000,
    loop,
  });
  const run = (command: string, options: { stdin?: string | Buffer; timeoutMs?: number; perl?: string } = {}) =>
    shell.run(command, options.stdin, options.timeoutMs ?? 60_000, false, options.perl);
  return {
    host: 'localhost',
    runsPerl: shell.runsPerl,
    async exec(command, options = {}): Promise<ExecResult> {
      if (options.cwd !== undefined) command = `cd '${options.cwd}' && { ${command}\n}`;
      const r = await run(command, options);
      return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
    },
    async execBytes(command, options = {}) {
      const r = await run(command, options);
      return { code: r.code, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
    },
    async writeFile(path, content, mode) {
      await writeFile(path, content, { mode });
    },
    close: () => shell.close(),
  };
}
