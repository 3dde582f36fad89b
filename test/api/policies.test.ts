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

describe('destination policies', () => {
  it('creates for a domain or a .suffix, updates, lists and deletes', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/destination-policies',
      headers: admin.headers,
      payload: { pattern: '.GMail.test', concurrency: 1, rateDelaySeconds: 1, tls: 'encrypt' },
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({
      pattern: '.gmail.test',
      concurrency: 1,
      rateDelaySeconds: 1,
      tls: 'encrypt',
    });
    const dupe = await t.app.inject({
      method: 'POST',
      url: '/v1/destination-policies',
      headers: admin.headers,
      payload: { pattern: '.gmail.test' },
    });
    expect(dupe.statusCode).toBe(409);
    const id = created.json().id;
    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/destination-policies/${id}`,
      headers: admin.headers,
      payload: { tls: null },
    });
    expect(patched.json().tls).toBeNull();
    const list = await t.app.inject({ method: 'GET', url: '/v1/destination-policies', headers: admin.headers });
    expect(list.json().items).toHaveLength(1);
    expect(
      (await t.app.inject({ method: 'DELETE', url: `/v1/destination-policies/${id}`, headers: admin.headers }))
        .statusCode,
    ).toBe(204);
  });

  it('refuses bad patterns and unhonourable limits', async () => {
    for (const pattern of ['..gmail.test', 'gmail test', 'gmail.test\n.evil', '*.gmail.test']) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/destination-policies',
        headers: admin.headers,
        payload: { pattern },
      });
      expect(response.statusCode, pattern).toBe(400);
    }
    const slow = await t.app.inject({
      method: 'POST',
      url: '/v1/destination-policies',
      headers: admin.headers,
      payload: { pattern: 'x.test', concurrency: 3, rateDelaySeconds: 5 },
    });
    expect(slow.statusCode).toBe(422);
  });
});

describe('settings', () => {
  it('reads defaults and replaces them, refusing inconsistent values', async () => {
    const read = await t.app.inject({ method: 'GET', url: '/v1/settings', headers: admin.headers });
    expect(read.json()).toMatchObject({
      defaultConcurrency: 20,
      inetProtocols: 'all',
      maximalQueueLifetimeSeconds: 432000,
    });
    const body = { ...read.json(), inetProtocols: 'ipv4', minimalBackoffSeconds: 120 };
    delete body.updatedAt;
    const put = await t.app.inject({
      method: 'PUT',
      url: '/v1/settings',
      headers: { ...admin.headers, 'if-match': read.headers.etag as string },
      payload: body,
    });
    expect(put.statusCode).toBe(200);
    expect(put.json().inetProtocols).toBe('ipv4');
    const bad = await t.app.inject({
      method: 'PUT',
      url: '/v1/settings',
      headers: admin.headers,
      payload: { ...body, minimalBackoffSeconds: 5000, maximalBackoffSeconds: 100 },
    });
    expect(bad.statusCode).toBe(422);
    const tenantToken = await tokenFor(t.app, ['usage:read']);
    expect((await t.app.inject({ method: 'GET', url: '/v1/settings', headers: tenantToken.headers })).statusCode).toBe(
      403,
    );
  });

  it('refuses an inetProtocols that would strand a route, naming the routes (422 relay-unreachable)', async () => {
    const put = async (inetProtocols: string) => {
      const current = (await t.app.inject({ method: 'GET', url: '/v1/settings', headers: admin.headers })).json();
      delete current.updatedAt;
      return t.app.inject({
        method: 'PUT',
        url: '/v1/settings',
        headers: admin.headers,
        payload: { ...current, inetProtocols },
      });
    };
    expect((await put('all')).statusCode).toBe(200);
    const tenant = await createTenant(t.app, admin.headers);
    const v6 = await createRelay(t.app, admin.headers, { host: '::1', port: 2606 });
    const v4 = await createRelay(t.app, admin.headers, { host: '127.0.0.1', port: 2604 });
    const six = await createDomain(t.app, admin.headers, tenant.id, {
      name: 'six.strand.test',
      relayId: v6.id,
      status: 'verified',
    });
    const four = await createDomain(t.app, admin.headers, tenant.id, {
      name: 'four.strand.test',
      relayId: v4.id,
      status: 'verified',
    });

    const ipv4 = await put('ipv4');
    expect(ipv4.statusCode, ipv4.body).toBe(422);
    expect(ipv4.json()).toMatchObject({
      code: 'relay-unreachable',
      problems: [{ code: 'relay_unreachable', resourceType: 'domain', resourceId: six.id }],
    });
    expect(ipv4.json().detail).toContain('six.strand.test');
    expect(ipv4.json().detail).toContain('[::1]:2606');
    const ipv6 = await put('ipv6');
    expect(ipv6.json()).toMatchObject({ code: 'relay-unreachable', problems: [{ resourceId: four.id }] });
    expect(
      (await t.app.inject({ method: 'GET', url: '/v1/settings', headers: admin.headers })).json().inetProtocols,
    ).toBe('all');

    // Under ipv4, a write that would put a route on an IPv6 literal is refused the same way.
    await t.app.inject({ method: 'DELETE', url: `/v1/domains/${six.id}`, headers: admin.headers });
    expect((await put('ipv4')).statusCode).toBe(200);
    const moved = await t.app.inject({
      method: 'PATCH',
      url: `/v1/relays/${v4.id}`,
      headers: admin.headers,
      payload: { host: '::1' },
    });
    expect(moved.statusCode, moved.body).toBe(422);
    expect(moved.json().code).toBe('relay-unreachable');
  });
});
