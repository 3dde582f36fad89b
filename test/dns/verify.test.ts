/**
 * Record checks against a real DNS server (dnsmasq on loopback, a zone per case): correct records
 * verify, each kind of mistake gives its precise reason, and a DNS failure leaves a record unknown
 * (valid: null), never invalid.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkRecords,
  checkSpf,
  createDnsResolver,
  expectedRecords,
  type DnsResolver,
  type ExpectedRecord,
  type RelayDnsDeclaration,
} from '../../src/dns/index.js';
import { startDnsServer, startUnresponsiveDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { toolGate } from '../lab/requirements.js';

const KEY = `v=DKIM1; k=rsa; p=${'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'.repeat(8)}`;
const relay: RelayDnsDeclaration = {
  spfInclude: '_spf.provider.test',
  dkim: [
    { selector: 'pm1', type: 'CNAME', value: 'pm1.dkim.provider.test' },
    { selector: 'k1', type: 'TXT', value: KEY },
  ],
  returnPath: { host: 'bounces', value: 'rp.provider.test' },
};
const fallbackRelay: RelayDnsDeclaration = { spfInclude: '_spf.backup.test', dkim: [], returnPath: null };
const expected = expectedRecords({ domain: 'shop.test', verificationToken: 'tok123', relay, fallbackRelay });

/** What a customer publishes when it does what it was told (TXT values as their character-strings). */
const published = (records: ExpectedRecord[]): ZoneRecord[] =>
  records.map((r) =>
    r.type === 'TXT'
      ? { type: 'TXT', name: r.host, value: r.strings ?? r.value }
      : { type: 'CNAME', name: r.host, target: r.value },
  );
const providers: ZoneRecord[] = [
  { type: 'TXT', name: '_spf.provider.test', value: 'v=spf1 ip4:192.0.2.0/24 -all' },
  { type: 'TXT', name: '_spf.backup.test', value: 'v=spf1 ip6:2001:db8::/32 -all' },
];
const good: ZoneRecord[] = [
  ...published(expected),
  ...providers,
  { type: 'TXT', name: 'shop.test', value: 'google-site-verification=unrelated' },
];

/** The good zone with the records at `name` replaced. */
const replacing = (name: string, ...records: ZoneRecord[]): ZoneRecord[] => [
  ...good.filter((r) => r.name !== name),
  ...records,
];
const txt = (name: string, value: string | string[]): ZoneRecord => ({ type: 'TXT', name, value });
const spf = (value: string, ...more: ZoneRecord[]) => replacing('shop.test', txt('shop.test', value), ...more);
const BOTH = 'include:_spf.provider.test include:_spf.backup.test';

const dnsOk = toolGate('verify against dnsmasq', ['dnsmasq']);

