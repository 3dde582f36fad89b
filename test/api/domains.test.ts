import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createDomain, createRelay, createTenant } from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
let sharedRelay: { id: string };
beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
  sharedRelay = await createRelay(t.app, admin.headers);
});
afterAll(async () => t?.close());

describe('sender domains', () => {
  it('normalizes names: IDN to ASCII, lower case', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const created = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant.id}/domains`,
      headers: admin.headers,
      payload: { name: 'Bücher-Shop.Example', relayId: sharedRelay.id },
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({
      name: 'xn--bcher-shop-9db.example',
      unicodeName: 'bücher-shop.example',
      status: 'pending',
      route: 'relay',
      relayId: sharedRelay.id,
    });
  });

  it.each([
    ['a.example\nevil.example', 'control characters'],
    // openapi.yaml's pattern refuses characters no name may hold before the service reads it.
    ['a.example evil', 'must match pattern'],
    ['example.com.', 'end with a dot'],
    ['localhost', 'two labels'],
    ['-bad.example', 'invalid label'],
    ['bad_.example', 'invalid label'],
    [`${'a'.repeat(64)}.example`, 'invalid label'],
    [`${'abcdefghi.'.repeat(25)}example`, 'more than 253 characters'],
    ['1.2.3.4', 'numeric label'],
    ['a\u0000b.example', 'control characters'],
  ])('refuses the domain name %j with a problem naming body/name', async (name, reason) => {
    const tenant = await createTenant(t.app, admin.headers);
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant.id}/domains`,
      headers: admin.headers,
      payload: { name, relayId: sharedRelay.id },
    });
    expect(response.statusCode).toBe(400);
    expect(response.json().errors[0].field).toBe('body/name');
    expect(response.json().detail).toContain(reason);
    expect(await t.prisma.domain.count({ where: { tenantId: tenant.id } })).toBe(0);
  });

  it('lets several tenants claim a name, each once (ownership decides: domain-claims.test.ts)', async () => {
    const a = await createTenant(t.app, admin.headers);
    const b = await createTenant(t.app, admin.headers);
    await createDomain(t.app, admin.headers, a.id, { name: 'taken.example', relayId: sharedRelay.id });
    const other = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${b.id}/domains`,
      headers: admin.headers,
      payload: { name: 'TAKEN.example', relayId: sharedRelay.id },
    });
    expect(other.statusCode, other.body).toBe(201);
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${a.id}/domains`,
      headers: admin.headers,
      payload: { name: 'TAKEN.example', relayId: sharedRelay.id },
    });
    expect(response.statusCode).toBe(409);
    expect(response.json()).toMatchObject({
      code: 'domain-taken',
      detail: 'this tenant already has the domain taken.example',
    });
  });

  it("refuses a route through another tenant's private relay", async () => {
    const a = await createTenant(t.app, admin.headers);
    const b = await createTenant(t.app, admin.headers);
    const privateOfA = await createRelay(t.app, admin.headers, { tenantId: a.id });
    const tokenB = await tokenFor(t.app, ['tenant'], b.id);
    const response = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${b.id}/domains`,
      headers: tokenB.headers,
      payload: { name: 'b-shop.example', relayId: privateOfA.id },
    });
    expect(response.statusCode).toBe(422);
    expect(response.json().code).toBe('relay-not-usable');
    const own = await createRelay(t.app, tokenB.headers, { host: 'smtp.b-own.test' });
    expect(own.tenantId).toBe(b.id);
    const ok = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${b.id}/domains`,
      headers: tokenB.headers,
      payload: { name: 'b-shop.example', relayId: own.id, fallbackRelayId: sharedRelay.id },
    });
    expect(ok.statusCode).toBe(201);
    const switched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${ok.json().id}`,
      headers: tokenB.headers,
      payload: { fallbackRelayId: privateOfA.id },
    });
    expect(switched.statusCode).toBe(422);
  });

  it('allows direct delivery only where an admin allowed it, and status changes only by admins', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const own = await tokenFor(t.app, ['tenant'], tenant.id);
    const refused = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant.id}/domains`,
      headers: own.headers,
      payload: { name: 'direct.example', route: 'direct' },
    });
    expect(refused.statusCode).toBe(422);
    expect(refused.json().code).toBe('direct-delivery-not-allowed');
    await t.app.inject({
      method: 'PATCH',
      url: `/v1/tenants/${tenant.id}`,
      headers: admin.headers,
      payload: { allowDirectDelivery: true },
    });
    const allowed = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant.id}/domains`,
      headers: own.headers,
      payload: { name: 'direct.example', route: 'direct' },
    });
    expect(allowed.statusCode).toBe(201);
    expect(allowed.json()).toMatchObject({ route: 'direct', relayId: null });
    const verify = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${allowed.json().id}`,
      headers: own.headers,
      payload: { status: 'verified' },
    });
    expect(verify.statusCode).toBe(403);
    const byAdmin = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${allowed.json().id}`,
      headers: admin.headers,
      payload: { status: 'verified' },
    });
    expect(byAdmin.json().status).toBe('verified');
    const noRelay = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant.id}/domains`,
      headers: own.headers,
      payload: { name: 'norelay.example' },
    });
    expect(noRelay.statusCode).toBe(422);
  });

  it('manages limits: own, tenant default and effective; refuses what Postfix cannot honour', async () => {
    const tenant = await createTenant(t.app, admin.headers, {
      defaultLimits: { concurrency: 3, recipientsPerMessage: 50 },
    });
    const domain = await createDomain(t.app, admin.headers, tenant.id, { relayId: sharedRelay.id });
    const put = await t.app.inject({
      method: 'PUT',
      url: `/v1/domains/${domain.id}/limits`,
      headers: admin.headers,
      payload: { rateDelaySeconds: 2, concurrency: 1 },
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({
      own: { concurrency: 1, rateDelaySeconds: 2, recipientsPerMessage: null },
      tenantDefault: { concurrency: 3, rateDelaySeconds: null, recipientsPerMessage: 50 },
      effective: { concurrency: 1, rateDelaySeconds: 2, recipientsPerMessage: 50 },
    });
    const bad = await t.app.inject({
      method: 'PUT',
      url: `/v1/domains/${domain.id}/limits`,
      headers: admin.headers,
      payload: { rateDelaySeconds: 2, concurrency: 5 },
    });
    expect(bad.statusCode).toBe(422);
    expect(bad.json().code).toBe('limits-not-honourable');
    const cleared = await t.app.inject({
      method: 'DELETE',
      url: `/v1/domains/${domain.id}/limits`,
      headers: admin.headers,
    });
    expect(cleared.statusCode).toBe(204);
    const after = await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}/limits`, headers: admin.headers });
    expect(after.json().effective).toEqual({ concurrency: 3, rateDelaySeconds: null, recipientsPerMessage: 50 });
  });

  it('lists by tenant and status, and deletes', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const first = await createDomain(t.app, admin.headers, tenant.id, { relayId: sharedRelay.id });
    await createDomain(t.app, admin.headers, tenant.id, { relayId: sharedRelay.id, status: 'verified' });
    const verified = await t.app.inject({
      method: 'GET',
      url: `/v1/tenants/${tenant.id}/domains?status=verified`,
      headers: admin.headers,
    });
    expect(verified.json().items).toHaveLength(1);
    const all = await t.app.inject({ method: 'GET', url: `/v1/domains?tenantId=${tenant.id}`, headers: admin.headers });
    expect(all.json().items).toHaveLength(2);
    expect(
      (await t.app.inject({ method: 'DELETE', url: `/v1/domains/${first.id}`, headers: admin.headers })).statusCode,
    ).toBe(204);
    expect(
      (await t.app.inject({ method: 'GET', url: `/v1/domains/${first.id}`, headers: admin.headers })).statusCode,
    ).toBe(404);
  });
});
