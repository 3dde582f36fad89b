/**
 * A hostile tenant against a real Postfix node: with its own tenant-scoped key it tries every way
 * to reach the configuration others share (a relay on a shared relay's host:port with another TLS
 * mode, fallbacks, limits, relay changes, credentials, other tenants' names, settings and
 * policies, other content types), and a row of its made inexpressible behind the API's back.
 * After each attempt another tenant onboards a new domain, and it must deploy to the node and
 * relay real mail with its own credential: nothing the hostile tenant does stops anyone else.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { sendMail } from '../lab/submit.js';

const labOk = labGate('hostile tenant e2e');

type Json = Record<string, unknown> & { id: string };

describe.skipIf(!labOk)('a hostile tenant cannot stop, see or bend anyone else’s mail', () => {
  let t: TestApp;
  let sink: SmartHost;
  let smart: SmartHost;
  let node: PostfixNode;
  let admin: Record<string, string>;
  let hostile: { tenant: Json; headers: Record<string, string> };
  let victim: { tenant: Json; headers: Record<string, string> };
  let shared: Json;
  let onboarded = 0;

  const call = (
    headers: Record<string, string>,
    method: 'GET' | 'POST' | 'PUT' | 'PATCH',
    url: string,
    payload?: object,
    contentType?: string,
  ) =>
    t.app.inject({
      method,
      url,
      headers: { ...headers, ...(contentType === undefined ? {} : { 'content-type': contentType }) },
      ...(payload === undefined ? {} : { payload: contentType === undefined ? payload : JSON.stringify(payload) }),
    });
  const ok = async (
    headers: Record<string, string>,
    method: 'GET' | 'POST' | 'PUT' | 'PATCH',
    url: string,
    payload?: object,
  ) => {
    const response = await call(headers, method, url, payload);
    expect(response.statusCode, `${method} ${url}: ${response.body}`).toBeLessThan(300);
    return response.json<Json>();
  };
  /** A verified domain (the admin stands in for DNS verification) routed through `relayId`. */
  const verifiedDomain = async (
    who: { tenant: Json; headers: Record<string, string> },
    name: string,
    relayId: string,
  ) => {
    const domain = await ok(who.headers, 'POST', `/v1/tenants/${who.tenant.id}/domains`, { name, relayId });
    await ok(admin, 'PATCH', `/v1/domains/${domain.id}`, { status: 'verified' });
    return domain;
  };
  const deploy = async () => {
    await t.app.jobs.sync.handlers.runChange();
    const { items } = (await ok(admin, 'GET', '/v1/nodes')) as unknown as {
      items: Array<{ liveVersion: string | null; desiredVersion: string | null; configStatus: unknown }>;
    };
    expect(items[0]?.desiredVersion, JSON.stringify(items[0])).not.toBeNull();
    expect(items[0]?.liveVersion, JSON.stringify(items[0])).toBe(items[0]?.desiredVersion);
    return items[0]!;
  };

  /** The victim onboards a new domain on the shared relay; it deploys and relays with its own credential. */
  async function victimStillWorks() {
    onboarded += 1;
    const name = `v${onboarded}.victim.test`;
    const domain = await verifiedDomain(victim, name, shared.id);
    await ok(victim.headers, 'POST', `/v1/relays/${shared.id}/credentials`, {
      username: 'victim-user',
      secret: 'victim pw',
      domainId: domain.id,
    });
    await deploy();
    const from = `app@${name}`;
    const sent = await sendMail(node, { from, to: ['someone@dest.example.test'], subject: `victim ${onboarded}` });
    expect(sent.accepted).toEqual(['someone@dest.example.test']);
    const received = await smart.waitFor((m) => m.mailFrom === from, 30_000);
    expect(received.authUser).toBe('victim-user');
    expect(received.tlsProtocol).toBeDefined();
  }

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'hsink', tls: 'starttls', users: {}, authOptional: true });
    smart = await startSmartHost({
      name: 'hsmart',
      tls: 'starttls',
      users: { 'victim-user': 'victim pw', 'hostile-user': 'hostile pw' },
    });
    node = await startPostfixNode({
      name: 'hostile1',
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink.caCertPem, smart.caCertPem],
    });
    t = await createTestApp({
      ssh: {
        privateKeyPath: node.ssh.privateKeyPath,
        connectTimeoutMs: 3000,
        retry: { attempts: 2, baseDelayMs: 200 },
      },
    });
    admin = (await tokenFor(t.app, ['admin'])).headers;
    const { version: _v, updatedAt: _u, ...settings } = await ok(admin, 'GET', '/v1/settings');
    await ok(admin, 'PUT', '/v1/settings', { ...settings, inetProtocols: 'ipv4', addressPreference: 'ipv4' });
    await ok(admin, 'POST', '/v1/nodes', {
      name: node.name,
      sshHost: '127.0.0.1',
      sshPort: node.ssh.port,
      hostKey: node.ssh.hostKeyFingerprint,
      configDir: node.configDir,
    });
    shared = await ok(admin, 'POST', '/v1/relays', {
      name: 'shared',
      host: '127.0.0.1',
      port: smart.port,
      tls: 'starttls',
      verify: false,
      limits: { concurrency: 10 },
    });
    for (const [slug, set] of [
      ['hostile', (v: typeof hostile) => (hostile = v)],
      ['victim', (v: typeof victim) => (victim = v)],
    ] as const) {
      const tenant = await ok(admin, 'POST', '/v1/tenants', { name: slug, slug });
      set({ tenant, headers: (await tokenFor(t.app, ['tenant'], tenant.id)).headers });
    }
    await victimStillWorks();
  });

  afterAll(async () => {
    await t?.close();
    await node?.stop();
    await stopAllLabNodes();
    await Promise.allSettled([sink?.close(), smart?.close()]);
  });

  it('a private relay on the shared relay’s host:port with another TLS mode: accepted, both relay', async () => {
    const own = await ok(hostile.headers, 'POST', '/v1/relays', {
      name: 'mine',
      host: '127.0.0.1',
      port: smart.port,
      tls: 'opportunistic',
    });
    const domain = await verifiedDomain(hostile, 'h1.hostile.test', own.id);
    await ok(hostile.headers, 'POST', `/v1/relays/${own.id}/credentials`, {
      username: 'hostile-user',
      secret: 'hostile pw',
      domainId: domain.id,
    });
    await victimStillWorks();
    await sendMail(node, { from: 'x@h1.hostile.test', to: ['r@dest.example.test'] });
    expect((await smart.waitFor((m) => m.mailFrom === 'x@h1.hostile.test', 30_000)).authUser).toBe('hostile-user');
  });

  it('a private relay on the shared relay’s host:port with another certificate check: accepted, both relay', async () => {
    // verify: true on an IP literal compiles to level `verify` in a TLS policy map of its own; the
    // node trusts the smart host's CA, so it delivers, and the shared relay's `encrypt` is untouched.
    const checked = await ok(hostile.headers, 'POST', '/v1/relays', {
      name: 'checked',
      host: '127.0.0.1',
      port: smart.port,
      tls: 'starttls',
      verify: true,
    });
    const domain = await verifiedDomain(hostile, 'h7.hostile.test', checked.id);
    await ok(hostile.headers, 'POST', `/v1/relays/${checked.id}/credentials`, {
      username: 'hostile-user',
      secret: 'hostile pw',
      domainId: domain.id,
    });
    await victimStillWorks();
    await sendMail(node, { from: 'x@h7.hostile.test', to: ['r@dest.example.test'] });
    expect((await smart.waitFor((m) => m.mailFrom === 'x@h7.hostile.test', 30_000)).authUser).toBe('hostile-user');
  });

  it('an IPv6 relay its node settings cannot reach is refused at write time (422 relay-unreachable)', async () => {
    // Settings are inetProtocols ipv4 here: a route through [::1] would bounce every message.
    const v6 = await ok(hostile.headers, 'POST', '/v1/relays', {
      name: 'six',
      host: '::1',
      port: 2606,
      tls: 'starttls',
    });
    const refused = await call(hostile.headers, 'POST', `/v1/tenants/${hostile.tenant.id}/domains`, {
      name: 'h8.hostile.test',
      relayId: v6.id,
    });
    expect(refused.statusCode, refused.body).toBe(422);
    expect(refused.json()).toMatchObject({ code: 'relay-unreachable' });
    expect(refused.body).not.toContain('victim');
    const zone = await call(admin, 'POST', '/v1/relays', { name: 'zone', host: '::1%lo', port: 587, tls: 'starttls' });
    expect(zone.statusCode, zone.body).toBe(400);
    await victimStillWorks();
  });

  it('inexpressible routes and limits are refused at write time (422), naming nobody else', async () => {
    const implicit = await ok(hostile.headers, 'POST', '/v1/relays', {
      name: 'tls',
      host: '127.0.0.2',
      port: 465,
      tls: 'implicit',
    });
    const attempts = [
      await call(hostile.headers, 'POST', `/v1/tenants/${hostile.tenant.id}/domains`, {
        name: 'h2.hostile.test',
        relayId: shared.id,
        fallbackRelayId: implicit.id,
      }),
      await call(hostile.headers, 'POST', `/v1/tenants/${hostile.tenant.id}/domains`, {
        name: 'h3.hostile.test',
        relayId: implicit.id,
        fallbackRelayId: shared.id,
      }),
    ];
    // PATCH giving an implicit-TLS primary a STARTTLS fallback (one service cannot do both).
    const onImplicit = await ok(hostile.headers, 'POST', `/v1/tenants/${hostile.tenant.id}/domains`, {
      name: 'h6.hostile.test',
      relayId: implicit.id,
    });
    attempts.push(await call(hostile.headers, 'PATCH', `/v1/domains/${onImplicit.id}`, { fallbackRelayId: shared.id }));
    const plain = await ok(hostile.headers, 'POST', `/v1/tenants/${hostile.tenant.id}/domains`, {
      name: 'h4.hostile.test',
      relayId: shared.id,
    });
    attempts.push(await call(hostile.headers, 'PUT', `/v1/domains/${plain.id}/limits`, { recipientsPerMessage: 1 }));
    attempts.push(await call(hostile.headers, 'PATCH', `/v1/domains/${plain.id}`, { fallbackRelayId: implicit.id }));
    const mine = await ok(hostile.headers, 'POST', '/v1/relays', {
      name: 'fallback',
      host: '127.0.0.3',
      port: 587,
      tls: 'starttls',
    });
    await ok(hostile.headers, 'PATCH', `/v1/domains/${plain.id}`, { fallbackRelayId: mine.id });
    attempts.push(await call(hostile.headers, 'PATCH', `/v1/relays/${mine.id}`, { tls: 'implicit', port: 465 }));
    attempts.push(
      await call(hostile.headers, 'PATCH', `/v1/relays/${mine.id}`, { host: '127.0.0.1', port: smart.port }),
    );
    for (const response of attempts) {
      expect(response.statusCode, response.body).toBe(422);
      expect(response.json().code).toBe('config-not-expressible');
      expect(response.body).not.toContain('victim');
      expect(response.body).not.toContain(String(victim.tenant.id));
    }
    await victimStillWorks();
  });

  it('bad input is refused at the edge whatever its content type, and shared resources are out of reach', async () => {
    const domain = await ok(hostile.headers, 'POST', `/v1/tenants/${hostile.tenant.id}/domains`, {
      name: 'h5.hostile.test',
      relayId: shared.id,
    });
    const refused = [
      [
        await call(
          hostile.headers,
          'PUT',
          `/v1/domains/${domain.id}/limits`,
          { concurrency: -7 },
          'application/problem+json',
        ),
        415,
      ],
      [await call(hostile.headers, 'PUT', `/v1/domains/${domain.id}/limits`, { concurrency: -7 }), 400],
      [await call(hostile.headers, 'PUT', `/v1/domains/${domain.id}/limits`, { concurrency: '7' }), 400],
      [
        await call(hostile.headers, 'POST', `/v1/relays/${shared.id}/credentials`, {
          username: 'u',
          secret: 'line\u2028sep',
          domainId: domain.id,
        }),
        400,
      ],
      [
        await call(hostile.headers, 'POST', '/v1/relays', {
          name: 'cut',
          host: 'smtp.example.test#evil',
          port: 587,
          tls: 'starttls',
        }),
        400,
      ],
      [
        await call(hostile.headers, 'POST', '/v1/relays', { name: 'zone', host: '::1%lo', port: 587, tls: 'starttls' }),
        400,
      ],
      [await call(hostile.headers, 'PATCH', `/v1/relays/${shared.id}`, { tls: 'opportunistic' }), 403],
      [await call(hostile.headers, 'PUT', `/v1/relays/${shared.id}/limits`, { concurrency: 1 }), 403],
      [await call(hostile.headers, 'PUT', '/v1/settings', { defaultConcurrency: 1 }), 403],
      [
        await call(hostile.headers, 'POST', '/v1/destination-policies', {
          pattern: 'dest.example.test',
          tls: 'secure',
        }),
        403,
      ],
      [
        await call(hostile.headers, 'POST', `/v1/tenants/${hostile.tenant.id}/domains`, {
          name: 'v1.victim.test',
          relayId: shared.id,
        }),
        409,
      ],
      [await call(hostile.headers, 'PATCH', `/v1/tenants/${victim.tenant.id}`, { status: 'suspended' }), 404],
    ] as const;
    for (const [response, status] of refused) {
      expect(response.statusCode, response.body).toBe(status);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      // Nothing about the victim beyond what the caller itself sent (a 404 repeats the id asked for).
      expect(response.body).not.toContain('"victim"');
      expect(response.body).not.toMatch(/taken by|belongs to/);
    }
    expect((await t.prisma.domain.findUniqueOrThrow({ where: { id: domain.id } })).concurrency).toBeNull();
    await victimStillWorks();
  });

  it('a row of its made inexpressible behind the API’s back is quarantined; everyone else still deploys', async () => {
    // The hostile tenant's private relay, edited by hand into something no table can carry. The
    // sync job's compiler kept its last compiled row: its domain keeps that route (last-good).
    const own = (
      await t.prisma.relay.findFirstOrThrow({ where: { tenantId: String(hostile.tenant.id), name: 'mine' } })
    ).id;
    await t.prisma.relay.update({ where: { id: own }, data: { host: 'evil.test\nrelayhost = [10.0.0.1]' } });
    const nodeView = await deploy();
    expect(nodeView.configStatus).toMatchObject({ state: 'quarantine', quarantinedUnits: 1 });
    const config = await ok(admin, 'GET', '/v1/config');
    expect(config.quarantine).toEqual([
      expect.objectContaining({ resourceType: 'relay', resourceId: own, treatment: 'last-good' }),
    ]);
    expect(JSON.stringify(config.files)).not.toContain('10.0.0.1');
    await sendMail(node, { from: 'y@h1.hostile.test', to: ['r@dest.example.test'] });
    expect((await smart.waitFor((m) => m.mailFrom === 'y@h1.hostile.test', 30_000)).authUser).toBe('hostile-user');
    await victimStillWorks();

    // Without a last-good version (a fresh compiler, as after a restart) its domain is held (451).
    await t.app.services.config.close();
    await deploy();
    const held = await ok(admin, 'GET', '/v1/config');
    expect(held.quarantine).toEqual([
      expect.objectContaining({ resourceType: 'relay', resourceId: own, treatment: 'held', heldDomains: 1 }),
    ]);
    await expect(sendMail(node, { from: 'z@h1.hostile.test', to: ['r@dest.example.test'] })).rejects.toThrow(/451/);
    await victimStillWorks();
    const mine = await ok(
      hostile.headers,
      'GET',
      `/v1/domains/${(await t.prisma.domain.findUniqueOrThrow({ where: { name: 'h1.hostile.test' } })).id}`,
    );
    expect(mine.quarantine).toEqual([
      expect.objectContaining({ resourceType: 'relay', resourceId: own, treatment: 'held' }),
    ]);
  });
});