describe.skipIf(!dnsOk)('record checks against a real DNS server', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;

  /** Publishes `zone` and checks the domain: the verdict of the record at `host` (default: the purpose's only one). */
  const verdict = async (zone: ZoneRecord[], purpose: ExpectedRecord['purpose'], host?: string) => {
    await dns.setRecords(zone);
    const checks = await checkRecords(expected, resolver);
    const found = checks.filter((c) => c.purpose === purpose && (host === undefined || c.host === host));
    expect(found).toHaveLength(1);
    return { valid: found[0]!.valid, reason: found[0]!.reason };
  };

  beforeAll(async () => {
    dns = await startDnsServer({ records: good });
    resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 150, tries: 1 });
  });
  afterAll(async () => dns?.stop());

  it('correct records verify', async () => {
    await dns.setRecords(good);
    const at = new Date('2026-01-02T03:04:05.000Z');
    const checks = await checkRecords(expected, resolver, { now: () => at });
    expect(checks.map((c) => [c.purpose, c.host, c.valid, c.reason])).toEqual([
      ['ownership', '_relayplane.shop.test', true, null],
      ['spf', 'shop.test', true, null],
      ['dkim', 'pm1._domainkey.shop.test', true, null],
      ['dkim', 'k1._domainkey.shop.test', true, null],
      ['dmarc', '_dmarc.shop.test', true, null],
      ['return_path', 'bounces.shop.test', true, null],
    ]);
    expect(checks.every((c) => c.checkedAt === '2026-01-02T03:04:05.000Z')).toBe(true);
    expect(checks.find((c) => c.purpose === 'spf')?.observed).toEqual([`v=spf1 ${BOTH} ~all`]);
    // The long DKIM key went out as two character-strings and is compared joined.
    expect(expected.find((r) => r.host === 'k1._domainkey.shop.test')?.strings).toHaveLength(2);
    expect(checks.find((c) => c.host === 'k1._domainkey.shop.test')?.observed).toEqual([KEY]);
  });

  it.each<[string, ZoneRecord[], ExpectedRecord['purpose'], string]>([
    [
      'a missing include',
      spf('v=spf1 include:_spf.provider.test ~all'),
      'spf',
      "does not include _spf.backup.test (the relay's SPF include)",
    ],
    [
      'no include at all',
      spf('v=spf1 ip4:192.0.2.1 ~all'),
      'spf',
      "does not include _spf.provider.test, _spf.backup.test (the relays' SPF includes)",
    ],
    [
      'an include after "all" (never evaluated)',
      spf(`v=spf1 include:_spf.backup.test ~all include:_spf.provider.test`),
      'spf',
      "does not include _spf.provider.test (the relay's SPF include)",
    ],
    [
      'an include that fails',
      spf(`v=spf1 -include:_spf.provider.test include:_spf.backup.test ~all`),
      'spf',
      `includes _spf.provider.test only with qualifier "-" (fail): the relay's mail would not pass SPF`,
    ],
    [
      'broken SPF syntax',
      spf(`v=spf1 ${BOTH} ip4:1.2.3.4/33 ~all`),
      'spf',
      'SPF record at shop.test is invalid: invalid ip4 network "1.2.3.4/33"',
    ],
    [
      'a misspelt mechanism',
      spf(`v=spf1 ${BOTH} inclde:x.test ~all`),
      'spf',
      'SPF record at shop.test is invalid: unknown mechanism "inclde:x.test"',
    ],
    ['no SPF record', replacing('shop.test'), 'spf', 'no SPF record at shop.test'],
    [
      'two SPF records',
      [...good, txt('shop.test', 'v=spf1 -all')],
      'spf',
      '2 SPF records at shop.test (RFC 7208 §4.5: permerror)',
    ],
    [
      'an include that does not resolve',
      spf(`v=spf1 ${BOTH} include:_spf.gone.test ~all`),
      'spf',
      '_spf.gone.test (included by shop.test) does not exist (NXDOMAIN; RFC 7208 §5.2: permerror)',
    ],
    [
      'an include without SPF',
      spf(`v=spf1 ${BOTH} include:_spf.nospf.test ~all`, txt('_spf.nospf.test', 'hello')),
      'spf',
      '_spf.nospf.test (included by shop.test) has no SPF record (RFC 7208 §5.2: permerror)',
    ],
    [
      'broken SPF in an include',
      spf(`v=spf1 ${BOTH} include:_spf.broken.test ~all`, txt('_spf.broken.test', 'v=spf1 ip5:192.0.2.1 -all')),
      'spf',
      'SPF record at _spf.broken.test (included by shop.test) is invalid: unknown mechanism "ip5:192.0.2.1"',
    ],
    [
      'an include loop',
      spf(`v=spf1 ${BOTH} include:_spf.loop.test ~all`, txt('_spf.loop.test', 'v=spf1 include:shop.test -all')),
      'spf',
      'SPF include loop: shop.test → _spf.loop.test → shop.test',
    ],
    [
      'a wrong ownership token',
      replacing('_relayplane.shop.test', txt('_relayplane.shop.test', 'relayplane-verification=other')),
      'ownership',
      'the verification token at _relayplane.shop.test is "other", not "tok123"',
    ],
    ['no ownership record', replacing('_relayplane.shop.test'), 'ownership', 'no TXT record at _relayplane.shop.test'],
    [
      'something else at the ownership name',
      replacing('_relayplane.shop.test', txt('_relayplane.shop.test', 'tok123')),
      'ownership',
      'no relayplane-verification=… record among the TXT records at _relayplane.shop.test',
    ],
    ['a missing DMARC record', replacing('_dmarc.shop.test'), 'dmarc', 'no DMARC record at _dmarc.shop.test'],
    [
      'an invalid DMARC record',
      replacing('_dmarc.shop.test', txt('_dmarc.shop.test', 'v=DMARC1; p=maybe')),
      'dmarc',
      'DMARC record at _dmarc.shop.test is invalid: p=maybe is not none, quarantine or reject',
    ],
    [
      'a DMARC record with a lower-case version',
      replacing('_dmarc.shop.test', txt('_dmarc.shop.test', 'v=dmarc1; p=none')),
      'dmarc',
      'no DMARC record at _dmarc.shop.test ("v=dmarc1; p=none" is not one: the version tag is case-sensitive, v=DMARC1)',
    ],
    [
      'two DMARC records',
      [...good, txt('_dmarc.shop.test', 'v=DMARC1; p=reject')],
      'dmarc',
      '2 DMARC records at _dmarc.shop.test (RFC 7489 §6.6.3: none applies)',
    ],
  ])('%s: the precise reason', async (_, zone, purpose, reason) => {
    expect(await verdict(zone, purpose)).toEqual({ valid: false, reason });
  });

  it('DKIM: a CNAME must point where the relay says, a TXT key must match', async () => {
    const pm1 = 'pm1._domainkey.shop.test';
    expect(
      await verdict(replacing(pm1, { type: 'CNAME', name: pm1, target: 'pm2.dkim.provider.test' }), 'dkim', pm1),
    ).toEqual({
      valid: false,
      reason: 'the CNAME at pm1._domainkey.shop.test points to pm2.dkim.provider.test, not pm1.dkim.provider.test',
    });
    expect(await verdict(replacing(pm1), 'dkim', pm1)).toEqual({
      valid: false,
      reason: 'no CNAME record at pm1._domainkey.shop.test',
    });
    expect(await verdict(replacing(pm1, txt(pm1, KEY)), 'dkim', pm1)).toEqual({
      valid: false,
      reason: 'no CNAME record at pm1._domainkey.shop.test',
    });
    expect(
      await verdict(replacing(pm1, { type: 'CNAME', name: pm1, target: 'PM1.dkim.provider.test.' }), 'dkim', pm1),
    ).toEqual({ valid: true, reason: null });

    const k1 = 'k1._domainkey.shop.test';
    expect(await verdict(replacing(k1, txt(k1, 'v=DKIM1; k=rsa; p=MIIB')), 'dkim', k1)).toEqual({
      valid: false,
      reason: 'the TXT record at k1._domainkey.shop.test is not the DKIM key the relay declares',
    });
    // Whitespace and string boundaries differ from the declaration: the same key.
    const rewrapped = KEY.replace('; ', ';  ')
      .match(/.{1,100}/g)!
      .map((s) => ` ${s}`);
    expect(await verdict(replacing(k1, txt(k1, rewrapped)), 'dkim', k1)).toEqual({ valid: true, reason: null });
    // v=DKIM1 is optional (RFC 6376 §3.6.1): the Mailgun-style record carries the same key.
    expect(
      await verdict(replacing(k1, txt(k1, KEY.replace(/^v=DKIM1; /, '').match(/.{1,200}/g)!)), 'dkim', k1),
    ).toEqual({ valid: true, reason: null });
  });

  it('the return-path CNAME is advice: checked, not required', async () => {
    await dns.setRecords(replacing('bounces.shop.test'));
    const [check] = (await checkRecords(expected, resolver)).filter((c) => c.purpose === 'return_path');
    expect(check).toMatchObject({ required: false, valid: false, reason: 'no CNAME record at bounces.shop.test' });
  });

  it('SPF through redirect= and nested includes verifies', async () => {
    const zone = spf(
      'v=spf1 redirect=_spf.shop.test',
      txt('_spf.shop.test', 'v=spf1 a include:_spf.mail.shop.test -all'),
      txt('_spf.mail.shop.test', `v=spf1 ${BOTH} -all`),
    );
    expect(await verdict(zone, 'spf')).toEqual({ valid: true, reason: null });
    await dns.setRecords(zone);
    expect(await checkSpf('shop.test', ['_spf.provider.test'], resolver)).toMatchObject({
      lookups: 5,
      reached: ['_spf.backup.test', '_spf.mail.shop.test', '_spf.provider.test', '_spf.shop.test'],
    });
    // %{d} is the domain being checked: followed.
    expect(
      await verdict(spf('v=spf1 include:_spf.%{d} ~all', txt('_spf.shop.test', `v=spf1 ${BOTH} -all`)), 'spf'),
    ).toEqual({ valid: true, reason: null });
  });

  it('counts DNS-querying terms across includes: a 12-lookup chain exceeds the limit of 10', async () => {
    /** `top` at chain.test; l1 → l2 → … → l<depth> includes, the last one resolving to addresses. */
    const chain = (top: string, depth: number): ZoneRecord[] => [
      txt('chain.test', top),
      ...providers,
      ...Array.from({ length: depth }, (_, i) =>
        txt(
          `l${i + 1}.chain.test`,
          i + 1 < depth ? `v=spf1 include:l${i + 2}.chain.test -all` : 'v=spf1 ip4:192.0.2.1 -all',
        ),
      ),
    ];
    const check = async (zone: ZoneRecord[]) => {
      await dns.setRecords(zone);
      return checkSpf('chain.test', ['_spf.provider.test'], resolver);
    };
    // 3 terms at the top (include, include, a) and 9 more down the chain.
    expect(await check(chain('v=spf1 include:l1.chain.test include:_spf.provider.test a -all', 10))).toMatchObject({
      valid: false,
      lookups: 12,
      reason: 'SPF needs 12 DNS lookups; RFC 7208 §4.6.4 allows 10',
    });
    // 5 at the top (exists with a macro is counted, not followed), 8 down the chain.
    expect(
      await check(chain('v=spf1 include:l1.chain.test include:_spf.provider.test mx ptr exists:%{i}.x.test -all', 9)),
    ).toMatchObject({
      valid: false,
      reason: 'SPF needs 13 DNS lookups; RFC 7208 §4.6.4 allows 10',
    });
    // Exactly 10: terms after "all" are never evaluated.
    expect(await check(chain('v=spf1 include:l1.chain.test include:_spf.provider.test -all a mx', 9))).toMatchObject({
      valid: true,
      lookups: 10,
      reason: null,
    });
    // redirect= counts, and walks its chain again: 2 + 7 + 1 + 7.
    expect(
      await check(chain('v=spf1 include:l1.chain.test include:_spf.provider.test redirect=l1.chain.test', 8)),
    ).toMatchObject({
      valid: false,
      lookups: 17,
      reason: 'SPF needs 17 DNS lookups; RFC 7208 §4.6.4 allows 10',
    });
  });

  it('a diamond of includes is walked within a bounded number of queries', async () => {
    const level = (i: number) =>
      i < 8 ? `v=spf1 include:d${i + 1}.cap.test include:d${i + 1}.cap.test -all` : 'v=spf1 -all';
    await dns.setRecords([
      txt('cap.test', level(0)),
      ...Array.from({ length: 8 }, (_, i) => txt(`d${i + 1}.cap.test`, level(i + 1))),
    ]);
    const r = await checkSpf('cap.test', [], resolver);
    expect(r.valid).toBe(false);
    expect(r.reason).toMatch(/^SPF needs more than \d+ DNS lookups; RFC 7208 §4.6.4 allows 10$/);
  });

  it('a DNS server that does not answer leaves every record unknown (null, TIMEOUT), never invalid', async () => {
    const silent = await startUnresponsiveDnsServer();
    try {
      const dead = createDnsResolver({ servers: [silent.server], timeoutMs: 100, tries: 1 });
      const checks = await checkRecords(expected, dead);
      expect(checks.map((c) => [c.host, c.valid, c.reason])).toEqual([
        ['_relayplane.shop.test', null, 'DNS lookup of TXT _relayplane.shop.test failed: TIMEOUT'],
        ['shop.test', null, 'DNS lookup of TXT shop.test failed: TIMEOUT'],
        ['pm1._domainkey.shop.test', null, 'DNS lookup of CNAME pm1._domainkey.shop.test failed: TIMEOUT'],
        ['k1._domainkey.shop.test', null, 'DNS lookup of TXT k1._domainkey.shop.test failed: TIMEOUT'],
        ['_dmarc.shop.test', null, 'DNS lookup of TXT _dmarc.shop.test failed: TIMEOUT'],
        ['bounces.shop.test', null, 'DNS lookup of CNAME bounces.shop.test failed: TIMEOUT'],
      ]);
    } finally {
      await silent.stop();
    }
  });

  it('a failing lookup deep in the SPF walk is temporary; a definitive problem elsewhere still counts', async () => {
    const failing: ZoneRecord = { type: 'FAIL', name: '_spf.provider.test', failure: 'SERVFAIL' };
    const zone = [...good.filter((r) => r.name !== '_spf.provider.test'), failing];
    expect(await verdict(zone, 'spf')).toEqual({
      valid: null,
      reason: 'DNS lookup of TXT _spf.provider.test (included by shop.test) failed: SERVFAIL',
    });
    expect(
      await verdict(
        [
          ...zone.filter((r) => r.name !== '_dmarc.shop.test'),
          { type: 'FAIL', name: '_dmarc.shop.test', failure: 'REFUSED' },
        ],
        'dmarc',
      ),
    ).toEqual({
      valid: null,
      reason: 'DNS lookup of TXT _dmarc.shop.test failed: REFUSED',
    });
    const broken = spf(
      `v=spf1 ${BOTH} include:_spf.broken.test ~all`,
      txt('_spf.broken.test', 'v=spf1 ip4:1.2.3 -all'),
    );
    expect(await verdict([...broken.filter((r) => r.name !== '_spf.provider.test'), failing], 'spf')).toEqual({
      valid: false,
      reason: 'SPF record at _spf.broken.test (included by shop.test) is invalid: invalid ip4 network "1.2.3"',
    });
  });
});
