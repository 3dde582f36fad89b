/**
 * The truth test: for randomly generated configurations written through the API, compiled and
 * deployed to a real Postfix node, random sender/recipient pairs are delivered through the lab, and
 * what the smart hosts and Postfix's log observe (service, relay, authenticated user) equals
 * GET /v1/routes/explain for every pair. Direct delivery has its own truth test (direct-truth.test.ts):
 * it needs a node that resolves recipient domains privately.
 */
import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle } from '../../src/deploy/index.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { waitForLog } from '../lab/log.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { sendMail } from '../lab/submit.js';
import { smtpDialogue, submitVerbatim } from '../postfix/postfix-harness.js';
import { adminClient, explainRoute } from './lab-app.js';

const labOk = labGate('truth test');

interface RelaySpec {
  host: number; // index of the smart host it points at
  tenant: number | null; // owning tenant index, null = shared
  wideCredential: boolean;
}
interface DomainSpec {
  tenant: number;
  relay: number;
  fallback: number | null;
  status: 'verified' | 'pending';
  compileOverride: boolean;
  ownCredential: boolean;
  limits: null | { concurrency: number } | { concurrency: 1; rateDelaySeconds: 1 };
}
interface ConfigSpec {
  suspended: boolean[];
  relays: RelaySpec[];
  domains: DomainSpec[];
}

// Smart hosts: 0 and 1 STARTTLS, 2 implicit TLS. Relays 0-2 are shared (one per host); relay 3 is a
// second account on host 0 owned by tenant 0, so two relay rows share one host:port.
const relaySpecs = fc.tuple(fc.boolean(), fc.boolean(), fc.boolean(), fc.boolean()).map(([a, b, c, d]): RelaySpec[] => [
  { host: 0, tenant: null, wideCredential: a },
  { host: 1, tenant: null, wideCredential: b },
  { host: 2, tenant: null, wideCredential: c },
  { host: 0, tenant: 0, wideCredential: d },
]);
const domainSpec = fc.record({
  tenant: fc.integer({ min: 0, max: 2 }),
  relay: fc.integer({ min: 0, max: 3 }),
  fallbackPick: fc.integer({ min: 0, max: 3 }),
  status: fc.constantFrom('verified' as const, 'verified' as const, 'verified' as const, 'pending' as const),
  compileOverride: fc.boolean(),
  ownCredential: fc.boolean(),
  limits: fc.constantFrom(null, null, { concurrency: 2 }, { concurrency: 1 as const, rateDelaySeconds: 1 as const }),
});
const configSpec = fc
  .record({
    suspended: fc.tuple(fc.constant(false), fc.boolean(), fc.constant(false)),
    relays: relaySpecs,
    domains: fc.array(domainSpec, { minLength: 4, maxLength: 8 }),
  })
  .map(({ suspended, relays, domains }): ConfigSpec => ({
    suspended: [...suspended],
    relays,
    domains: domains.map((domain) => {
      // Relay 3 is tenant 0's: others use a shared one. Fallbacks only STARTTLS → STARTTLS on another host.
      const relay = domain.relay === 3 && domain.tenant !== 0 ? 0 : domain.relay;
      const fallback =
        relay === 0 && domain.fallbackPick === 1 ? 1 : relay === 1 && domain.fallbackPick === 0 ? 0 : null;
      // Every relayed domain must have a credential on each of its relays, or the smart host refuses it.
      const wideOnAll = [relay, ...(fallback === null ? [] : [fallback])].every(
        (index) => relays[index]!.wideCredential,
      );
      return { ...domain, relay, fallback, ownCredential: domain.ownCredential || !wideOnAll };
    }),
  }));

/**
 * The forms smtpd, cleanup and trivial-rewrite normalise (src/postfix/address.ts): as written, upper
 * case with a trailing dot, a `+tag` with a trailing dot, a quoted local part Postfix unquotes.
 */
