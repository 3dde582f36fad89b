/**
 * SPF syntax (RFC 7208 §4.6, §12): what parses, the precise error for what does not, and properties
 * (parsing never throws; a generated valid record round-trips through formatSpf).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expandDomainSpec, formatSpf, parseSpf, spfIncludeError, type SpfTerm } from '../../src/dns/index.js';

describe('SPF syntax', () => {
  it.each([
    'v=spf1',
    'v=spf1 -all',
    'v=spf1 include:_spf.provider.test ~all',
    'v=spf1 include:_spf.provider.test. -all',
    'v=spf1 a mx/24 a:mail.example.test/28//64 mx//64 ip4:192.0.2.0/24 ip4:192.0.2.1 ip6:2001:db8::/32 ip6:::1 ptr ptr:example.test -all',
    'v=spf1 ?exists:%{i}.%{l1r-}.x.test include:%{d2}._spf.test include:_spf.%{d} -all',
    'v=spf1 redirect=_spf.example.test',
    'v=spf1 exp=explain.%{d} -all',
    'V=SPF1 +INCLUDE:a.test MX:B.TEST  ~ALL ',
    'v=spf1 foo=bar x-y.z= -all',
    'v=spf1 a:x.1-2',
  ])('accepts %s', (record) => {
    expect(parseSpf(record)).toMatchObject({ ok: true });
  });

  it('names each term', () => {
    expect(parseSpf('v=spf1 -a:mail.test/24//64 ~include:x.test ip6:2001:db8::/48 exp=e.test -all')).toEqual({
      ok: true,
      terms: [
        { kind: 'mechanism', qualifier: '-', name: 'a', domain: 'mail.test', cidr4: 24, cidr6: 64 },
        { kind: 'mechanism', qualifier: '~', name: 'include', domain: 'x.test' },
        { kind: 'mechanism', qualifier: '+', name: 'ip6', network: '2001:db8::', prefix: 48 },
        { kind: 'modifier', name: 'exp', value: 'e.test' },
        { kind: 'mechanism', qualifier: '-', name: 'all' },
      ],
    });
  });

  it.each([
    ['v=spf2 -all', 'does not start with v=spf1'],
    ['v=spf1-all', 'does not start with v=spf1'],
    [' v=spf1 -all', 'does not start with v=spf1'],
    ['v=spf1 inclde:x', 'unknown mechanism "inclde:x"'],
    ['v=spf1 ~inclde:x', 'unknown mechanism "~inclde:x"'],
    ['v=spf1 +', 'unknown mechanism "+"'],
    ['v=spf1 ip4:1.2.3.4/33 -all', 'invalid ip4 network "1.2.3.4/33"'],
    ['v=spf1 ip4:300.1.1.1', 'invalid ip4 network "300.1.1.1"'],
    ['v=spf1 ip4:01.2.3.4', 'invalid ip4 network "01.2.3.4"'],
    ['v=spf1 ip4:1.2.3.4/08', 'invalid ip4 network "1.2.3.4/08"'],
    ['v=spf1 ip4', 'ip4 needs a network: "ip4"'],
    ['v=spf1 ip6:2001:zz::/32', 'invalid ip6 network "2001:zz::/32"'],
    ['v=spf1 ip6:2001:db8::/129', 'invalid ip6 network "2001:db8::/129"'],
    ['v=spf1 ip6:fe80::1%eth0', 'invalid ip6 network "fe80::1%eth0"'],
    ['v=spf1 include: -all', 'include needs a domain: "include:"'],
    ['v=spf1 include', 'include needs a domain: "include"'],
    ['v=spf1 exists', 'exists needs a domain: "exists"'],
    ['v=spf1 include:localhost', 'invalid domain "localhost" in "include:localhost"'],
    ['v=spf1 include:a..test', 'invalid domain "a..test" in "include:a..test"'],
    ['v=spf1 include:x.123', 'invalid domain "x.123" in "include:x.123"'],
    ['v=spf1 include:%{x}.test', 'invalid macro "%{x}" in "include:%{x}.test"'],
    ['v=spf1 include:%{c}.test', 'macro "%{c}" is only allowed in exp= text (RFC 7208 §7.1) in "include:%{c}.test"'],
    [
      'v=spf1 include:%{d0}.test',
      'invalid macro "%{d0}" (the number of parts must be nonzero) in "include:%{d0}.test"',
    ],
    ['v=spf1 include:%{d', 'invalid macro "%{d" in "include:%{d"'],
    ['v=spf1 include:50%.test', 'invalid macro "%.t" in "include:50%.test"'],
    ['v=spf1 a/33', 'invalid IPv4 prefix length "/33" in "a/33"'],
    ['v=spf1 mx//129', 'invalid IPv6 prefix length "//129" in "mx//129"'],
    ['v=spf1 a/24/64', 'invalid prefix length in "a/24/64"'],
    ['v=spf1 ptr/24', 'invalid ptr mechanism "ptr/24"'],
    ['v=spf1 redirect=a.test redirect=b.test', 'more than one redirect modifier'],
    ['v=spf1 exp=a.test exp=b.test', 'more than one exp modifier'],
    ['v=spf1 redirect=', 'empty domain in "redirect="'],
    ['v=spf1 1x=y', 'invalid modifier name "1x" in "1x=y"'],
    ['v=spf1 a:1-2', 'invalid domain "1-2" in "a:1-2"'],
    ['v=spf1 all:x', '"all" takes no argument: "all:x"'],
    ['v=spf1 -all/24', '"all" takes no argument: "-all/24"'],
    ['v=spf1 a:é.test', 'invalid character "é" in "a:é.test"'],
  ])('refuses %s: %s', (record, error) => {
    expect(parseSpf(record)).toEqual({ ok: false, error });
  });

  it('tabs are not term separators', () => {
    expect(parseSpf('v=spf1 a\t-all')).toEqual({ ok: false, error: 'invalid character "\\t" in "a\t-all"' });
  });
});

describe('SPF macros (RFC 7208 §7.3)', () => {
  it.each([
    ['%{d}', 'mail.shop.test', 'mail.shop.test'],
    ['_spf.%{d}', 'shop.test', '_spf.shop.test'],
    ['%{d2}._spf.test', 'a.b.shop.test', 'shop.test._spf.test'],
    ['%{dr}.x.test', 'a.shop.test', 'test.shop.a.x.test'],
    ['%{d1r}.x.test', 'a.shop.test', 'a.x.test'],
    // Only the given delimiters split: "a-b.c" is "a" and "b.c".
    ['%{d2r-}.x.test', 'a-b.c', 'b.c.a.x.test'],
    ['_spf.test.', 'shop.test', '_spf.test'],
  ])('expands %s for %s', (spec, domain, expanded) => {
    expect(expandDomainSpec(spec, domain)).toBe(expanded);
  });

  it('does not expand what needs the message', () => {
    expect(expandDomainSpec('%{i}._spf.test', 'shop.test')).toBeNull();
    expect(expandDomainSpec('%{l}.%{d}', 'shop.test')).toBeNull();
  });
});

it('a relay SPF include must be a plain domain', () => {
  expect(spfIncludeError('_spf.provider.test')).toBeNull();
  expect(spfIncludeError('mailgun.org')).toBeNull();
  expect(spfIncludeError('not a domain')).toBe('invalid character " "');
  expect(spfIncludeError('provider')).toBe('invalid domain "provider"');
  expect(spfIncludeError('%{d}.provider.test')).toBe(
    'invalid domain "%{d}.provider.test" (no macros in a relay\'s include)',
  );
});

const label = fc.stringMatching(/^_?[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
const toplabel = fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/);
const domain = fc
  .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), toplabel)
  .map(([labels, top]) => [...labels, top].join('.'));
const macro = fc.constantFrom(
  '%{d}',
  '%{i}',
  '%{ir}',
  '%{l1r-}',
  '%{d2}',
  '%{s}',
  '%{o}',
  '%{h}',
  '%{p}',
  '%{v}',
  '%%',
  '%-',
  '%_',
);
const domainSpec = fc.oneof(
  { weight: 4, arbitrary: domain },
  { weight: 1, arbitrary: fc.tuple(macro, domain).map(([m, d]) => `${m}.${d}`) },
);
const qualifier = fc.constantFrom('+', '-', '~', '?' as const);
const prefix = (max: number) => fc.option(fc.integer({ min: 0, max }), { nil: null });

const mechanism: fc.Arbitrary<SpfTerm> = fc.oneof(
  fc.record({ kind: fc.constant('mechanism' as const), qualifier, name: fc.constant('all' as const) }),
  fc.record({
    kind: fc.constant('mechanism' as const),
    qualifier,
    name: fc.constantFrom('include' as const, 'exists' as const),
    domain: domainSpec,
  }),
  fc.record({
    kind: fc.constant('mechanism' as const),
    qualifier,
    name: fc.constantFrom('a' as const, 'mx' as const),
    domain: fc.option(domainSpec, { nil: null }),
    cidr4: prefix(32),
    cidr6: prefix(128),
  }),
  fc.record({
    kind: fc.constant('mechanism' as const),
    qualifier,
    name: fc.constant('ptr' as const),
    domain: fc.option(domainSpec, { nil: null }),
  }),
  fc.record({
    kind: fc.constant('mechanism' as const),
    qualifier,
    name: fc.constant('ip4' as const),
    network: fc.ipV4(),
    prefix: prefix(32),
  }),
  fc.record({
    kind: fc.constant('mechanism' as const),
    qualifier,
    name: fc.constant('ip6' as const),
    network: fc.ipV6(),
    prefix: prefix(128),
  }),
);
const unknownModifier: fc.Arbitrary<SpfTerm> = fc.record({
  kind: fc.constant('modifier' as const),
  name: fc.stringMatching(/^[a-z][a-z0-9_.-]{0,8}$/).filter((n) => n !== 'redirect' && n !== 'exp'),
  value: fc.oneof(fc.stringMatching(/^[a-z0-9.=:/_-]{0,12}$/), macro),
});
const record: fc.Arbitrary<SpfTerm[]> = fc
  .tuple(
    fc.array(fc.oneof({ weight: 5, arbitrary: mechanism }, { weight: 1, arbitrary: unknownModifier }), {
      maxLength: 12,
    }),
    fc.option(domainSpec, { nil: null }),
    fc.option(domainSpec, { nil: null }),
  )
  .map(([terms, redirect, exp]) => [
    ...terms,
    ...(redirect === null ? [] : [{ kind: 'modifier' as const, name: 'redirect', value: redirect }]),
    ...(exp === null ? [] : [{ kind: 'modifier' as const, name: 'exp', value: exp }]),
  ]);

describe('SPF properties', () => {
  it('a valid record round-trips: parseSpf(formatSpf(terms)) gives the terms back', () => {
    fc.assert(
      fc.property(record, (terms) => {
        expect(parseSpf(formatSpf(terms))).toEqual({ ok: true, terms });
      }),
      { numRuns: 300 },
    );
  });

  const fragments = fc.constantFrom(
    'v=spf1',
    ' ',
    'include',
    'a',
    'mx',
    'ip4',
    'ip6',
    'ptr',
    'exists',
    'all',
    'redirect',
    'exp',
    ':',
    '/',
    '//',
    '=',
    '%',
    '%{',
    '}',
    'd',
    'r',
    '-',
    '~',
    '?',
    '+',
    '.',
    'x.test',
    '1',
    '32',
    '2001',
    '::',
    'é',
    '\t',
  );
  it('parsing never throws, whatever the text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary' }),
          fc.array(fragments).map((f) => `v=spf1 ${f.join('')}`),
        ),
        (text) => {
          const parsed = parseSpf(text);
          expect(typeof parsed.ok).toBe('boolean');
          if (parsed.ok) expect(parseSpf(formatSpf(parsed.terms))).toEqual(parsed);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
