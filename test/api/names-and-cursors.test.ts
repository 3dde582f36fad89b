import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSpec, specOperations } from '../../src/plugins/openapi.js';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createDomain, createRelay, createTenant, type RelayBody, type TenantBody } from '../helpers/fixtures.js';

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
let tenant: TenantBody;
let relay: RelayBody;

beforeAll(async () => {
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
  tenant = await createTenant(t.app, admin.headers);
  relay = await createRelay(t.app, admin.headers);
});
afterAll(async () => t?.close());

const CUTS = ['#x', '/x', '?x', '\\x', '@x'];

describe('a name is stored as given or refused, never cut', () => {
  const relayBody = (overrides: Record<string, unknown>) => ({
    name: 'cut',
    host: 'smtp.cut.test',
    port: 587,
    tls: 'starttls',
    ...overrides,
  });

  it.each(CUTS)('refuses a relay host, domain name, node host and destination pattern ending in %j', async (cut) => {
    const before = {
      relays: await t.prisma.relay.count(),
      domains: await t.prisma.domain.count(),
      policies: await t.prisma.destinationPolicy.count(),
    };
    const cases = [
      ['POST', '/v1/relays', relayBody({ host: `smtp.example.com${cut}` }), 'body/host'],
      ['POST', '/v1/relays', relayBody({ host: `${cut.slice(1)}${cut[0]}smtp.example.com` }), 'body/host'],
      ['PATCH', `/v1/relays/${relay.id}`, { host: `smtp.example.com${cut}` }, 'body/host'],
      ['POST', `/v1/tenants/${tenant.id}/domains`, { name: `shop.example${cut}`, relayId: relay.id }, 'body/name'],
      ['POST', '/v1/destination-policies', { pattern: `.example.com${cut}` }, 'body/pattern'],
      ['POST', '/v1/destination-policies', { pattern: `example.com${cut}` }, 'body/pattern'],
      ['POST', '/v1/nodes/scan-host-key', { sshHost: `node.example.com${cut}` }, 'body/sshHost'],
    ] as const;
    for (const [method, url, payload, field] of cases) {
      const response = await t.app.inject({ method, url, headers: admin.headers, payload });
      expect(response.statusCode, `${method} ${url} ${JSON.stringify(payload)}: ${response.body}`).toBe(400);
      expect(response.json().errors[0].field).toBe(field);
    }
    expect({
      relays: await t.prisma.relay.count(),
      domains: await t.prisma.domain.count(),
      policies: await t.prisma.destinationPolicy.count(),
    }).toEqual(before);
    expect((await t.prisma.relay.findUniqueOrThrow({ where: { id: relay.id } })).host).toBe('smtp.relay.test');
  });

  it.each(CUTS)('refuses an SPF include, DKIM CNAME value and return path ending in %j', async (cut) => {
    const before = await t.prisma.relay.count();
    const cases = [
      [{ spfInclude: `_spf.example.net${cut}` }, 'body/spfInclude'],
      [{ dkim: [{ selector: 's1', type: 'CNAME', value: `s1.dkim.example.net${cut}` }] }, 'body/dkim/0/value'],
      [{ dkim: [{ selector: `s1${cut}`, type: 'CNAME', value: 's1.dkim.example.net' }] }, 'body/dkim/0/selector'],
      [{ returnPath: { host: 'bounce', value: `bounces.example.net${cut}` } }, 'body/returnPath/value'],
      [{ returnPath: { host: `bounce${cut}`, value: 'bounces.example.net' } }, 'body/returnPath/host'],
    ] as const;
    for (const [overrides, field] of cases) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/relays',
        headers: admin.headers,
        payload: relayBody(overrides),
      });
      expect(response.statusCode, `${JSON.stringify(overrides)}: ${response.body}`).toBe(400);
      expect(response.json().errors[0].field).toBe(field);
    }
    expect(await t.prisma.relay.count()).toBe(before);
  });

  it('stores a DKIM TXT value, which may hold any printable ASCII, exactly as given', async () => {
    const value = 'v=DKIM1; k=rsa; p=MIGf#MA0/GCS?qGS\\Ib3@DQEB';
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: admin.headers,
      payload: relayBody({ dkim: [{ selector: 's1', type: 'TXT', value }] }),
    });
    expect(created.statusCode, created.body).toBe(201);
    const read = await t.app.inject({ method: 'GET', url: `/v1/relays/${created.json().id}`, headers: admin.headers });
    expect(read.json().dkim).toEqual([{ selector: 's1', type: 'TXT', value }]);
  });

  it('accepts a DKIM TXT key without v=DKIM1 (optional, RFC 6376 §3.6.1), refuses one without p=', async () => {
    const value = 'k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQ';
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: admin.headers,
      payload: relayBody({ dkim: [{ selector: 'mx', type: 'TXT', value }] }),
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json().dkim).toEqual([{ selector: 'mx', type: 'TXT', value }]);
    const refused = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: admin.headers,
      payload: relayBody({ dkim: [{ selector: 'mx', type: 'TXT', value: 'k=rsa; t=s' }] }),
    });
    expect(refused.statusCode, refused.body).toBe(400);
    expect(refused.json().errors[0]).toMatchObject({
      field: 'body/dkim/0/value',
      message: 'must be a DKIM key record: has no p= key (RFC 6376 §3.6.1: required)',
    });
  });

  it('refuses names the IDNA mapping would change, naming the canonical form; stores the rest as sent', async () => {
    for (const name of ['exa\u00admple-soft.example', 'ｆｕｌｌ.example', 'dot\u3002example']) {
      const response = await t.app.inject({
        method: 'POST',
        url: `/v1/tenants/${tenant.id}/domains`,
        headers: admin.headers,
        payload: { name, relayId: relay.id },
      });
      expect(response.statusCode, name).toBe(400);
      expect(response.json().detail).toContain('changes under IDNA mapping');
    }
    const idn = await createDomain(t.app, admin.headers, tenant.id, { name: 'Grüße.Example', relayId: relay.id });
    expect(idn.name).toBe('xn--gre-6ka8l.example');
    const host = await createRelay(t.app, admin.headers, { host: 'SMTP.Relay-Host.Example' });
    expect(host.host).toBe('smtp.relay-host.example');
  });
});

