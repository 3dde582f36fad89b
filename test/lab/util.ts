/**
 * Small process, port and polling helpers shared by the lab harness. Nothing here talks to the
 * network beyond 127.0.0.1.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';

export const LOOPBACK = '127.0.0.1';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  cwd?: string;
  timeoutMs?: number;
}

/** Runs a program (no shell) and collects its output. Never rejects on a non-zero exit code. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal !== null ? 128 : 1), stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Like run() but throws (with stderr in the message) on a non-zero exit code. */
export async function runOk(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r;
}

const handedOut = new Set<number>();

/**
 * A port that was free on 127.0.0.1 a moment ago (bind 0, read, close). Never hands out the same
 * port twice in one process; another process may still grab it, so callers retry on a bind error.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, LOOPBACK, () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr !== null ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: no fresh port found');
}

/**
 * The bound of a lab wait whose outcome comes from an event (a log line, a message received, a
 * process blocking): it only stops a hang. A lab test that can fail says so through an event (a
 * bounce in the log, a collection that ended early), never through a wait being slow: on a loaded
 * 2-core machine the same steps take several times longer.
 */
export const HANG_GUARD_MS = 15 * 60_000;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls fn until it returns a value other than undefined/false, or throws after timeoutMs. */
export async function waitUntil<T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Reads one SMTP greeting line from host:port; resolves to it, or undefined when nothing answers. */
export function smtpGreeting(port: number, host = LOOPBACK, timeoutMs = 2000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let buf = '';
    const done = (v: string | undefined) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        sock.write('QUIT\r\n');
        done(buf.slice(0, nl).trim());
      }
    });
    sock.on('error', () => done(undefined));
    sock.on('close', () => done(buf === '' ? undefined : buf.trim()));
  });
}

/** /proc/PID/stat fields: state and parent pid and start time (clock ticks since boot). */
function procStat(pid: number): { state: string; ppid: number; start: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', ppid: Number(rest[1]), start: rest[19] ?? '' };
  } catch {
    return undefined;
  }
}

/** True when the process exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  const st = procStat(pid);
  if (st !== undefined) return st.state !== 'Z' && st.state !== 'X';
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A token identifying this exact process (pid + start time), to detect pid reuse later. */
export function processToken(pid = process.pid): string {
  return `${pid} ${procStat(pid)?.start ?? ''}`;
}

/** True when the process named by a processToken() still runs (same pid and start time). */
export function tokenAlive(token: string): boolean {
  const [pidStr, start] = token.trim().split(' ');
  const pid = Number(pidStr);
  if (!pidAlive(pid)) return false;
  const st = procStat(pid);
  return st === undefined || start === undefined || start === '' || st.start === start;
}

/** The pid and all its descendants (children first is not guaranteed). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [root];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const st = procStat(Number(e));
    if (st === undefined) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(e));
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    for (const c of children.get(p) ?? []) stack.push(c);
  }
  return out;
}

/** Sends signal to the pid and every descendant; ignores processes that are already gone. */
export function killTree(root: number, signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const pid of processTree(root)) {
    try {
      process.kill(pid, signal);
    } catch {
      /* gone */
    }
  }
}

/** SIGTERM the tree, wait up to graceMs for the root to go, then SIGKILL whatever is left. */
export async function terminateTree(root: number, graceMs = 3000): Promise<void> {
  if (!pidAlive(root)) return;
  const tree = processTree(root);
  killTree(root, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && tree.some(pidAlive)) await sleep(25);
  for (const pid of tree) {
    if (pidAlive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

/** Reads an integer pid from a pid file; undefined when missing or garbage. */
export function readPidFile(file: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}
