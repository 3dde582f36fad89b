/**
 * SPF merge, void lookups and risky terms against a real DNS server (dnsmasq on loopback), each
 * verdict cross-checked with an independent implementation: Debian's pyspf (python3-spf), pointed
 * at the same dnsmasq. Publishing the merged value makes the relay's mail pass in pyspf too; a
 * record pyspf calls permerror for void lookups is invalid here as well.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRecords, checkSpf, createDnsResolver, expectedRecords, type DnsResolver } from '../../src/dns/index.js';
import { startDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { DEBIAN_PYTHON, missingPythonModules, missingTools, requirementGate } from '../lab/requirements.js';

const RELAY_IP = '192.0.2.10';
const OTHER_IP = '203.0.113.5';
const txt = (name: string, value: string): ZoneRecord => ({ type: 'TXT', name, value });
const provider = [
  txt('_spf.provider.test', 'v=spf1 ip4:192.0.2.0/24 -all'),
  txt('_spf.google.test', 'v=spf1 ip4:198.51.100.0/24 -all'),
];
const expected = expectedRecords({
  domain: 'shop.test',
  verificationToken: 't',
  relay: { spfInclude: '_spf.provider.test', dkim: [], returnPath: null },
  fallbackRelay: null,
});
const spfRecord = expected.find((r) => r.purpose === 'spf')!;

/**
 * pyspf's check2 for each (client ip, sender) against the DNS server on `port`. pyspf uses pydns
 * (python3-dns) or dnspython, whichever is installed; both are pointed at the test server.
 */
const PYSPF = `
import json, sys, spf
port = int(sys.argv[1])
try:
    import DNS
    DNS.defaults['server'] = ['127.0.0.1']
    DNS.defaults['port'] = port
except ImportError:
    pass
try:
    import dns.resolver
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ['127.0.0.1']
    r.port = port
    dns.resolver.default_resolver = r
except ImportError:
    pass
print(json.dumps([spf.check2(i=i, s=s, h='mx.sender.test', timeout=5)[0] for i, s in json.loads(sys.stdin.read())]))
`;

function pyspf(port: number, queries: [ip: string, sender: string][]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(DEBIAN_PYTHON, ['-c', PYSPF, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(`pyspf exited ${code}: ${err}`)),
    );
    child.stdin.end(JSON.stringify(queries));
  });
}

const ok = requirementGate('SPF cross-checked with pyspf against dnsmasq', [
  ...missingTools(['dnsmasq']),
  ...missingPythonModules({ spf: 'python3-spf' }),
]);

