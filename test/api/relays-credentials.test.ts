import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createCredential, createDomain, createRelay, createTenant } from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
beforeAll(async () => {
  t = await createTestApp({ logLevel: 'trace' });
  admin = await tokenFor(t.app, ['admin']);
});
afterAll(async () => t?.close());

describe('relays', () => {
  it('creates shared and tenant-owned relays with normalized hosts', async () => {
    const shared = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: admin.headers,
      payload: {
        name: 'Mailgun EU',
        host: 'SMTP.EU.Mailgun.org',
        port: 587,
        tls: 'starttls',
        verify: true,
        spfInclude: 'mailgun.org',
        limits: { concurrency: 10 },
      },
    });
    expect(shared.statusCode).toBe(201);
    expect(shared.json()).toMatchObject({
      shared: true,
      tenantId: null,
      host: 'smtp.eu.mailgun.org',
      verify: true,
      spfInclude: 'mailgun.org',
    });
    expect(shared.json().limits).toEqual({
      concurrency: 10,
      rateDelaySeconds: null,
      recipientsPerMessage: null,
      connectionReuseSeconds: null,
    });
    const v6 = await createRelay(t.app, admin.headers, { host: '2001:DB8::25', tls: 'implicit', port: 465 });
    expect(v6.host).toBe('2001:db8::25');
  });

  it.each([
    [{ host: 'smtp.example.com\nevil' }, 'body/host'],
    [{ host: '[127.0.0.1]' }, 'body/host'],
    [{ host: 'smtp example' }, 'body/host'],
    [{ port: 0 }, 'body/port'],
    [{ port: 70000 }, 'body/port'],
    [{ tls: 'sometimes' }, 'body/tls'],
  ])('refuses %o', async (override, field) => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: admin.headers,
      payload: { name: 'x', host: 'smtp.example.com', port: 587, tls: 'starttls', ...override },
    });
    expect(response.statusCode).toBe(400);
    expect(response.json().errors.map((error: { field: string }) => error.field)).toContain(field);
  });

  it('refuses certificate verification without required TLS', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: admin.headers,
      payload: { name: 'x', host: 'smtp.example.com', port: 25, tls: 'opportunistic', verify: true },
    });
    expect(response.statusCode).toBe(422);
    expect(response.json().code).toBe('tls-not-honourable');
  });

  it('refuses deleting a relay domains route through', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers);
    await createDomain(t.app, admin.headers, tenant.id, { relayId: relay.id });
    const response = await t.app.inject({ method: 'DELETE', url: `/v1/relays/${relay.id}`, headers: admin.headers });
    expect(response.statusCode).toBe(409);
    expect(response.json().code).toBe('relay-in-use');
  });

  it('lets tenants see shared relays but change only their own', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const own = await tokenFor(t.app, ['tenant'], tenant.id);
    const shared = await createRelay(t.app, admin.headers);
    expect(
      (await t.app.inject({ method: 'GET', url: `/v1/relays/${shared.id}`, headers: own.headers })).statusCode,
    ).toBe(200);
    const patch = await t.app.inject({
      method: 'PATCH',
      url: `/v1/relays/${shared.id}`,
      headers: own.headers,
      payload: { port: 2525 },
    });
    expect(patch.statusCode).toBe(403);
  });
});

