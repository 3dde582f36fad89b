import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import {
  createDomain,
  createRelay,
  createTenant,
  type DomainBody,
  type RelayBody,
  type TenantBody,
} from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
let tenant: TenantBody;
let relay: RelayBody;
let domain: DomainBody;

beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
  tenant = await createTenant(t.app, admin.headers);
  relay = await createRelay(t.app, admin.headers);
  domain = await createDomain(t.app, admin.headers, tenant.id, { relayId: relay.id });
});
afterAll(async () => t?.close());

/** Row counts and version sums of what the API writes: a refused request must leave them as they were. */
async function stored() {
  const [tenants, relays, credentials, domains, policies, keys, audit, nodes] = await Promise.all([
    t.prisma.tenant.aggregate({ _count: true, _sum: { version: true } }),
    t.prisma.relay.aggregate({ _count: true, _sum: { version: true } }),
    t.prisma.relayCredential.count(),
    t.prisma.domain.aggregate({ _count: true, _sum: { version: true } }),
    t.prisma.destinationPolicy.count(),
    t.prisma.apiKey.count(),
    t.prisma.auditEvent.count(),
    t.prisma.node.count(),
  ]);
  return { tenants, relays, credentials, domains, policies, keys, audit, nodes };
}

function expectProblem(
  response: { statusCode: number; headers: Record<string, unknown>; json(): unknown; body: string },
  status: number,
  code: string,
) {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toContain('application/problem+json');
  expect(response.json()).toMatchObject({ type: `urn:relayplane:problem:${code}`, code, status });
}

/** Operations that take a body, with one the API would accept. */
function writes() {
  return [
    { method: 'POST', url: '/v1/tenants', body: { name: 'Strict', slug: 'strict-ok' } },
    {
      method: 'POST',
      url: '/v1/relays',
      body: { name: 'strict', host: 'smtp.strict.test', port: 587, tls: 'starttls' },
    },
    { method: 'POST', url: `/v1/tenants/${tenant.id}/domains`, body: { name: 'strict-ok.example', relayId: relay.id } },
    {
      method: 'POST',
      url: `/v1/relays/${relay.id}/credentials`,
      body: { username: 'strict', secret: 'strict-secret' },
    },
    { method: 'POST', url: '/v1/api-keys', body: { name: 'strict', scopes: ['admin'] } },
    { method: 'POST', url: '/v1/destination-policies', body: { pattern: 'strict-ok.example' } },
    { method: 'PATCH', url: `/v1/tenants/${tenant.id}`, body: { name: 'Strictly renamed' } },
    { method: 'PUT', url: `/v1/domains/${domain.id}/limits`, body: { concurrency: 3 } },
    { method: 'POST', url: '/v1/auth/token', body: { key: 'rpk_x_y' } },
  ] as const;
}

describe('request bodies are JSON only', () => {
  it.each([
    ['application/problem+json'],
    ['text/plain'],
    ['application/x-www-form-urlencoded'],
    ['multipart/form-data; boundary=strict'],
    ['application/jsonx'],
    [undefined],
  ])('refuses a body sent as %s with 415 on every operation, storing nothing', async (contentType) => {
    const before = await stored();
    for (const write of writes()) {
      const response = await t.app.inject({
        method: write.method,
        url: write.url,
        headers: { ...admin.headers, ...(contentType === undefined ? {} : { 'content-type': contentType }) },
        payload: JSON.stringify(write.body),
      });
      expectProblem(response, 415, 'unsupported-media-type');
      expect(response.json().detail).toContain('application/json');
    }
    expect(await stored()).toEqual(before);
  });

  it('takes application/json with a charset parameter', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: { ...admin.headers, 'content-type': 'application/json; charset=utf-8' },
      payload: JSON.stringify({ name: 'Charset', slug: 'charset' }),
    });
    expect(response.statusCode, response.body).toBe(201);
  });

  it('refuses malformed, empty and prototype-polluting JSON with 400 malformed-json', async () => {
    const before = await stored();
    for (const payload of ['{"name":', '', '{"name":"x","slug":"proto","__proto__":{"admin":true}}']) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/tenants',
        headers: { ...admin.headers, 'content-type': 'application/json' },
        payload,
      });
      expectProblem(response, 400, 'malformed-json');
    }
    expect(await stored()).toEqual(before);
  });

  it('refuses a body over 1 MiB with 413 payload-too-large', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: admin.headers,
      payload: { name: 'x'.repeat(1024 * 1024), slug: 'big' },
    });
    expectProblem(response, 413, 'payload-too-large');
  });
});

