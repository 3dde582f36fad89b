/**
 * A verified domain's mail moves to another relay only once that relay's records verify: the
 * switch is refused (422, with the missing records) and the current route stays compiled until
 * they are published; against a real DNS server (dnsmasq on loopback).
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
}

const dnsOk = toolGate('relay-switch against dnsmasq', ['dnsmasq']);

describe.skipIf(!dnsOk)('switching a verified domain to another relay', () => {
  let dns: DnsServer;
  let t: TestApp;
  let headers: Record<string, string>;
  let tenantId: string;
  let oldRelay: string;
  let newRelay: string;

  const zoneOf = (records: PublishedRecord[]): ZoneRecord[] =>
    records.map((r): ZoneRecord =>
      r.type === 'TXT'
        ? { type: 'TXT', name: r.host, value: r.value }
        : { type: 'CNAME', name: r.host, target: r.value },
    );
  const includes: ZoneRecord[] = [
    { type: 'TXT', name: '_spf.old.test', value: 'v=spf1 ip4:192.0.2.0/24 -all' },
    { type: 'TXT', name: '_spf.new.test', value: 'v=spf1 ip4:198.51.100.0/24 -all' },
  ];
  const senderRelayMap = async () =>
    (await t.app.services.config.compileForDeploy()).bundle.files['sender_relay']?.content ?? '';

  beforeAll(async () => {
    dns = await startDnsServer([]);
    t = await createTestApp({ dnsServers: [dns.server] });
    headers = (await tokenFor(t.app, ['admin'])).headers;
    tenantId = (await createTenant(t.app, headers)).id;
    oldRelay = (
      await createRelay(t.app, headers, {
        host: 'smtp.old.test',
        spfInclude: '_spf.old.test',
        dkim: [{ selector: 'o1', type: 'CNAME', value: 'o1.dkim.old.test' }],
      })
    ).id;
    newRelay = (
      await createRelay(t.app, headers, {
        host: 'smtp.new.test',
        spfInclude: '_spf.new.test',
        dkim: [{ selector: 'n1', type: 'CNAME', value: 'n1.dkim.new.test' }],
      })
    ).id;
  });
  afterAll(async () => {
    await t?.close();
    await dns?.stop();
  });

  it('is refused with the missing records, the old route staying, until they verify', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenantId}/domains`,
      headers,
      payload: { name: 'switch.test', relayId: oldRelay },
    });
    expect(created.statusCode, created.body).toBe(201);
    const domain = created.json<{ id: string; dnsRecords: PublishedRecord[] }>();
    await dns.setRecords([...zoneOf(domain.dnsRecords), ...includes]);
    const verified = await t.app.inject({ method: 'POST', url: `/v1/domains/${domain.id}/verify`, headers });
    expect(verified.json()).toMatchObject({ status: 'verified' });
    expect(await senderRelayMap()).toMatch(/^@switch\.test\s+\[smtp\.old\.test\]:587$/m);

    // The new relay's include and DKIM are not published: refused, nothing changed.
    const refused = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${domain.id}`,
      headers,
      payload: { relayId: newRelay },
    });
    expect(refused.statusCode, refused.body).toBe(422);
    const problem = refused.json<{
      code: string;
      missingRecords: { purpose: string; host: string; value: string; reason: string }[];
    }>();
    expect(problem.code).toBe('relay-records-missing');
    // The SPF value to publish is the published record with the new include merged in: both
    // relays pass during the move, and the domain keeps one SPF record.
    expect(problem.missingRecords.map((r) => [r.purpose, r.host, r.value])).toEqual([
      ['spf', 'switch.test', 'v=spf1 include:_spf.old.test include:_spf.new.test ~all'],
      ['dkim', 'n1._domainkey.switch.test', 'n1.dkim.new.test'],
    ]);
    expect(problem.missingRecords[1]?.reason).toBe('no CNAME record at n1._domainkey.switch.test');
    // As a fallback relay too: the fallback carries mail when the relay is down.
    const fallback = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${domain.id}`,
      headers,
      payload: { fallbackRelayId: newRelay },
    });
    expect(fallback.statusCode, fallback.body).toBe(422);
    expect((await t.app.inject({ method: 'GET', url: `/v1/domains/${domain.id}`, headers })).json()).toMatchObject({
      relayId: oldRelay,
      fallbackRelayId: null,
    });
    expect(await senderRelayMap()).toMatch(/^@switch\.test\s+\[smtp\.old\.test\]:587$/m);

    // The customer publishes the new relay's records (SPF now naming both includes): the switch goes through.
    await dns.setRecords([
      ...zoneOf(domain.dnsRecords.filter((r) => r.purpose !== 'spf')),
      { type: 'TXT', name: 'switch.test', value: 'v=spf1 include:_spf.old.test include:_spf.new.test ~all' },
      { type: 'CNAME', name: 'n1._domainkey.switch.test', target: 'n1.dkim.new.test' },
      ...includes,
    ]);
    const switched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${domain.id}`,
      headers,
      payload: { relayId: newRelay },
    });
    expect(switched.statusCode, switched.body).toBe(200);
    expect(await senderRelayMap()).toMatch(/^@switch\.test\s+\[smtp\.new\.test\]:587$/m);

    // A pending domain is not gated: nothing is routed for it yet.
    const pending = await t.app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenantId}/domains`,
      headers,
      payload: { name: 'later.test', relayId: oldRelay },
    });
    const moved = await t.app.inject({
      method: 'PATCH',
      url: `/v1/domains/${pending.json<{ id: string }>().id}`,
      headers,
      payload: { relayId: newRelay },
    });
    expect(moved.statusCode, moved.body).toBe(200);
  });
});