describe('cursors', () => {
  const encode = (value: unknown) =>
    Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8').toString('base64url');
  const uuid = '5f0c7a5e-1c1b-4f6e-9a43-2b8f0c6d7e11';

  /** Every list operation in the spec (it takes a cursor), with its path parameters filled in. */
  function lists() {
    const ids: Record<string, string> = { tenantId: tenant.id, relayId: relay.id };
    const { spec } = loadSpec();
    return specOperations(spec)
      .filter((operation) => operation.method === 'GET')
      .filter((operation) =>
        JSON.stringify(spec.paths[operation.path]?.get ?? {}).includes('#/components/parameters/Cursor'),
      )
      .map((operation) => operation.path.replace(/\{(\w+)\}/g, (_, name: string) => ids[name] ?? name));
  }

  it('covers every list in the spec', () => {
    expect(lists()).toHaveLength(12);
  });

  it('refuses forged, foreign and undecodable cursors on every list with 400, never 500', async () => {
    await createTenant(t.app, admin.headers);
    const first = await t.app.inject({ method: 'GET', url: '/v1/tenants?limit=1', headers: admin.headers });
    const tenantsCursor: string = first.json().next_cursor;
    expect(tenantsCursor).toEqual(expect.any(String));
    const forged = [
      'zzz',
      encode('zzz'),
      encode(uuid),
      encode(`2026-01-01T00:00:00.000Z|${uuid}`),
      encode(['tenants', 'not-a-uuid']),
      encode(['tenants', uuid, 'extra']),
      encode(['no-such-list', uuid]),
      encode(['audit-events', '99999999999999999999']),
      encode(['deployments', 'not a date', uuid]),
      encode(['usage', '2026-01-01T00:00:00Z', uuid, 'x']),
      encode(['usage', '2026-01-01T00:00:00.000Z', uuid, 'a\u0000b']),
      encode(['usage-messages', '2026-02-30T00:00:00.000Z', '1']),
      encode('["tenants"'),
      encode('a\u0000b'),
      '%%%',
      '====',
    ];
    for (const url of lists()) {
      const foreign =
        url.startsWith('/v1/tenants?') || url === '/v1/tenants' ? encode(['relays', uuid]) : tenantsCursor;
      for (const cursor of [...forged, foreign]) {
        const response = await t.app.inject({
          method: 'GET',
          url: `${url}?cursor=${encodeURIComponent(cursor)}`,
          headers: admin.headers,
        });
        expect(response.statusCode, `${url} cursor=${cursor}: ${response.body}`).toBe(400);
        expect(response.json()).toMatchObject({
          type: 'urn:relayplane:problem:validation-failed',
          code: 'validation-failed',
        });
      }
    }
  });

  it('still pages through a list with the cursors it returns', async () => {
    await createTenant(t.app, admin.headers);
    await createTenant(t.app, admin.headers);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { items: Array<{ id: string }>; next_cursor: string | null } = (
        await t.app.inject({
          method: 'GET',
          url: `/v1/tenants?limit=1${cursor === null ? '' : `&cursor=${cursor}`}`,
          headers: admin.headers,
        })
      ).json();
      seen.push(...page.items.map((item) => item.id));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBe(await t.prisma.tenant.count());
  });
});
