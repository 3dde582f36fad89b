import { createHmac } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { seedTenant } from '../helpers/fixtures.js';

let t: TestApp;

/** A JWT signed by hand with `secret`: the claims exactly as given, nothing added. */
function handSigned(secret: string, payload: Record<string, unknown>, alg: 'HS256' | 'HS512' | 'none' = 'HS256') {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${part({ alg, typ: 'JWT' })}.${part(payload)}`;
  const signature =
    alg === 'none'
      ? ''
      : createHmac(alg === 'HS256' ? 'sha256' : 'sha512', secret)
          .update(input)
          .digest('base64url');
  return `${input}.${signature}`;
}

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
    const list = await t.app.inject({
      method: 'GET',
      url: '/v1/api-keys',
      headers: { authorization: `Bearer ${body.access_token}` },
    });
    expect(list.statusCode).toBe(200);
    expect(list.json().items.map((item: { id: string }) => item.id)).toContain(key.id);
  });

  it('stores only a slow hash of the secret', async () => {
    const key = await t.app.services.apiKeys.create(null, { name: 'hash', scopes: ['admin'] });
    const row = await t.prisma.apiKey.findUniqueOrThrow({ where: { id: key.id } });
    expect(row.secretHash).toMatch(/^\$argon2id\$/);
    expect(row.secretHash).not.toContain(key.key.slice(-43));
  });

  it('refuses a wrong secret, an unknown, revoked or expired key and garbage with the same 401', async () => {
    const key = await t.app.services.apiKeys.create(null, { name: 'x', scopes: ['admin'] });
    const revoked = await t.app.services.apiKeys.create(null, { name: 'revoked', scopes: ['admin'] });
    await t.app.services.apiKeys.revoke(null, revoked.id);
    const expired = await t.app.services.apiKeys.create(null, { name: 'expired', scopes: ['admin'] });
    await t.prisma.apiKey.update({ where: { id: expired.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const wrong = `${key.key.slice(0, -4)}AAAA`;
    const bodies = [];
    for (const attempt of [wrong, 'rpk_aaaaaaaaaaaaaaaaaaaa_' + 'A'.repeat(43), revoked.key, expired.key, 'nonsense']) {
      const response = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: attempt } });
      expect(response.statusCode).toBe(401);
      expect(response.headers['content-type']).toContain('application/problem+json');
      const { requestId, ...body } = response.json();
      expect(requestId).toBe(response.headers['x-request-id']);
      bodies.push(body);
    }
    expect(bodies[0]).toMatchObject({ code: 'unauthorized', detail: 'the API key is invalid, revoked or expired' });
    for (const body of bodies) expect(body).toEqual(bodies[0]);
  });

  it('refuses a revoked key, and tokens issued before the revocation', async () => {
    const admin = await tokenFor(t.app, ['admin']);
    const victim = await tokenFor(t.app, ['admin']);
    const revoke = await t.app.inject({
      method: 'DELETE',
      url: `/v1/api-keys/${victim.key.id}`,
      headers: admin.headers,
    });
    expect(revoke.statusCode).toBe(204);
    const exchange = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: victim.key.key } });
    expect(exchange.statusCode).toBe(401);
    const reuse = await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: victim.headers });
    expect(reuse.statusCode).toBe(401);
    const listed = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${victim.key.id}`, headers: admin.headers });
    expect(listed.json().status).toBe('revoked');
  });

  it('refuses an expired key', async () => {
    const key = await t.app.services.apiKeys.create(null, {
      name: 'soon',
      scopes: ['admin'],
      expiresAt: new Date(Date.now() + 1500).toISOString(),
    });
    await new Promise((resolve) => setTimeout(resolve, 1600));
    const response = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: key.key } });
    expect(response.statusCode).toBe(401);
  });

  it('refuses missing, malformed, forged and expired bearer tokens', async () => {
    const none = await t.app.inject({ method: 'GET', url: '/v1/api-keys' });
    expect(none.statusCode).toBe(401);
    const garbage = await t.app.inject({
      method: 'GET',
      url: '/v1/api-keys',
      headers: { authorization: 'Bearer abc.def.ghi' },
    });
    expect(garbage.statusCode).toBe(401);
    const admin = await tokenFor(t.app, ['admin']);
    const forged = t.app.jwt.sign({ sub: admin.key.id, scope: 'admin' }, {
      key: 'another-secret-another-secret-another',
      expiresIn: 60,
    } as never);
    const forgedResponse = await t.app.inject({
      method: 'GET',
      url: '/v1/api-keys',
      headers: { authorization: `Bearer ${forged}` },
    });
    expect(forgedResponse.statusCode).toBe(401);
    const expired = t.app.jwt.sign({ sub: admin.key.id, scope: 'admin' }, { expiresIn: -10 } as never);
    const expiredResponse = await t.app.inject({
      method: 'GET',
      url: '/v1/api-keys',
      headers: { authorization: `Bearer ${expired}` },
    });
    expect(expiredResponse.statusCode).toBe(401);
  });

  it('refuses tokens signed with our secret but without exp, without or with another iss, or another alg', async () => {
    const admin = await tokenFor(t.app, ['admin']);
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: admin.key.id, scope: 'admin', iss: 'relayplane', iat: now, exp: now + 600 };
    const status = async (token: string) =>
      (await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: { authorization: `Bearer ${token}` } }))
        .statusCode;
    // The hand signing is right: with every claim, the token opens the API.
    expect(await status(handSigned(t.jwtSecret, claims))).toBe(200);
    const { exp: _exp, ...withoutExp } = claims;
    expect(await status(handSigned(t.jwtSecret, withoutExp))).toBe(401);
    const { iss: _iss, ...withoutIss } = claims;
    expect(await status(handSigned(t.jwtSecret, withoutIss))).toBe(401);
    expect(await status(handSigned(t.jwtSecret, { ...claims, iss: 'someone-else' }))).toBe(401);
    expect(await status(handSigned(t.jwtSecret, claims, 'HS512'))).toBe(401);
    expect(await status(handSigned(t.jwtSecret, claims, 'none'))).toBe(401);
    expect(await status(handSigned(t.jwtSecret, { ...claims, scope: ['admin'] }))).toBe(401);
  });
});

