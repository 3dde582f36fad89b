/**
 * Ownership decides who holds a domain name, against a real DNS server (dnsmasq on loopback):
 * competing claims, the winner, the losers' failure with reasons that name nobody, subdomains,
 * a parent covering its subdomains' ownership, and an administrator's transfer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { createRelay, createTenant, type TenantBody } from '../helpers/fixtures.js';
import { startDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { toolGate } from '../lab/requirements.js';

interface PublishedRecord {
  purpose: string;
  type: string;
  host: string;
  value: string;
  required: boolean;
  valid: boolean | null;
  reason: string | null;
}
interface DnsView {
  status: string;
  statusReason: string | null;
  ownershipCoveredBy: string | null;
  records: PublishedRecord[];
}
interface Created {
  id: string;
  status: string;
  dnsRecords: PublishedRecord[];
}
type Headers = Record<string, string>;

const dnsOk = toolGate('domain-claims against dnsmasq', ['dnsmasq']);

describe.skipIf(!dnsOk)('domain names are held by the claim whose ownership verifies first', () => {
  let dns: DnsServer;
  let t: TestApp;
  let admin: Headers;
  let relayId: string;
  let tenantA: TenantBody;
  let tenantB: TenantBody;
  let asA: Headers;
  let asB: Headers;
  let keyA: string;
  /** Every response tenant B received: none may name tenant A or A's resources. */
  const seenByB: string[] = [];

  const call = async (as: Headers, method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) => {
    const r = await t.app.inject({ method, url, headers: as, ...(payload === undefined ? {} : { payload }) });
    if (as === asB) seenByB.push(r.body);
    return r;
  };
  const claim = async (as: Headers, tenant: TenantBody, name: string) => {
    const r = await call(as, 'POST', `/v1/tenants/${tenant.id}/domains`, { name, relayId });
    expect(r.statusCode, r.body).toBe(201);
    return r.json<Created>();
  };
  const verify = async (as: Headers, id: string) => {
    const r = await call(as, 'POST', `/v1/domains/${id}/verify`);
    expect(r.statusCode, r.body).toBe(200);
    return r.json<DnsView>();
  };
  const zoneOf = (records: PublishedRecord[], except: string[] = []): ZoneRecord[] =>
    records
      .filter((r) => !except.includes(r.purpose))
      .map((r): ZoneRecord =>
        r.type === 'TXT'
          ? { type: 'TXT', name: r.host, value: r.value }
          : { type: 'CNAME', name: r.host, target: r.value },
      );
  const senderRelayMap = async () =>
    (await t.app.services.config.compileForDeploy()).bundle.files['sender_relay']?.content ?? '';
  const DKIM = { selector: 'k1', type: 'CNAME', value: 'k1.dkim.mailer.test' };

  beforeAll(async () => {
    dns = await startDnsServer([]);
    t = await createTestApp({ dnsServers: [dns.server] });
    admin = (await tokenFor(t.app, ['admin'])).headers;
    relayId = (await createRelay(t.app, admin, { spfInclude: '_spf.mailer.test', dkim: [DKIM] })).id;
    tenantA = await createTenant(t.app, admin, { name: 'Acme Owner Ltd', slug: 'acme-owner' });
    tenantB = await createTenant(t.app, admin, { name: 'Squatter Inc', slug: 'squatter' });
    const a = await tokenFor(t.app, ['tenant'], tenantA.id);
    asA = a.headers;
    keyA = a.key.id;
    asB = (await tokenFor(t.app, ['tenant'], tenantB.id)).headers;
  });
  afterAll(async () => {
    await t?.close();
    await dns?.stop();
  });

  it('B claims first and never verifies; A verifies and wins; B fails without learning who', async () => {
    const squat = await claim(asB, tenantB, 'acme.test');
    const squatSub = await claim(asB, tenantB, 'mail.acme.test');
    const owned = await claim(asA, tenantA, 'acme.test');
    const ownedToken = owned.dnsRecords.find((r) => r.purpose === 'ownership')!.value;
    expect(squat.dnsRecords.find((r) => r.purpose === 'ownership')!.value).not.toBe(ownedToken);

    // A publishes its records (its own token) and the relay's SPF.
    const zone = [
      ...zoneOf(owned.dnsRecords),
      { type: 'TXT', name: '_spf.mailer.test', value: 'v=spf1 ip4:192.0.2.0/24 -all' } as ZoneRecord,
    ];
    await dns.setRecords(zone);
    expect((await verify(asB, squat.id)).status).toBe('pending');
    const won = await verify(asA, owned.id);
    expect(won.status).toBe('verified');
    expect(won.statusReason).toBeNull();

    // B's claims on the name and on the name under it failed, each with a reason.
    const lost = await call(asB, 'GET', `/v1/domains/${squat.id}/dns-records`);
    expect(lost.json<DnsView>()).toMatchObject({
      status: 'failed',
      statusReason: expect.stringContaining('another claim on acme.test proved ownership first'),
    });
    const lostSub = await call(asB, 'GET', `/v1/domains/${squatSub.id}`);
    expect(lostSub.json()).toMatchObject({
      status: 'failed',
      statusReason: expect.stringContaining('acme.test is verified by another account'),
    });

    // Publishing B's token too changes nothing now: the name is held.
    await dns.setRecords([...zone, ...zoneOf(squat.dnsRecords, ['spf', 'dkim', 'dmarc'])]);
    const again = await verify(asB, squat.id);
    expect(again.records.find((r) => r.purpose === 'ownership')?.valid).toBe(true);
    expect(again.status).toBe('failed');

    // New claims by B on the name or under it: 409 without a holder.
    const sub = await call(asB, 'POST', `/v1/tenants/${tenantB.id}/domains`, { name: 'shop.acme.test', relayId });
    expect(sub.statusCode).toBe(409);
    expect(sub.json()).toMatchObject({
      code: 'domain-held',
      detail: 'acme.test, above shop.acme.test, is verified by another account: it cannot be claimed',
    });
    const other = await createTenant(t.app, admin);
    const same = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${other.id}/domains`,
      headers: admin,
      payload: { name: 'acme.test', relayId },
    });
    expect(same.statusCode).toBe(409);
    expect(same.json()).toMatchObject({
      code: 'domain-held',
      detail: 'the domain acme.test is verified by another account: it cannot be claimed',
    });
    const dup = await call(asB, 'POST', `/v1/tenants/${tenantB.id}/domains`, { name: 'acme.test', relayId });
    expect(dup.statusCode).toBe(409);
    expect(dup.json()).toMatchObject({ code: 'domain-held' });

    // An administrator cannot compile a losing claim in beside the holder either.
    const forced = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${squat.id}`,
      headers: admin,
      payload: { status: 'verified' },
    });
    expect(forced.statusCode, forced.body).toBe(409);
    expect(forced.json()).toMatchObject({ code: 'domain-held' });

    // Postfix routes the name once, for A; usage is attributed to A from its win on.
    expect((await senderRelayMap()).match(/^@acme\.test\s/gm)).toHaveLength(1);
    const owners = await t.prisma.$queryRaw<
      { tenant_id: string }[]
    >`SELECT tenant_id::text FROM domain_ownership WHERE domain = 'acme.test' ORDER BY id`;
    expect(owners.map((o) => o.tenant_id)).toEqual([tenantB.id, tenantA.id]);

    // B's audit log records the loss as the system's doing.
    const audit = await call(asB, 'GET', `/v1/audit-events?resourceType=domain&resourceId=${squat.id}&limit=100`);
    const lostEvent = audit
      .json<{ items: { action: string; actorKeyId: string | null }[] }>()
      .items.find((e) => e.action === 'domain.claim_lost');
    expect(lostEvent).toMatchObject({ actorKeyId: null });

    // (A's token is not among them: it is public in DNS, and B's own check shows what DNS answers.)
    for (const body of seenByB) {
      for (const secret of [tenantA.id, tenantA.slug, tenantA.name, owned.id, keyA]) {
        expect(body, body).not.toContain(secret);
      }
    }
  });

  it('two claims verifying at once: exactly one holds the name, the other fails', async () => {
    const a = await claim(asA, tenantA, 'race.test');
    const b = await claim(asB, tenantB, 'race.test');
    await dns.setRecords([
      ...zoneOf(a.dnsRecords),
      ...zoneOf(b.dnsRecords, ['spf', 'dkim', 'dmarc']),
      { type: 'TXT', name: '_spf.mailer.test', value: 'v=spf1 ip4:192.0.2.0/24 -all' },
    ]);
    for (let round = 0; round < 5; round += 1) {
      const views = await Promise.all([verify(asA, a.id), verify(asB, b.id)]);
      expect(views.map((v) => v.status).sort()).toEqual(['failed', 'verified']);
    }
    const held = await t.prisma.domain.findMany({ where: { name: 'race.test', status: 'verified' } });
    expect(held).toHaveLength(1);
  });

  it("a tenant's verified parent covers its subdomains' ownership (SES-style)", async () => {
    const parent = await claim(asA, tenantA, 'parent.test');
    const child = await claim(asA, tenantA, 'news.parent.test');
    expect(child.dnsRecords.find((r) => r.purpose === 'ownership')?.required).toBe(true);
    await dns.setRecords([
      ...zoneOf(parent.dnsRecords),
      ...zoneOf(child.dnsRecords, ['ownership']),
      { type: 'TXT', name: '_spf.mailer.test', value: 'v=spf1 ip4:192.0.2.0/24 -all' },
    ]);
    // Before the parent verifies, the child needs its own ownership record.
    expect((await verify(asA, child.id)).status).toBe('pending');
    expect((await verify(asA, parent.id)).status).toBe('verified');
    const covered = await verify(asA, child.id);
    expect(covered).toMatchObject({ status: 'verified', ownershipCoveredBy: 'parent.test' });
    expect(covered.records.find((r) => r.purpose === 'ownership')).toMatchObject({ required: false, valid: false });
    // Another tenant's verified parent covers nothing: B cannot even claim under it.
    const r = await call(asB, 'POST', `/v1/tenants/${tenantB.id}/domains`, { name: 'x.news.parent.test', relayId });
    expect(r.statusCode).toBe(409);
  });

  it('an administrator transfers a domain between tenants, audited in both logs', async () => {
    const domain = await claim(asA, tenantA, 'moving.test');
    const refused = await call(asB, 'POST', `/v1/domains/${domain.id}/transfer`, { tenantId: tenantB.id });
    expect(refused.statusCode).toBe(403);
    const byOwner = await t.app.inject({
      method: 'POST',
      url: `/v1/domains/${domain.id}/transfer`,
      headers: asA,
      payload: { tenantId: tenantB.id },
    });
    expect(byOwner.statusCode).toBe(403);
    const unknown = await t.app.inject({
      method: 'POST',
      url: `/v1/domains/${domain.id}/transfer`,
      headers: admin,
      payload: { tenantId: '00000000-0000-4000-8000-000000000000' },
    });
    expect(unknown.statusCode).toBe(422);

    const moved = await t.app.inject({
      method: 'POST',
      url: `/v1/domains/${domain.id}/transfer`,
      headers: admin,
      payload: { tenantId: tenantB.id },
    });
    expect(moved.statusCode, moved.body).toBe(200);
    expect(moved.json()).toMatchObject({ id: domain.id, tenantId: tenantB.id, name: 'moving.test' });
    expect((await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}`, headers: asA })).statusCode).toBe(404);
    expect((await call(asB, 'GET', `/v1/domains/${domain.id}`)).statusCode).toBe(200);

    const events = async (as: Headers) =>
      (
        await t.app.inject({
          method: 'GET',
          url: `/v1/audit-events?resourceType=domain&resourceId=${domain.id}&limit=100`,
          headers: as,
        })
      )
        .json<{ items: { action: string; tenantId: string; changes: object }[] }>()
        .items.filter((e) => e.action.startsWith('domain.transferred'));
    const seenByA = JSON.stringify(await events(asA));
    expect(seenByA).toContain('domain.transferred_out');
    expect(seenByA).not.toContain(tenantB.id);
    const seenByNewOwner = JSON.stringify(await events(asB));
    expect(seenByNewOwner).toContain('domain.transferred_in');
    expect(seenByNewOwner).not.toContain(tenantA.id);

    // Back to A would collide with nothing; a tenant already having the name answers 409.
    const again = await claim(asA, tenantA, 'moving.test');
    const clash = await t.app.inject({
      method: 'POST',
      url: `/v1/domains/${domain.id}/transfer`,
      headers: admin,
      payload: { tenantId: tenantA.id },
    });
    expect(clash.statusCode).toBe(409);
    expect(clash.json()).toMatchObject({ code: 'domain-taken' });
    expect(again.status).toBe('pending');
  });
});
