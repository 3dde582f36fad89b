import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createTenant, type TenantBody } from '../helpers/fixtures.js';

// The small frictions a newcomer meets first (issue 25): each answer says what to do instead.
let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
let tenant: TenantBody;

beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
  tenant = await createTenant(t.app, admin.headers);
});
afterAll(async () => t?.close());

type Injected = Awaited<ReturnType<TestApp['app']['inject']>>;

function expectProblem(response: Injected, status: number, code: string) {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toContain('application/problem+json');
  expect(response.json()).toMatchObject({ code, status });
}

describe('a wrong method on a path with an empty parameter', () => {
  it.each([
    ['DELETE', '/v1/relays//credentials', 'GET, HEAD, POST'],
    ['PUT', '/v1/tenants//domains', 'GET, HEAD, POST'],
    ['POST', '/v1/domains//limits', 'DELETE, GET, HEAD, PUT'],
  ])('answers %s %s with 405 and the Allow the router really serves', async (method, url, allow) => {
    const response = await t.app.inject({ method: method as 'PUT', url, headers: admin.headers });
    expectProblem(response, 405, 'method-not-allowed');
    expect(response.headers.allow).toBe(allow);
    // Every method Allow names reaches a route there (its schema then refuses the empty id).
    for (const allowed of allow.split(', ')) {
      const routed = await t.app.inject({ method: allowed as 'GET', url, headers: admin.headers });
      expect([404, 405], `${allowed} ${url}: ${routed.body}`).not.toContain(routed.statusCode);
    }
  });
});

describe('a body in another media type', () => {
  it.each([
    ['POST', '/v1/tenants'],
    ['PATCH', '/v1/tenants/{tenantId}'],
  ])('%s %s answers 415 with Accept: application/json', async (method, path) => {
    const url = path.replace('{tenantId}', tenant.id);
    const response = await t.app.inject({
      method: method as 'POST',
      url,
      headers: { ...admin.headers, 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'name=x',
    });
    expectProblem(response, 415, 'unsupported-media-type');
    expect(response.headers.accept).toBe('application/json');
    expect(response.json<{ detail: string }>().detail).toContain('application/json');
  });
});

describe('an API key sent as the bearer token', () => {
  it('answers 401 saying to exchange it at POST /v1/auth/token', async () => {
    const response = await t.app.inject({
      method: 'GET',
      url: '/v1/tenants',
      headers: { authorization: `Bearer ${admin.key.key}` },
    });
    expectProblem(response, 401, 'unauthorized');
    const detail = response.json<{ detail: string }>().detail;
    expect(detail).toContain('API key');
    expect(detail).toContain('POST /v1/auth/token');
    expect(detail).not.toContain(admin.key.key);
    // Only a key gets the hint; any other bad token is just invalid.
    const other = await t.app.inject({
      method: 'GET',
      url: '/v1/tenants',
      headers: { authorization: 'Bearer not-a-token' },
    });
    expectProblem(other, 401, 'unauthorized');
    expect(other.json<{ detail: string }>().detail).not.toContain('API key');
  });
});

describe('a value outside an enum', () => {
  it('names the allowed values of a body field', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: admin.headers,
      payload: { name: 'enum', host: 'smtp.enum.test', port: 587, tls: 'sometimes' },
    });
    expectProblem(response, 400, 'validation-failed');
    const body = response.json<{ detail: string; errors: Array<{ field: string; message: string }> }>();
    const tls = body.errors.find((error) => error.field === 'body/tls');
    expect(tls?.message).toMatch(/^must be one of: /);
    expect(tls?.message).toContain('"starttls"');
    expect(body.detail).toContain('"starttls"');
  });

  it('names the allowed values of a query parameter', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/tenants?status=sleeping', headers: admin.headers });
    expectProblem(response, 400, 'validation-failed');
    const status = response
      .json<{ errors: Array<{ field: string; message: string }> }>()
      .errors.find((error) => error.field === 'querystring/status');
    expect(status?.message).toMatch(/^must be one of: .*"active"/);
  });
});
