import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSpec, specOperations } from '../../src/plugins/openapi.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
const registered: Array<{ method: string; url: string }> = [];

/** Reads Fastify's own route tree (printRoutes) back into `METHOD /full/path` pairs. */
function routesOf(tree: string) {
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^([│ ]*)[├└]── (\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (match === null) continue;
    const depth = match[1]!.length / 4;
    stack.length = depth;
    const prefix = stack.join('');
    const path = `${prefix}${prefix.endsWith('/') && match[2]!.startsWith('/') ? match[2]!.slice(1) : match[2]!}`;
    stack.push(path.slice(prefix.length));
    for (const method of match[3]?.split(', ') ?? []) {
      if (method !== 'HEAD') registered.push({ method, url: path });
    }
  }
}

beforeAll(async () => {
  t = await createTestApp();
  routesOf(t.app.printRoutes({ commonPrefix: false }));
});
afterAll(async () => t?.close());

/** Fastify path syntax (`:id`) to OpenAPI's (`{id}`). */
const toSpecPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

describe('openapi.yaml and the registered routes', () => {
  it('agree in both directions', () => {
    const { spec } = loadSpec();
    const operations = specOperations(spec);
    const inSpec = new Set(operations.map((operation) => `${operation.method} ${operation.path}`));
    const routes = new Set<string>();
    for (const operation of operations) {
      const found = t.app.hasRoute({
        method: operation.method as 'GET',
        url: operation.path.replace(/\{([^}]+)\}/g, ':$1'),
      });
      expect(found, `${operation.method} ${operation.path} (${operation.operationId}) has no route`).toBe(true);
    }
    // The other direction: every route the app serves is in the spec, except the docs UI's assets.
    for (const route of registered) routes.add(`${route.method} ${toSpecPath(route.url)}`);
    for (const route of routes) {
      if (route.includes(' /docs')) continue;
      expect(inSpec.has(route), `${route} is served but missing from openapi.yaml`).toBe(true);
    }
    expect(routes).toContain('POST /v1/credentials/{credentialId}/activate');
    expect(routes).toContain('GET /v1/tenants/{tenantId}/domains');
  });

  it('gives every operation an operationId and serves the spec and the docs', async () => {
    const { spec } = loadSpec();
    for (const operation of specOperations(spec)) expect(operation.operationId).toMatch(/^[a-z][A-Za-z]+$/);
    const yaml = await t.app.inject({ method: 'GET', url: '/openapi.yaml' });
    expect(yaml.statusCode).toBe(200);
    expect(yaml.body).toContain('openapi: 3.1.0');
    const docs = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(docs.statusCode).toBe(200);
    expect(docs.body).toContain('swagger');
  });
});
