import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRelayplaneClient } from '../../packages/client/src/index.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

// The client's source against a live server; test/client/package.test.ts installs it as a panel would.
let t: TestApp;
let baseUrl: string;
beforeAll(async () => {
  t = await createTestApp();
  baseUrl = await t.app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => t?.close());

it('lets a panel onboard a tenant and a domain through the typed client', async () => {
  const key = await t.app.services.apiKeys.create(null, { name: 'panel', scopes: ['admin'] });
  const client = createRelayplaneClient({ baseUrl, apiKey: key.key });
  const tenant = await client.POST('/v1/tenants', { body: { name: 'Client Co', slug: 'client-co' } });
  expect(tenant.response.status).toBe(201);
  const relay = await client.POST('/v1/relays', {
    body: { name: 'up', host: 'smtp.up.test', port: 587, tls: 'starttls' },
  });
  const domain = await client.POST('/v1/tenants/{tenantId}/domains', {
    params: { path: { tenantId: tenant.data!.id } },
    body: { name: 'client.example', relayId: relay.data!.id },
  });
  expect(domain.data).toMatchObject({ name: 'client.example', tenantId: tenant.data!.id });
  const records = await client.GET('/v1/domains/{domainId}/dns-records', {
    params: { path: { domainId: domain.data!.id } },
  });
  expect(records.data?.records.map((record) => record.purpose)).toContain('ownership');
  const problem = await client.POST('/v1/tenants/{tenantId}/domains', {
    params: { path: { tenantId: tenant.data!.id } },
    body: { name: 'client.example', relayId: relay.data!.id },
  });
  expect(problem.response.status).toBe(409);
  expect(problem.error).toMatchObject({ status: 409, code: 'domain-taken' });
});

it('answers every call of a refused key with the 401 problem, never a throw', async () => {
  const refused = createRelayplaneClient({ baseUrl, apiKey: 'rpk_wrong' });
  const [list, create] = await Promise.all([
    refused.GET('/v1/tenants'),
    refused.POST('/v1/tenants', { body: { name: 'Nope', slug: 'nope' } }),
  ]);
  for (const answer of [list, create]) {
    expect(answer.data).toBeUndefined();
    expect(answer.response.status).toBe(401);
    expect(answer.error).toMatchObject({
      status: 401,
      code: 'unauthorized',
      type: 'urn:relayplane:problem:unauthorized',
    });
    expect(answer.error?.requestId).not.toBe('');
  }
  expect(await t.prisma.tenant.count({ where: { slug: 'nope' } })).toBe(0);
});

it('answers an unreachable server with a 503 unreachable problem, never a throw', async () => {
  const closed = createRelayplaneClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'rpk_wrong' });
  const answer = await closed.GET('/v1/tenants');
  expect(answer.error).toMatchObject({ status: 503, code: 'unreachable', requestId: '' });
  expect(answer.error?.detail).toMatch(/ECONNREFUSED|fetch failed/);
});

it("answers a response that is not the API's (a proxy page) with a problem of its status", async () => {
  const key = await t.app.services.apiKeys.create(null, { name: 'proxied', scopes: ['admin'] });
  const proxied = createRelayplaneClient({
    baseUrl,
    apiKey: key.key,
    fetch: async (request) =>
      new URL((request as Request).url).pathname === '/v1/tenants'
        ? new Response('<html>502 Bad Gateway</html>', { status: 502, headers: { 'content-type': 'text/html' } })
        : fetch(request),
  });
  const answer = await proxied.GET('/v1/tenants');
  expect(answer.error).toMatchObject({
    status: 502,
    code: 'unexpected-response',
    detail: '<html>502 Bad Gateway</html>',
  });
});
