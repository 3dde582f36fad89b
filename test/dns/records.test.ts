/**
 * The records a domain must publish (pure): what each relay declaration adds, and TXT values cut
 * into character-strings of at most 255 bytes without splitting a UTF-8 character.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectedRecords, splitTxt, type RelayDnsDeclaration } from '../../src/dns/index.js';

const provider: RelayDnsDeclaration = {
  spfInclude: '_spf.provider.test',
  dkim: [
    { selector: 'pm1', type: 'CNAME', value: 'pm1.dkim.provider.test' },
    { selector: 'pm2', type: 'CNAME', value: 'PM2.dkim.provider.test.' },
  ],
  returnPath: { host: 'bounces', value: 'rp.provider.test' },
};
const backup: RelayDnsDeclaration = {
  spfInclude: '_SPF.provider.test.',
  dkim: [
    { selector: 'pm1', type: 'CNAME', value: 'other.backup.test' },
    { selector: 'bk', type: 'TXT', value: 'v=DKIM1; k=rsa; p=MIGf' },
  ],
  returnPath: { host: 'bounce-bk', value: 'rp.backup.test' },
};

describe('expected records', () => {
  it('ownership, SPF, DKIM, DMARC and return-path, in that order', () => {
    expect(
      expectedRecords({ domain: 'Shop.Test.', verificationToken: 'tok123', relay: provider, fallbackRelay: null }),
    ).toEqual([
      {
        purpose: 'ownership',
        type: 'TXT',
        host: '_relayplane.shop.test',
        value: 'relayplane-verification=tok123',
        required: true,
      },
      {
        purpose: 'spf',
        type: 'TXT',
        host: 'shop.test',
        value: 'v=spf1 include:_spf.provider.test ~all',
        required: true,
      },
      {
        purpose: 'dkim',
        type: 'CNAME',
        host: 'pm1._domainkey.shop.test',
        value: 'pm1.dkim.provider.test',
        required: true,
      },
      {
        purpose: 'dkim',
        type: 'CNAME',
        host: 'pm2._domainkey.shop.test',
        value: 'pm2.dkim.provider.test',
        required: true,
      },
      { purpose: 'dmarc', type: 'TXT', host: '_dmarc.shop.test', value: 'v=DMARC1; p=none', required: true },
      { purpose: 'return_path', type: 'CNAME', host: 'bounces.shop.test', value: 'rp.provider.test', required: false },
    ]);
  });

  it('a fallback relay adds its include (once) and its own names; the relay wins a shared name', () => {
    const records = expectedRecords({
      domain: 'shop.test',
      verificationToken: 't',
      relay: provider,
      fallbackRelay: { ...backup, spfInclude: '_spf.backup.test' },
    });
    expect(records.find((r) => r.purpose === 'spf')?.value).toBe(
      'v=spf1 include:_spf.provider.test include:_spf.backup.test ~all',
    );
    expect(records.filter((r) => r.purpose === 'dkim').map((r) => [r.host, r.type, r.value])).toEqual([
      ['pm1._domainkey.shop.test', 'CNAME', 'pm1.dkim.provider.test'],
      ['pm2._domainkey.shop.test', 'CNAME', 'pm2.dkim.provider.test'],
      ['bk._domainkey.shop.test', 'TXT', 'v=DKIM1; k=rsa; p=MIGf'],
    ]);
    expect(records.filter((r) => r.purpose === 'return_path').map((r) => r.host)).toEqual([
      'bounces.shop.test',
      'bounce-bk.shop.test',
    ]);
    const same = expectedRecords({
      domain: 'shop.test',
      verificationToken: 't',
      relay: provider,
      fallbackRelay: backup,
    });
    expect(same.find((r) => r.purpose === 'spf')?.value).toBe('v=spf1 include:_spf.provider.test ~all');
  });

  it('no SPF record without an include; only ownership and DMARC without a relay', () => {
    const none = expectedRecords({
      domain: 'shop.test',
      verificationToken: 't',
      relay: { spfInclude: null, dkim: [], returnPath: null },
      fallbackRelay: null,
    });
    expect(none.map((r) => r.purpose)).toEqual(['ownership', 'dmarc']);
    expect(
      expectedRecords({ domain: 'shop.test', verificationToken: 't', relay: null, fallbackRelay: null }).map(
        (r) => r.purpose,
      ),
    ).toEqual(['ownership', 'dmarc']);
  });

  it('a DKIM key longer than 255 bytes comes with its character-strings', () => {
    const key = `v=DKIM1; k=rsa; p=${'A'.repeat(392)}`;
    const [dkim] = expectedRecords({
      domain: 'a.test',
      verificationToken: 't',
      relay: { spfInclude: null, dkim: [{ selector: 's1', type: 'TXT', value: key }], returnPath: null },
      fallbackRelay: null,
    }).filter((r) => r.purpose === 'dkim');
    expect(dkim?.strings).toEqual([key.slice(0, 255), key.slice(255)]);
    expect(dkim?.strings?.join('')).toBe(key);
  });
});

describe('TXT character-strings', () => {
  it('short values stay whole; the empty value is one empty string', () => {
    expect(splitTxt('v=DMARC1; p=none')).toEqual(['v=DMARC1; p=none']);
    expect(splitTxt('')).toEqual(['']);
    expect(splitTxt('x'.repeat(255))).toEqual(['x'.repeat(255)]);
    expect(splitTxt('x'.repeat(256))).toEqual(['x'.repeat(255), 'x']);
  });

  it('count bytes, not characters, and never cut a UTF-8 character', () => {
    // é is 2 bytes: 127 of them fill 254 bytes, the 128th would make 256.
    expect(splitTxt('é'.repeat(200))).toEqual(['é'.repeat(127), 'é'.repeat(73)]);
    // 😀 is 4 bytes (a surrogate pair in JavaScript): 63 fill 252 bytes.
    expect(splitTxt('😀'.repeat(64)).map((s) => Buffer.byteLength(s))).toEqual([252, 4]);
    expect(splitTxt(`${'x'.repeat(254)}é`)).toEqual(['x'.repeat(254), 'é']);
  });

  it('any value: chunks rejoin to it, each at most 255 bytes, each as full as the next character allows', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', 'é', '€', '😀', 'ß', ' '), maxLength: 700 }), (value) => {
        const parts = splitTxt(value);
        expect(parts.join('')).toBe(value);
        parts.forEach((part, i) => {
          expect(Buffer.byteLength(part)).toBeLessThanOrEqual(255);
          expect(Buffer.from(part, 'utf8').toString('utf8')).toBe(part); // no lone surrogate
          const next = parts[i + 1];
          if (next !== undefined)
            expect(
              Buffer.byteLength(part) + Buffer.byteLength(String.fromCodePoint(next.codePointAt(0)!)),
            ).toBeGreaterThan(255);
        });
      }),
      { numRuns: 300 },
    );
  });
});
