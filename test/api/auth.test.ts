import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { seedTenant } from '../helpers/fixtures.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

describe('token flow', () => {
  it('exchanges an admin key for a JWT that opens admin endpoints', async () => {
    const key = await t.app.services.apiKeys.create(null, { name: 'root', scopes: ['admin'] });
    expect(key.key).toMatch(/^rpk_[a-z0-9]{20}_[A-Za-z0-9_-]{43}$/);
    const response = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: key.key } });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 900, scope: 'admin' });
    const list = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: { authorization: `Bearer ${body.access_token}` } });
    expect(list.statusCode).toBe(200);
    expect(list.json().items.map((item: { id: string }) => item.id)).toContain(key.id);
  });

  it('stores only a slow hash of the secret', async () => {
    const key = await t.app.services.apiKeys.create(null, { name: 'hash', scopes: ['admin'] });
    const row = await t.prisma.apiKey.findUniqueOrThrow({ where: { id: key.id } });
    expect(row.secretHash).toMatch(/^\$argon2id\$/);
    expect(row.secretHash).not.toContain(key.key.slice(-43));
  });

  it('refuses a wrong secret, an unknown key and garbage with the same 401', async () => {
    const key = await t.app.services.apiKeys.create(null, { name: 'x', scopes: ['admin'] });
    const wrong = `${key.key.slice(0, -4)}AAAA`;
    for (const attempt of [wrong, 'rpk_aaaaaaaaaaaaaaaaaaaa_' + 'A'.repeat(43), 'nonsense']) {
      const response = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: attempt } });
      expect(response.statusCode).toBe(401);
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect(response.json().detail).toBe('the API key is invalid, revoked or expired');
    }
  });

  it('refuses a revoked key, and tokens issued before the revocation', async () => {
    const admin = await tokenFor(t.app, ['admin']);
    const victim = await tokenFor(t.app, ['admin']);
    const revoke = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${victim.key.id}`, headers: admin.headers });
    expect(revoke.statusCode).toBe(204);
    const exchange = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: victim.key.key } });
    expect(exchange.statusCode).toBe(401);
    const reuse = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: victim.headers });
    expect(reuse.statusCode).toBe(401);
    const listed = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${victim.key.id}`, headers: admin.headers });
    expect(listed.json().status).toBe('revoked');
  });

  it('refuses an expired key', async () => {
    const key = await t.app.services.apiKeys.create(null, { name: 'soon', scopes: ['admin'], expiresAt: new Date(Date.now() + 1500).toISOString() });
    await new Promise((resolve) => setTimeout(resolve, 1600));
    const response = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: key.key } });
    expect(response.statusCode).toBe(401);
  });

  it('refuses missing, malformed, forged and expired bearer tokens', async () => {
    const none = await t.app.inject({ method: 'GET', url: '/v1/api-keys' });
    expect(none.statusCode).toBe(401);
    const garbage = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: { authorization: 'Bearer abc.def.ghi' } });
    expect(garbage.statusCode).toBe(401);
    const admin = await tokenFor(t.app, ['admin']);
    const forged = t.app.jwt.sign({ sub: admin.key.id, scope: 'admin' }, { key: 'another-secret-another-secret-another', expiresIn: 60 } as never);
    const forgedResponse = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: { authorization: `Bearer ${forged}` } });
    expect(forgedResponse.statusCode).toBe(401);
    const expired = t.app.jwt.sign({ sub: admin.key.id, scope: 'admin' }, { expiresIn: -10 } as never);
    const expiredResponse = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: { authorization: `Bearer ${expired}` } });
    expect(expiredResponse.statusCode).toBe(401);
  });
});

describe('scopes', () => {
  it('answers 403 to a usage:read token on a write', async () => {
    const billing = await tokenFor(t.app, ['usage:read']);
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: billing.headers,
      payload: { name: 'sneaky', scopes: ['admin'] },
    });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ status: 403, code: 'forbidden' });
  });

  it("answers 404 to a tenant token reading another tenant's key, and changes nothing on revoke", async () => {
    const tenantA = (await seedTenant(t.prisma)).id;
    const tenantB = (await seedTenant(t.prisma)).id;
    const a = await tokenFor(t.app, ['tenant'], tenantA);
    const b = await tokenFor(t.app, ['tenant'], tenantB);
    const read = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${a.key.id}`, headers: b.headers });
    expect(read.statusCode).toBe(404);
    const revoke = await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${a.key.id}`, headers: b.headers });
    expect(revoke.statusCode).toBe(404);
    const still = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${a.key.id}`, headers: a.headers });
    expect(still.json().status).toBe('active');
    const listB = await t.app.inject({ method: 'GET', url: `/v1/api-keys?tenantId=${tenantA}`, headers: b.headers });
    expect(listB.json().items.every((item: { tenantId: string }) => item.tenantId === tenantB)).toBe(true);
  });

  it('lets a tenant mint only tenant keys for itself', async () => {
    const tenantA = (await seedTenant(t.prisma)).id;
    const a = await tokenFor(t.app, ['tenant'], tenantA);
    const own = await t.app.inject({ method: 'POST', url: '/v1/api-keys', headers: a.headers, payload: { name: 'ci', scopes: ['tenant'] } });
    expect(own.statusCode).toBe(201);
    expect(own.json()).toMatchObject({ tenantId: tenantA, scopes: ['tenant'] });
    const admin = await t.app.inject({ method: 'POST', url: '/v1/api-keys', headers: a.headers, payload: { name: 'x', scopes: ['admin'] } });
    expect(admin.statusCode).toBe(403);
    const other = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: a.headers,
      payload: { name: 'x', scopes: ['tenant'], tenantId: (await seedTenant(t.prisma)).id },
    });
    expect(other.statusCode).toBe(404);
  });
});

describe('problems', () => {
  it('names each bad field of a malformed body in problem+json', async () => {
    const admin = await tokenFor(t.app, ['admin']);
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: admin.headers,
      payload: { name: '', scopes: ['root'], color: 'red' },
    });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toContain('application/problem+json');
    const problem = response.json();
    expect(problem).toMatchObject({ status: 400, code: 'validation-failed', title: 'Request validation failed' });
    expect(problem.requestId).toBe(response.headers['x-request-id']);
    const fields = problem.errors.map((error: { field: string }) => error.field);
    expect(fields).toEqual(expect.arrayContaining(['body/name', 'body/scopes/0', 'body/color']));
  });

  it('answers unknown routes and invalid JSON with problem+json', async () => {
    const missing = await t.app.inject({ method: 'GET', url: '/v1/nothing-here' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ status: 404, code: 'route-not-found' });
    const broken = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      headers: { 'content-type': 'application/json' },
      payload: '{"key": ',
    });
    expect(broken.statusCode).toBe(400);
    expect(broken.headers['content-type']).toContain('application/problem+json');
  });

  it('keeps a sane caller request id and echoes it', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'panel-42' } });
    expect(response.headers['x-request-id']).toBe('panel-42');
  });
});
