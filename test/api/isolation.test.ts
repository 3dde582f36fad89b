import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSpec, specOperations } from '../../src/plugins/openapi.js';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createCredential, createDomain, createRelay, createTenant } from '../helpers/fixtures.js';

let t: TestApp;
let tokenB: Awaited<ReturnType<typeof tokenFor>>;
let billing: Awaited<ReturnType<typeof tokenFor>>;
const idsOfA: Record<string, string> = {};

/** A valid body for every operation that takes one, so a refusal can only come from authorization. */
/** Required query parameters, so that a refusal is about the caller, not a missing parameter. */
const QUERIES: Record<string, string> = { getUsageSummary: '?month=2026-11' };

const BODIES: Record<string, unknown> = {
  createToken: { key: 'rpk_x' },
  createApiKey: { name: 'k', scopes: ['tenant'] },
  createTenant: { name: 'n', slug: 'iso-new' },
  updateTenant: { name: 'renamed' },
  createDomain: { name: 'iso-new.example', relayId: '00000000-0000-4000-8000-000000000000' },
  updateDomain: { route: 'relay' },
  transferDomain: { tenantId: '00000000-0000-4000-8000-000000000000' },
  putDomainLimits: { concurrency: 2 },
  putDomainAuthentication: { values: {} },
  createRelay: { name: 'r', host: 'smtp.iso.test', port: 587, tls: 'starttls' },
  updateRelay: { port: 2525 },
  putRelayLimits: { concurrency: 2 },
  createCredential: { username: 'u', secret: 's' },
  createDestinationPolicy: { pattern: 'iso.example' },
  createNode: { name: 'iso-node', sshHost: '127.0.0.1', hostKey: `SHA256:${'A'.repeat(43)}` },
  updateNode: { enabled: false },
  updateDestinationPolicy: { concurrency: 2 },
  putSettings: {
    defaultConcurrency: 10,
    defaultRateDelaySeconds: 0,
    inetProtocols: 'all',
    addressPreference: 'any',
    maximalQueueLifetimeSeconds: 3600,
    bounceQueueLifetimeSeconds: 3600,
    minimalBackoffSeconds: 60,
    maximalBackoffSeconds: 600,
  },
};

/** Everything the database holds, as one comparable string: "changes nothing" is checked against it. */
async function databaseState() {
  const tables = [
    'tenants',
    'domains',
    'relays',
    'relay_credentials',
    'api_keys',
    'destination_policies',
    'settings',
    'nodes',
    'deployments',
    'node_deployments',
  ];
  const parts: string[] = [];
  for (const table of tables) {
    const rows = await t.prisma.$queryRawUnsafe<unknown[]>(`SELECT * FROM ${table} ORDER BY 1`);
    parts.push(JSON.stringify(rows, (_key, value) => (typeof value === 'bigint' ? String(value) : value)));
  }
  return parts.join('\n');
}

function fill(path: string) {
  return path.replace(/\{([^}]+)\}/g, (_match, name: string) => idsOfA[name] ?? 'missing');
}

beforeAll(async () => {
  t = await createTestApp();
  const admin = await tokenFor(t.app, ['admin']);
  const a = await createTenant(t.app, admin.headers);
  const b = await createTenant(t.app, admin.headers);
  const relayA = await createRelay(t.app, admin.headers, { tenantId: a.id });
  const domainA = await createDomain(t.app, admin.headers, a.id, { relayId: relayA.id });
  const credentialA = await createCredential(t.app, admin.headers, relayA.id, { domainId: domainA.id });
  await createCredential(t.app, admin.headers, relayA.id, { domainId: domainA.id });
  const keyA = await tokenFor(t.app, ['tenant'], a.id);
  const policy = await t.app.inject({
    method: 'POST',
    url: '/v1/destination-policies',
    headers: admin.headers,
    payload: { pattern: '.gmail.test', concurrency: 2 },
  });
  const node = await t.app.inject({
    method: 'POST',
    url: '/v1/nodes',
    headers: admin.headers,
    payload: { name: 'iso-a', sshHost: '127.0.0.1', hostKey: `SHA256:${'B'.repeat(43)}` },
  });
  const deployment = await t.app.inject({ method: 'POST', url: '/v1/deployments', headers: admin.headers });
  Object.assign(idsOfA, {
    tenantId: a.id,
    relayId: relayA.id,
    domainId: domainA.id,
    credentialId: credentialA.id,
    keyId: keyA.key.id,
    policyId: policy.json().id,
    nodeId: node.json().id,
    deploymentId: deployment.json().id,
  });
  tokenB = await tokenFor(t.app, ['tenant'], b.id);
  billing = await tokenFor(t.app, ['usage:read']);
});
afterAll(async () => t?.close());

const operations = specOperations(loadSpec().spec).filter(
  (operation) => !operation.servedByPlugin && operation.scopes !== null,
);

describe('isolation matrix', () => {
  it.each(
    operations
      .filter((operation) => operation.path.includes('{'))
      .map((operation) => [operation.operationId, operation] as const),
  )("tenant B on tenant A's resource: %s answers 404 and changes nothing", async (_id, operation) => {
    const before = await databaseState();
    const response = await t.app.inject({
      method: operation.method as 'GET',
      url: fill(operation.path) + (QUERIES[operation.operationId] ?? ''),
      headers: tokenB.headers,
      ...(BODIES[operation.operationId] === undefined ? {} : { payload: BODIES[operation.operationId] as object }),
    });
    // Node-wide admin resources (policies, nodes, deployments) are not tenant A's, and admin-only
    // operations (a domain transfer) are refused by scope whatever the id: a tenant gets 403 there.
    const adminOnly =
      ['/v1/destination-policies', '/v1/nodes', '/v1/deployments'].some((prefix) =>
        operation.path.startsWith(prefix),
      ) || (operation.scopes ?? []).every((scope) => scope === 'admin');
    const expected = adminOnly ? 403 : 404;
    expect(response.statusCode, response.body).toBe(expected);
    expect(await databaseState()).toBe(before);
  });

  it("lists show tenant B nothing of tenant A's", async () => {
    for (const url of [
      '/v1/domains',
      '/v1/relays',
      '/v1/tenants',
      '/v1/api-keys',
      '/v1/audit-events',
      `/v1/domains?tenantId=${idsOfA.tenantId}`,
    ]) {
      const response = await t.app.inject({ method: 'GET', url, headers: tokenB.headers });
      expect(response.statusCode).toBe(200);
      expect(response.body, url).not.toContain(idsOfA.tenantId!);
      expect(response.body, url).not.toContain(idsOfA.relayId!);
    }
  });

  it.each(
    operations
      .filter((operation) => operation.method !== 'GET')
      .map((operation) => [operation.operationId, operation] as const),
  )('a usage:read token gets 403 on the write %s and changes nothing', async (_id, operation) => {
    const before = await databaseState();
    const response = await t.app.inject({
      method: operation.method as 'POST',
      url: fill(operation.path) + (QUERIES[operation.operationId] ?? ''),
      headers: billing.headers,
      ...(BODIES[operation.operationId] === undefined ? {} : { payload: BODIES[operation.operationId] as object }),
    });
    expect(response.statusCode, response.body).toBe(403);
    expect(await databaseState()).toBe(before);
  });
});