describe('JSON types are never coerced in bodies', () => {
  it.each([
    ['a boolean secret', `/v1/relays/{relay}/credentials`, { username: 'typed', secret: true }, 'body/secret'],
    ['a numeric secret', `/v1/relays/{relay}/credentials`, { username: 'typed', secret: 12345 }, 'body/secret'],
    [
      'a boolean port',
      '/v1/relays',
      { name: 'typed', host: 'smtp.typed.test', port: true, tls: 'starttls' },
      'body/port',
    ],
    [
      'a string port',
      '/v1/relays',
      { name: 'typed', host: 'smtp.typed.test', port: '587', tls: 'starttls' },
      'body/port',
    ],
    ['a numeric name', '/v1/tenants', { name: 42, slug: 'typed' }, 'body/name'],
    ['a string limit', '/v1/destination-policies', { pattern: 'typed.example', concurrency: '2' }, 'body/concurrency'],
    ['a scalar where an array belongs', '/v1/api-keys', { name: 'typed', scopes: 'admin' }, 'body/scopes'],
    ['a null where a string belongs', '/v1/tenants', { name: null, slug: 'typed' }, 'body/name'],
  ])('refuses %s with 400 naming the field', async (_label, url, payload, field) => {
    const before = await stored();
    const response = await t.app.inject({
      method: 'POST',
      url: url.replace('{relay}', relay.id),
      headers: admin.headers,
      payload,
    });
    expectProblem(response, 400, 'validation-failed');
    expect(response.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await stored()).toEqual(before);
  });

  it('still coerces query strings and path parameters, which are text', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/tenants?limit=1', headers: admin.headers });
    expect(response.statusCode).toBe(200);
    expect(response.json().items).toHaveLength(1);
  });
});

describe('no control characters in any value', () => {
  const hostile = [
    ['NUL', '\u0000'],
    ['CR', '\r'],
    ['LF', '\n'],
    ['TAB', '\t'],
    ['NEL', '\u0085'],
    ['U+2028', '\u2028'],
    ['U+2029', '\u2029'],
    ['a lone surrogate', '\ud800'],
  ] as const;

  /** One body per kind of string field: free text, identifiers, names, secrets, nested and array values. */
  function fields(x: string) {
    return [
      ['tenant name (free text)', 'POST', '/v1/tenants', { name: `a${x}b`, slug: 'ctl' }, 'body/name'],
      ['tenant slug', 'POST', '/v1/tenants', { name: 'ctl', slug: `a${x}b` }, 'body/slug'],
      [
        'tenant externalRef',
        'POST',
        '/v1/tenants',
        { name: 'ctl', slug: 'ctl', externalRef: `a${x}b` },
        'body/externalRef',
      ],
      [
        'relay notes',
        'POST',
        '/v1/relays',
        { name: 'ctl', host: 'smtp.ctl.test', port: 587, tls: 'starttls', notes: `line${x}line` },
        'body/notes',
      ],
      [
        'relay host',
        'POST',
        '/v1/relays',
        { name: 'ctl', host: `smtp${x}.ctl.test`, port: 587, tls: 'starttls' },
        'body/host',
      ],
      [
        'DKIM value (nested)',
        'POST',
        '/v1/relays',
        {
          name: 'ctl',
          host: 'smtp.ctl.test',
          port: 587,
          tls: 'starttls',
          dkim: [{ selector: 's1', type: 'TXT', value: `v=DKIM1; p=ab${x}cd` }],
        },
        'body/dkim/0/value',
      ],
      [
        'credential username',
        'POST',
        `/v1/relays/${relay.id}/credentials`,
        { username: `u${x}ser`, secret: 'secret' },
        'body/username',
      ],
      [
        'credential secret',
        'POST',
        `/v1/relays/${relay.id}/credentials`,
        { username: 'user', secret: `se${x}cret` },
        'body/secret',
      ],
      [
        'domain name',
        'POST',
        `/v1/tenants/${tenant.id}/domains`,
        { name: `ctl${x}.example`, relayId: relay.id },
        'body/name',
      ],
      ['policy pattern', 'POST', '/v1/destination-policies', { pattern: `ctl${x}.example` }, 'body/pattern'],
      ['API key name', 'POST', '/v1/api-keys', { name: `key${x}name`, scopes: ['admin'] }, 'body/name'],
      ['token key', 'POST', '/v1/auth/token', { key: `rpk_${x}` }, 'body/key'],
      ['a patched name', 'PATCH', `/v1/tenants/${tenant.id}`, { name: `re${x}named` }, 'body/name'],
      ['a property name', 'PATCH', `/v1/tenants/${tenant.id}`, { [`na${x}me`]: 'x' }, `body/na${x}me`],
    ] as const;
  }

  it.each(hostile)('refuses %s in every kind of body string with 400, storing nothing', async (_name, x) => {
    const before = await stored();
    for (const [label, method, url, payload, field] of fields(x)) {
      const response = await t.app.inject({ method, url, headers: admin.headers, payload });
      expectProblem(response, 400, 'validation-failed');
      expect(response.json().errors, label).toContainEqual(expect.objectContaining({ field }));
    }
    expect(await stored()).toEqual(before);
  });

  // A lone surrogate cannot be percent-encoded: it never reaches a query value.
  it.each(hostile.filter(([name]) => name !== 'a lone surrogate'))('refuses %s in query values', async (_name, x) => {
    for (const url of [
      `/v1/tenants?externalRef=${encodeURIComponent(`a${x}b`)}`,
      `/v1/routes/explain?sender=${encodeURIComponent(`a${x}@b.example`)}&recipient=c%40d.example`,
    ]) {
      const response = await t.app.inject({ method: 'GET', url, headers: admin.headers });
      expectProblem(response, 400, 'validation-failed');
      expect(response.json().errors[0].field).toMatch(/^querystring\//);
    }
  });

  it('refuses a control character in an Idempotency-Key', async () => {
    const before = await stored();
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: { ...admin.headers, 'idempotency-key': 'key\u0085x' },
      payload: { name: 'Idem', slug: 'idem-ctl' },
    });
    expectProblem(response, 400, 'validation-failed');
    expect(response.json().errors[0].field).toBe('headers/idempotency-key');
    expect(await stored()).toEqual(before);
  });

  it('keeps other Unicode, emoji included, exactly as sent', async () => {
    const name = 'Zoë 🚀 Ünïcödé ‮ رلاي';
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: admin.headers,
      payload: { name, slug: 'unicode-name' },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json().name).toBe(name);
  });
});