const senderForm = fc.constantFrom(
  (local: string, domain: string) => `${local}@${domain}`,
  (local: string, domain: string) => `${local.toUpperCase()}@${domain.toUpperCase()}.`,
  (local: string, domain: string) => `${local}+tag@${domain}.`,
  (local: string, domain: string) => `"${local}.q"@${domain}`,
);

describe.skipIf(!labOk)('the truth test: explanation = what real Postfix and the smart hosts do', () => {
  let t: TestApp;
  let sink: SmartHost;
  let hosts: SmartHost[];
  let v6: SmartHost; // STARTTLS on [::1]
  let node: PostfixNode;
  let connection: NodeConnection;

  beforeAll(async () => {
    t = await createTestApp();
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    hosts = [
      await startSmartHost({ name: 'sh0', tls: 'starttls', users: {} }),
      await startSmartHost({ name: 'sh1', tls: 'starttls', users: {} }),
      await startSmartHost({ name: 'sh2', tls: 'implicit', users: {} }),
    ];
    v6 = await startSmartHost({ name: 'sh6', tls: 'starttls', users: {}, host: '::1' });
    // inet_protocols as the default settings compile it: the first deploy needs no restart.
    node = await startPostfixNode({
      name: 'truth',
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink, v6, ...hosts].map((host) => host.caCertPem),
      mainCf: { inet_protocols: 'all' },
    });
    connection = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint });
  });

  afterAll(async () => {
    connection?.close();
    await node?.stop();
    await stopAllLabNodes();
    await Promise.allSettled([sink, v6, ...(hosts ?? [])].map((host) => host?.close()));
    await t?.close();
  });

  /** Writes one configuration through the API (wiping the previous one) and returns its sender domains. */
  async function apply(spec: ConfigSpec, round: number) {
    await t.prisma.relayCredential.deleteMany();
    await t.prisma.domain.deleteMany();
    await t.prisma.relay.deleteMany();
    await t.prisma.tenant.deleteMany();
    const admin = await tokenFor(t.app, ['admin']);
    const post = async (url: string, payload: object) => {
      const response = await t.app.inject({ method: 'POST', url, headers: admin.headers, payload });
      expect(response.statusCode, `${url} ${response.body}`).toBe(201);
      return response.json<{ id: string }>();
    };
    for (const host of hosts) for (const user of Object.keys(host.users)) delete host.users[user];
    const tenants = [];
    for (const [index, suspended] of spec.suspended.entries()) {
      tenants.push(
        await post('/v1/tenants', {
          name: `T${index}`,
          slug: `r${round}-t${index}`,
          status: suspended ? 'suspended' : 'active',
        }),
      );
    }
    const relays = [];
    for (const [index, relay] of spec.relays.entries()) {
      const host = hosts[relay.host]!;
      const created = await post('/v1/relays', {
        name: `relay ${index}`,
        host: '127.0.0.1',
        port: host.port,
        tls: host.tls === 'implicit' ? 'implicit' : 'starttls',
        ...(relay.tenant === null ? {} : { tenantId: tenants[relay.tenant]!.id }),
      });
      relays.push(created);
      if (relay.wideCredential) {
        const username = `wide${index}-r${round}`;
        host.users[username] = `pw:${username} #"x`;
        await post(`/v1/relays/${created.id}/credentials`, { username, secret: host.users[username] });
      }
    }
    const domains: string[] = [];
    for (const [index, domain] of spec.domains.entries()) {
      const name = `d${index}-r${round}.truth.test`;
      domains.push(name);
      const created = await post(`/v1/tenants/${tenants[domain.tenant]!.id}/domains`, {
        name,
        relayId: relays[domain.relay]!.id,
        ...(domain.fallback === null ? {} : { fallbackRelayId: relays[domain.fallback]!.id }),
        status: domain.status,
        compileOverride: domain.compileOverride,
        ...(domain.limits === null ? {} : { limits: domain.limits }),
      });
      if (domain.ownCredential) {
        for (const relayIndex of [domain.relay, ...(domain.fallback === null ? [] : [domain.fallback])]) {
          const username = `own${index}-${relayIndex}-r${round}`;
          hosts[spec.relays[relayIndex]!.host]!.users[username] = `secret ${username}:ü`;
          await post(`/v1/relays/${relays[relayIndex]!.id}/credentials`, {
            username,
            secret: hosts[spec.relays[relayIndex]!.host]!.users[username],
            domainId: created.id,
          });
        }
      }
    }
    return { admin, domains };
  }

  it('holds for random configurations and random sender/recipient pairs', async () => {
    const specs = fc.sample(configSpec, { numRuns: 3, seed: 20261128 });
    for (const [round, spec] of specs.entries()) {
      const { admin, domains } = await apply(spec, round);
      const bundle = (await t.app.services.config.compileForDeploy()).bundle;
      const outcome = await deployBundle(connection, bundle, { configDir: node.configDir });
      expect(outcome.state, JSON.stringify(outcome.error)).toBe('live');

      const pairs = fc.sample(
        fc.tuple(fc.constantFrom(...domains, 'stranger.truth.test'), fc.integer({ min: 0, max: 99 }), senderForm),
        { numRuns: 8, seed: round },
      );
      for (const [index, [senderDomain, recipientIndex, form]] of pairs.entries()) {
        const sender = form(`user${index}`, senderDomain);
        const recipient = `rcpt${recipientIndex}@dest${recipientIndex % 3}.example`;
        const explained = await t.app.inject({
          method: 'GET',
          url: `/v1/routes/explain?sender=${encodeURIComponent(sender)}&recipient=${encodeURIComponent(recipient)}`,
          headers: admin.headers,
        });
        const explanation = explained.json();
        const context = `round ${round}, ${sender} → ${recipient}: ${explanation.reason}`;
        // A raw dialogue: SMTP client libraries fold or reject some of these forms before Postfix sees them.
        const messageId = `<truth-${round}-${index}@lab.test>`;
        const replies = await submitRaw(sender, recipient, messageId, context);
        if (explanation.outcome === 'rejected') {
          expect(replies[2], `${context}: ${replies.join(' | ')}`).toMatch(/^554 /);
          continue;
        }
        expect(explanation.outcome, context).toBe('relay');
        expect(
          replies.slice(1, 5).map((reply) => reply.slice(0, 3)),
          `${context}: ${replies.join(' | ')}`,
        ).toEqual(['250', '250', '354', '250']);
        const firstHop = explanation.nexthops[0] as string;
        const host = hosts.find((candidate) => candidate.nexthop === firstHop)!;
        expect(host, `${context}: no lab host at ${firstHop}`).toBeDefined();
        const received = await host.waitFor((message) => message.messageId === messageId, 15_000);
        expect(received.authUser, context).toBe(explanation.credentialsByNexthop[firstHop]?.username);
        expect(received.rcptTo, context).toEqual([recipient]);
        const logged = await waitForLog(
          node,
          (entry) => entry.messageId === messageId && entry.status === 'sent',
          15_000,
        );
        expect(logged.service, context).toBe(explanation.service === 'smtp' ? 'smtp' : `${explanation.service}/smtp`);
        expect(logged.relay.endsWith(`:${host.port}`), context).toBe(true);
        expect(logged.from, context).toBe(explanation.envelopeSender);
        for (const other of hosts) {
          if (other !== host)
            expect(
              other.received.some((message) => message.messageId === messageId),
              context,
            ).toBe(false);
        }
      }

      // The null sender, both ways the API takes it: the explanation is smtpd's answer to MAIL FROM:<>.
      const [, , reply] = await smtpDialogue(node.smtpPort, [
        'EHLO client.lab.test',
        'MAIL FROM:<>',
        'RCPT TO:<rcpt0@dest0.example>',
        'QUIT',
      ]);
      for (const sender of ['', '<>']) {
        const explained = await t.app.inject({
          method: 'GET',
          url: `/v1/routes/explain?sender=${encodeURIComponent(sender)}&recipient=rcpt0%40dest0.example`,
          headers: admin.headers,
        });
        const explanation = explained.json<{
          outcome: string;
          reason: string;
          matched: Array<{ table: string; key: string }>;
        }>();
        const context = `round ${round}, null sender ${JSON.stringify(sender)}: smtpd said ${reply}; explained ${explanation.reason}`;
        expect(reply, context).toMatch(/^554 5\.7\.1 /);
        expect(explanation.outcome, context).toBe('rejected');
        expect(explanation.reason, context).toContain(reply!.slice(0, 9));
        expect(explanation.matched[0], context).toMatchObject({ table: 'sender_access', key: '<>' });
      }
    }
  });

  /** EHLO, MAIL, RCPT, DATA, the message, QUIT on the node's port: the replies (RCPT's is [2]). */
  async function submitRaw(sender: string, recipient: string, messageId: string, text: string): Promise<string[]> {
    const commands = ['EHLO client.lab.test', `MAIL FROM:<${sender}>`, `RCPT TO:<${recipient}>`];
    const replies = await smtpDialogue(node.smtpPort, [...commands, 'RSET', 'QUIT']);
    if (!replies[2]?.startsWith('250')) return replies;
    return smtpDialogue(node.smtpPort, [
      ...commands,
      'DATA',
      `Message-ID: ${messageId}\r\nSubject: truth row\r\n\r\n${text}\r\n.`,
      'QUIT',
    ]);
  }

  /** Wipes the previous configuration; the corpus below writes its own. */
  async function wipe() {
    await t.prisma.relayCredential.deleteMany();
    await t.prisma.domain.deleteMany();
    await t.prisma.destinationPolicy.deleteMany();
    await t.prisma.relay.deleteMany();
    await t.prisma.tenant.deleteMany();
    for (const host of [...hosts, v6]) {
      host.reset();
      for (const user of Object.keys(host.users)) delete host.users[user];
    }
  }

  const explain = (headers: Record<string, string>, sender: string, recipient: string) =>
    explainRoute(t, headers, sender, recipient);

  it('holds for the edge corpus: trailing dots, case, no credential, wrong secret, IPv6 relay', async () => {
    await wipe();
    const { admin, post } = await adminClient(t);
    const tenant = await post('/v1/tenants', { name: 'Edge', slug: 'edge-corpus' });
    const [sh0, sh1] = [hosts[0]!, hosts[1]!];
    const relay0 = await post('/v1/relays', { name: 'edge sh0', host: '127.0.0.1', port: sh0.port, tls: 'starttls' });
    const relay1 = await post('/v1/relays', { name: 'edge sh1', host: '127.0.0.1', port: sh1.port, tls: 'starttls' });
    const domain = async (name: string, payload: object) =>
      post(`/v1/tenants/${tenant.id}/domains`, { name, status: 'verified', ...payload });
    const credential = async (relayId: string, domainId: string, username: string, secret: string) =>
      post(`/v1/relays/${relayId}/credentials`, { username, secret, domainId });
    const a = await domain('a.test', { relayId: relay0.id });
    const e5o = await domain('e5o.test', { relayId: relay0.id });
    await domain('nocred.test', { relayId: relay1.id });
    const wrong = await domain('wrongsecret.test', { relayId: relay1.id });
    sh0.users['edge-a'] = 'secret a';
    sh0.users['edge-e5o'] = 'secret e5o';
    sh1.users['edge-wrong'] = 'the right one';
    await credential(relay0.id, a.id, 'edge-a', 'secret a');
    await credential(relay0.id, e5o.id, 'edge-e5o', 'secret e5o');
    await credential(relay1.id, wrong.id, 'edge-wrong', 'not the right one');
    const relay6 = await post('/v1/relays', { name: 'edge v6', host: '::1', port: v6.port, tls: 'starttls' });
    const six = await domain('six.test', { relayId: relay6.id });
    v6.users['edge-six'] = 'secret six';
    await credential(relay6.id, six.id, 'edge-six', 'secret six');

    const bundle = (await t.app.services.config.compileForDeploy()).bundle;
    const outcome = await deployBundle(connection, bundle, { configDir: node.configDir });
    expect(outcome.state, JSON.stringify(outcome.error)).toBe('live');

    let messages = 0;
    // Trailing dot and upper case: smtpd answers 250, cleanup strips the dot, the tables fold the case.
    for (const [sender, routedAs, user] of [
      ['x@a.test.', 'a.test', 'edge-a'],
      ['X@E5O.TEST.', 'e5o.test', 'edge-e5o'],
      ['"quoted.local+tag"@A.test', 'a.test', 'edge-a'], // quotes nothing needs: Postfix drops them
    ] as const) {
      const explanation = await explain(admin.headers, sender, 'r@dest.test');
      const context = `${sender}: ${explanation.reason}`;
      expect(explanation, context).toMatchObject({
        outcome: 'relay',
        senderDomain: routedAs,
        nexthops: [sh0.nexthop],
        implicitTls: false,
      });
      const messageId = `<edge-${messages++}@lab.test>`;
      await submitVerbatim(node.smtpPort, { from: sender, to: 'r@dest.test', messageId, body: context });
      const received = await sh0.waitFor((message) => message.messageId === messageId, 15_000);
      expect(received.authUser, context).toBe(explanation.credentialsByNexthop[sh0.nexthop]?.username);
      expect(received.authUser, context).toBe(user);
      // Postfix's own record of the envelope (info_log_address_format = external) is the address it passes on.
      const logged = await waitForLog(
        node,
        (entry) => entry.messageId === messageId && entry.status === 'sent',
        15_000,
      );
      expect(logged.from, context).toBe(explanation.envelopeSender);
      expect(received.mailFrom.toLowerCase(), context).toBe(explanation.envelopeSender.toLowerCase());
    }

    // No credential: Postfix sends without AUTH, the smart host's 530 is a permanent bounce.
    const none = await explain(admin.headers, 'n@nocred.test', 'r@dest.test');
    expect(none, none.reason).toMatchObject({ outcome: 'relay', credentialId: null, nexthops: [sh1.nexthop] });
    expect(none.credentialsByNexthop[sh1.nexthop]).toBeNull();
    expect(none.reason).toMatch(/no SASL is used/);
    const unauthenticated = await sendMail(node, { from: 'n@nocred.test', to: ['r@dest.test'] });
    const bounced = await waitForLog(
      node,
      (entry) => entry.messageId === unauthenticated.messageId && entry.status !== 'deferred',
      15_000,
    );
    expect(bounced.status, bounced.raw).toBe('bounced');
    expect(bounced.statusText, bounced.raw).toMatch(/\b530\b/);
    expect(sh1.authAttempts, 'no AUTH offered without a credential').toEqual([]);

    // Wrong secret: the credential the explanation names is offered; the 535 is a deferral (4.7.8).
    const wrongSecret = await explain(admin.headers, 'w@wrongsecret.test', 'r@dest.test');
    expect(wrongSecret.credentialsByNexthop[sh1.nexthop]?.username, wrongSecret.reason).toBe('edge-wrong');
    const refused = await sendMail(node, { from: 'w@wrongsecret.test', to: ['r@dest.test'] });
    const deferred = await waitForLog(node, (entry) => entry.messageId === refused.messageId, 15_000);
    expect(deferred, deferred.raw).toMatchObject({ status: 'deferred', dsn: '4.7.8' });
    expect(deferred.statusText, deferred.raw).toMatch(/\b535\b/);
    expect(sh1.authAttempts.map((attempt) => [attempt.user, attempt.ok])).toContainEqual(['edge-wrong', false]);

    // An IPv6 relay under inetProtocols all (the default) is used as explained; ipv4 would strand it
    // (Postfix bounces, 5.4.4), so the settings write is refused and the route stays as it is.
    const settings = await t.app.inject({ method: 'GET', url: '/v1/settings', headers: admin.headers });
    const { updatedAt: _updatedAt, ...current } = settings.json<Record<string, unknown>>();
    expect(current.inetProtocols).toBe('all');
    for (const inetProtocols of ['ipv4', 'ipv6']) {
      const refused = await t.app.inject({
        method: 'PUT',
        url: '/v1/settings',
        headers: admin.headers,
        payload: { ...current, inetProtocols },
      });
      expect(refused.statusCode, refused.body).toBe(422);
      expect(refused.json<{ detail: string }>().detail).toContain(inetProtocols === 'ipv4' ? 'six.test' : 'a.test');
    }
    const viaSix = await explain(admin.headers, 'v@six.test', 'r@dest.test');
    expect(viaSix, viaSix.reason).toMatchObject({ outcome: 'relay', nexthops: [v6.nexthop] });
    const sentSix = await sendMail(node, { from: 'v@six.test', to: ['r@dest.test'] });
    const receivedSix = await v6.waitFor((message) => message.messageId === sentSix.messageId, 15_000);
    expect(receivedSix.authUser).toBe(viaSix.credentialsByNexthop[v6.nexthop]?.username);
    const loggedSix = await waitForLog(
      node,
      (entry) => entry.messageId === sentSix.messageId && entry.status === 'sent',
      15_000,
    );
    expect(loggedSix.relay).toBe(`::1[::1]:${v6.port}`);

    // verify: true over implicit TLS with the node trusting the relay's CA. On an IP literal Postfix
    // gets level `verify` (its `secure` matches names only); on a host name, `secure`.
    const sh2 = hosts[2]!;
    const verifiedRows = [
      { name: 'ip', host: '127.0.0.1', level: 'verify' },
      { name: 'dns', host: 'localhost', level: 'secure' },
    ];
    for (const row of verifiedRows) {
      const relay = await post('/v1/relays', {
        name: `edge verify ${row.name}`,
        host: row.host,
        port: sh2.port,
        tls: 'implicit',
        verify: true,
      });
      const created = await domain(`verify-${row.name}.test`, { relayId: relay.id });
      sh2.users[`edge-verify-${row.name}`] = 'secret v';
      await credential(relay.id, created.id, `edge-verify-${row.name}`, 'secret v');
    }
    const verifiedBundle = (await t.app.services.config.compileForDeploy()).bundle;
    expect(verifiedBundle.warnings.join('\n')).toMatch(
      /\[127\.0\.0\.1\]:\d+ verifies its certificate against an IP literal: .*level `verify`/,
    );
    const redeployed = await deployBundle(connection, verifiedBundle, { configDir: node.configDir });
    expect(redeployed.state, JSON.stringify(redeployed.error)).toBe('live');
    for (const row of verifiedRows) {
      const sender = `v@verify-${row.name}.test`;
      const explanation = await explain(admin.headers, sender, 'r@dest.test');
      const nexthop = `[${row.host}]:${sh2.port}`;
      expect(explanation, explanation.reason).toMatchObject({
        outcome: 'relay',
        nexthops: [nexthop],
        tlsPolicy: row.level,
        implicitTls: true,
      });
      expect(explanation.service, explanation.reason).not.toBe('smtp'); // implicit TLS has a service of its own
      const sent = await sendMail(node, { from: sender, to: ['r@dest.test'] });
      const received = await sh2.waitFor((message) => message.messageId === sent.messageId, 15_000);
      expect(received.authUser).toBe(`edge-verify-${row.name}`);
      const logged = await waitForLog(
        node,
        (entry) => entry.messageId === sent.messageId && entry.status === 'sent',
        15_000,
      );
      expect(logged.service).toBe(`${explanation.service}/smtp`);
      // The smtp process that delivered it logged the certificate check it made.
      const pid = /\/smtp\[(\d+)\]/.exec(logged.raw)?.[1];
      const log = await readFile(node.maillogPath, 'utf8');
      const peer = `${row.host === 'localhost' ? 'localhost' : '127\\.0\\.0\\.1'}\\[127\\.0\\.0\\.1\\]:${sh2.port}`;
      expect(log, `${row.name}: the TLS session Postfix logged`).toMatch(
        new RegExp(`/smtp\\[${pid}\\]: Verified TLS connection established to ${peer}`),
      );
    }
  });
});
