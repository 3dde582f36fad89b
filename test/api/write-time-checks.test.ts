/**
 * What Postfix cannot express is refused when it is written (422 config-not-expressible, by the
 * compiler's own checks, in the writing transaction), and what it can express is accepted: so no
 * tenant's write can stop another tenant's configuration from compiling.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createDomain, createRelay, createTenant } from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
let shared: { id: string };
let other: { tenant: { id: string }; domain: { id: string; name: string } };

beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
  shared = await createRelay(t.app, admin.headers, {
    host: 'smtp.shared.test',
    port: 587,
    tls: 'starttls',
    verify: true,
  });
  // Another tenant, whose names must never appear in what a hostile tenant is told.
  const tenant = await createTenant(t.app, admin.headers);
  const domain = await createDomain(t.app, admin.headers, tenant.id, {
    name: 'bystander.example',
    relayId: shared.id,
    status: 'verified',
  });
  other = { tenant, domain };
});
afterAll(async () => t?.close());

async function hostile() {
  const tenant = await createTenant(t.app, admin.headers);
  const key = await tokenFor(t.app, ['tenant'], tenant.id);
  return { tenant, headers: key.headers };
}

function expectRefused(
  response: { statusCode: number; body: string; json: () => { code: string; problems: Array<{ code: string }> } },
  code: string,
) {
  expect(response.statusCode, response.body).toBe(422);
  expect(response.json().code).toBe('config-not-expressible');
  expect(response.json().problems.map((p) => p.code)).toContain(code);
  expect(response.body).not.toContain(other.domain.name);
  expect(response.body).not.toContain(other.tenant.id);
}

async function quarantine() {
  const config = await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers });
  expect(config.statusCode).toBe(200);
  return config.json().quarantine as unknown[];
}

describe('write-time checks', () => {
  it('accepts a private relay on a shared relay’s host:port with another TLS mode: both compile', async () => {
    const { tenant, headers } = await hostile();
    const own = await createRelay(t.app, headers, { host: 'smtp.shared.test', port: 587, tls: 'opportunistic' });
    const domain = await createDomain(t.app, headers, tenant.id, { relayId: own.id });
    await t.prisma.domain.update({ where: { id: domain.id }, data: { status: 'verified' } });
    expect(await quarantine()).toEqual([]);
    const config = (await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers })).json();
    const maps = Object.keys(config.files).filter((name) => name.startsWith('tls_rp_'));
    expect(maps.length).toBe(2);
    expect(maps.map((name) => config.files[name].content).sort()).toEqual([
      '[smtp.shared.test]:587 may\n',
      '[smtp.shared.test]:587 secure\n',
    ]);
  });

  it('refuses a fallback over implicit TLS behind a STARTTLS relay, on create and on update; nothing is stored', async () => {
    const { tenant, headers } = await hostile();
    const implicit = await createRelay(t.app, headers, { host: 'smtp.implicit.test', port: 465, tls: 'implicit' });
    const created = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant.id}/domains`,
      headers,
      payload: { name: 'mixed.example', relayId: shared.id, fallbackRelayId: implicit.id },
    });
    expectRefused(created, 'fallback_tls_mismatch');
    expect(await t.prisma.domain.count({ where: { name: 'mixed.example' } })).toBe(0);

    const domain = await createDomain(t.app, headers, tenant.id, { relayId: shared.id });
    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${domain.id}`,
      headers,
      payload: { fallbackRelayId: implicit.id },
    });
    expectRefused(patched, 'fallback_tls_mismatch');
    expect((await t.prisma.domain.findUniqueOrThrow({ where: { id: domain.id } })).fallbackRelayId).toBeNull();
  });

  it('refuses a private relay change that breaks the tenant’s own route', async () => {
    const { tenant, headers } = await hostile();
    const own = await createRelay(t.app, headers, { host: 'smtp.own.test', port: 587, tls: 'starttls' });
    await createDomain(t.app, headers, tenant.id, { relayId: shared.id, fallbackRelayId: own.id });
    const response = await t.app.inject({
      method: 'PATCH',
      url: `/v1/relays/${own.id}`,
      headers,
      payload: { tls: 'implicit', port: 465 },
    });
    expectRefused(response, 'fallback_tls_mismatch');
    // ... or that puts primary and fallback on one [host]:port.
    const same = await t.app.inject({
      method: 'PATCH',
      url: `/v1/relays/${own.id}`,
      headers,
      payload: { host: 'smtp.shared.test' },
    });
    expectRefused(same, 'route_inconsistent');
    expect((await t.prisma.relay.findUniqueOrThrow({ where: { id: own.id } })).host).toBe('smtp.own.test');
  });

  it('refuses domain limits that cannot be honoured together with the shared relay’s', async () => {
    const relay = await createRelay(t.app, admin.headers, { host: 'smtp.limited.test', limits: { concurrency: 5 } });
    const { tenant, headers } = await hostile();
    const domain = await createDomain(t.app, headers, tenant.id, { relayId: relay.id });
    const response = await t.app.inject({
      method: 'PUT',
      url: `/v1/domains/${domain.id}/limits`,
      headers,
      payload: { recipientsPerMessage: 1 },
    });
    expectRefused(response, 'limits_conflict');
    expect((await t.prisma.domain.findUniqueOrThrow({ where: { id: domain.id } })).recipientsPerMessage).toBeNull();
    // The admin's relay change that would clash with a tenant's domain limits is refused too, naming it (admins see all).
    const fine = await t.app.inject({
      method: 'PUT',
      url: `/v1/domains/${domain.id}/limits`,
      headers,
      payload: { recipientsPerMessage: 1, concurrency: null },
    });
    expect(fine.statusCode).toBe(422);
    const free = await createRelay(t.app, admin.headers, { host: 'smtp.free.test' });
    const moved = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${domain.id}`,
      headers,
      payload: { relayId: free.id },
    });
    expect(moved.statusCode).toBe(200);
    expect(
      (
        await t.app.inject({
          method: 'PUT',
          url: `/v1/domains/${domain.id}/limits`,
          headers,
          payload: { recipientsPerMessage: 1 },
        })
      ).statusCode,
    ).toBe(200);
    const clash = await t.app.inject({
      method: 'PUT',
      url: `/v1/relays/${free.id}/limits`,
      headers: admin.headers,
      payload: { concurrency: 3 },
    });
    expect(clash.statusCode).toBe(422);
    expect(clash.json().problems).toEqual([
      expect.objectContaining({ code: 'limits_conflict', resourceType: 'domain', resourceId: domain.id }),
    ]);
  });

  it('refuses settings that would clash with a domain’s limits', async () => {
    const { tenant, headers } = await hostile();
    const domain = await createDomain(t.app, headers, tenant.id, {
      relayId: shared.id,
      limits: { recipientsPerMessage: 1 },
    });
    const current = (await t.app.inject({ method: 'GET', url: '/v1/settings', headers: admin.headers })).json();
    const { version: _version, updatedAt: _updatedAt, ...settings } = current;
    const response = await t.app.inject({
      method: 'PUT',
      url: '/v1/settings',
      headers: admin.headers,
      payload: { ...settings, defaultConcurrency: 1, defaultRateDelaySeconds: 2 },
    });
    expect(response.statusCode).toBe(422);
    expect(response.json().problems).toEqual(
      expect.arrayContaining([expect.objectContaining({ code: 'limits_conflict', resourceId: domain.id })]),
    );
    expect(
      (await t.app.inject({ method: 'GET', url: '/v1/settings', headers: admin.headers })).json()
        .defaultRateDelaySeconds,
    ).toBe(settings.defaultRateDelaySeconds);
  });

  it('after every refusal above, the whole configuration still compiles with nothing quarantined', async () => {
    expect(await quarantine()).toEqual([]);
  });
});
