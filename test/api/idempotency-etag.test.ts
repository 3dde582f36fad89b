import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createRelay, createTenant } from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
});
afterAll(async () => t?.close());

describe('Idempotency-Key', () => {
  it('replays the first response for the same key and body, creating once', async () => {
    const request = {
      method: 'POST' as const,
      url: '/v1/tenants',
      headers: { ...admin.headers, 'idempotency-key': 'onboard-1' },
      payload: { name: 'Once', slug: 'once' },
    };
    const first = await t.app.inject(request);
    const second = await t.app.inject(request);
    expect(first.statusCode).toBe(201);
    expect(second.statusCode).toBe(201);
    expect(second.json()).toEqual(first.json());
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.headers.etag).toBe(first.headers.etag);
    expect(await t.prisma.tenant.count({ where: { slug: 'once' } })).toBe(1);
  });

  it('refuses the same key with a different body with 422 and changes nothing', async () => {
    const headers = { ...admin.headers, 'idempotency-key': 'onboard-2' };
    await t.app.inject({ method: 'POST', url: '/v1/tenants', headers, payload: { name: 'Two', slug: 'two' } });
    const other = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers,
      payload: { name: 'Three', slug: 'three' },
    });
    expect(other.statusCode).toBe(422);
    expect(other.json().code).toBe('idempotency-key-reused');
    expect(await t.prisma.tenant.count({ where: { slug: 'three' } })).toBe(0);
  });

  it('keeps only a keyed digest of a request that carries a secret (no plain hash to test guesses against)', async () => {
    const relay = await createRelay(t.app, admin.headers);
    const url = `/v1/relays/${relay.id}/credentials`;
    const payload = { username: 'idem-user', secret: 'guessable' };
    const headers = { ...admin.headers, 'idempotency-key': 'secret-1' };
    expect((await t.app.inject({ method: 'POST', url, headers, payload })).statusCode).toBe(201);
    expect((await t.app.inject({ method: 'POST', url, headers, payload })).headers['idempotent-replayed']).toBe('true');
    const [row] = await t.prisma.$queryRawUnsafe<Array<{ request_hash: string }>>(
      "SELECT request_hash FROM idempotency_records WHERE key = 'secret-1'",
    );
    // What a plain digest of the request would be: computable by anyone who guesses the secret.
    const plain = createHash('sha256')
      .update(`POST ${url}\n{"secret":"guessable","username":"idem-user"}`)
      .digest('hex');
    expect(row?.request_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(row?.request_hash).not.toBe(plain);
  });

  it('keeps keys per API key, and replays a refusal too', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const other = await tokenFor(t.app, ['admin']);
    const body = { name: 'x', host: 'smtp.idem.test', port: 587, tls: 'starttls', tenantId: tenant.id };
    const a = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: { ...admin.headers, 'idempotency-key': 'k' },
      payload: body,
    });
    const b = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: { ...other.headers, 'idempotency-key': 'k' },
      payload: body,
    });
    expect(a.json().id).not.toBe(b.json().id);
    const dupe = {
      method: 'POST' as const,
      url: '/v1/tenants',
      headers: { ...admin.headers, 'idempotency-key': 'dupe' },
      payload: { name: 'x', slug: tenant.slug },
    };
    expect((await t.app.inject(dupe)).statusCode).toBe(409);
    expect((await t.app.inject(dupe)).statusCode).toBe(409);
  });
});

describe('ETag and If-Match', () => {
  it('refuses a stale write with 412 and applies a fresh one', async () => {
    const relay = await createRelay(t.app, admin.headers);
    const read = await t.app.inject({ method: 'GET', url: `/v1/relays/${relay.id}`, headers: admin.headers });
    const etag = read.headers.etag as string;
    const first = await t.app.inject({
      method: 'PATCH',
      url: `/v1/relays/${relay.id}`,
      headers: { ...admin.headers, 'if-match': etag },
      payload: { port: 2525 },
    });
    expect(first.statusCode).toBe(200);
    expect(first.headers.etag).not.toBe(etag);
    const stale = await t.app.inject({
      method: 'PATCH',
      url: `/v1/relays/${relay.id}`,
      headers: { ...admin.headers, 'if-match': etag },
      payload: { port: 2526 },
    });
    expect(stale.statusCode).toBe(412);
    expect(stale.headers['content-type']).toContain('application/problem+json');
    expect((await t.prisma.relay.findUniqueOrThrow({ where: { id: relay.id } })).port).toBe(2525);
    const staleDelete = await t.app.inject({
      method: 'DELETE',
      url: `/v1/relays/${relay.id}`,
      headers: { ...admin.headers, 'if-match': etag },
    });
    expect(staleDelete.statusCode).toBe(412);
    const garbage = await t.app.inject({
      method: 'PATCH',
      url: `/v1/relays/${relay.id}`,
      headers: { ...admin.headers, 'if-match': 'abc' },
      payload: { port: 1 },
    });
    expect(garbage.statusCode).toBe(400);
  });
});
