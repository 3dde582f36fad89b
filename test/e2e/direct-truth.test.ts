/**
 * The truth test for direct delivery (issue 26): a sender domain routed directly writes to recipient
 * domains that the node's private /etc/hosts maps to port 25 of loopback hosts, one without STARTTLS
 * and one with it (no DNS at all: test/lab/private-hosts.ts). For each recipient, what
 * GET /v1/routes/explain says (nexthop, TLS level, hence delivered or deferred) is what Postfix did.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle } from '../../src/deploy/index.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { waitForLog } from '../lab/log.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { assertInPrivateHosts, missingPrivateHosts } from '../lab/private-hosts.js';
import { labAvailable, requirementGate } from '../lab/requirements.js';
import { startMxHost, startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { connectNodeSsh } from '../lab/ssh.js';
import { readPidFile } from '../lab/util.js';
import { submitVerbatim } from '../postfix/postfix-harness.js';
import { adminClient, explainRoute } from './lab-app.js';

const SUITE = 'direct-delivery truth test';
// Without its own /etc/hosts the node would ask the machine's resolver: fail (CI) or skip, never run.
const labOk = requirementGate(SUITE, labAvailable().ok ? missingPrivateHosts() : labAvailable().missing);

/** TLS levels under which Postfix's smtp client defers rather than send in clear (postconf(5)). */
const TLS_REQUIRED = new Set(['encrypt', 'dane-only', 'fingerprint', 'verify', 'secure']);

