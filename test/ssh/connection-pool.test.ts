/**
 * The deployer's SSH connection pool against a real sshd (test/lab): a connection is reused while
 * it is healthy and its identity (address, pinned host key, private key) is unchanged; a dropped,
 * broken or expired one is replaced by a new connection, and a new connection verifies the host key.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionPool,
  HostKeyMismatchError,
  SKIPPED_EXIT,
  connectNode,
  type NodeConnection,
  type NodeTarget,
} from '../../src/ssh/index.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { runOk, sleep, waitUntil } from '../lab/util.js';

const labOk = labGate('connection pool lab tests');

describe.skipIf(!labOk)('ConnectionPool on a real sshd', () => {
  let sink: SmartHost;
  let node: PostfixNode;
  let other: PostfixNode;
  const pools: ConnectionPool[] = [];

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    [node, other] = (await Promise.all(
      ['pool1', 'pool2'].map((name) => startPostfixNode({ name, sinkRelayhost: sink.nexthop })),
    )) as [PostfixNode, PostfixNode];
  });

  afterAll(async () => {
    for (const p of pools) p.close();
    await Promise.allSettled([node?.stop(), other?.stop()]);
    await stopAllLabNodes();
    await sink?.close();
  });

  const target = (n: PostfixNode, extra: Partial<NodeTarget> = {}): NodeTarget => ({
    ...n.ssh,
    hostKey: n.ssh.hostKeyLine,
    ...extra,
  });
  /** A pool whose every new connection is recorded. */
  const counted = (idleMs = 30_000) => {
    const opened: NodeConnection[] = [];
    const pool = new ConnectionPool({
      idleMs,
      connect: async (t) => {
        const c = await connectNode(t);
        opened.push(c);
        return c;
      },
    });
    pools.push(pool);
    return { pool, opened };
  };
  /** The remote shell's parent: the sshd process of the connection. */
  const sessionOf = async (c: NodeConnection) => (await c.exec('ps -o ppid= -p $$')).stdout.trim();

  it('reuses an open connection for the same node, one lease at a time', async () => {
    const { pool, opened } = counted();
    const a = await pool.acquire(target(node));
    // Leased: a second user meanwhile gets a connection of its own.
    const b = await pool.acquire(target(node));
    expect(opened).toHaveLength(2);
    const bSession = await sessionOf(b);
    b.close();
    a.close(); // one idle connection per node: the second one back is closed
    expect(pool.idleCount).toBe(1);
    expect(opened[0]!.isOpen?.()).toBe(false);
    const c = await pool.acquire(target(node));
    expect(opened).toHaveLength(2);
    expect(await sessionOf(c)).toBe(bSession); // the same sshd process serves it
    c.close();
    // A returned lease refuses commands: the connection may be someone else's by now.
    await expect(b.exec('true')).rejects.toThrow(/returned to the pool/);
  });

  it('fails a command the node skipped (ifPreviousOk after a failure) as skipped, and runs the next ungated one', async () => {
    const c = await connectNode(target(node));
    try {
      const failed = c.exec('exit 3');
      const gated = c.exec('touch /nonexistent-should-not-run', { ifPreviousOk: true });
      const after = c.exec('echo ran');
      expect((await failed).code).toBe(3);
      await expect(gated).rejects.toMatchObject({ exitCode: SKIPPED_EXIT });
      expect((await after).stdout).toBe('ran\n');
      // Gated after a success, it runs and answers as usual.
      expect((await c.exec('echo chained', { ifPreviousOk: true })).stdout).toBe('chained\n');
    } finally {
      c.close();
    }
  });

  it('replaces a connection the node dropped while idle', async () => {
    const { pool, opened } = counted();
    const a = await pool.acquire(target(node));
    await a.exec('true');
    a.close();
    await node.stopSsh(); // kills the listener and the open session
    await node.startSsh();
    await waitUntil(() => opened[0]!.isOpen?.() === false, 5000, 'the dropped connection to be seen closed', 20);
    const b = await pool.acquire(target(node));
    expect(opened).toHaveLength(2);
    expect((await b.exec('echo fresh')).stdout).toBe('fresh\n');
    b.close();
  });

  it('never gives back a connection whose command failed in transport', async () => {
    const { pool, opened } = counted();
    const a = await pool.acquire(target(node));
    expect((await a.exec('exit 3')).code).toBe(3); // a failing command is not a broken connection
    await expect(a.exec('sleep 5', { timeoutMs: 200 })).rejects.toThrow(/timed out/);
    a.close();
    expect(pool.idleCount).toBe(0);
    expect(opened[0]!.isOpen?.()).toBe(false);
    const b = await pool.acquire(target(node));
    expect(opened).toHaveLength(2);
    b.close();
  });

  it('opens (and verifies) a new connection when the pinned key changes; a changed host key is refused on reconnect', async () => {
    const { pool, opened } = counted();
    const a = await pool.acquire(target(other));
    a.close();
    // Another pin for the same address: the cached connection is not used, the new one is refused.
    await expect(pool.acquire(target(other, { hostKey: node.ssh.hostKeyLine }))).rejects.toBeInstanceOf(
      HostKeyMismatchError,
    );
    expect(pool.idleCount).toBe(0);
    const b = await pool.acquire(target(other));
    b.close();
    expect(opened).toHaveLength(2);
    // The node gets a new host key (reinstalled, or an impostor on its address): the cached
    // connection dies with the old sshd, and the reconnect with the old pin is refused.
    await other.stopSsh();
    const key = path.join(other.baseDir, 'ssh', 'ssh_host_ed25519_key');
    await rm(key, { force: true });
    await rm(`${key}.pub`, { force: true });
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    await other.startSsh();
    await waitUntil(() => opened[1]!.isOpen?.() === false, 5000, 'the old connection to be seen closed', 20);
    await expect(pool.acquire(target(other))).rejects.toBeInstanceOf(HostKeyMismatchError);
  });

  it('closes an idle connection after idleMs, and everything on close()', async () => {
    const { pool, opened } = counted(200);
    const a = await pool.acquire(target(node));
    a.close();
    expect(pool.idleCount).toBe(1);
    await sleep(400);
    expect(pool.idleCount).toBe(0);
    expect(opened[0]!.isOpen?.()).toBe(false);

    const b = await pool.acquire(target(node));
    const c = await pool.acquire(target(node));
    b.close();
    pool.close();
    expect(opened[1]!.isOpen?.()).toBe(false);
    c.close(); // returned after close(): closed, not kept
    expect(opened[2]!.isOpen?.()).toBe(false);
    expect(pool.idleCount).toBe(0);
  });
});
