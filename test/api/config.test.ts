import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createSecretBox } from '../../src/lib/secret-box.js';
import {
  createCredential,
  createDomain,
  createRelay,
  createTenant,
  insertSealedCredential,
} from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
const SECRET = 'pa ss:wo#rd-config-test';
let ids: { relay: string; domain: string; credential: string; tenant: string };

beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
  const tenant = await createTenant(t.app, admin.headers);
  const relay = await createRelay(t.app, admin.headers, { host: '127.0.0.1', port: 2601 });
  const domain = await createDomain(t.app, admin.headers, tenant.id, {
    name: 'shop.example',
    relayId: relay.id,
    status: 'verified',
  });
  const credential = await createCredential(t.app, admin.headers, relay.id, {
    domainId: domain.id,
    username: 'shop-user',
    secret: SECRET,
  });
  ids = { relay: relay.id, domain: domain.id, credential: credential.id, tenant: tenant.id };
});
afterAll(async () => t?.close());

describe('GET /v1/config', () => {
  it('compiles the database into a versioned bundle with secrets masked', async () => {
    const first = await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers });
    expect(first.statusCode).toBe(200);
    const bundle = first.json();
    expect(bundle.version).toMatch(/^[0-9a-f]{64}$/);
    expect(first.headers.etag).toBe(`"${bundle.version}"`);
    expect(bundle.files.sender_relay.content).toContain('@shop.example [127.0.0.1]:2601');
    expect(first.body).not.toContain(SECRET);
    expect(first.body).not.toContain('wo#rd');
    expect(bundle.files.sasl_passwd.content).toMatch(/@shop\.example shop-user:sha:[0-9a-f]{16}/);
    expect(bundle.files.sasl_passwd.mode).toBe(0o600);
    expect(bundle.mainCf.sender_dependent_relayhost_maps).toContain('{{dir}}/sender_relay');
    // Deterministic: the same rows give the same version, and it is stored for later diffs.
    const again = await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers });
    expect(again.json().version).toBe(bundle.version);
    expect(await t.prisma.configBundle.count({ where: { version: bundle.version } })).toBe(1);
    const stored = await t.prisma.configBundle.findUniqueOrThrow({ where: { version: bundle.version } });
    expect(JSON.stringify(stored.bundle)).not.toContain(SECRET);
    // The files' text is stored as chunks named by the manifest: masked there too.
    const chunks = await t.prisma.configChunk.findMany();
    expect(chunks.map((chunk) => chunk.content).join('')).toContain('@shop.example shop-user:sha:');
    expect(chunks.some((chunk) => chunk.content.includes(SECRET))).toBe(false);
  });

  it('is admin only', async () => {
    const tenant = await tokenFor(t.app, ['tenant'], ids.tenant);
    expect((await t.app.inject({ method: 'GET', url: '/v1/config', headers: tenant.headers })).statusCode).toBe(403);
  });
});

