/**
 * Per-domain authentication records from provider templates, through the API against a real DNS
 * server (dnsmasq on loopback): SES-style three DKIM CNAMEs and a custom MAIL FROM (MX + SPF TXT),
 * SendGrid-style s1/s2 CNAMEs, Mailgun-style TXT key; the verifier checks exactly what the
 * template says, and a missing record leaves the domain pending with that record's reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { createRelay, createTenant } from '../helpers/fixtures.js';
import { startDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { toolGate } from '../lab/requirements.js';

interface ViewRecord {
  purpose: string;
  type: 'TXT' | 'CNAME' | 'MX';
  host: string;
  value: string;
  strings?: string[];
  priority?: number;
  required: boolean;
  valid: boolean | null;
  reason: string | null;
}
interface DnsView {
  status: string;
  records: ViewRecord[];
}

const SES = {
  variables: [
    { name: 'token1', kind: 'label', description: 'First DKIM token from SES' },
    { name: 'token2', kind: 'label' },
    { name: 'token3', kind: 'label' },
    { name: 'mailfrom', kind: 'label', description: 'Custom MAIL FROM subdomain label' },
  ],
  records: [
    {
      purpose: 'dkim',
      type: 'CNAME',
      name: '{token1}._domainkey',
      value: '{token1}.dkim.amazonses.com',
      required: true,
    },
    {
      purpose: 'dkim',
      type: 'CNAME',
      name: '{token2}._domainkey',
      value: '{token2}.dkim.amazonses.com',
      required: true,
    },
    {
      purpose: 'dkim',
      type: 'CNAME',
      name: '{token3}._domainkey',
      value: '{token3}.dkim.amazonses.com',
      required: true,
    },
    {
      purpose: 'return_path',
      type: 'MX',
      name: '{mailfrom}',
      value: 'feedback-smtp.eu-west-1.amazonses.com',
      priority: 10,
      required: true,
    },
    {
      purpose: 'return_path',
      type: 'TXT',
      name: '{mailfrom}',
      value: 'v=spf1 include:amazonses.com ~all',
      required: true,
    },
  ],
};
const SENDGRID = {
  variables: [
    { name: 's1_target', kind: 'hostname' },
    { name: 's2_target', kind: 'hostname' },
  ],
  records: [
    { purpose: 'dkim', type: 'CNAME', name: 's1._domainkey', value: '{s1_target}', required: true },
    { purpose: 'dkim', type: 'CNAME', name: 's2._domainkey', value: '{s2_target}', required: true },
  ],
};
const MAILGUN_KEY = `k=rsa; p=${'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'.repeat(8)}`;
const MAILGUN = {
  variables: [
    { name: 'selector', kind: 'label' },
    { name: 'key', kind: 'dkimKey' },
  ],
  records: [{ purpose: 'dkim', type: 'TXT', name: '{selector}._domainkey', value: '{key}', required: true }],
};

const providers: ZoneRecord[] = [
  { type: 'TXT', name: 'amazonses.com', value: 'v=spf1 ip4:199.255.192.0/22 -all' },
  { type: 'TXT', name: 'sendgrid.net', value: 'v=spf1 ip4:167.89.0.0/17 -all' },
  { type: 'TXT', name: 'mailgun.org', value: 'v=spf1 ip4:209.61.151.0/24 -all' },
];

/** What a customer publishes when it does what the records view says. */
const zoneOf = (records: ViewRecord[]): ZoneRecord[] =>
  records.map((r): ZoneRecord =>
    r.type === 'TXT'
      ? { type: 'TXT', name: r.host, value: r.strings ?? r.value }
      : r.type === 'MX'
        ? { type: 'MX', name: r.host, exchange: r.value, preference: r.priority! }
        : { type: 'CNAME', name: r.host, target: r.value },
  );

const dnsOk = toolGate('provider templates against dnsmasq', ['dnsmasq']);

