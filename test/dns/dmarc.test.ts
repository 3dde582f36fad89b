/**
 * DMARC syntax (RFC 7489 §6.3, §6.4): what parses, the precise error for what does not, and
 * properties (parsing never throws; a generated valid record round-trips through formatDmarc).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dmarcRecord, formatDmarc, isDmarcRecord, parseDmarc, type DmarcRecord } from '../../src/dns/index.js';

const base: DmarcRecord = dmarcRecord('none');

describe('DMARC syntax', () => {
  it('reads every tag', () => {
    expect(
      parseDmarc(
        'v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=r; rua=mailto:d@rua.test, mailto:e@x.test!10m; ruf=mailto:f@x.test; fo=1:d; rf=afrf; ri=86400; np=none;',
      ),
    ).toEqual({
      ok: true,
      record: {
        p: 'reject',
        sp: 'quarantine',
        pct: 50,
        adkim: 's',
        aspf: 'r',
        rua: ['mailto:d@rua.test', 'mailto:e@x.test!10m'],
        ruf: ['mailto:f@x.test'],
        fo: ['1', 'd'],
        rf: ['afrf'],
        ri: 86400,
        unknown: { np: 'none' },
      },
    });
  });

  it.each([
    'v=DMARC1; p=none',
    'v=DMARC1;p=none',
    'v = DMARC1 ;\tp = None ;',
    'V=DMARC1; P=QUARANTINE',
    'v=DMARC1; rua=mailto:x@y.test; p=none',
  ])('accepts %s', (record) => {
    expect(parseDmarc(record)).toMatchObject({ ok: true });
  });

  it.each([
    ['p=none; v=DMARC1', 'does not start with v=DMARC1'],
    ['v=dmarc1; p=none', 'does not start with v=DMARC1'],
    ['v=DMARC1 p=none', 'expected ";" after v=DMARC1'],
    ['v=DMARC1', 'has no p= policy (RFC 7489 §6.3: required)'],
    ['v=DMARC1; rua=mailto:x@y.test', 'has no p= policy (RFC 7489 §6.3: required)'],
    ['v=DMARC1; p=block', 'p=block is not none, quarantine or reject'],
    ['v=DMARC1; p=none; sp=maybe', 'sp=maybe is not none, quarantine or reject'],
    ['v=DMARC1; p=none; p=reject', 'tag p appears more than once'],
    ['v=DMARC1; p=none; v=DMARC1', 'v= must be the first tag, and only once'],
    ['v=DMARC1; p=', 'p= has no value'],
    ['v=DMARC1; p=none; pct=150', 'pct=150 is not 0-100'],
    ['v=DMARC1; p=none; pct=-1', 'pct=-1 is not 0-100'],
    ['v=DMARC1; p=none; adkim=x', 'adkim=x is not r or s'],
    ['v=DMARC1; p=none; rua=https://x.test', 'rua: "https://x.test" is not a mailto: URI'],
    ['v=DMARC1; p=none; rua=mailto:nobody', 'rua: "mailto:nobody" is not a valid mailto: address'],
    ['v=DMARC1; p=none; ruf=mailto:a@b.test,', 'ruf has an empty URI'],
    ['v=DMARC1; p=none; fo=2', 'fo=2 is not a list of 0, 1, d, s'],
    ['v=DMARC1; p=none; ri=soon', 'ri=soon is not a number of seconds'],
    ['v=DMARC1; p=none; rf=a f', 'rf=a f is not a list of report formats'],
    ['v=DMARC1; p=none; bad tag=1', '"bad tag=1" is not a tag=value pair'],
    ['v=DMARC1; p=none; novalue', '"novalue" is not a tag=value pair'],
  ])('refuses %s', (record, error) => {
    expect(parseDmarc(record)).toEqual({ ok: false, error });
  });

  it('recognises DMARC records by their case-sensitive version', () => {
    expect(isDmarcRecord('v=DMARC1; p=none')).toBe(true);
    expect(isDmarcRecord('v=DMARC1')).toBe(true);
    expect(isDmarcRecord('v=dmarc1; p=none')).toBe(false);
    expect(isDmarcRecord('v=DMARC10; p=none')).toBe(false);
    expect(isDmarcRecord('v=spf1 -all')).toBe(false);
  });
});

const policy = fc.constantFrom('none' as const, 'quarantine' as const, 'reject' as const);
const mailto = fc
  .tuple(
    fc.stringMatching(/^[a-z0-9._+-]{1,10}$/),
    fc.stringMatching(/^[a-z0-9-]{1,8}(\.[a-z0-9-]{1,8}){1,2}$/),
    fc.option(fc.stringMatching(/^![0-9]{1,4}[kmgt]?$/), { nil: null }),
  )
  .map(([local, host, size]) => `mailto:${local}@${host}${size ?? ''}`);
const record: fc.Arbitrary<DmarcRecord> = fc.record({
  p: policy,
  sp: fc.option(policy, { nil: null }),
  pct: fc.option(fc.integer({ min: 0, max: 100 }), { nil: null }),
  adkim: fc.option(fc.constantFrom('r' as const, 's' as const), { nil: null }),
  aspf: fc.option(fc.constantFrom('r' as const, 's' as const), { nil: null }),
  rua: fc.array(mailto, { maxLength: 3 }),
  ruf: fc.array(mailto, { maxLength: 2 }),
  fo: fc.option(
    fc.array(fc.constantFrom('0' as const, '1' as const, 'd' as const, 's' as const), { minLength: 1, maxLength: 4 }),
    { nil: null },
  ),
  rf: fc.option(fc.array(fc.constantFrom('afrf', 'iodef'), { minLength: 1, maxLength: 2 }), { nil: null }),
  ri: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: null }),
  unknown: fc.dictionary(fc.stringMatching(/^x[a-z0-9_]{0,6}$/), fc.stringMatching(/^[a-z0-9:,.!@-]{1,10}$/), {
    maxKeys: 2,
  }),
});

describe('DMARC properties', () => {
  it('a valid record round-trips: parseDmarc(formatDmarc(record)) gives it back', () => {
    fc.assert(
      fc.property(record, (r) => {
        expect(parseDmarc(formatDmarc(r))).toEqual({ ok: true, record: r });
      }),
      { numRuns: 300 },
    );
    expect(formatDmarc(base)).toBe('v=DMARC1; p=none');
  });

  const fragments = fc.constantFrom(
    'v=DMARC1',
    'v',
    '=',
    ';',
    ' ',
    '\t',
    'p',
    'sp',
    'none',
    'reject',
    'pct',
    '100',
    'rua',
    'mailto:',
    'a@b.test',
    ',',
    '!',
    '10m',
    'fo',
    ':',
    'd',
    'ri',
    'x',
    'é',
  );
  it('parsing never throws, whatever the text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary' }),
          fc.array(fragments).map((f) => `v=DMARC1;${f.join('')}`),
        ),
        (text) => {
          const parsed = parseDmarc(text);
          expect(typeof parsed.ok).toBe('boolean');
          if (parsed.ok) expect(parseDmarc(formatDmarc(parsed.record))).toEqual(parsed);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