describe('wrong method and unknown path', () => {
  it.each([
    ['PUT', '/v1/tenants', 'GET, HEAD, POST'],
    ['DELETE', '/v1/auth/token', 'POST'],
    ['POST', '/v1/tenants/00000000-0000-4000-8000-000000000000', 'DELETE, GET, HEAD, PATCH'],
    ['PATCH', '/v1/domains/00000000-0000-4000-8000-000000000000/limits', 'DELETE, GET, HEAD, PUT'],
  ])('answers %s %s with 405 and Allow, before reading the body', async (method, url, allow) => {
    const response = await t.app.inject({
      method: method as 'PUT',
      url,
      headers: { ...admin.headers, 'content-type': 'text/plain' },
      payload: 'not json',
    });
    expectProblem(response, 405, 'method-not-allowed');
    expect(response.headers.allow).toBe(allow);
  });

  it('answers an unknown path with 404 route-not-found', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/nope',
      headers: { 'content-type': 'text/plain' },
      payload: 'x',
    });
    expectProblem(response, 404, 'route-not-found');
  });

  it('answers a malformed URL with 400 as problem+json, never a framework code', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/v1/tenants/%E0%A4%A', headers: admin.headers });
    expectProblem(response, 400, 'bad-request');
    expect(response.body).not.toMatch(/fst_err|FST_ERR/i);
  });
});

/** Writes raw bytes to the listening app and reads its answer up to the end of the headers (or the close). */
let listening: Promise<string> | undefined;
async function rawExchange(bytes: string): Promise<string> {
  listening ??= t.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = new URL(await listening);
  const socket = connect(Number(port), '127.0.0.1');
  return new Promise<string>((resolve, reject) => {
    let received = '';
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (/\r\n\r\n[\s\S]*\}$/.test(received)) {
        socket.destroy();
        resolve(received);
      }
    });
    socket.on('end', () => resolve(received));
    socket.on('error', reject);
    socket.write(bytes);
  });
}

describe('requests HTTP itself refuses', () => {
  it('answers an unparseable request with 400 problem+json', async () => {
    const answer = await rawExchange('GET /v1/tenants HTTP/1.1\r\nHost: localhost\r\nBad Header Name: x\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer.toLowerCase()).toContain('content-type: application/problem+json');
    expect(answer).toContain('"type":"urn:relayplane:problem:bad-request"');
  });
});

describe('authentication comes before the body', () => {
  it.each([
    ['a 2 MiB JSON body', 'application/json', JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) })],
    ['a 2 MiB text body', 'text/plain', 'x'.repeat(2 * 1024 * 1024)],
    ['malformed JSON', 'application/json', '{"name":'],
    ['an invalid body', 'application/json', JSON.stringify({ wrong: true })],
  ])('refuses %s without a token with 401, not 413, 415 or 400', async (_label, contentType, payload) => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: { 'content-type': contentType },
      payload,
    });
    expectProblem(response, 401, 'unauthorized');
  });

  it('answers 401 on a real socket before any of a declared 10 MB body is sent', async () => {
    // Headers only: the server must answer without waiting for the body it was promised.
    const head = await rawExchange(
      'POST /v1/tenants HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n',
    );
    expect(head).toMatch(/^HTTP\/1\.1 401 /);
    expect(head.toLowerCase()).toContain('content-type: application/problem+json');
  });
});
