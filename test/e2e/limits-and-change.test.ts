/**
 * Limits and change under load, on a real node: a sender-domain limit and a relay limit make
 * Postfix use their generated services (seen in the log, with the spacing the limit asks for),
 * still through the right relay and credentials; and while 1,000 messages are submitted, 20
 * config changes deploy and every message reaches a smart host exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle } from '../../src/deploy/index.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { readDeliveries, waitForLog } from '../lab/log.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { sendMail } from '../lab/submit.js';
import { adminClient } from './lab-app.js';

const labOk = labGate('limits and change tests');

describe.skipIf(!labOk)('limits and change on a real node', () => {
  let t: TestApp;
  let sink: SmartHost;
  let sh1: SmartHost;
  let sh2: SmartHost;
  let node: PostfixNode;
  let connection: NodeConnection;
  let api: Awaited<ReturnType<typeof adminClient>>;
  let tenantId: string;
  let relay1: string;
  let relay2: string;

  async function deploy() {
    const outcome = await deployBundle(connection, (await t.app.services.config.compileForDeploy()).bundle, {
      configDir: node.configDir,
    });
    expect(outcome.state, outcome.error).toBe('live');
    return outcome;
  }

  beforeAll(async () => {
    t = await createTestApp();
    api = await adminClient(t);
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    sh1 = await startSmartHost({
      name: 'sh1',
      tls: 'starttls',
      users: { slowUser: 'pw slow', plainUser: 'pw:plain', busyUser: 'pw busy' },
    });
    sh2 = await startSmartHost({ name: 'sh2', tls: 'starttls', users: { limitedRelayUser: 'pw relay' } });
    node = await startPostfixNode({
      name: 'limits',
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink, sh1, sh2].map((host) => host.caCertPem),
    });
    connection = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyLine });
    tenantId = (await api.post('/v1/tenants', { name: 'Limits', slug: 'limits' })).id;
    relay1 = (await api.post('/v1/relays', { name: 'sh1', host: '127.0.0.1', port: sh1.port, tls: 'starttls' })).id;
    relay2 = (
      await api.post('/v1/relays', {
        name: 'sh2',
        host: '127.0.0.1',
        port: sh2.port,
        tls: 'starttls',
        limits: { concurrency: 1, rateDelaySeconds: 1 },
      })
    ).id;
    await api.post(`/v1/relays/${relay2}/credentials`, { username: 'limitedRelayUser', secret: 'pw relay' });
    const slow = await api.post(`/v1/tenants/${tenantId}/domains`, {
      name: 'slow.test',
      relayId: relay1,
      status: 'verified',
      limits: { concurrency: 1, rateDelaySeconds: 1 },
    });
    await api.post(`/v1/relays/${relay1}/credentials`, { username: 'slowUser', secret: 'pw slow', domainId: slow.id });
    const plain = await api.post(`/v1/tenants/${tenantId}/domains`, {
      name: 'plain.test',
      relayId: relay1,
      status: 'verified',
    });
    await api.post(`/v1/relays/${relay1}/credentials`, {
      username: 'plainUser',
      secret: 'pw:plain',
      domainId: plain.id,
    });
    await api.post(`/v1/tenants/${tenantId}/domains`, {
      name: 'viarelaylimit.test',
      relayId: relay2,
      status: 'verified',
    });
    await deploy();
  });

  afterAll(async () => {
    connection?.close();
    await node?.stop();
    await stopAllLabNodes();
    await Promise.allSettled([sink, sh1, sh2].map((host) => host?.close()));
    await t?.close();
  });

  /** Sends `count` messages from `from` at once and returns their delivery log entries, in delivery order. */
  async function burst(from: string, count: number, host: SmartHost) {
    const sent = await Promise.all(
      Array.from({ length: count }, (_, i) => sendMail(node, { from, to: [`r${i}@dest.example`] })),
    );
    for (const message of sent) await host.waitFor((received) => received.messageId === message.messageId, 20_000);
    const ids = new Set(sent.map((message) => message.messageId));
    await waitForLog(node, () => true, 1000);
    const entries = (await readDeliveries(node)).filter(
      (entry) => entry.messageId !== undefined && ids.has(entry.messageId) && entry.status === 'sent',
    );
    return { sent, entries };
  }

  const seconds = (time: string) =>
    Date.parse(time.includes('T') ? time : `${new Date().getFullYear()} ${time}`) / 1000;

  it('a sender-domain limit uses its own service, spaced by its delay, through the right relay and credential', async () => {
    const explained = (
      await t.app.inject({
        method: 'GET',
        url: '/v1/routes/explain?sender=a@slow.test&recipient=x@dest.example',
        headers: api.admin.headers,
      })
    ).json();
    expect(explained.service).toMatch(/^rp_d_/);
    const { entries } = await burst('a@slow.test', 4, sh1);
    expect(entries).toHaveLength(4);
    expect(new Set(entries.map((entry) => entry.service))).toEqual(new Set([`${explained.service}/smtp`]));
    const times = entries.map((entry) => seconds(entry.time)).sort((a, b) => a - b);
    // rate delay 1 s: four deliveries take at least ~3 s from first to last.
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(2.5);
    expect(
      sh1.received
        .filter((message) => message.mailFrom === 'a@slow.test')
        .every((message) => message.authUser === 'slowUser'),
    ).toBe(true);
    // The other domain on the same relay is not slowed down and keeps Postfix's own smtp service.
    const { entries: plain } = await burst('b@plain.test', 4, sh1);
    expect(new Set(plain.map((entry) => entry.service))).toEqual(new Set(['smtp']));
    expect(
      sh1.received
        .filter((message) => message.mailFrom === 'b@plain.test')
        .every((message) => message.authUser === 'plainUser'),
    ).toBe(true);
  });

  it('a relay limit uses the relay service for that relay only, spaced, with the relay-wide credential', async () => {
    const explained = (
      await t.app.inject({
        method: 'GET',
        url: '/v1/routes/explain?sender=c@viarelaylimit.test&recipient=x@dest.example',
        headers: api.admin.headers,
      })
    ).json();
    expect(explained.service).toMatch(/^rp_r_/);
    const { entries } = await burst('c@viarelaylimit.test', 3, sh2);
    expect(new Set(entries.map((entry) => entry.service))).toEqual(new Set([`${explained.service}/smtp`]));
    const times = entries.map((entry) => seconds(entry.time)).sort((a, b) => a - b);
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(1.5);
    expect(
      sh2.received
        .filter((message) => message.mailFrom === 'c@viarelaylimit.test')
        .every((message) => message.authUser === 'limitedRelayUser'),
    ).toBe(true);
  });

  it('loses no mail while 1,000 messages are submitted and 20 config changes deploy', async () => {
    const busy = await api.post(`/v1/tenants/${tenantId}/domains`, {
      name: 'busy.test',
      relayId: relay1,
      status: 'verified',
    });
    await api.post(`/v1/relays/${relay1}/credentials`, { username: 'busyUser', secret: 'pw busy', domainId: busy.id });
    await deploy();
    const before = sh1.received.length;
    const total = 1000;
    const messageIds: string[] = [];
    let submitted = 0;
    const submitter = (async () => {
      // 10 parallel clients, each submitting its share one after another.
      await Promise.all(
        Array.from({ length: 10 }, async (_, client) => {
          for (let i = client; i < total; i += 10) {
            const result = await sendMail(node, { from: `sender${i}@busy.test`, to: [`rcpt${i}@dest.example`] });
            messageIds.push(result.messageId);
            submitted += 1;
          }
        }),
      );
    })();
    const versions: string[] = [];
    for (let change = 0; change < 20; change += 1) {
      // A real change each time: another domain appears, so every bundle has a new version.
      await api.post(`/v1/tenants/${tenantId}/domains`, {
        name: `change${change}.test`,
        relayId: relay1,
        status: 'verified',
      });
      versions.push((await deploy()).version);
    }
    await submitter;
    expect(submitted).toBe(total);
    expect(new Set(versions).size).toBe(20);
    const deadline = Date.now() + 120_000;
    const wanted = new Set(messageIds);
    while (
      Date.now() < deadline &&
      sh1.received.slice(before).filter((message) => wanted.has(message.messageId ?? '')).length < total
    ) {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const arrived = sh1.received.slice(before).filter((message) => wanted.has(message.messageId ?? ''));
    const counts = new Map<string, number>();
    for (const message of arrived) counts.set(message.messageId!, (counts.get(message.messageId!) ?? 0) + 1);
    expect(counts.size, 'every message arrived').toBe(total);
    expect(
      [...counts.values()].every((count) => count === 1),
      'no message arrived twice',
    ).toBe(true);
    expect(arrived.every((message) => message.authUser === 'busyUser')).toBe(true);
  });
});