describe('relay credentials', () => {
  it('rotates: first active, next staged, activation retires the previous one', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers);
    const domain = await createDomain(t.app, admin.headers, tenant.id, { relayId: relay.id });
    const first = await createCredential(t.app, admin.headers, relay.id, { domainId: domain.id, username: 'alice' });
    expect(first.status).toBe('active');
    const second = await createCredential(t.app, admin.headers, relay.id, { domainId: domain.id, username: 'alice2' });
    expect(second.status).toBe('staged');
    const relayWide = await createCredential(t.app, admin.headers, relay.id, { username: 'platform' });
    expect(relayWide.status).toBe('active');

    const activated = await t.app.inject({
      method: 'POST',
      url: `/v1/credentials/${second.id}/activate`,
      headers: admin.headers,
    });
    expect(activated.statusCode).toBe(200);
    expect(activated.json()).toMatchObject({ status: 'active', username: 'alice2' });
    const old = await t.app.inject({ method: 'GET', url: `/v1/credentials/${first.id}`, headers: admin.headers });
    // Still live on the nodes until a deployment reaches them all (the sync worker retires it then).
    expect(old.json().status).toBe('retiring');
    expect(old.json().retiredAt).toBeNull();
    const wide = await t.app.inject({ method: 'GET', url: `/v1/credentials/${relayWide.id}`, headers: admin.headers });
    expect(wide.json().status).toBe('active');
    const active = await t.app.inject({
      method: 'GET',
      url: `/v1/relays/${relay.id}/credentials?status=active`,
      headers: admin.headers,
    });
    expect(
      active
        .json()
        .items.map((item: { id: string }) => item.id)
        .sort(),
    ).toEqual([second.id, relayWide.id].sort());

    const deleteActive = await t.app.inject({
      method: 'DELETE',
      url: `/v1/credentials/${second.id}`,
      headers: admin.headers,
    });
    expect(deleteActive.statusCode).toBe(409);
    expect(
      (await t.app.inject({ method: 'DELETE', url: `/v1/credentials/${first.id}`, headers: admin.headers })).statusCode,
    ).toBe(204);
  });

  it('deletes an active credential that no route reaches, keeps one that a route uses (409)', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers);
    const other = await createRelay(t.app, admin.headers);
    const domain = await createDomain(t.app, admin.headers, tenant.id, { relayId: other.id });
    // Scoped to a domain that routes through another relay: compiled nowhere, deletable.
    const unused = await createCredential(t.app, admin.headers, relay.id, { domainId: domain.id, username: 'unused' });
    expect(unused.status).toBe('active');
    const deleted = await t.app.inject({
      method: 'DELETE',
      url: `/v1/credentials/${unused.id}`,
      headers: admin.headers,
    });
    expect(deleted.statusCode, deleted.body).toBe(204);
    // A relay-wide one on a relay no domain uses: deletable; on the domain's relay: in use.
    const idle = await createCredential(t.app, admin.headers, relay.id, { username: 'idle-wide' });
    expect(
      (await t.app.inject({ method: 'DELETE', url: `/v1/credentials/${idle.id}`, headers: admin.headers })).statusCode,
    ).toBe(204);
    const used = await createCredential(t.app, admin.headers, other.id, { username: 'used-wide' });
    const refused = await t.app.inject({ method: 'DELETE', url: `/v1/credentials/${used.id}`, headers: admin.headers });
    expect(refused.statusCode).toBe(409);
    expect(refused.json().code).toBe('credential-active');
  });

  it.each([
    [{ username: 'ali ce' }, 'body/username'],
    [{ username: 'alice\nbob' }, 'body/username'],
    [{ secret: 'line\nbreak' }, 'body/secret'],
    [{ secret: 'tab\tinside' }, 'body/secret'],
    [{ secret: ' leading' }, 'body/secret'],
  ])('refuses %o before anything reaches a map', async (override, field) => {
    const relay = await createRelay(t.app, admin.headers);
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/relays/${relay.id}/credentials`,
      headers: admin.headers,
      payload: { username: 'u', secret: 's', ...override },
    });
    expect(response.statusCode).toBe(400);
    expect(response.json().errors[0].field).toBe(field);
    expect(await t.prisma.relayCredential.count({ where: { relayId: relay.id } })).toBe(0);
  });

  it("refuses a tenant activating another tenant's credential, and relay-wide credentials on shared relays", async () => {
    const a = await createTenant(t.app, admin.headers);
    const b = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers);
    const domainA = await createDomain(t.app, admin.headers, a.id, { relayId: relay.id });
    const credA = await createCredential(t.app, admin.headers, relay.id, { domainId: domainA.id });
    const staged = await createCredential(t.app, admin.headers, relay.id, { domainId: domainA.id });
    const tokenB = await tokenFor(t.app, ['tenant'], b.id);
    const activate = await t.app.inject({
      method: 'POST',
      url: `/v1/credentials/${staged.id}/activate`,
      headers: tokenB.headers,
    });
    expect(activate.statusCode).toBe(404);
    expect((await t.prisma.relayCredential.findUniqueOrThrow({ where: { id: credA.id } })).status).toBe('active');
    const wide = await t.app.inject({
      method: 'POST',
      url: `/v1/relays/${relay.id}/credentials`,
      headers: tokenB.headers,
      payload: { username: 'b', secret: 'x' },
    });
    expect(wide.statusCode).toBe(403);
    const onA = await t.app.inject({
      method: 'POST',
      url: `/v1/relays/${relay.id}/credentials`,
      headers: tokenB.headers,
      payload: { username: 'b', secret: 'x', domainId: domainA.id },
    });
    expect(onA.statusCode).toBe(404);
  });

  it('refuses a connection reuse time where per-sender authentication turns caching off', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers);
    const domain = await createDomain(t.app, admin.headers, tenant.id, { relayId: relay.id });
    await createCredential(t.app, admin.headers, relay.id, { domainId: domain.id });
    const response = await t.app.inject({
      method: 'PUT',
      url: `/v1/relays/${relay.id}/limits`,
      headers: admin.headers,
      payload: { connectionReuseSeconds: 30 },
    });
    expect(response.statusCode).toBe(422);
    expect(response.json().detail).toContain('connection caching');
  });

  it('keeps the secret write-only: in no response, audit row or log line; stored as ciphertext that decrypts with the master key', async () => {
    const secret = 'pa ss:wo#rd"ü-unique-7f3a';
    const tenant = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers);
    const domain = await createDomain(t.app, admin.headers, tenant.id, { relayId: relay.id });
    const responses: string[] = [];
    const created = await t.app.inject({
      method: 'POST',
      url: `/v1/relays/${relay.id}/credentials`,
      headers: admin.headers,
      payload: { username: 'sender', secret, domainId: domain.id },
    });
    expect(created.statusCode).toBe(201);
    responses.push(created.body);
    const id = created.json().id;
    expect(created.json().fingerprint).toMatch(/^[0-9a-f]{16}$/);
    responses.push((await t.app.inject({ method: 'GET', url: `/v1/credentials/${id}`, headers: admin.headers })).body);
    responses.push(
      (await t.app.inject({ method: 'GET', url: `/v1/relays/${relay.id}/credentials`, headers: admin.headers })).body,
    );
    responses.push(
      (await t.app.inject({ method: 'POST', url: `/v1/credentials/${id}/activate`, headers: admin.headers })).body,
    );
    responses.push(
      (await t.app.inject({ method: 'GET', url: '/v1/audit-events?limit=500', headers: admin.headers })).body,
    );
    for (const body of responses) expect(body).not.toContain(secret);

    const audit = await t.prisma.auditEvent.findMany();
    expect(JSON.stringify(audit, (_key, value) => (typeof value === 'bigint' ? String(value) : value))).not.toContain(
      secret,
    );
    expect(t.logs.join('')).not.toContain(secret);
    expect(t.logs.join('')).not.toContain('wo#rd');

    const row = await t.prisma.relayCredential.findUniqueOrThrow({ where: { id } });
    expect(Buffer.from(row.secretCiphertext).toString('utf8')).not.toContain('wo#rd');
    const box = createSecretBox(t.masterKey);
    expect(
      box.open(
        { ciphertext: Buffer.from(row.secretCiphertext), nonce: Buffer.from(row.secretNonce), keyId: row.secretKeyId },
        id,
      ),
    ).toBe(secret);
    expect(row.secretKeyId).toBe(box.keyId);
    // The ciphertext is bound to its row: moved to another id it does not open.
    expect(() =>
      box.open(
        { ciphertext: Buffer.from(row.secretCiphertext), nonce: Buffer.from(row.secretNonce), keyId: row.secretKeyId },
        relay.id,
      ),
    ).toThrow();
  });
});
