/** DKIM key records (RFC 6376 §3.6.1): v=DKIM1 optional, keys compared as keys. */
import { describe, expect, it } from 'vitest';
import { parseDkimKey, sameDkimKey } from '../../src/dns/index.js';

const P = 'MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC';

describe('parseDkimKey', () => {
  it.each([
    [`v=DKIM1; k=rsa; p=${P}`, { k: 'rsa', p: P }],
    [`k=rsa; p=${P}`, { k: 'rsa', p: P }],
    [`p=${P}`, { k: 'rsa', p: P }],
    [`v=DKIM1; k=ed25519; p=${P};`, { k: 'ed25519', p: P }],
    [`k=RSA; t=s; h=sha256; p=${P.slice(0, 10)} ${P.slice(10)}`, { k: 'rsa', p: P }],
    ['v=DKIM1; p=', { k: 'rsa', p: '' }],
  ])('%s', (text, key) => {
    expect(parseDkimKey(text)).toEqual({ ok: true, key });
  });

  it.each([
    [`k=rsa; v=DKIM1; p=${P}`, 'v= must be the first tag'],
    [`v=DKIM2; p=${P}`, 'v=DKIM2 is not DKIM1'],
    ['v=DKIM1; k=rsa', 'has no p= key (RFC 6376 §3.6.1: required)'],
    [`k=rsa; p=${P}; p=${P}`, 'tag p appears more than once'],
    [`k=rsa;; p=${P}`, 'empty tag'],
    ['hello world', '"hello world" is not a tag=value pair'],
  ])('refuses %s', (text, error) => {
    expect(parseDkimKey(text)).toEqual({ ok: false, error });
  });
});

describe('sameDkimKey', () => {
  it('matches a Mailgun-style record without v=DKIM1 against a declaration with it, and the reverse', () => {
    expect(sameDkimKey(`k=rsa; p=${P}`, `v=DKIM1; k=rsa; p=${P}`)).toBe(true);
    expect(sameDkimKey(`v=DKIM1; k=rsa; p=${P}`, `k=rsa; p=${P}`)).toBe(true);
    expect(sameDkimKey(`p=${P}`, `k=rsa; p=${P}`)).toBe(true);
  });
  it('refuses another key, another key type, or a revoked key', () => {
    expect(sameDkimKey(`k=rsa; p=${P}A`, `k=rsa; p=${P}`)).toBe(false);
    expect(sameDkimKey(`k=ed25519; p=${P}`, `k=rsa; p=${P}`)).toBe(false);
    expect(sameDkimKey('k=rsa; p=', 'k=rsa; p=')).toBe(false);
  });
});