describe.skipIf(!dnsOk)('provider authentication templates', () => {
  let dns: DnsServer;
  let t: TestApp;
  let admin: Record<string, string>;
  let tenantId: string;
  let tenant: Record<string, string>;

  beforeAll(async () => {
    dns = await startDnsServer([]);
    t = await createTestApp({ dnsServers: [dns.server], verification: { verifyCooldownSeconds: 0 } });
    admin = (await tokenFor(t.app, ['admin'])).headers;
    tenantId = (await createTenant(t.app, admin)).id;
    tenant = (await tokenFor(t.app, ['tenant'], tenantId)).headers;
  });
  afterAll(async () => {
    await t?.close();
    await dns?.stop();
  });

  const domainWith = async (name: string, relay: Record<string, unknown>) => {
    const relayId = (await createRelay(t.app, admin, relay)).id;
    const r = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenantId}/domains`,
      headers: admin,
      payload: { name, relayId },
    });
    expect(r.statusCode, r.body).toBe(201);
    return r.json<{ id: string }>().id;
  };
  const put = (id: string, values: Record<string, string>, headers = tenant) =>
    t.app.inject({ method: 'PUT', url: `/v1/domains/${id}/authentication`, headers, payload: { values } });
  const records = async (id: string) =>
    (await t.app.inject({ method: 'GET', url: `/v1/domains/${id}/dns-records`, headers: tenant })).json<DnsView>()
      .records;
  const verify = async (id: string) => {
    const r = await t.app.inject({ method: 'POST', url: `/v1/domains/${id}/verify`, headers: tenant });
    expect(r.statusCode, r.body).toBe(200);
    return r.json<DnsView>();
  };

  it('SES: three DKIM CNAMEs and MAIL FROM MX + TXT published → verified; one CNAME missing → pending, with its reason', async () => {
    const id = await domainWith('ses.test', { spfInclude: 'amazonses.com', authTemplate: SES });
    // Before the values: the records keep their placeholders and say what is missing.
    const before = (await records(id)).filter((r) => r.purpose === 'dkim');
    expect(before.map((r) => r.host)).toEqual([
      '{token1}._domainkey.ses.test',
      '{token2}._domainkey.ses.test',
      '{token3}._domainkey.ses.test',
    ]);
    expect((await verify(id)).records.find((r) => r.purpose === 'dkim')).toMatchObject({
      valid: false,
      reason: 'the domain has no value for {token1} yet (PUT /v1/domains/{domainId}/authentication)',
    });

    const set = await put(id, { token1: 'Abc123tok', token2: 'def456tok', token3: 'ghi789tok', mailfrom: 'mail' });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json()).toMatchObject({
      values: { token1: 'abc123tok', token2: 'def456tok', token3: 'ghi789tok', mailfrom: 'mail' },
    });
    const view = await records(id);
    expect(
      view.filter((r) => r.purpose === 'dkim' || r.purpose === 'return_path').map((r) => [r.type, r.host, r.value]),
    ).toEqual([
      ['CNAME', 'abc123tok._domainkey.ses.test', 'abc123tok.dkim.amazonses.com'],
      ['CNAME', 'def456tok._domainkey.ses.test', 'def456tok.dkim.amazonses.com'],
      ['CNAME', 'ghi789tok._domainkey.ses.test', 'ghi789tok.dkim.amazonses.com'],
      ['MX', 'mail.ses.test', 'feedback-smtp.eu-west-1.amazonses.com'],
      ['TXT', 'mail.ses.test', 'v=spf1 include:amazonses.com ~all'],
    ]);

    const missing = 'def456tok._domainkey.ses.test';
    await dns.setRecords([...providers, ...zoneOf(view).filter((r) => r.name !== missing)]);
    const pending = await verify(id);
    expect(pending.status).toBe('pending');
    expect(pending.records.filter((r) => r.valid !== true).map((r) => [r.host, r.reason])).toEqual([
      [missing, `no CNAME record at ${missing}`],
    ]);

    await dns.setRecords([...providers, ...zoneOf(view)]);
    const verified = await verify(id);
    expect(verified.records.filter((r) => r.valid !== true)).toEqual([]);
    expect(verified.status).toBe('verified');

    // The MX is checked as the template says: another exchange is wrong.
    await dns.setRecords([
      ...providers,
      ...zoneOf(view).filter((r) => r.type !== 'MX'),
      { type: 'MX', name: 'mail.ses.test', exchange: 'mx.elsewhere.test' },
    ]);
    expect((await verify(id)).records.find((r) => r.type === 'MX')).toMatchObject({
      valid: false,
      reason: 'the MX records at mail.ses.test are mx.elsewhere.test, not feedback-smtp.eu-west-1.amazonses.com',
    });
  });

  it('SendGrid: s1/s2 CNAMEs to account-specific targets → verified', async () => {
    const id = await domainWith('grid.test', { spfInclude: 'sendgrid.net', authTemplate: SENDGRID });
    expect(
      (
        await put(id, {
          s1_target: 's1.domainkey.u1234.wl.sendgrid.net.',
          s2_target: 's2.domainkey.u1234.wl.sendgrid.net',
        })
      ).statusCode,
    ).toBe(200);
    const view = await records(id);
    expect(view.filter((r) => r.purpose === 'dkim').map((r) => [r.host, r.value])).toEqual([
      ['s1._domainkey.grid.test', 's1.domainkey.u1234.wl.sendgrid.net'],
      ['s2._domainkey.grid.test', 's2.domainkey.u1234.wl.sendgrid.net'],
    ]);
    await dns.setRecords([...providers, ...zoneOf(view)]);
    expect(await verify(id)).toMatchObject({ status: 'verified' });
    // s2 pointing elsewhere: pending is over (verified → degraded), with the reason.
    await dns.setRecords([
      ...providers,
      ...zoneOf(view).filter((r) => r.name !== 's2._domainkey.grid.test'),
      { type: 'CNAME', name: 's2._domainkey.grid.test', target: 's2.domainkey.u9.wl.sendgrid.net' },
    ]);
    const degraded = await verify(id);
    expect(degraded.status).toBe('degraded');
    expect(degraded.records.find((r) => r.host === 's2._domainkey.grid.test')?.reason).toBe(
      'the CNAME at s2._domainkey.grid.test points to s2.domainkey.u9.wl.sendgrid.net, not s2.domainkey.u1234.wl.sendgrid.net',
    );
  });

  it('Mailgun: a per-domain TXT key without v=DKIM1 → verified', async () => {
    const id = await domainWith('gun.test', { spfInclude: 'mailgun.org', authTemplate: MAILGUN });
    expect((await put(id, { selector: 'mx', key: MAILGUN_KEY })).statusCode).toBe(200);
    const view = await records(id);
    expect(view.find((r) => r.purpose === 'dkim')).toMatchObject({
      type: 'TXT',
      host: 'mx._domainkey.gun.test',
      value: MAILGUN_KEY,
    });
    await dns.setRecords([...providers, ...zoneOf(view)]);
    expect(await verify(id)).toMatchObject({ status: 'verified' });
  });

  it('values are validated strictly; another tenant cannot set them', async () => {
    const id = await domainWith('strict.test', { spfInclude: 'amazonses.com', authTemplate: SES });
    for (const [values, field] of [
      [{ token1: 'two labels.x' }, 'body/values/token1'],
      [{ token1: 'a.b' }, 'body/values/token1'],
      [{ token1: 'nul\u0000' }, 'body/values/token1'],
      [{ token1: ' tok' }, 'body/values/token1'],
      [{ unknown: 'x' }, 'body/values/unknown'],
    ] as const) {
      const r = await put(id, values);
      expect(r.statusCode, `${JSON.stringify(values)}: ${r.body}`).toBe(400);
      expect(r.json().errors[0].field).toBe(field);
    }
    const other = (await tokenFor(t.app, ['tenant'], (await createTenant(t.app, admin)).id)).headers;
    expect((await put(id, { token1: 'tok' }, other)).statusCode).toBe(404);
    expect(
      (await t.app.inject({ method: 'GET', url: `/v1/domains/${id}/authentication`, headers: tenant })).json(),
    ).toMatchObject({ values: {}, variables: SES.variables });
  });

  it('a template is validated where the relay is written', async () => {
    const bad = {
      variables: [{ name: 'tok', kind: 'label' }],
      records: [
        { purpose: 'dkim', type: 'CNAME', name: '{token}._domainkey', value: '{tok}.dkim.example', required: true },
      ],
    };
    const r = await t.app.inject({
      method: 'POST',
      url: '/v1/relays',
      headers: admin,
      payload: { name: 'bad tpl', host: 'smtp.x.test', port: 587, tls: 'starttls', authTemplate: bad },
    });
    expect(r.statusCode, r.body).toBe(400);
    expect(r.json().errors[0]).toEqual({
      field: 'body/authTemplate/records/0/name',
      message: 'uses {token}, which is not a declared variable',
    });
  });
});
