import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { seedTenant } from '../helpers/fixtures.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

it('records key mutations with actor and changed fields, newest first, and never a secret', async () => {
  const admin = await tokenFor(t.app, ['admin']);
  const created = await t.app.inject({
    method: 'POST',
    url: '/v1/api-keys',
    headers: admin.headers,
    payload: { name: 'billing', scopes: ['usage:read'] },
  });
  const keyId = created.json().id;
  await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${keyId}`, headers: admin.headers });
  const response = await t.app.inject({
    method: 'GET',
    url: `/v1/audit-events?resourceId=${keyId}`,
    headers: admin.headers,
  });
  expect(response.statusCode).toBe(200);
  const events = response.json().items;
  expect(events.map((event: { action: string }) => event.action)).toEqual(['api_key.revoked', 'api_key.created']);
  expect(events[1]).toMatchObject({
    actorKeyId: admin.key.id,
    resourceType: 'api_key',
    changes: { name: 'billing', scopes: ['usage:read'] },
  });
  expect(events[1].requestId).toBe(created.headers['x-request-id']);
  expect(JSON.stringify(events)).not.toContain(created.json().key.slice(-43));
});

it("shows a tenant only its own tenant's events and pages with a cursor", async () => {
  const tenantA = (await seedTenant(t.prisma)).id;
  const a = await tokenFor(t.app, ['tenant'], tenantA);
  for (let i = 0; i < 3; i += 1) {
    await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: a.headers,
      payload: { name: `k${i}`, scopes: ['tenant'] },
    });
  }
  const first = await t.app.inject({ method: 'GET', url: '/v1/audit-events?limit=2', headers: a.headers });
  const page1 = first.json();
  expect(page1.items).toHaveLength(2);
  expect(page1.next_cursor).not.toBeNull();
  const second = await t.app.inject({
    method: 'GET',
    url: `/v1/audit-events?limit=2&cursor=${page1.next_cursor}`,
    headers: a.headers,
  });
  const all = [...page1.items, ...second.json().items];
  expect(all.every((event: { tenantId: string }) => event.tenantId === tenantA)).toBe(true);
  expect(new Set(all.map((event: { id: string }) => event.id)).size).toBe(all.length);
  const bad = await t.app.inject({ method: 'GET', url: '/v1/audit-events?cursor=%%%', headers: a.headers });
  expect(bad.statusCode).toBe(400);
});