describe.skipIf(!labOk)('the truth test for direct delivery: explanation = what Postfix does', () => {
  let t: TestApp;
  let sink: SmartHost;
  let mxPlain: SmartHost; // port 25, no STARTTLS
  let mxTls: SmartHost; // port 25, STARTTLS
  let node: PostfixNode;
  let connection: NodeConnection;
  /** Recipient domain → the host its private hosts entry points at. */
  let mxOf: Record<string, SmartHost>;

  beforeAll(async () => {
    t = await createTestApp();
    sink = await startSmartHost({ name: 'dsink', tls: 'starttls', users: {}, authOptional: true });
    mxPlain = await startMxHost({ name: 'mx-plain', tls: 'none', users: {} });
    mxTls = await startMxHost({ name: 'mx-tls', tls: 'starttls', users: {}, authOptional: true });
    mxOf = { 'enc-notls.dtest': mxPlain, 'plain.dtest': mxPlain, 'enc-tls.dtest': mxTls, 'plain-tls.dtest': mxTls };
    // inet_protocols stays the lab's ipv4: the first deploy (settings: all) restarts Postfix over SSH.
    node = await startPostfixNode({
      name: 'direct',
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink.caCertPem],
      privateHosts: Object.fromEntries(Object.entries(mxOf).map(([domain, mx]) => [domain, mx.host])),
    });
    connection = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint });
  });

  afterAll(async () => {
    connection?.close();
    await node?.stop();
    await stopAllLabNodes();
    await Promise.allSettled([sink, mxPlain, mxTls].map((host) => host?.close()));
    await t?.close();
  });

  it('gives the node and its SSH sessions their own /etc/hosts and no DNS', async () => {
    const ssh = await connectNodeSsh(node);
    try {
      // The switch first: were it missing, the lookups below would go to the machine's resolver.
      const nsswitch = await ssh.execCommand("grep -E '^[[:space:]]*hosts[[:space:]]*:' /etc/nsswitch.conf");
      expect(nsswitch.stdout.trim().split(/\s+/)).toEqual(['hosts:', 'files']);
      const listed = await ssh.execCommand('getent ahostsv4 plain.dtest enc-tls.dtest | grep STREAM');
      expect(listed.stdout.split('\n').map((line) => line.split(/\s+/)[0])).toEqual([mxPlain.host, mxTls.host]);
      const unlisted = await ssh.execCommand('getent hosts unlisted.dtest; echo "exit $?"');
      expect(unlisted.stdout.trim()).toBe('exit 2'); // not found, from the file alone
    } finally {
      ssh.dispose();
    }
  });

  it('delivers or defers each recipient domain as explained, at the explained TLS level', async () => {
    const { admin, post } = await adminClient(t);
    const tenant = await post('/v1/tenants', { name: 'Direct', slug: 'direct-truth', allowDirectDelivery: true });
    await post(`/v1/tenants/${tenant.id}/domains`, { name: 'direct.test', status: 'verified', route: 'direct' });
    await post('/v1/destination-policies', { pattern: 'enc-notls.dtest', tls: 'encrypt' });
    await post('/v1/destination-policies', { pattern: 'enc-tls.dtest', tls: 'encrypt' });
    const bundle = (await t.app.services.config.compileForDeploy()).bundle;
    const outcome = await deployBundle(connection, bundle, { configDir: node.configDir });
    expect(outcome.state, JSON.stringify(outcome.error)).toBe('live');
    // The master now serving was started by the deployer over SSH: it too resolves privately.
    expect(outcome.steps.map((step) => step.step)).toContain('restart');
    assertInPrivateHosts(readPidFile(`${node.queueDir}/pid/master.pid`) ?? 0, `${node.baseDir}/ns`, 'restarted master');

    const statuses = new Set<string>();
    // Trailing dots (issue 26): Postfix strips them before the policy lookup and the connection.
    const recipients = ['c@enc-notls.dtest.', 'c@plain.dtest.', 'c@enc-tls.dtest', 'c@plain-tls.dtest.'];
    for (const [index, recipient] of recipients.entries()) {
      const explanation = await explain(admin.headers, 'd@direct.test', recipient);
      const context = `${recipient}: ${explanation.tlsPolicy}, ${explanation.reason}`;
      const domain = explanation.recipientDomain!;
      const mx = mxOf[domain];
      expect(mx, `${context}: no lab host for ${domain}`).toBeDefined();
      expect(explanation, context).toMatchObject({ outcome: 'direct', nexthops: [domain] });
      // What Postfix must do, from the explanation alone and what the host offers.
      const offersTls = mx!.tls === 'starttls';
      const expected = TLS_REQUIRED.has(explanation.tlsPolicy!) && !offersTls ? 'deferred' : 'sent';
      const expectTls = offersTls && explanation.tlsPolicy !== 'none';

      const messageId = `<direct-${index}@lab.test>`;
      await submitVerbatim(node.smtpPort, { from: 'd@direct.test', to: recipient, messageId, body: context });
      const logged = await waitForLog(
        node,
        (entry) => entry.messageId === messageId && (entry.status === 'sent' || entry.status === 'deferred'),
        15_000,
      );
      statuses.add(logged.status);
      expect(logged.status, `${context}: ${logged.raw}`).toBe(expected);
      expect(logged.to, context).toBe(explanation.envelopeRecipient);
      // The address of the recipient domain (no dot), port 25: the node delivered directly.
      expect(logged.relay, context).toBe(`${domain}[${mx!.host}]:25`);
      expect(logged.service, context).toBe(explanation.service === 'smtp' ? 'smtp' : `${explanation.service}/smtp`);
      const received = mx!.received.find((message) => message.messageId === messageId);
      if (expected === 'deferred') {
        expect(logged.statusText, logged.raw).toMatch(/TLS is required, but was not offered/);
        expect(received, context).toBeUndefined();
        continue;
      }
      const delivered = received ?? (await mx!.waitFor((message) => message.messageId === messageId, 15_000));
      expect(delivered.rcptTo, context).toEqual([explanation.envelopeRecipient]);
      expect(delivered.authUser, context).toBeUndefined();
      expect(delivered.tlsProtocol !== undefined, `${context}: TLS ${delivered.tlsProtocol}`).toBe(expectTls);
    }
    // Both outcomes were observed: the rows cannot all pass one way.
    expect([...statuses].sort()).toEqual(['deferred', 'sent']);
  });

  const explain = (headers: Record<string, string>, sender: string, recipient: string) =>
    explainRoute(t, headers, sender, recipient);
});