describe('GET /v1/config/diff', () => {
  it('shows what a change would do, as a dry-run plan', async () => {
    const before = (await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers })).json();
    const tenant = await createTenant(t.app, admin.headers);
    await createDomain(t.app, admin.headers, tenant.id, {
      name: 'new.example',
      relayId: ids.relay,
      status: 'verified',
    });
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/config/diff?from=${before.version}`,
      headers: admin.headers,
    });
    expect(response.statusCode).toBe(200);
    const plan = response.json();
    expect(plan.changed).toBe(true);
    expect(plan.to).not.toBe(before.version);
    const relayFile = plan.files.find((file: { name: string }) => file.name === 'sender_relay');
    expect(relayFile.change).toBe('modified');
    expect(relayFile.diff).toContain('+@new.example [127.0.0.1]:2601');

    const same = await t.app.inject({ method: 'GET', url: `/v1/config/diff?from=${plan.to}`, headers: admin.headers });
    expect(same.json()).toMatchObject({ changed: false, files: [], mainCf: [], masterCf: [] });
    const unknown = await t.app.inject({
      method: 'GET',
      url: `/v1/config/diff?from=${'0'.repeat(64)}`,
      headers: admin.headers,
    });
    expect(unknown.statusCode).toBe(404);
    const bad = await t.app.inject({ method: 'GET', url: '/v1/config/diff?from=nope', headers: admin.headers });
    expect(bad.statusCode).toBe(400);
  });

  it('shows a credential rotation as a changed fingerprint, never the secret', async () => {
    const before = (await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers })).json();
    const staged = await createCredential(t.app, admin.headers, ids.relay, {
      domainId: ids.domain,
      username: 'shop-user',
      secret: 'rotated-secret-1',
    });
    await t.app.inject({ method: 'POST', url: `/v1/credentials/${staged.id}/activate`, headers: admin.headers });
    const plan = await t.app.inject({
      method: 'GET',
      url: `/v1/config/diff?from=${before.version}`,
      headers: admin.headers,
    });
    const sasl = plan.json().files.find((file: { name: string }) => file.name === 'sasl_passwd');
    expect(sasl.change).toBe('modified');
    expect(plan.body).not.toContain('rotated-secret-1');
    expect(plan.body).not.toContain(SECRET);
    ids.credential = staged.id;
  });

  it('masks a secret holding line separators (written behind the API) in the bundle, the diff and the stored history', async () => {
    const before = (await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers })).json();
    const relay = await createRelay(t.app, admin.headers, { host: '127.0.0.1', port: 2602 });
    const domain = await createDomain(t.app, admin.headers, ids.tenant, {
      name: 'separators.example',
      relayId: relay.id,
      status: 'verified',
    });
    const secret = 'line\u2028sep\u2029para:#"\\ 𝔘';
    const secretBox = createSecretBox(t.masterKey);
    await insertSealedCredential(t.prisma, secretBox, {
      relayId: relay.id,
      domainId: domain.id,
      status: 'active',
      secret,
    });
    const current = await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers });
    expect(current.json().files.sasl_passwd.content).toContain(`@separators.example user-`);
    expect(current.json().files.sasl_passwd.content).toContain(`:sha:${secretBox.fingerprint(secret)}\n`);
    const plan = await t.app.inject({
      method: 'GET',
      url: `/v1/config/diff?from=${before.version}`,
      headers: admin.headers,
    });
    expect(plan.json().files.find((file: { name: string }) => file.name === 'sasl_passwd').change).toBe('modified');
    const chunks = await t.prisma.configChunk.findMany();
    for (const text of [
      current.json().files.sasl_passwd.content,
      current.body,
      plan.body,
      ...chunks.map((chunk) => chunk.content),
    ]) {
      expect(text).not.toContain('\u2028sep');
      expect(text).not.toContain('para:#');
    }
  });
});

describe('GET /v1/routes/explain', () => {
  it('explains a routed sender with nexthop, credential id and matched entries, never the secret', async () => {
    const response = await t.app.inject({
      method: 'GET',
      url: '/v1/routes/explain?sender=Alice@Shop.Example&recipient=bob@gmail.test',
      headers: admin.headers,
    });
    expect(response.statusCode).toBe(200);
    const explanation = response.json();
    expect(explanation).toMatchObject({
      outcome: 'relay',
      senderDomain: 'shop.example',
      nexthops: ['[127.0.0.1]:2601'],
      credentialId: ids.credential,
    });
    expect(explanation.matched.map((entry: { table: string }) => entry.table)).toContain('sender_relay');
    expect(response.body).not.toContain('rotated-secret-1');
  });

  it('explains why an unknown or unverified sender gets no route', async () => {
    const unknown = (
      await t.app.inject({
        method: 'GET',
        url: '/v1/routes/explain?sender=x@nowhere.example&recipient=bob@gmail.test',
        headers: admin.headers,
      })
    ).json();
    expect(unknown.outcome).toBe('rejected');
    const tenant = await createTenant(t.app, admin.headers);
    await createDomain(t.app, admin.headers, tenant.id, { name: 'pending.example', relayId: ids.relay });
    const pending = (
      await t.app.inject({
        method: 'GET',
        url: '/v1/routes/explain?sender=x@pending.example&recipient=bob@gmail.test',
        headers: admin.headers,
      })
    ).json();
    expect(pending.outcome).toBe('rejected');
    expect(pending.reason).toMatch(/verif/i);
  });
});

describe('a configuration Postfix cannot express', () => {
  it('quarantines the unit instead of refusing everything: the rest still compiles and deploys', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    // Written behind the API's back (which refuses it): primary over implicit TLS, fallback over
    // STARTTLS, which one delivery service cannot speak both.
    const loose = await t.prisma.relay.create({
      data: { name: 'loose', host: 'smtp.loose.test', port: 465, tls: 'implicit' },
    });
    const domain = await t.prisma.domain.create({
      data: {
        tenantId: tenant.id,
        name: 'loose.example',
        status: 'verified',
        relayId: loose.id,
        fallbackRelayId: ids.relay,
      },
    });
    const response = await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers });
    expect(response.statusCode).toBe(200);
    const config = response.json();
    expect(config.files.sender_access.content).toMatch(/^loose\.example 451 4\.7\.1 Relayplane: /m);
    expect(config.files.sender_access.content).toMatch(/^shop\.example OK$/m);
    // Its sender is refused for now, and the explanation says so.
    const explained = await t.app.inject({
      method: 'GET',
      url: '/v1/routes/explain?sender=x@loose.example&recipient=bob@gmail.test',
      headers: admin.headers,
    });
    expect(explained.statusCode).toBe(200);
    expect(explained.json()).toMatchObject({
      outcome: 'rejected',
      matched: expect.arrayContaining([expect.objectContaining({ table: 'sender_access', key: 'loose.example' })]),
    });
    expect(explained.json().reason).toContain('451 4.7.1');
    expect(config.quarantine).toEqual([
      {
        resourceType: 'domain',
        resourceId: domain.id,
        tenantId: tenant.id,
        treatment: 'held',
        heldDomains: 1,
        problems: [{ code: 'fallback_tls_mismatch', message: expect.stringMatching(/implicit TLS/) }],
      },
    ]);
    // A deploy asked for goes ahead for everyone else, and records the quarantine where the API shows it.
    const deploy = await t.app.inject({ method: 'POST', url: '/v1/deployments', headers: admin.headers });
    expect(deploy.statusCode).toBe(202);
    const domainView = (
      await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}`, headers: admin.headers })
    ).json();
    expect(domainView.quarantine).toEqual([
      expect.objectContaining({
        resourceType: 'domain',
        resourceId: domain.id,
        treatment: 'held',
        since: expect.any(String),
      }),
    ]);
    const owner = await tokenFor(t.app, ['tenant'], tenant.id);
    const ownView = (
      await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}`, headers: owner.headers })
    ).json();
    expect(ownView.quarantine[0].problems[0].message).toMatch(/implicit TLS/);
    const shop = (
      await t.app.inject({ method: 'GET', url: `/v1/domains/${ids.domain}`, headers: admin.headers })
    ).json();
    expect(shop.quarantine).toEqual([]);
    expect((await t.app.inject({ method: 'GET', url: '/readyz' })).json().config).toEqual({ quarantinedUnits: 1 });
    const node = await t.prisma.node.create({
      data: { name: 'mx-quarantine', sshHost: '127.0.0.1', hostKey: `SHA256:${'A'.repeat(43)}` },
    });
    const nodes = (await t.app.inject({ method: 'GET', url: '/v1/nodes', headers: admin.headers })).json();
    expect(nodes.items[0].configStatus).toEqual({
      state: 'quarantine',
      quarantinedUnits: 1,
      detail: expect.stringContaining('GET /v1/config'),
    });
    expect(nodes.items[0].desiredVersion).toBe(config.version);
    await t.prisma.node.delete({ where: { id: node.id } });
    const audit = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/audit-events?resourceType=domain&resourceId=${domain.id}`,
        headers: admin.headers,
      })
    ).json();
    expect(audit.items.map((e: { action: string }) => e.action)).toContain('config.quarantined');
    expect((await t.app.inject({ method: 'GET', url: '/metrics' })).body).toMatch(
      /relayplane_config_quarantined_units\{treatment="held"\} 1/,
    );

    // Fixed (the domain goes): released, audited, and the gauge back to zero.
    await t.prisma.domain.delete({ where: { id: domain.id } });
    expect((await t.app.inject({ method: 'POST', url: '/v1/deployments', headers: admin.headers })).statusCode).toBe(
      202,
    );
    expect((await t.app.inject({ method: 'GET', url: '/readyz' })).json().config).toEqual({ quarantinedUnits: 0 });
    const released = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/audit-events?resourceType=domain&resourceId=${domain.id}`,
        headers: admin.headers,
      })
    ).json();
    expect(released.items.map((e: { action: string }) => e.action)).toContain('config.released');
    expect((await t.app.inject({ method: 'GET', url: '/metrics' })).body).toMatch(
      /relayplane_config_quarantined_units\{treatment="held"\} 0/,
    );
    await t.prisma.deployment.deleteMany();
    await t.prisma.relay.delete({ where: { id: loose.id } });
  });
});
