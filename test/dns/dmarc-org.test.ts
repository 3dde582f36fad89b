/**
 * DMARC by the organisational domain (RFC 7489 §6.6.3) against a real DNS server (dnsmasq on
 * loopback): a subdomain without `_dmarc.<sub>` is covered by the organisational record, found with
 * the Public Suffix List; the advice never weakens a published policy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkDmarc,
  checkRecords,
  createDnsResolver,
  expectedRecords,
  organizationalDomain,
  type DnsResolver,
  type RelayDnsDeclaration,
} from '../../src/dns/index.js';
import { nextStatus } from '../../src/services/verification-rules.js';
import { startDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { toolGate } from '../lab/requirements.js';

const txt = (name: string, value: string): ZoneRecord => ({ type: 'TXT', name, value });
const dnsOk = toolGate('DMARC by the organisational domain against dnsmasq', ['dnsmasq']);

describe('organisational domain (Public Suffix List)', () => {
  it.each([
    ['a.b.example.co.uk', 'example.co.uk'],
    ['example.co.uk', 'example.co.uk'],
    ['mail.shop.test', 'shop.test'],
    ['x.y.shop.test', 'shop.test'],
    ['shop.test', 'shop.test'],
    ['News.Example.COM.', 'example.com'],
  ])('%s → %s', (name, org) => {
    expect(organizationalDomain(name)).toBe(org);
  });
});

describe.skipIf(!dnsOk)('DMARC by the organisational domain against a real DNS server', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;
  const check = async (zone: ZoneRecord[], domain: string, reportAddress: string | null = null) => {
    await dns.setRecords(zone);
    return checkDmarc(domain, resolver, { reportAddress });
  };

  beforeAll(async () => {
    dns = await startDnsServer({ records: [] });
    resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 150, tries: 1 });
  });
  afterAll(async () => dns?.stop());

  it('a subdomain without its own record is covered by p=reject at the organisational domain, and verifies', async () => {
    const relay: RelayDnsDeclaration = {
      spfInclude: '_spf.provider.test',
      dkim: [{ selector: 'pm1', type: 'CNAME', value: 'pm1.dkim.provider.test' }],
      returnPath: null,
    };
    const expected = expectedRecords({
      domain: 'mail.shop.test',
      verificationToken: 'tok',
      relay,
      fallbackRelay: null,
    });
    await dns.setRecords([
      txt('_relayplane.mail.shop.test', 'relayplane-verification=tok'),
      txt('mail.shop.test', 'v=spf1 include:_spf.provider.test -all'),
      txt('_spf.provider.test', 'v=spf1 ip4:192.0.2.0/24 -all'),
      { type: 'CNAME', name: 'pm1._domainkey.mail.shop.test', target: 'pm1.dkim.provider.test' },
      txt('_dmarc.shop.test', 'v=DMARC1; p=reject; rua=mailto:dmarc@shop.test'),
    ]);
    const checks = await checkRecords(expected, resolver);
    const dmarc = checks.find((c) => c.purpose === 'dmarc')!;
    expect(dmarc).toMatchObject({
      host: '_dmarc.mail.shop.test',
      valid: true,
      reason: null,
      observed: [],
      dmarcPolicy: { policy: 'reject', source: '_dmarc.shop.test', inherited: true },
      // Never p=none under a p=reject organisation: publishing it would weaken the subdomain.
      value: 'v=DMARC1; p=reject',
      declared: 'v=DMARC1; p=none',
    });
    expect(checks.every((c) => c.valid === true)).toBe(true);
    const at = new Date();
    expect(
      nextStatus(
        'pending',
        checks,
        { statusChangedAt: at, now: at },
        { pendingTimeoutSeconds: 60, degradedGraceSeconds: 60 },
      ),
    ).toBe('verified');
  });

  it('sp= of the organisational record applies to subdomains before p=', async () => {
    const r = await check(
      [txt('_dmarc.shop.test', 'v=DMARC1; p=reject; sp=quarantine')],
      'mail.shop.test',
      'reports@relayplane.test',
    );
    expect(r).toMatchObject({
      valid: true,
      effective: { policy: 'quarantine', source: '_dmarc.shop.test', inherited: true },
      advice: 'v=DMARC1; p=quarantine; rua=mailto:reports@relayplane.test',
    });
  });

  it('a.b.example.co.uk is covered by _dmarc.example.co.uk (not b.example.co.uk, not co.uk)', async () => {
    const zone = [
      txt('_dmarc.b.example.co.uk', 'v=DMARC1; p=none'),
      txt('_dmarc.co.uk', 'v=DMARC1; p=none'),
      txt('_dmarc.example.co.uk', 'v=DMARC1; p=reject'),
    ];
    expect(await check(zone, 'a.b.example.co.uk')).toMatchObject({
      valid: true,
      effective: { policy: 'reject', source: '_dmarc.example.co.uk', inherited: true },
    });
    // b.example.co.uk has its own record: that one applies.
    expect(await check(zone, 'b.example.co.uk')).toMatchObject({
      valid: true,
      effective: { policy: 'none', source: '_dmarc.b.example.co.uk', inherited: false },
    });
  });

  it("the domain's own record applies and is kept as advice, with rua added only where it has none", async () => {
    const zone = [
      txt('_dmarc.mail.shop.test', 'v=DMARC1; p=quarantine; adkim=s'),
      txt('_dmarc.shop.test', 'v=DMARC1; p=reject'),
    ];
    expect(await check(zone, 'mail.shop.test', 'reports@relayplane.test')).toMatchObject({
      valid: true,
      effective: { policy: 'quarantine', source: '_dmarc.mail.shop.test', inherited: false },
      advice: 'v=DMARC1; p=quarantine; adkim=s; rua=mailto:reports@relayplane.test',
    });
    const withRua = 'v=DMARC1; p=reject; rua=mailto:mine@shop.test';
    expect(await check([txt('_dmarc.shop.test', withRua)], 'shop.test', 'reports@relayplane.test')).toMatchObject({
      valid: true,
      advice: withRua,
    });
  });

  it('no record here nor at the organisational domain: invalid, naming both; the advice is p=none', async () => {
    expect(
      await check([txt('_dmarc.other.test', 'v=DMARC1; p=reject')], 'mail.shop.test', 'reports@relayplane.test'),
    ).toEqual({
      valid: false,
      reason: "no DMARC record at _dmarc.mail.shop.test, nor at the organisational domain's _dmarc.shop.test",
      observed: [],
      effective: null,
      advice: 'v=DMARC1; p=none; rua=mailto:reports@relayplane.test',
    });
  });

  it("a broken record of the subdomain's own stops discovery (§6.6.3) but the advice keeps the organisation's policy", async () => {
    const r = await check(
      [txt('_dmarc.mail.shop.test', 'v=DMARC1; p=maybe'), txt('_dmarc.shop.test', 'v=DMARC1; p=quarantine')],
      'mail.shop.test',
    );
    expect(r).toMatchObject({
      valid: false,
      reason: 'DMARC record at _dmarc.mail.shop.test is invalid: p=maybe is not none, quarantine or reject',
      effective: null,
      advice: 'v=DMARC1; p=quarantine',
    });
  });

  it('two records at the organisational domain cover nothing', async () => {
    const r = await check(
      [txt('_dmarc.shop.test', 'v=DMARC1; p=reject'), txt('_dmarc.shop.test', 'v=DMARC1; p=none')],
      'mail.shop.test',
    );
    expect(r).toMatchObject({
      valid: false,
      reason:
        "no DMARC record at _dmarc.mail.shop.test; 2 DMARC records at the organisational domain's _dmarc.shop.test (none applies)",
    });
  });

  it('a DNS failure at the organisational domain leaves the answer unknown', async () => {
    const r = await check([{ type: 'FAIL', name: '_dmarc.shop.test', failure: 'SERVFAIL' }], 'mail.shop.test');
    expect(r).toMatchObject({ valid: null, reason: 'DNS lookup of TXT _dmarc.shop.test failed: SERVFAIL' });
  });
});
