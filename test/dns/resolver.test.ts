/**
 * The resolver against a real DNS server (dnsmasq on loopback): what exists, what definitively does
 * not (NXDOMAIN, NODATA), what failed (SERVFAIL, REFUSED, TIMEOUT, nothing listening); and the
 * forward-confirmed reverse DNS of a HELO name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkForwardConfirmedRdns, createDnsResolver, reverseName, type DnsResolver } from '../../src/dns/index.js';
import { startDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { toolGate } from '../lab/requirements.js';

it('reverse names of addresses', () => {
  expect(reverseName('192.0.2.7')).toBe('7.2.0.192.in-addr.arpa');
  expect(reverseName('2001:db8::1')).toBe('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
  expect(reverseName('::')).toBe(`${'0.'.repeat(32)}ip6.arpa`);
  expect(reverseName('::ffff:192.0.2.1')).toBe(`1.0.2.0.0.0.0.c.f.f.f.f.${'0.'.repeat(20)}ip6.arpa`);
  expect(reverseName('1:2:3:4:5:6:7:8')).toBe(
    '8.0.0.0.7.0.0.0.6.0.0.0.5.0.0.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.ip6.arpa',
  );
  expect(() => reverseName('shop.test')).toThrow('is not an IP address');
});

it('a resolver needs servers, well written', () => {
  expect(() => createDnsResolver({ servers: [] })).toThrow('no DNS servers');
  expect(() => createDnsResolver({ servers: ['not an address'] })).toThrow();
  expect(() => createDnsResolver({ servers: ['127.0.0.1:5353', '[::1]:53', '10.0.0.1', '::1'] })).not.toThrow();
});

const dnsOk = toolGate('resolver against dnsmasq', ['dnsmasq']);

describe.skipIf(!dnsOk)('resolver and FCrDNS against a real DNS server', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;
  const zone: ZoneRecord[] = [
    { type: 'TXT', name: 'txt.test', value: ['part one ', 'part two'] },
    { type: 'TXT', name: 'txt.test', value: 'v=spf1 -all' },
    { type: 'TXT', name: 'utf8.test', value: 'héllo wörld €' },
    { type: 'CNAME', name: 'alias.test', target: 'target.elsewhere.test' },
    { type: 'CNAME', name: 'www.relay.test', target: 'mx1.relay.test' },
    { type: 'A', name: 'mx1.relay.test', address: '192.0.2.10' },
    { type: 'AAAA', name: 'mx1.relay.test', address: '2001:db8::10' },
    { type: 'A', name: 'mx2.relay.test', address: '192.0.2.20' },
    { type: 'PTR', name: '192.0.2.20', target: 'generic-20.isp.test' },
    { type: 'A', name: 'mx3.relay.test', address: '192.0.2.30', ptr: false },
    { type: 'FAIL', name: '30.2.0.192.in-addr.arpa', failure: 'SERVFAIL' },
    { type: 'A', name: 'mx4.relay.test', address: '192.0.2.40', ptr: false },
    { type: 'FAIL', name: 'servfail.test', failure: 'SERVFAIL' },
    { type: 'FAIL', name: 'refused.test', failure: 'REFUSED' },
    { type: 'FAIL', name: 'slow.test', failure: 'TIMEOUT' },
  ];

  beforeAll(async () => {
    dns = await startDnsServer(zone);
    resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 100, tries: 1 });
  });
  afterAll(async () => dns?.stop());

  it('found: TXT records as their character-strings (UTF-8), CNAME targets, addresses, PTR names', async () => {
    const txt = await resolver.txt('txt.test');
    expect(txt.kind === 'found' && [...txt.values].sort()).toEqual([['part one ', 'part two'], ['v=spf1 -all']]);
    expect(await resolver.txt('UTF8.test.')).toEqual({ kind: 'found', values: [['héllo wörld €']] });
    expect(await resolver.cname('alias.test')).toEqual({ kind: 'found', values: ['target.elsewhere.test'] });
    expect(await resolver.addresses('mx1.relay.test')).toEqual({
      kind: 'found',
      values: ['192.0.2.10', '2001:db8::10'],
    });
    expect(await resolver.cname('www.relay.test')).toEqual({ kind: 'found', values: ['mx1.relay.test'] });
    expect(await resolver.addresses('www.relay.test')).toEqual({
      kind: 'found',
      values: ['192.0.2.10', '2001:db8::10'],
    });
    expect(await resolver.ptr('192.0.2.10')).toEqual({ kind: 'found', values: ['mx1.relay.test'] });
    expect(await resolver.ptr('2001:db8::10')).toEqual({ kind: 'found', values: ['mx1.relay.test'] });
  });

  it('absent: NXDOMAIN for an unknown name, NODATA for a known name without that type; both at once', async () => {
    const started = Date.now();
    expect(await resolver.txt('nothing.test')).toEqual({ kind: 'absent', reason: 'NXDOMAIN' });
    expect(await resolver.txt('example.com')).toEqual({ kind: 'absent', reason: 'NXDOMAIN' });
    expect(await resolver.txt('mx1.relay.test')).toEqual({ kind: 'absent', reason: 'NODATA' });
    expect(await resolver.cname('txt.test')).toEqual({ kind: 'absent', reason: 'NODATA' });
    expect(await resolver.addresses('txt.test')).toEqual({ kind: 'absent', reason: 'NODATA' });
    expect(await resolver.addresses('nothing.test')).toEqual({ kind: 'absent', reason: 'NXDOMAIN' });
    expect(await resolver.ptr('192.0.2.99')).toEqual({ kind: 'absent', reason: 'NXDOMAIN' });
    // Names outside the zone are answered, not forwarded: no timeout.
    expect(Date.now() - started).toBeLessThan(100);
  });

  it('error: SERVFAIL, REFUSED, TIMEOUT, nothing listening', async () => {
    expect(await resolver.txt('x.servfail.test')).toEqual({ kind: 'error', reason: 'SERVFAIL' });
    expect(await resolver.txt('refused.test')).toEqual({ kind: 'error', reason: 'REFUSED' });
    expect(await resolver.txt('slow.test')).toEqual({ kind: 'error', reason: 'TIMEOUT' });
    expect(await resolver.addresses('servfail.test')).toEqual({ kind: 'error', reason: 'SERVFAIL' });
    await expect(resolver.ptr('not-an-ip')).rejects.toThrow('not an IP address');
    await dns.suspend();
    try {
      expect(await resolver.txt('txt.test')).toEqual({ kind: 'error', reason: 'CONNREFUSED' });
    } finally {
      await dns.setRecords(zone);
    }
  });

  it('forward-confirmed reverse DNS of a HELO name', async () => {
    expect(await checkForwardConfirmedRdns('MX1.relay.test.', resolver)).toEqual({
      heloName: 'mx1.relay.test',
      addresses: ['192.0.2.10', '2001:db8::10'],
      ptr: { '192.0.2.10': ['mx1.relay.test'], '2001:db8::10': ['mx1.relay.test'] },
      ok: true,
      problems: [],
    });
    expect(await checkForwardConfirmedRdns('mx2.relay.test', resolver)).toEqual({
      heloName: 'mx2.relay.test',
      addresses: ['192.0.2.20'],
      ptr: { '192.0.2.20': ['generic-20.isp.test'] },
      ok: false,
      problems: ['the PTR of 192.0.2.20 is generic-20.isp.test, not mx2.relay.test'],
    });
    expect(await checkForwardConfirmedRdns('mx3.relay.test', resolver)).toMatchObject({
      ok: false,
      problems: ['DNS lookup of PTR 192.0.2.30 failed: SERVFAIL'],
    });
    expect(await checkForwardConfirmedRdns('mx4.relay.test', resolver)).toMatchObject({
      ok: false,
      problems: ['192.0.2.40 has no PTR record (NXDOMAIN)'],
    });
    expect(await checkForwardConfirmedRdns('nope.relay.test', resolver)).toMatchObject({
      ok: false,
      problems: ['the HELO name nope.relay.test has no address: no A/AAAA record (NXDOMAIN)'],
    });
    expect(await checkForwardConfirmedRdns('txt.test', resolver)).toMatchObject({
      ok: false,
      problems: ['the HELO name txt.test has no address: no A/AAAA record (NODATA)'],
    });
    expect(await checkForwardConfirmedRdns('slow.test', resolver)).toMatchObject({
      ok: false,
      problems: ['DNS lookup of A/AAAA slow.test failed: TIMEOUT'],
    });
    expect(await checkForwardConfirmedRdns('[192.0.2.10]', resolver)).toMatchObject({
      ok: false,
      problems: ['the HELO name [192.0.2.10] is an address, not a name'],
    });
  });
});
