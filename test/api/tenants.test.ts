import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createDomain, createRelay, createTenant } from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
});
afterAll(async () => t?.close());

describe('tenants', () => {
  it('creates, reads, lists, updates and deletes', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: admin.headers,
      payload: { name: 'Acme Hosting', slug: 'acme', externalRef: 'panel-17', defaultLimits: { concurrency: 5 } },
    });
    expect(created.statusCode).toBe(201);
    const tenant = created.json();
    expect(tenant).toMatchObject({
      name: 'Acme Hosting',
      slug: 'acme',
      status: 'active',
      externalRef: 'panel-17',
      allowDirectDelivery: false,
    });
    expect(tenant.defaultLimits).toEqual({ concurrency: 5, rateDelaySeconds: null, recipientsPerMessage: null });
    expect(created.headers.etag).toBe('"1"');
    expect(tenant).not.toHaveProperty('version');

    const read = await t.app.inject({ method: 'GET', url: `/v1/tenants/${tenant.id}`, headers: admin.headers });
    expect(read.json()).toEqual(tenant);
    const byRef = await t.app.inject({
      method: 'GET',
      url: '/v1/tenants?externalRef=panel-17',
      headers: admin.headers,
    });
    expect(byRef.json().items.map((item: { id: string }) => item.id)).toEqual([tenant.id]);

    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/tenants/${tenant.id}`,
      headers: { ...admin.headers, 'if-match': '"1"' },
      payload: { status: 'suspended' },
    });
    expect(patched.statusCode).toBe(200);
    expect(patched.json().status).toBe('suspended');
    expect(patched.headers.etag).toBe('"2"');

    const deleted = await t.app.inject({ method: 'DELETE', url: `/v1/tenants/${tenant.id}`, headers: admin.headers });
    expect(deleted.statusCode).toBe(204);
    const gone = await t.app.inject({ method: 'GET', url: `/v1/tenants/${tenant.id}`, headers: admin.headers });
    expect(gone.statusCode).toBe(404);
  });

  it('refuses a duplicate slug with 409 and a bad slug with 400', async () => {
    await createTenant(t.app, admin.headers, { slug: 'dupe' });
    const again = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: admin.headers,
      payload: { name: 'x', slug: 'dupe' },
    });
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('tenant-slug-taken');
    for (const slug of ['Upper', '-lead', 'has space', 'a'.repeat(64), 'new\nline']) {
      const bad = await t.app.inject({
        method: 'POST',
        url: '/v1/tenants',
        headers: admin.headers,
        payload: { name: 'x', slug },
      });
      expect(bad.statusCode, slug).toBe(400);
      expect(bad.json().errors[0].field).toBe('body/slug');
    }
  });

  it('refuses limits Postfix cannot honour', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: admin.headers,
      payload: { name: 'x', slug: 'slowfast', defaultLimits: { concurrency: 4, rateDelaySeconds: 2 } },
    });
    expect(response.statusCode).toBe(422);
    expect(response.json().detail).toContain('one connection at a time');
  });

  it('refuses to delete a tenant with domains unless cascade=true, which also removes its relays and revokes its keys', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const relay = await createRelay(t.app, admin.headers, { tenantId: tenant.id });
    await createDomain(t.app, admin.headers, tenant.id, { relayId: relay.id });
    const key = await tokenFor(t.app, ['tenant'], tenant.id);
    const refused = await t.app.inject({ method: 'DELETE', url: `/v1/tenants/${tenant.id}`, headers: admin.headers });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'tenant-has-domains', domains: 1 });
    expect(await t.prisma.domain.count({ where: { tenantId: tenant.id } })).toBe(1);

    const cascaded = await t.app.inject({
      method: 'DELETE',
      url: `/v1/tenants/${tenant.id}?cascade=true`,
      headers: admin.headers,
    });
    expect(cascaded.statusCode).toBe(204);
    expect(await t.prisma.domain.count({ where: { tenantId: tenant.id } })).toBe(0);
    expect(await t.prisma.relay.count({ where: { tenantId: tenant.id } })).toBe(0);
    const keyRow = await t.prisma.apiKey.findUniqueOrThrow({ where: { id: key.key.id } });
    expect(keyRow.revokedAt).not.toBeNull();
  });

  it('lets a tenant read itself but not change itself, and lets billing list tenants', async () => {
    const tenant = await createTenant(t.app, admin.headers);
    const own = await tokenFor(t.app, ['tenant'], tenant.id);
    expect(
      (await t.app.inject({ method: 'GET', url: `/v1/tenants/${tenant.id}`, headers: own.headers })).statusCode,
    ).toBe(200);
    const list = await t.app.inject({ method: 'GET', url: '/v1/tenants', headers: own.headers });
    expect(list.json().items.map((item: { id: string }) => item.id)).toEqual([tenant.id]);
    const patch = await t.app.inject({
      method: 'PATCH',
      url: `/v1/tenants/${tenant.id}`,
      headers: own.headers,
      payload: { status: 'active' },
    });
    expect(patch.statusCode).toBe(403);
    const billing = await tokenFor(t.app, ['usage:read']);
    const all = await t.app.inject({ method: 'GET', url: '/v1/tenants?limit=500', headers: billing.headers });
    expect(all.json().items.length).toBeGreaterThan(1);
  });

  it('pages through tenants with cursors without repeats', async () => {
    for (let i = 0; i < 5; i += 1) await createTenant(t.app, admin.headers);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/tenants?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`;
      const page = (await t.app.inject({ method: 'GET', url, headers: admin.headers })).json();
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((item: { id: string }) => item.id));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBe(await t.prisma.tenant.count());
  });
});