describe("a token is worth no more than its key's current state", () => {
  // Reads each key's state on every request, so a change made behind the API's back (no API
  // changes a key's scopes or tenant) shows at once instead of after the cache period.
  let live: TestApp;
  beforeAll(async () => {
    live = await createTestApp({ keyStatusCacheMs: 0 });
  });
  afterAll(async () => live?.close());

  const call = (method: 'GET' | 'POST', url: string, headers: Record<string, string>, payload?: object) =>
    live.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });

  it('loses the scopes its key lost, and never gains those the key gained', async () => {
    const tenantA = (await seedTenant(live.prisma)).id;
    const both = await tokenFor(live.app, ['tenant', 'usage:read'], tenantA);
    expect((await call('POST', '/v1/api-keys', both.headers, { name: 'ci', scopes: ['tenant'] })).statusCode).toBe(201);
    await live.prisma.apiKey.update({ where: { id: both.key.id }, data: { scopes: ['usage:read'] } });
    const narrowed = await call('POST', '/v1/api-keys', both.headers, { name: 'ci', scopes: ['tenant'] });
    expect(narrowed.statusCode).toBe(403);
    expect((await call('GET', `/v1/tenants/${tenantA}`, both.headers)).statusCode).toBe(200);

    const billing = await tokenFor(live.app, ['usage:read']);
    await live.prisma.apiKey.update({ where: { id: billing.key.id }, data: { scopes: ['usage:read', 'admin'] } });
    expect((await call('POST', '/v1/api-keys', billing.headers, { name: 'x', scopes: ['admin'] })).statusCode).toBe(
      403,
    );
    expect((await call('GET', '/v1/tenants', billing.headers)).statusCode).toBe(200);
  });

  it('follows its key to another tenant: a bound token stops, an unbound one is confined', async () => {
    const tenantA = (await seedTenant(live.prisma)).id;
    const tenantB = (await seedTenant(live.prisma)).id;
    const tenant = await tokenFor(live.app, ['tenant'], tenantA);
    expect((await call('GET', `/v1/tenants/${tenantA}`, tenant.headers)).statusCode).toBe(200);
    await live.prisma.apiKey.update({ where: { id: tenant.key.id }, data: { tenantId: tenantB } });
    for (const id of [tenantA, tenantB]) {
      const response = await call('GET', `/v1/tenants/${id}`, tenant.headers);
      expect(response.statusCode).toBe(401);
      expect(response.json().detail).toContain('another tenant');
    }

    const billing = await tokenFor(live.app, ['usage:read']);
    const before = await call('GET', '/v1/tenants?limit=200', billing.headers);
    expect(before.json().items.map((item: { id: string }) => item.id)).toEqual(
      expect.arrayContaining([tenantA, tenantB]),
    );
    await live.prisma.apiKey.update({ where: { id: billing.key.id }, data: { tenantId: tenantB } });
    const after = await call('GET', '/v1/tenants?limit=200', billing.headers);
    expect(after.statusCode).toBe(200);
    expect(after.json().items.map((item: { id: string }) => item.id)).toEqual([tenantB]);
    expect((await call('GET', `/v1/tenants/${tenantA}`, billing.headers)).statusCode).toBe(404);
  });

  it('stops when its key is revoked or expires, also outside this process (the CLI)', async () => {
    const revoked = await tokenFor(live.app, ['admin']);
    const expired = await tokenFor(live.app, ['admin']);
    await live.app.services.apiKeys.revoke(null, revoked.key.id);
    await live.prisma.apiKey.update({
      where: { id: expired.key.id },
      data: { expiresAt: new Date(Date.now() - 1000) },
    });
    for (const token of [revoked, expired]) {
      expect((await call('GET', '/v1/api-keys', token.headers)).statusCode).toBe(401);
    }
  });
});

