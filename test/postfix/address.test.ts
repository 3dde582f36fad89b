import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lookupDomain, normaliseAddress } from '../../src/postfix/address.js';
import { compile, explainRoute } from '../../src/postfix/index.js';
import { senderKey } from '../../src/postfix/table-keys.js';
import { credential, domain, policy, relay, snapshot, tenant } from './fixtures.js';

describe('normaliseAddress (what smtpd, cleanup and trivial-rewrite leave of an envelope address)', () => {
  it.each([
    // [given, passed on, lookup domain]
    ['x@a.test.', 'x@a.test', 'a.test'],
    ['X@E5O.TEST.', 'X@E5O.TEST', 'e5o.test'],
    ['<Alice+Tag@Shop.Example>', 'Alice+Tag@Shop.Example', 'shop.example'],
    ['"john doe"@a.test', '"john doe"@a.test', 'a.test'],
    ['"john"@a.test', 'john@a.test', 'a.test'],
    ['"a@b"@c.test', '"a@b"@c.test', 'c.test'],
    ['"q\\"uote"@a.test', '"q\\"uote"@a.test', 'a.test'],
    ['@hop.test,@two.test:u@a.test', 'u@a.test', 'a.test'],
    ['u@[192.0.2.1]', 'u@[192.0.2.1]', '[192.0.2.1]'],
    ['u@[IPv6:::1]', 'u@[IPv6:::1]', '[ipv6:::1]'],
    // Only one dot goes, and never from `..` or a lone `.` (rewrite.c).
    ['u@a.test..', 'u@a.test..', 'a.test..'],
    ['u@.', 'u@.', '.'],
  ])('%s → %s (tables: %s)', (given, address, lookup) => {
    expect(normaliseAddress(given)).toMatchObject({ address, domain: lookup });
  });

  it('gives the null sender and addresses without domain no domain', () => {
    expect(normaliseAddress('')).toEqual({ address: '', localPart: '', domain: null });
    expect(normaliseAddress('<>')).toEqual({ address: '', localPart: '', domain: null });
    expect(normaliseAddress('postmaster')).toMatchObject({ address: 'postmaster', domain: null });
    expect(normaliseAddress('x@')).toMatchObject({ domain: null });
  });

  it('is idempotent, keeps the local part and folds only the domain', () => {
    const local = fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9+._-]{1,12}$/),
      fc.stringMatching(/^[A-Za-z0-9 @.+]{1,8}$/).map((s) => `"${s}"`),
    );
    const name = fc.stringMatching(/^[A-Za-z0-9-]{1,8}(\.[A-Za-z0-9-]{1,8}){1,3}\.?$/);
    fc.assert(
      fc.property(local, name, (l, d) => {
        const once = normaliseAddress(`${l}@${d}`);
        const twice = normaliseAddress(once.address);
        expect(twice).toEqual(once);
        expect(once.domain).toBe(lookupDomain(d));
        expect(once.domain?.endsWith('.')).toBe(false);
        expect(once.address.toLowerCase().endsWith(`@${once.domain}`)).toBe(true);
      }),
    );
  });

  it('writes the compiler keys in the same form', () => {
    expect(senderKey('a.test')).toBe('@a.test');
    expect(senderKey('A.Test.')).toBe('@a.test');
  });
});

describe('explainRoute normalises both addresses with the same function', () => {
  const snap = snapshot({
    tenants: [tenant('t1')],
    relays: [relay('r', { host: '127.0.0.1', port: 2601 })],
    domains: [
      domain('d1', 't1', 'a.test', { relayId: 'r' }),
      domain('d2', 't1', 'e5o.test', { relayId: 'r' }),
      domain('d3', 't1', 'direct.test', { route: 'direct' }),
    ],
    credentials: [credential('c1', 'r', 'd1'), credential('c2', 'r', 'd2')],
    destinationPolicies: [policy('p', 'enc-notls.dtest', { tls: 'encrypt' })],
  });

  it('routes a trailing-dot sender as its domain, with its credential', () => {
    for (const [sender, name, credentialId] of [
      ['x@a.test.', 'a.test', 'c1'],
      ['X@E5O.TEST.', 'e5o.test', 'c2'],
    ] as const) {
      const e = explainRoute(snap, sender, 'r@dest.test');
      expect(e, sender).toMatchObject({
        outcome: 'relay',
        senderDomain: name,
        credentialId,
        envelopeSender: sender.slice(0, -1),
        envelopeRecipient: 'r@dest.test',
      });
      expect(e.matched).toContainEqual({ table: 'sender_relay', key: `@${name}`, value: '[127.0.0.1]:2601' });
    }
    expect(compile(snap).files.sender_relay?.content).toContain('@e5o.test [127.0.0.1]:2601\n');
  });

  it('gives a trailing-dot recipient of direct mail its destination TLS policy', () => {
    const e = explainRoute(snap, 'x@direct.test', 'c@enc-notls.dtest.');
    expect(e).toMatchObject({
      outcome: 'direct',
      recipientDomain: 'enc-notls.dtest',
      envelopeRecipient: 'c@enc-notls.dtest',
      tlsPolicy: 'encrypt',
      destinationPolicyId: 'p',
    });
    expect(e.nexthops).toEqual(['enc-notls.dtest']);
  });

  it('keeps the null sender null however it is written', () => {
    for (const sender of ['', '<>'])
      expect(explainRoute(snap, sender, 'r@dest.test')).toMatchObject({
        outcome: 'rejected',
        envelopeSender: '',
        senderDomain: null,
      });
  });
});
