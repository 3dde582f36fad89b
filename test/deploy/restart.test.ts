/**
 * Parameters master reads only at start (inet_protocols, inet_interfaces): `postfix reload` logs
 * "ignoring inet_protocols parameter value change" and keeps the old value, so a deploy that
 * changes one restarts master, as a visible step, and the node then uses the new value.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle, type DeployOutcome } from '../../src/deploy/index.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { waitForDelivery } from '../lab/delivery.js';
import { waitForLog } from '../lab/log.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { sendMail } from '../lab/submit.js';
import { HANG_GUARD_MS } from '../lab/util.js';
import { buildBundle } from './bundles.js';

const labOk = labGate('restart on inet_protocols');

describe.skipIf(!labOk)('a deploy that changes inet_protocols restarts master', () => {
  let sink: SmartHost;
  let v6: SmartHost;
  let node: PostfixNode;
  let conn: NodeConnection;

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    v6 = await startSmartHost({ name: 'v6', tls: 'starttls', users: { user6: 'pw6' }, host: '::1' });
    // Lab nodes start with inet_protocols = ipv4; this one as the default settings (all).
    node = await startPostfixNode({
      name: 'restart',
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink.caCertPem, v6.caCertPem],
      mainCf: { inet_protocols: 'all' },
    });
    conn = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint });
  });

  afterAll(async () => {
    conn?.close();
    await node?.stop();
    await stopAllLabNodes();
    await Promise.allSettled([sink?.close(), v6?.close()]);
  });

  const bundleFor = (inetProtocols: string) =>
    buildBundle([{ domain: 'six.test', nexthop: v6.nexthop, user: 'user6', password: 'pw6' }], {
      mainCf: { inet_protocols: inetProtocols },
    });
  const steps = (outcome: DeployOutcome) => outcome.steps.map((s) => s.step);
  const masterPid = async () => (await readFile(`${node.queueDir}/pid/master.pid`, 'utf8')).trim();

  /** The message's first delivery attempt: sent to the IPv6 relay, or its failure. */
  async function attempt(from: string) {
    const sent = await sendMail(node, { from, to: ['r@dest.test'] });
    return { sent, entry: await waitForLog(node, (e) => e.queueId === sent.queueId, HANG_GUARD_MS) };
  }

  it('restarts when the value changes, reloads when it does not, and the node uses the new value', async () => {
    // The same value as the node has: no restart.
    const first = await deployBundle(conn, bundleFor('all'), { configDir: node.configDir });
    expect(first.state, first.error).toBe('live');
    expect(steps(first)).toContain('reload');
    expect(steps(first)).not.toContain('restart');
    const delivered = await attempt('a@six.test');
    expect(delivered.entry.status, delivered.entry.raw).toBe('sent');
    expect((await waitForDelivery(node, delivered.sent, v6)).authUser).toBe('user6');

    // To ipv4: a restart step, a new master, and the IPv6 relay is really out of reach now.
    const pidBefore = await masterPid();
    const ipv4 = await deployBundle(conn, bundleFor('ipv4'), { configDir: node.configDir });
    expect(ipv4.state, ipv4.error).toBe('live');
    expect(steps(ipv4)).toEqual(expect.arrayContaining(['apply', 'restart', 'verify']));
    expect(steps(ipv4)).not.toContain('reload');
    // No systemd runs this lab's master (postfix-restart.test.ts covers the systemctl side).
    expect(ipv4.steps.find((s) => s.step === 'restart')?.detail).toMatch(
      /^postfix stop; postfix start \([^)]+\): inet_protocols take effect only when master starts$/,
    );
    expect(await masterPid()).not.toBe(pidBefore);
    const stranded = await attempt('b@six.test');
    expect(stranded.entry.status, stranded.entry.raw).not.toBe('sent');
    expect(stranded.entry.statusText, stranded.entry.raw).toMatch(/Name service error|Address family/i);

    // And back: the restarted master delivers to [::1] again; master never said it ignored the change.
    const back = await deployBundle(conn, bundleFor('all'), { configDir: node.configDir });
    expect(back.state, back.error).toBe('live');
    expect(steps(back)).toContain('restart');
    const again = await attempt('c@six.test');
    expect(again.entry.status, again.entry.raw).toBe('sent');

    // IPv6 only cannot start here (the node's smtpd listens on 127.0.0.1): the restart fails, the
    // rollback restarts the previous config, and the node serves and delivers as before.
    const v6only = await deployBundle(conn, bundleFor('ipv6'), { configDir: node.configDir });
    expect(v6only.state, v6only.error).toBe('rolled_back');
    expect(v6only.error).toMatch(
      /postfix start failed \(exit 1\): fatal: .*master\.cf: line \d+: bad hostname or network address: 127\.0\.0\.1:/,
    );
    expect(steps(v6only)).toEqual(expect.arrayContaining(['restart', 'rollback']));
    expect(v6only.steps.find((s) => s.step === 'rollback')?.detail).toMatch(/, postfix stop; postfix start \(/);
    expect(await node.postconf(['-h', 'inet_protocols'])).toBe('all\n');
    const six = await attempt('d@six.test');
    expect(six.entry.status, six.entry.raw).toBe('sent');

    const log = await readFile(node.maillogPath, 'utf8');
    expect(log).not.toMatch(/ignoring inet_protocols parameter value change/);
    expect(log.match(/master\[\d+\]: daemon started/g)?.length).toBeGreaterThanOrEqual(4);
  });
});