describe('token rate limits', () => {
  let limited: TestApp | undefined;
  afterEach(async () => {
    await limited?.close();
    limited = undefined;
  });

  const exchange = (app: FastifyInstance, key: string, remoteAddress: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key }, remoteAddress, headers });

  it('answers 429 problem+json with Retry-After past the per-address limit, before reading the body, to that address only', async () => {
    limited = await createTestApp({ tokenRateLimit: { perAddress: 3, perKeyId: 100 } });
    const { app } = limited;
    const key = await app.services.apiKeys.create(null, { name: 'panel', scopes: ['admin'] });
    let token = '';
    for (let attempt = 0; attempt < 3; attempt++) {
      const response = await exchange(app, key.key, '203.0.113.7');
      expect(response.statusCode).toBe(200);
      token = response.json().access_token;
    }
    const refused = await exchange(app, key.key, '203.0.113.7');
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json()).toMatchObject({
      type: 'urn:relayplane:problem:rate-limited',
      status: 429,
      code: 'rate-limited',
    });
    const retryAfter = Number(refused.headers['retry-after']);
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true);
    // Refused before the body is read: broken JSON is not even looked at.
    const broken = await app.inject({
      method: 'POST',
      url: '/v1/auth/token',
      remoteAddress: '203.0.113.7',
      headers: { 'content-type': 'application/json' },
      payload: '{"key": ',
    });
    expect(broken.statusCode).toBe(429);
    expect((await exchange(app, key.key, '203.0.113.8')).statusCode).toBe(200);
    // Only the exchange is limited: the refused address keeps using the rest of the API.
    for (let call = 0; call < 5; call++) {
      const list = await app.inject({
        method: 'GET',
        url: '/v1/api-keys',
        remoteAddress: '203.0.113.7',
        headers: { authorization: `Bearer ${token}` },
      });
      expect(list.statusCode).toBe(200);
    }
  });

  it('counts clients behind a trusted proxy by X-Forwarded-For, and anyone else by its own address', async () => {
    limited = await createTestApp({ tokenRateLimit: { perAddress: 2, perKeyId: 100 }, trustProxy: ['10.0.0.5'] });
    const { app } = limited;
    const viaProxy = (client: string) => exchange(app, 'nonsense', '10.0.0.5', { 'x-forwarded-for': client });
    expect((await viaProxy('198.51.100.1')).statusCode).toBe(401);
    expect((await viaProxy('198.51.100.1')).statusCode).toBe(401);
    expect((await viaProxy('198.51.100.1')).statusCode).toBe(429);
    expect((await viaProxy('198.51.100.2')).statusCode).toBe(401);
    // A client reaching the API directly cannot pose as someone else with the header.
    const direct = (claimed: string) => exchange(app, 'nonsense', '192.0.2.9', { 'x-forwarded-for': claimed });
    expect((await direct('198.51.100.3')).statusCode).toBe(401);
    expect((await direct('198.51.100.4')).statusCode).toBe(401);
    expect((await direct('198.51.100.5')).statusCode).toBe(429);
  });

  it('answers 429 past the per-key-id limit from any address, alike for unknown and known key ids', async () => {
    limited = await createTestApp({ tokenRateLimit: { perAddress: 100, perKeyId: 2 } });
    const { app } = limited;
    const key = await app.services.apiKeys.create(null, { name: 'target', scopes: ['admin'] });
    const answers = async (printed: string) => {
      const seen = [];
      for (const address of ['203.0.113.1', '203.0.113.2', '203.0.113.3']) {
        const response = await exchange(app, printed, address);
        const { requestId, ...body } = response.json();
        expect(requestId).toBe(response.headers['x-request-id']);
        seen.push({ status: response.statusCode, retryAfter: response.headers['retry-after'] !== undefined, body });
      }
      return seen;
    };
    const known = await answers(`${key.key.slice(0, -4)}AAAA`);
    expect(known.map((answer) => answer.status)).toEqual([401, 401, 429]);
    expect(known[2]).toMatchObject({ retryAfter: true, body: { code: 'rate-limited' } });
    expect(await answers(`rpk_${'z'.repeat(20)}_${'A'.repeat(43)}`)).toEqual(known);
    // While its id is limited even the right secret waits; other keys are unaffected.
    expect((await exchange(app, key.key, '203.0.113.4')).statusCode).toBe(429);
    const other = await app.services.apiKeys.create(null, { name: 'other', scopes: ['admin'] });
    expect((await exchange(app, other.key, '203.0.113.4')).statusCode).toBe(200);
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
    const own = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: a.headers,
      payload: { name: 'ci', scopes: ['tenant'] },
    });
    expect(own.statusCode).toBe(201);
    expect(own.json()).toMatchObject({ tenantId: tenantA, scopes: ['tenant'] });
    const admin = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: a.headers,
      payload: { name: 'x', scopes: ['admin'] },
    });
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
