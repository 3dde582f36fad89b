/**
 * CPU of processes from Linux's /proc, in ms (clock ticks of 10 ms: sums over many changes, not
 * one), for the benches that count what a change costs the lab nodes.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { PostfixNode } from '../test/lab/postfix-node.js';

export const TICK_MS = 10; // CLK_TCK 100
/** utime, stime and, with `reaped`, the CPU of its waited-for descendants (cutime, cstime). */
export function procCpuMs(pid: number | undefined, reaped = true): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    return ((f[11] ?? 0) + (f[12] ?? 0) + (reaped ? (f[13] ?? 0) + (f[14] ?? 0) : 0)) * TICK_MS;
  } catch {
    return 0;
  }
}
/**
 * This process's main thread's CPU in ms, to the nanosecond (its schedstat run time): without the
 * process's other threads (worker threads, V8's and libuv's helpers); NaN where /proc lacks it.
 */
export function mainThreadCpuMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
}
function pidFrom(file: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}
/** Parent → children of every live process (one pass over /proc). */
export function processChildren(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {
      /* exited */
    }
  }
  return children;
}
/**
 * A process, its reaped descendants and its live ones: an SSH connection kept open between deploys
 * is a live sshd whose sessions are reaped into it, not (yet) into the listener.
 */
export function treeCpuMs(pid: number | undefined, children: Map<number, number[]>): number {
  return withDescendants(pid, children).reduce((total, p) => total + procCpuMs(p), 0);
}

/** A process and every live process below it. */
export function withDescendants(pid: number | undefined, children: Map<number, number[]>): number[] {
  if (pid === undefined) return [];
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...(children.get(all[i]!) ?? []));
  return all;
}

/** A lab node's sshd listener and Postfix master, by their pid files. */
function labNodeRoots(node: Pick<PostfixNode, 'baseDir' | 'queueDir'>) {
  return {
    sshd: pidFrom(path.join(node.baseDir, 'ssh', 'sshd.pid')),
    master: pidFrom(path.join(node.queueDir, 'pid', 'master.pid')),
  };
}

/**
 * A lab node's CPU so far: `session`, its sshd listener with every connection, the commands they
 * ran and the shells still open (the deployer's); `postfix`, its master with the daemons it reaped
 * (a reload restarts them).
 */
export function labNodeCpuMs(
  node: Pick<PostfixNode, 'baseDir' | 'queueDir'>,
  children: Map<number, number[]> = processChildren(),
): { session: number; postfix: number } {
  const { sshd, master } = labNodeRoots(node);
  return { session: treeCpuMs(sshd, children), postfix: procCpuMs(master) };
}

/** The processes of a lab node now: its sshd with every session below it, its Postfix master with its daemons. */
export function labNodePids(node: Pick<PostfixNode, 'baseDir' | 'queueDir'>): number[] {
  const children = processChildren();
  const { sshd, master } = labNodeRoots(node);
  return [...withDescendants(sshd, children), ...withDescendants(master, children)];
}
