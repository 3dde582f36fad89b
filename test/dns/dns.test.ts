/**
 * SPF and DMARC parsing, TXT splitting, and the record checks against a real DNS server (dnsmasq on
 * loopback with per-test zones).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkForwardConfirmedRdns,
  checkRecords,
  checkSpf,
  createDnsResolver,
  expectedRecords,
  parseDmarc,
  parseSpf,
  splitTxt,
  type DnsResolver,
} from '../../src/dns/index.js';
import { dnsmasqAvailable, startDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { labRequired } from '../lab/requirements.js';

describe('SPF syntax', () => {
  it.each([
    'v=spf1 -all',
    'v=spf1 include:_spf.provider.test ~all',
    'v=spf1 a mx/24 a:mail.example.test/28//64 ip4:192.0.2.0/24 ip6:2001:db8::/32 ?exists:%{i}.x.test ptr -all',
    'v=spf1 redirect=_spf.example.test',
    'V=SPF1 +INCLUDE:a.test exp=explain.a.test',
  ])('accepts %s', (record) => {
    expect(parseSpf(record)).toMatchObject({ ok: true });
  });

  it.each([
    ['v=spf2 -all', 'does not start with v=spf1'],
    ['v=spf1 inclde:a.test -all', 'unknown mechanism "inclde:a.test"'],
    ['v=spf1 ip4:1.2.3.4/33 -all', 'invalid ip4 network "1.2.3.4/33"'],
    ['v=spf1 ip6:2001:zz::/32', 'invalid ip6 network "2001:zz::/32"'],
    ['v=spf1 include: -all', 'include needs a domain: "include:"'],
    ['v=spf1 redirect=a.test redirect=b.test', 'more than one redirect modifier'],
    ['v=spf1 all:x', '"all" takes no argument: "all:x"'],
  ])('refuses %s: %s', (record, error) => {
    expect(parseSpf(record)).toEqual({ ok: false, error });
  });

  it('never throws, whatever the text', () => {
    fc.assert(fc.property(fc.string(), (s) => typeof parseSpf(`v=spf1 ${s}`).ok === 'boolean'));
  });
});

describe('DMARC syntax', () => {
  it('accepts valid records', () => {
    expect(parseDmarc('v=DMARC1; p=none')).toMatchObject({ ok: true });
    expect(parseDmarc('v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=r; rua=mailto:d@rua.test,mailto:e@x.test!10m; fo=1:d; ri=86400;')).toMatchObject({ ok: true });
  });
  it.each([
    ['p=none; v=DMARC1', 'does not start with v=DMARC1'],
    ['v=DMARC1; rua=mailto:x@y.test', 'has no p= policy (RFC 7489 §6.3: required)'],
    ['v=DMARC1; p=block', 'p=block is not none, quarantine or reject'],
    ['v=DMARC1; p=none; pct=150', 'pct=150 is not 0-100'],
    ['v=DMARC1; p=none; rua=https://x.test', 'rua has an invalid report address "https://x.test" (mailto:… expected)'],
  ])('refuses %s', (record, error) => {
    expect(parseDmarc(record)).toEqual({ ok: false, error });
  });
  it('never throws', () => {
    fc.assert(fc.property(fc.string(), (s) => typeof parseDmarc(s).ok === 'boolean'));
  });
});

describe('TXT values', () => {
  it('are cut into character-strings of at most 255 bytes, never inside a UTF-8 character', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 400 }), (value) => {
        const parts = splitTxt(value);
        expect(parts.join('')).toBe(value);
        for (const p of parts) expect(Buffer.byteLength(p, 'utf8')).toBeLessThanOrEqual(255);
      }),
    );
    const key = `v=DKIM1; k=rsa; p=${'A'.repeat(400)}`;
    const [record] = expectedRecords({ domain: 'a.test', verificationToken: 't', relay: { spfInclude: null, dkim: [{ selector: 's1', type: 'TXT', value: key }], returnPath: null }, fallbackRelay: null }).filter((r) => r.purpose === 'dkim');
    expect(record?.strings?.map((s) => s.length)).toEqual([255, key.length - 255]);
  });
});

const dnsOk = dnsmasqAvailable() || labRequired();

describe.skipIf(!dnsOk)('record checks against a real DNS server', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;
  const relay = { spfInclude: '_spf.provider.test', dkim: [{ selector: 'pm1', type: 'CNAME' as const, value: 'pm1.dkim.provider.test' }], returnPath: { host: 'bounces', value: 'rp.provider.test' } };
  const expected = expectedRecords({ domain: 'shop.test', verificationToken: 'tok123', relay, fallbackRelay: null });
  const good: ZoneRecord[] = [
    { type: 'TXT', name: '_relayplane.shop.test', value: 'relayplane-verification=tok123' },
    { type: 'TXT', name: 'shop.test', value: 'v=spf1 include:_spf.provider.test ~all' },
    { type: 'TXT', name: 'shop.test', value: 'google-site-verification=unrelated' },
    { type: 'TXT', name: '_spf.provider.test', value: 'v=spf1 ip4:192.0.2.0/24 -all' },
    { type: 'CNAME', name: 'pm1._domainkey.shop.test', target: 'pm1.dkim.provider.test' },
    { type: 'TXT', name: '_dmarc.shop.test', value: 'v=DMARC1; p=quarantine; rua=mailto:dmarc@shop.test' },
    { type: 'CNAME', name: 'bounces.shop.test', target: 'rp.provider.test' },
  ];
  const without = (name: string) => good.filter((r) => r.name !== name);
  const verdicts = async (zone: ZoneRecord[]) => {
    await dns.setRecords(zone);
    return Object.fromEntries((await checkRecords(expected, resolver)).map((c) => [c.purpose, { valid: c.valid, reason: c.reason }]));
  };

  beforeAll(async () => {
    dns = await startDnsServer(good);
    resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 500, tries: 1 });
  });
  afterAll(async () => dns?.stop());

  it('correct records verify', async () => {
    const checks = await checkRecords(expected, resolver);
    for (const c of checks) expect({ purpose: c.purpose, valid: c.valid, reason: c.reason }).toEqual({ purpose: c.purpose, valid: true, reason: null });
    expect(checks.find((c) => c.purpose === 'spf')?.observed).toEqual(['v=spf1 include:_spf.provider.test ~all']);
  });

  it('a missing include, a broken SPF, a wrong token, a missing DMARC, a wrong DKIM each give the precise reason', async () => {
    const spf = (value: string) => [...without('shop.test'), { type: 'TXT' as const, name: 'shop.test', value }];
    expect((await verdicts(spf('v=spf1 include:_spf.other.test ~all'))).spf).toEqual({
      valid: false,
      reason: '_spf.other.test, included by shop.test, has no SPF record (RFC 7208 permerror)',
    });
    expect((await verdicts(spf('v=spf1 ip4:192.0.2.1 ~all'))).spf).toEqual({ valid: false, reason: "does not include _spf.provider.test (the relay's SPF include)" });
    expect((await verdicts(spf('v=spf1 include:_spf.provider.test ip4:300.1.1.1 ~all'))).spf).toEqual({
      valid: false,
      reason: 'SPF record at shop.test is invalid: invalid ip4 network "300.1.1.1"',
    });
    expect((await verdicts([...good, { type: 'TXT', name: 'shop.test', value: 'v=spf1 -all' }])).spf).toEqual({
      valid: false,
      reason: '2 SPF records at shop.test (RFC 7208 §4.5: permerror)',
    });
    expect((await verdicts(without('shop.test'))).spf).toEqual({ valid: false, reason: 'no SPF record at shop.test' });
    expect((await verdicts([...without('_relayplane.shop.test'), { type: 'TXT', name: '_relayplane.shop.test', value: 'relayplane-verification=other' }])).ownership).toEqual({
      valid: false,
      reason: 'the TXT record at _relayplane.shop.test is not the verification token',
    });
    expect((await verdicts(without('_dmarc.shop.test'))).dmarc).toEqual({ valid: false, reason: 'no DMARC record at _dmarc.shop.test' });
    expect((await verdicts([...without('_dmarc.shop.test'), { type: 'TXT', name: '_dmarc.shop.test', value: 'v=DMARC1; p=maybe' }])).dmarc).toEqual({
      valid: false,
      reason: 'DMARC record at _dmarc.shop.test p=maybe is not none, quarantine or reject',
    });
    expect((await verdicts([...without('pm1._domainkey.shop.test'), { type: 'CNAME', name: 'pm1._domainkey.shop.test', target: 'pm2.dkim.provider.test' }])).dkim).toEqual({
      valid: false,
      reason: 'the CNAME at pm1._domainkey.shop.test points to pm2.dkim.provider.test, not pm1.dkim.provider.test',
    });
  });

  it('an SPF include chain of 12 lookups exceeds the limit of 10', async () => {
    // 2 includes and an a at the top, then 9 nested includes: 12 lookups.
    const chain: ZoneRecord[] = [{ type: 'TXT', name: 'deep.test', value: 'v=spf1 include:l1.deep.test include:_spf.provider.test a -all' }, { type: 'TXT', name: '_spf.provider.test', value: 'v=spf1 -all' }];
    for (let i = 1; i <= 10; i++) chain.push({ type: 'TXT', name: `l${i}.deep.test`, value: i < 10 ? `v=spf1 include:l${i + 1}.deep.test -all` : 'v=spf1 ip4:192.0.2.1 -all' });
    await dns.setRecords(chain);
    const r = await checkSpf('deep.test', ['_spf.provider.test'], resolver);
    expect(r).toMatchObject({ valid: false, reason: 'SPF needs 12 DNS lookups; RFC 7208 §4.6.4 allows 10' });
    chain[0] = { type: 'TXT', name: 'deep.test', value: 'v=spf1 include:l1.deep.test include:_spf.provider.test a mx -all' };
    await dns.setRecords(chain);
    expect((await checkSpf('deep.test', ['_spf.provider.test'], resolver)).reason).toBe('SPF needs 13 DNS lookups; RFC 7208 §4.6.4 allows 10');
    // Within the limit, a nested include counts too.
    await dns.setRecords([
      { type: 'TXT', name: 'nest.test', value: 'v=spf1 include:_spf.nest.test -all' },
      { type: 'TXT', name: '_spf.nest.test', value: 'v=spf1 include:_spf.provider.test -all' },
      { type: 'TXT', name: '_spf.provider.test', value: 'v=spf1 -all' },
    ]);
    expect(await checkSpf('nest.test', ['_spf.provider.test'], resolver)).toMatchObject({ valid: true, lookups: 2 });
  });

  it('a DNS server that does not answer gives unknown (null), never invalid', async () => {
    const dead = createDnsResolver({ servers: ['127.0.0.1:9'], timeoutMs: 200, tries: 1 });
    const checks = await checkRecords(expected, dead);
    for (const c of checks) {
      expect(c.valid).toBeNull();
      expect(c.reason).toMatch(/DNS lookup of (TXT|CNAME) .* failed: /);
    }
  });

  it('forward-confirmed reverse DNS of a HELO name', async () => {
    await dns.setRecords([{ type: 'A', name: 'mx1.relay.test', address: '127.0.0.77' }, { type: 'A', name: 'mx2.relay.test', address: '127.0.0.78' }, { type: 'A', name: 'other.relay.test', address: '127.0.0.78' }]);
    expect(await checkForwardConfirmedRdns('MX1.relay.test.', resolver)).toEqual({ heloName: 'mx1.relay.test', addresses: ['127.0.0.77'], ptr: { '127.0.0.77': ['mx1.relay.test'] }, ok: true, problems: [] });
    const none = await checkForwardConfirmedRdns('nope.relay.test', resolver);
    expect(none).toMatchObject({ ok: false, problems: ['the HELO name nope.relay.test has no address: no A/AAAA record (NXDOMAIN)'] });
  });
});