describe.skipIf(!ok)('SPF merged, limited and warned about, as pyspf sees it', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;
  beforeAll(async () => {
    dns = await startDnsServer({ records: provider });
    resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 150, tries: 1 });
  });
  afterAll(async () => dns?.stop());

  const spfCheck = async (zone: ZoneRecord[]) => {
    await dns.setRecords([...provider, ...zone]);
    return (await checkRecords([spfRecord], resolver))[0]!;
  };

  it.each<[string, string | null, string, string]>([
    [
      '~all',
      'v=spf1 include:_spf.google.test ~all',
      'v=spf1 include:_spf.google.test include:_spf.provider.test ~all',
      'softfail',
    ],
    ['-all', 'v=spf1 ip4:198.51.100.7 -all', 'v=spf1 ip4:198.51.100.7 include:_spf.provider.test -all', 'fail'],
    [
      'redirect=',
      'v=spf1 redirect=_spf.google.test',
      'v=spf1 include:_spf.provider.test redirect=_spf.google.test',
      'fail',
    ],
    ['none', null, 'v=spf1 include:_spf.provider.test ~all', 'none'],
  ])(
    'published with %s: the merged value makes the relay pass here and in pyspf',
    async (_, published, merged, before) => {
      const first = await spfCheck(published === null ? [] : [txt('shop.test', published)]);
      expect(first).toMatchObject({ valid: false, value: merged });
      // The declared value is kept beside the advice (the records view matches checks by it).
      expect(first.declared).toBe(merged === spfRecord.value ? undefined : spfRecord.value);
      // Before: the relay's address does not pass; the Google-side address (where published) still passes.
      expect(await pyspf(dns.port, [[RELAY_IP, 'a@shop.test']])).toEqual([before]);

      const after = await spfCheck([txt('shop.test', merged)]);
      expect(after).toMatchObject({ valid: true, reason: null, value: merged });
      const expectOther = published === null ? [] : ['pass'];
      const results = await pyspf(dns.port, [
        [RELAY_IP, 'a@shop.test'],
        ...(published === null ? [] : [['198.51.100.7', 'a@shop.test'] as [string, string]]),
      ]);
      expect(results).toEqual(['pass', ...expectOther]);
    },
  );

  it('three void lookups are a permerror here and in pyspf; two are allowed', async () => {
    const three = 'v=spf1 a:nx1.shop.test mx:nx2.shop.test a:nx3.shop.test include:_spf.provider.test -all';
    await dns.setRecords([...provider, txt('shop.test', three)]);
    expect(await checkSpf('shop.test', ['_spf.provider.test'], resolver)).toMatchObject({
      valid: false,
      voids: ['a:nx1.shop.test', 'mx:nx2.shop.test', 'a:nx3.shop.test'],
      reason:
        'SPF makes 3 void lookups (a:nx1.shop.test, mx:nx2.shop.test, a:nx3.shop.test found nothing); RFC 7208 §4.6.4 allows 2 (permerror)',
    });
    expect(await pyspf(dns.port, [[RELAY_IP, 'a@shop.test']])).toEqual(['permerror']);

    const two = 'v=spf1 a:nx1.shop.test mx:nx2.shop.test a:mail.shop.test mx:shop.test include:_spf.provider.test -all';
    await dns.setRecords([
      ...provider,
      txt('shop.test', two),
      { type: 'A', name: 'mail.shop.test', address: '198.51.100.25' },
      { type: 'MX', name: 'shop.test', exchange: 'mail.shop.test' },
    ]);
    expect(await checkSpf('shop.test', ['_spf.provider.test'], resolver)).toMatchObject({
      valid: true,
      voids: ['a:nx1.shop.test', 'mx:nx2.shop.test'],
    });
    expect(await pyspf(dns.port, [[RELAY_IP, 'a@shop.test']])).toEqual(['pass']);
  });

  it('+all, ?all and ptr verify but carry warnings; pyspf shows what they let through', async () => {
    const plus = await spfCheck([txt('shop.test', 'v=spf1 include:_spf.provider.test +all')]);
    expect(plus.valid).toBe(true);
    expect(plus.warnings).toEqual([expect.stringMatching(/^"\+all" lets every host on the Internet pass SPF/)]);
    expect(await pyspf(dns.port, [[OTHER_IP, 'a@shop.test']])).toEqual(['pass']);

    const neutral = await spfCheck([txt('shop.test', 'v=spf1 include:_spf.provider.test ?all')]);
    expect(neutral.warnings).toEqual([expect.stringMatching(/^"\?all" makes mail from any other host neutral/)]);
    expect(await pyspf(dns.port, [[OTHER_IP, 'a@shop.test']])).toEqual(['neutral']);

    const ptr = await spfCheck([txt('shop.test', 'v=spf1 ptr include:_spf.provider.test -all')]);
    expect(ptr).toMatchObject({
      valid: true,
      warnings: [expect.stringMatching(/^"ptr" is slow, unreliable and deprecated/)],
    });
    expect(await pyspf(dns.port, [[RELAY_IP, 'a@shop.test']])).toEqual(['pass']);

    expect((await spfCheck([txt('shop.test', 'v=spf1 include:_spf.provider.test -all')])).warnings).toBeUndefined();
  });
});
