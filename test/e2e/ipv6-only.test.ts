/**
 * A node that really runs with inet_protocols = ipv6 (issue 26): its smtpd listens on [::1], a
 * deploy switching it from all to ipv6 restarts master, mail to an IPv6 relay is delivered and mail
 * to an IPv4 one is not; through the API, ipv6 is accepted once every route's relay is IPv6, and
 * what GET /v1/routes/explain says is what the node then does.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle, type DeployOutcome } from '../../src/deploy/index.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { buildBundle } from '../deploy/bundles.js';
import { waitForDelivery } from '../lab/delivery.js';
import { readDeliveries, waitForLog } from '../lab/log.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { sendMail } from '../lab/submit.js';
import { HANG_GUARD_MS } from '../lab/util.js';
import { smtpDialogue } from '../postfix/postfix-harness.js';
import { adminClient, explainRoute } from './lab-app.js';

const labOk = labGate('IPv6-only node');

describe.skipIf(!labOk)('a node with inet_protocols = ipv6', () => {
  let t: TestApp;
  let sink: SmartHost;
  let sh4: SmartHost; // STARTTLS on 127.0.0.1
  let sh6: SmartHost; // STARTTLS on ::1
  const nodes: PostfixNode[] = [];
  const conns: NodeConnection[] = [];

  beforeAll(async () => {
    t = await createTestApp();
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    sh4 = await startSmartHost({ name: 'sh4', tls: 'starttls', users: { user4: 'pw4' } });
    sh6 = await startSmartHost({ name: 'sh6', tls: 'starttls', users: { user6: 'pw6' }, host: '::1' });
  });

  afterAll(async () => {
    for (const conn of conns) conn.close();
    await Promise.allSettled(nodes.map((node) => node.stop()));
    await stopAllLabNodes();
    await Promise.allSettled([sink, sh4, sh6].map((host) => host?.close()));
    await t?.close();
  });

  /** A node whose smtpd listens on [::1] only, running as the default settings compile (all). */
  async function v6Node(name: string) {
    const node = await startPostfixNode({
      name,
      smtpHost: '::1',
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink, sh4, sh6].map((host) => host.caCertPem),
      mainCf: { inet_protocols: 'all' },
    });
    nodes.push(node);
    const conn = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint });
    conns.push(conn);
    return { node, conn };
  }

  const steps = (outcome: DeployOutcome) => outcome.steps.map((s) => s.step);
  const masterPid = async (node: PostfixNode) => (await readFile(`${node.queueDir}/pid/master.pid`, 'utf8')).trim();

  it('switches from all to ipv6 with a restart: the IPv6 relay gets mail, the IPv4 one does not', async () => {
    const { node, conn } = await v6Node('six-deploy');
    const bundleFor = (inetProtocols: string) =>
      buildBundle(
        [
          { domain: 'six.test', nexthop: sh6.nexthop, user: 'user6', password: 'pw6' },
          { domain: 'four.test', nexthop: sh4.nexthop, user: 'user4', password: 'pw4' },
        ],
        { mainCf: { inet_protocols: inetProtocols } },
      );
    const deliveredTo = async (from: string, host: SmartHost) => {
      const sent = await sendMail(node, { from, to: ['r@dest.test'] });
      return waitForDelivery(node, sent, host);
    };

    // Under all both relays are reached: the IPv4 route works before the switch.
    const all = await deployBundle(conn, bundleFor('all'), { configDir: node.configDir });
    expect(all.state, all.error).toBe('live');
    expect(steps(all)).not.toContain('restart');
    expect((await deliveredTo('a@four.test', sh4)).authUser).toBe('user4');
    expect((await deliveredTo('a@six.test', sh6)).authUser).toBe('user6');

    const pidBefore = await masterPid(node);
    const ipv6 = await deployBundle(conn, bundleFor('ipv6'), { configDir: node.configDir });
    expect(ipv6.state, ipv6.error).toBe('live');
    expect(steps(ipv6)).toEqual(expect.arrayContaining(['apply', 'restart', 'verify']));
    expect(steps(ipv6)).not.toContain('reload');
    expect(ipv6.steps.find((s) => s.step === 'restart')?.detail).toMatch(/inet_protocols/);
    expect(await masterPid(node)).not.toBe(pidBefore);
    expect(await node.postconf(['-h', 'inet_protocols'])).toBe('ipv6\n');

    // The new master's smtpd takes mail on [::1]; the IPv6 relay gets it.
    const six = await sendMail(node, { from: 'b@six.test', to: ['r@dest.test'] });
    expect((await waitForDelivery(node, six, sh6)).authUser).toBe('user6');
    const sixLogged = await waitForLog(node, (e) => e.queueId === six.queueId, HANG_GUARD_MS);
    expect(sixLogged.relay, sixLogged.raw).toBe(`::1[::1]:${sh6.port}`);

    // The IPv4 relay is out of reach for this master: the attempt fails on the node, nothing arrives.
    const four = await sendMail(node, { from: 'b@four.test', to: ['r@dest.test'] });
    const fourLogged = await waitForLog(node, (e) => e.queueId === four.queueId, HANG_GUARD_MS);
    expect(fourLogged.status, fourLogged.raw).not.toBe('sent');
    expect(fourLogged.statusText, fourLogged.raw).toMatch(/Name service error|Address family/i);
    expect(sh4.received.some((m) => m.messageId === four.messageId)).toBe(false);

    // The raw dialogue helper reaches the [::1] listener too.
    const [ehlo] = await smtpDialogue(node.smtpPort, ['EHLO client.lab.test', 'QUIT'], node.smtpHost);
    expect(ehlo).toMatch(/^250 /);
    const log = await readFile(node.maillogPath, 'utf8');
    expect(log).not.toMatch(/ignoring inet_protocols parameter value change/);
  });

  it('API: ipv6 is refused while a route uses an IPv4 relay, accepted when all are IPv6, and explained', async () => {
    const { node, conn } = await v6Node('six-api');
    const { admin, post, put, call } = await adminClient(t);
    const tenant = await post('/v1/tenants', { name: 'Six', slug: 'six-only' });
    const relay6 = await post('/v1/relays', { name: 'v6', host: '::1', port: sh6.port, tls: 'starttls' });
    const relay4 = await post('/v1/relays', { name: 'v4', host: '127.0.0.1', port: sh4.port, tls: 'starttls' });
    const six = await post(`/v1/tenants/${tenant.id}/domains`, {
      name: 'six.api.test',
      relayId: relay6.id,
      status: 'verified',
    });
    const four = await post(`/v1/tenants/${tenant.id}/domains`, {
      name: 'four.api.test',
      relayId: relay4.id,
      status: 'verified',
    });
    sh6.users['api-six'] = 'secret six';
    sh6.users['api-four'] = 'secret four';
    await post(`/v1/relays/${relay6.id}/credentials`, { username: 'api-six', secret: 'secret six', domainId: six.id });
    await post(`/v1/relays/${relay6.id}/credentials`, {
      username: 'api-four',
      secret: 'secret four',
      domainId: four.id,
    });

    const settings = await t.app.inject({ method: 'GET', url: '/v1/settings', headers: admin.headers });
    const { updatedAt: _updatedAt, ...current } = settings.json<Record<string, unknown>>();
    expect(current.inetProtocols).toBe('all');
    const first = await deployBundle(conn, (await t.app.services.config.compileForDeploy()).bundle, {
      configDir: node.configDir,
    });
    expect(first.state, first.error).toBe('live');

    // four.api.test still goes through 127.0.0.1: ipv6 would strand it.
    const refused = await call('PUT', '/v1/settings', { ...current, inetProtocols: 'ipv6' }, 422);
    expect(refused).toMatchObject({ code: 'relay-unreachable', problems: [{ resourceId: four.id }] });
    await call('PATCH', `/v1/domains/${four.id}`, { relayId: relay6.id });
    expect((await put('/v1/settings', { ...current, inetProtocols: 'ipv6' })).inetProtocols).toBe('ipv6');
    // Under ipv6, a route onto the IPv4 relay is refused at write time.
    const back = await call('PATCH', `/v1/domains/${four.id}`, { relayId: relay4.id }, 422);
    expect(back.code).toBe('relay-unreachable');

    const bundle = (await t.app.services.config.compileForDeploy()).bundle;
    const pidBefore = await masterPid(node);
    const outcome = await deployBundle(conn, bundle, { configDir: node.configDir });
    expect(outcome.state, outcome.error).toBe('live');
    expect(steps(outcome)).toContain('restart');
    expect(await masterPid(node)).not.toBe(pidBefore);
    expect(await node.postconf(['-h', 'inet_protocols'])).toBe('ipv6\n');

    for (const [sender, user] of [
      ['v@six.api.test', 'api-six'],
      ['v@four.api.test', 'api-four'],
    ] as const) {
      const explanation = await explainRoute(t, admin.headers, sender, 'r@dest.test');
      expect(explanation, explanation.reason).toMatchObject({ outcome: 'relay', nexthops: [sh6.nexthop] });
      const sent = await sendMail(node, { from: sender, to: ['r@dest.test'] });
      const received = await waitForDelivery(node, sent, sh6);
      expect(received.authUser, sender).toBe(explanation.credentialsByNexthop[sh6.nexthop]?.username);
      expect(received.authUser, sender).toBe(user);
      const logged = await waitForLog(node, (e) => e.queueId === sent.queueId && e.status === 'sent', HANG_GUARD_MS);
      expect(logged.relay, logged.raw).toBe(`::1[::1]:${sh6.port}`);
      expect(logged.service).toBe(explanation.service === 'smtp' ? 'smtp' : `${explanation.service}/smtp`);
    }
    // Nothing of this node's went to the IPv4 relay.
    expect((await readDeliveries(node)).filter((e) => e.relay.includes('127.0.0.1'))).toEqual([]);
  });
});
