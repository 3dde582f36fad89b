import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRelayplaneClient } from '../../src/client/index.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

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
  const relay = await client.POST('/v1/relays', { body: { name: 'up', host: 'smtp.up.test', port: 587, tls: 'starttls' } });
  const domain = await client.POST('/v1/tenants/{tenantId}/domains', {
    params: { path: { tenantId: tenant.data!.id } },
    body: { name: 'client.example', relayId: relay.data!.id },
  });
  expect(domain.data).toMatchObject({ name: 'client.example', tenantId: tenant.data!.id });
  const problem = await client.POST('/v1/tenants/{tenantId}/domains', {
    params: { path: { tenantId: tenant.data!.id } },
    body: { name: 'client.example', relayId: relay.data!.id },
  });
  expect(problem.response.status).toBe(409);
  expect(problem.error).toMatchObject({ code: 'domain-taken' });

  const refused = createRelayplaneClient({ baseUrl, apiKey: 'rpk_wrong' });
  await expect(refused.GET('/v1/tenants')).rejects.toThrow('Relayplane refused the API key');
});
