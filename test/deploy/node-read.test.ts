/**
 * What a deploy reads and signals on the node, on a real Postfix node: postconf's answers are read
 * again only when main.cf, master.cf (or postconf itself) changed since the connection last read
 * them (a deploy's verify reads what it changed), and a reload signals master directly unless its
 * pid file does not name a running master; alike whether the Perl loop or the shell loop runs them.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle } from '../../src/deploy/index.js';
import { nodeLayout } from '../../src/deploy/layout.js';
import { readNodeState } from '../../src/deploy/postfix-config.js';
import { ConnectionPool, connectNode, type ExecResult, type NodeConnection } from '../../src/ssh/index.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { buildBundle } from './bundles.js';

const labOk = labGate('node reads and reloads');

describe.skipIf(!labOk).each([
  { loop: 'Perl', remoteLoop: 'auto' as const },
  { loop: 'shell', remoteLoop: 'sh' as const },
])('reading the node and reloading it, by the $loop loop', ({ remoteLoop }) => {
  let sink: SmartHost;
  let node: PostfixNode;
  let conn: NodeConnection;
  /** Every command the deployer ran on the node and what it printed. */
  const ran: Array<{ command: string; result: ExecResult }> = [];

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    node = await startPostfixNode({
      name: `read-${remoteLoop}`,
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink.caCertPem],
    });
    conn = recording(await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint, remoteLoop }));
  });

  /** The connection, recording every command into `ran`. */
  const recording = (real: NodeConnection): NodeConnection => ({
    host: real.host,
    session: real.session ?? real,
    exec: async (command, options) => {
      const result = await real.exec(command, options);
      ran.push({ command, result });
      return result;
    },
    execBytes: (command, options) => real.execBytes(command, options),
    writeFile: (path, content, mode) => real.writeFile(path, content, mode),
    close: () => real.close(),
  });

  afterAll(async () => {
    conn?.close();
    await node?.stop();
    await stopAllLabNodes();
    await sink?.close();
  });

  const read = async () => {
    const before = ran.length;
    const state = await readNodeState(conn, nodeLayout(node.configDir));
    // postconf -n prints relayhost (every lab node sets it): the script ran the postconf reads.
    const answered = ran.slice(before).some((r) => /^relayhost = /m.test(r.result.stdout));
    return { state, postconfAnswered: answered };
  };

  it('reads postconf once per content of main.cf and master.cf', async () => {
    const first = await read();
    expect(first.postconfAnswered).toBe(true);
    expect(first.state.configDirectory).toBe(node.configDir);
    expect(first.state.queueDirectory).toBe(node.queueDir);
    expect(first.state.config.params.get('relayhost')).toBe(sink.nexthop);
    expect(first.state.config.services.has('pickup/unix')).toBe(true);

    const second = await read();
    expect(second.postconfAnswered).toBe(false);
    expect(second.state).toEqual(first.state);

    // The release dirs only when asked (a deploy that expects to switch), with their mtimes.
    expect(first.state.releases).toBeUndefined();
    await conn.exec(`mkdir -p ${nodeLayout(node.configDir).release('a'.repeat(64))}`);
    const listed = await readNodeState(conn, nodeLayout(node.configDir), { listReleases: true });
    expect(listed.releases).toMatch(new RegExp(`^[0-9.]+ ${'a'.repeat(64)}$`, 'm'));
    await conn.exec(`rm -rf ${nodeLayout(node.configDir).release('a'.repeat(64))}`);

    // A hand edit of main.cf, then of master.cf: read again, and the edit is seen.
    const r = await conn.exec(`postconf -e 'smtp_helo_name = edited.test'`);
    expect(r.code, r.stderr).toBe(0);
    const third = await read();
    expect(third.postconfAnswered).toBe(true);
    expect(third.state.config.params.get('smtp_helo_name')).toBe('edited.test');
    const masterCf = `${node.configDir}/master.cf`;
    await writeFile(masterCf, `${await readFile(masterCf, 'utf8')}rp_hand unix - - n - - smtp\n`);
    const fourth = await read();
    expect(fourth.postconfAnswered).toBe(true);
    expect(fourth.state.config.services.has('rp_hand/unix')).toBe(true);
  });

  it("takes a deploy's own read of the config it changed as known: the next read runs no postconf", async () => {
    await read();
    const outcome = await deployBundle(conn, buildBundle([], { mainCf: { smtp_helo_name: 'deployed.test' } }), {
      configDir: node.configDir,
    });
    expect(outcome.state, outcome.error).toBe('live');
    const next = await read();
    expect(next.postconfAnswered).toBe(false);
    expect(next.state.config.params.get('smtp_helo_name')).toBe('deployed.test');
    // And a hand edit after it is still seen.
    expect((await conn.exec(`postconf -e 'smtp_helo_name = by-hand.test'`)).code).toBe(0);
    const edited = await read();
    expect(edited.postconfAnswered).toBe(true);
    expect(edited.state.config.params.get('smtp_helo_name')).toBe('by-hand.test');
  });

  it('keeps what it read for the connection, not the lease: the next lease from a pool reads no postconf', async () => {
    const pool = new ConnectionPool({ idleMs: 60_000 });
    const target = { ...node.ssh, hostKey: node.ssh.hostKeyFingerprint, remoteLoop };
    try {
      const first = await pool.acquire(target);
      await readNodeState(first, nodeLayout(node.configDir));
      first.close();
      const second = await pool.acquire(target);
      expect(second).not.toBe(first);
      expect(second.session).toBe(first.session);
      const before = ran.length;
      await readNodeState(recording(second), nodeLayout(node.configDir));
      expect(ran.slice(before).some((r) => /^relayhost = /m.test(r.result.stdout))).toBe(false);
      second.close();
    } finally {
      pool.close();
    }
  });

  it('reloads by signalling master itself: master logs the reload, postfix-script never runs', async () => {
    const log = () => readFile(node.maillogPath, 'utf8');
    const count = (text: string, re: RegExp) => (text.match(re) ?? []).length;
    const reloads = /master\[\d+\]: reload -- /g;
    const scripted = /postfix-script\[\d+\]: refreshing the Postfix mail system/g;

    const before = await log();
    const outcome = await deployBundle(conn, buildBundle([], { mainCf: { smtp_helo_name: 'one.test' } }), {
      configDir: node.configDir,
    });
    expect(outcome.state, outcome.error).toBe('live');
    expect(outcome.steps.map((s) => s.step)).toContain('reload');
    const after = await log();
    expect(count(after, reloads)).toBe(count(before, reloads) + 1);
    expect(count(after, scripted)).toBe(count(before, scripted));
    const r = await conn.exec('postconf -h smtp_helo_name');
    expect(r.stdout.trim()).toBe('one.test');
  });
  it('reads where `current` leads by the shell itself, as readlink would name it', async () => {
    const layout = nodeLayout(node.configDir);
    const live = (await conn.exec(`readlink ${layout.current}`)).stdout.trim();
    expect(live).toMatch(/^releases\/[0-9a-f]{64}$/);
    const relink = async (target: string) => {
      const r = await conn.exec(
        `ln -sfn '${target}' ${layout.root}/rp-link && mv -T ${layout.root}/rp-link ${layout.current}`,
      );
      expect(r.code, r.stderr).toBe(0);
    };
    const target = async () => (await readNodeState(conn, layout)).currentTarget;
    try {
      expect(await target()).toBe(live);
      await relink(`${layout.root}/${live}`);
      expect(await target()).toBe(live);
      await relink(`releases/${'b'.repeat(64)}`);
      expect(await target()).toBe(`releases/${'b'.repeat(64)}`);
      await relink('/tmp');
      expect(await target()).toBe('/tmp');
      await relink('../relayplane/releases/../' + live);
      expect(await target()).toBe(live);
    } finally {
      await relink(live);
    }
    expect(await target()).toBe(live);
  });
});
