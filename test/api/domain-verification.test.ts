/**
 * Domain onboarding through the API against a real DNS server (dnsmasq on loopback): the records
 * to publish, verification, a DNS outage, degradation with its grace period, the pending timeout,
 * and what the compiler does with each status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { createRelay, createTenant } from '../helpers/fixtures.js';
import { startDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { toolGate } from '../lab/requirements.js';

interface PublishedRecord {
  purpose: string;
  type: string;
  host: string;
  value: string;
  valid: boolean | null;
  reason: string | null;
}
interface DnsView {
  status: string;
  records: PublishedRecord[];
}

const dnsOk = toolGate('domain-verification against dnsmasq', ['dnsmasq']);

describe.skipIf(!dnsOk)('domain verification through the API', () => {
  let dns: DnsServer;
  let t: TestApp;
  let headers: Record<string, string>;
  let tenantId: string;
  let relayId: string;

  const zoneFor = (records: PublishedRecord[]): ZoneRecord[] => [
    ...records.map((r): ZoneRecord =>
      r.type === 'TXT'
        ? { type: 'TXT', name: r.host, value: r.value }
        : { type: 'CNAME', name: r.host, target: r.value },
    ),
    { type: 'TXT', name: '_spf.mailer.test', value: 'v=spf1 ip4:192.0.2.0/24 -all' },
  ];
  const verify = async (id: string, as = headers) => {
    const r = await t.app.inject({ method: 'POST', url: `/v1/domains/${id}/verify`, headers: as });
    expect(r.statusCode, r.body).toBe(200);
    return r.json<DnsView>();
  };
  const senderRelayMap = async () =>
    (await t.app.services.config.compileForDeploy()).bundle.files['sender_relay']?.content ?? '';
  /** Time passes: the status changed this many seconds ago. */
  const age = (id: string, seconds: number) =>
    t.prisma.$executeRawUnsafe(
      `UPDATE domains SET status_changed_at = now() - interval '${seconds} seconds' WHERE id = $1::uuid`,
      id,
    );
  const create = async (name: string) => {
    const r = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenantId}/domains`,
      headers,
      payload: { name, relayId },
    });
    expect(r.statusCode, r.body).toBe(201);
    return r.json<{ id: string; status: string; dnsRecords: PublishedRecord[] }>();
  };

  beforeAll(async () => {
    dns = await startDnsServer([]);
    t = await createTestApp({
      dnsServers: [dns.server],
      verification: { degradedGraceSeconds: 3600, pendingTimeoutSeconds: 7200, uncheckableLimitSeconds: 600 },
    });
    headers = (await tokenFor(t.app, ['admin'])).headers;
    tenantId = (await createTenant(t.app, headers)).id;
    relayId = (
      await createRelay(t.app, headers, {
        spfInclude: '_spf.mailer.test',
        dkim: [{ selector: 'mlr1', type: 'CNAME', value: 'mlr1.dkim.mailer.test' }],
        returnPath: { host: 'bounce', value: 'rp.mailer.test' },
      })
    ).id;
  });
  afterAll(async () => {
    await t?.close();
    await dns?.stop();
  });

  it('from pending to verified, through an outage, degraded, failed after the grace period, and back', async () => {
    const domain = await create('shop.test');
    expect(domain.status).toBe('pending');
    expect(domain.dnsRecords.map((r) => [r.purpose, r.type, r.host])).toEqual([
      ['ownership', 'TXT', '_relayplane.shop.test'],
      ['spf', 'TXT', 'shop.test'],
      ['dkim', 'CNAME', 'mlr1._domainkey.shop.test'],
      ['dmarc', 'TXT', '_dmarc.shop.test'],
      ['return_path', 'CNAME', 'bounce.shop.test'],
    ]);
    expect(domain.dnsRecords.find((r) => r.purpose === 'spf')?.value).toBe('v=spf1 include:_spf.mailer.test ~all');
    expect(domain.dnsRecords[0]?.value).toMatch(/^relayplane-verification=[0-9a-f]{32}$/);

    // Nothing published yet: each record says why; the domain is not compiled.
    const before = await verify(domain.id);
    expect(before.status).toBe('pending');
    expect(before.records.find((r) => r.purpose === 'dmarc')).toMatchObject({
      valid: false,
      reason: 'no DMARC record at _dmarc.shop.test',
    });
    expect(before.records.find((r) => r.purpose === 'ownership')).toMatchObject({
      valid: false,
      reason: 'no TXT record at _relayplane.shop.test',
    });
    expect(await senderRelayMap()).not.toContain('shop.test');

    // The customer publishes what it was told: verified, compiled.
    const zone = zoneFor(domain.dnsRecords);
    await dns.setRecords(zone);
    const verified = await verify(domain.id);
    expect(verified.status).toBe('verified');
    expect(verified.records.map((r) => r.valid)).toEqual([true, true, true, true, true]);
    expect(await senderRelayMap()).toContain('@shop.test');
    const stored = await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}/dns-records`, headers });
    expect(stored.json<DnsView>().records.every((r) => r.valid === true)).toBe(true);

    // A DNS outage changes nothing.
    await dns.suspend();
    const outage = await verify(domain.id);
    expect(outage.status).toBe('verified');
    expect(outage.records.every((r) => r.valid === null)).toBe(true);

    // DMARC disappears: degraded, still compiled during the grace period…
    await dns.setRecords(zone.filter((r) => r.name !== '_dmarc.shop.test'));
    expect((await verify(domain.id)).status).toBe('degraded');
    expect(await senderRelayMap()).toContain('@shop.test');
    await age(domain.id, 1800);
    expect((await verify(domain.id)).status).toBe('degraded');
    // …and failed, out of the config, once the grace period is over.
    await age(domain.id, 3601);
    expect((await verify(domain.id)).status).toBe('failed');
    expect(await senderRelayMap()).not.toContain('shop.test');

    // Fixed: verified again.
    await dns.setRecords(zone);
    expect((await verify(domain.id)).status).toBe('verified');
    expect((await t.app.inject({ method: 'GET', url: '/metrics' })).body).toMatch(
      /^relayplane_domain_checks_total\{status="degraded"\} 2$/m,
    );

    const audit = await t.app.inject({
      method: 'GET',
      url: `/v1/audit-events?resourceType=domain&resourceId=${domain.id}&limit=100`,
      headers,
    });
    const changes = audit
      .json<{ items: { action: string; changes: { status?: { from: string; to: string } } }[] }>()
      .items.filter((e) => e.action === 'domain.verification_changed')
      .map((e) => `${e.changes.status?.from}->${e.changes.status?.to}`);
    expect(changes.sort()).toEqual(
      ['degraded->failed', 'failed->verified', 'pending->verified', 'verified->degraded'].sort(),
    );
  });

  it('a zone answering only SERVFAIL degrades after the uncheckable limit, then fails after the grace period', async () => {
    const domain = await create('lame.test');
    const zone = zoneFor(domain.dnsRecords);
    await dns.setRecords(zone);
    expect((await verify(domain.id)).status).toBe('verified');
    /** Time passes: records have been uncheckable this many seconds. */
    const uncheckableFor = (seconds: number) =>
      t.prisma.$executeRawUnsafe(
        `UPDATE domain_dns_checks SET uncheckable_since = now() - interval '${seconds} seconds' WHERE domain_id = $1::uuid`,
        domain.id,
      );

    // Lame delegation: every name under lame.test answers SERVFAIL.
    await dns.setRecords([
      ...zone.filter((r) => !r.name.endsWith('lame.test')),
      { type: 'FAIL', name: 'lame.test', failure: 'SERVFAIL' },
    ]);
    const first = await verify(domain.id);
    expect(first.status).toBe('verified');
    expect(first.records.every((r) => r.valid === null)).toBe(true);
    await uncheckableFor(599);
    expect((await verify(domain.id)).status).toBe('verified');
    // One answer in between starts the count again.
    await dns.setRecords(zone);
    expect((await verify(domain.id)).status).toBe('verified');
    expect((await t.prisma.domainDnsCheck.findUnique({ where: { domainId: domain.id } }))?.uncheckableSince).toBeNull();

    await dns.setRecords([
      ...zone.filter((r) => !r.name.endsWith('lame.test')),
      { type: 'FAIL', name: 'lame.test', failure: 'SERVFAIL' },
    ]);
    expect((await verify(domain.id)).status).toBe('verified');
    await uncheckableFor(601);
    const degraded = await verify(domain.id);
    expect(degraded.status).toBe('degraded');
    expect(degraded.records.find((r) => r.purpose === 'dmarc')).toMatchObject({
      valid: false,
      reason: expect.stringMatching(
        /^could not be checked since .* \(over 600 s\): DNS lookup of TXT _dmarc\.lame\.test failed: .*SERVFAIL/,
      ),
    });
    expect(await senderRelayMap()).toContain('@lame.test');
    await age(domain.id, 3601);
    expect((await verify(domain.id)).status).toBe('failed');
    expect(await senderRelayMap()).not.toContain('lame.test');
  });

  it('checks on demand at most once per domain per cooldown: 429 with Retry-After, across API processes', async () => {
    const cooled = await createTestApp({ dnsServers: [dns.server], verification: { verifyCooldownSeconds: 30 } });
    const other = await createTestApp({
      dnsServers: [dns.server],
      verification: { verifyCooldownSeconds: 30 },
      shareWith: cooled,
    });
    try {
      const h = (await tokenFor(cooled.app, ['admin'])).headers;
      const tenant = (await createTenant(cooled.app, h)).id;
      const relay = (await createRelay(cooled.app, h)).id;
      const created = await cooled.app.inject({
        method: 'POST',
        url: `/v1/tenants/${tenant}/domains`,
        headers: h,
        payload: { name: 'poll.test', relayId: relay },
      });
      expect(created.statusCode, created.body).toBe(201);
      const domain = created.json<{ id: string }>();
      const h2 = (await tokenFor(other.app, ['admin'])).headers;
      const burst = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 === 0 ? cooled : other).app.inject({
            method: 'POST',
            url: `/v1/domains/${domain.id}/verify`,
            headers: i % 2 === 0 ? h : h2,
          }),
        ),
      );
      expect(burst.map((r) => r.statusCode).sort()).toEqual([200, 429, 429, 429, 429, 429, 429, 429, 429, 429]);
      const refused = burst.find((r) => r.statusCode === 429)!;
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.json()).toMatchObject({ code: 'rate-limited', status: 429 });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(30);
      // The cooldown over (time passes: the slot was taken 30 s ago), the next check runs.
      await cooled.prisma.$executeRawUnsafe(
        `UPDATE domain_verify_requests SET requested_at = now() - interval '30 seconds' WHERE domain_id = $1::uuid`,
        domain.id,
      );
      expect(
        (await other.app.inject({ method: 'POST', url: `/v1/domains/${domain.id}/verify`, headers: h2 })).statusCode,
      ).toBe(200);
      expect(
        (await cooled.app.inject({ method: 'POST', url: `/v1/domains/${domain.id}/verify`, headers: h })).statusCode,
      ).toBe(429);
    } finally {
      await other.close();
      await cooled.close();
    }
  });

  it('verifies through a relay with neither SPF include nor DKIM, warning that nothing makes DMARC pass', async () => {
    const bare = (await createRelay(t.app, headers, { name: 'bare relay', host: 'smtp.bare.test' })).id;
    const r = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenantId}/domains`,
      headers,
      payload: { name: 'bare.test', relayId: bare, fallbackRelayId: relayId },
    });
    expect(r.statusCode, r.body).toBe(201);
    const domain = r.json<{ id: string; dnsRecords: PublishedRecord[] }>();
    await dns.setRecords(zoneFor(domain.dnsRecords));
    const view = (await verify(domain.id)) as DnsView & { warnings: { code: string; message: string }[] };
    expect(view.status).toBe('verified');
    expect(view.warnings).toEqual([
      {
        code: 'no-dmarc-pass',
        message:
          'the relay of relayId (bare relay) declares neither an SPF include nor DKIM: mail from bare.test sent through it fails DMARC (refused where the policy is p=reject)',
      },
    ]);
    const stored = await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}/dns-records`, headers });
    expect(stored.json<{ warnings: unknown[] }>().warnings).toHaveLength(1);
    // The fallback relay (SPF include and DKIM declared) alone: nothing to warn about.
    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${domain.id}`,
      headers,
      payload: { relayId, fallbackRelayId: null },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(
      (await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}/dns-records`, headers })).json<{
        warnings: unknown[];
      }>().warnings,
    ).toEqual([]);
  });

  it('a domain still pending after the timeout fails; the periodic re-check finds it', async () => {
    const domain = await create('late.test');
    await age(domain.id, 7201);
    await t.app.services.domainVerification.checkDue();
    const view = await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}/dns-records`, headers });
    expect(view.json<DnsView>().status).toBe('failed');
  });

  it('a tenant verifies its own domain; another tenant gets 404', async () => {
    const domain = await create('own.test');
    const own = await tokenFor(t.app, ['tenant'], tenantId);
    expect((await verify(domain.id, own.headers)).status).toBe('pending');
    const other = await tokenFor(t.app, ['tenant'], (await createTenant(t.app, headers)).id);
    const r = await t.app.inject({ method: 'POST', url: `/v1/domains/${domain.id}/verify`, headers: other.headers });
    expect(r.statusCode).toBe(404);
  });

  it('refuses malformed DKIM and return-path declarations on relays', async () => {
    for (const payload of [
      { dkim: [{ selector: 'bad selector', type: 'CNAME', value: 'x.test' }] },
      { dkim: [{ selector: 's1', type: 'TXT', value: 'not a key' }] },
      { returnPath: { host: 'b', value: 'not a host!' } },
    ]) {
      const r = await t.app.inject({
        method: 'POST',
        url: '/v1/relays',
        headers,
        payload: { name: 'r', host: 'smtp.mailer.test', port: 587, tls: 'starttls', ...payload },
      });
      expect(r.statusCode, JSON.stringify(payload)).toBe(400);
    }
  });
});
