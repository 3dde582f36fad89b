/**
 * No row can make the whole configuration refuse to compile: what Postfix cannot express is
 * quarantined, unit by unit, with its last compiled version standing in where there is one.
 */
import { describe, expect, it } from 'vitest';
import { compile, explainRoute, type Bundle, type Snapshot } from '../../src/postfix/index.js';
import { credential, domain, relay, settings, snapshot, tenant } from './fixtures.js';

const lines = (b: Bundle, file: string) => (b.files[file]?.content ?? '').split('\n').filter(Boolean);
const access = (b: Bundle, name: string) => lines(b, 'sender_access').find((line) => line.startsWith(`${name} `));
const LIMITS = { concurrency: null, rateDelaySeconds: null, recipientsPerMessage: null };

/** Two tenants on a shared relay, one of them also on a private relay with a relay-wide credential. */
function good(): Snapshot {
  return snapshot({
    tenants: [tenant('t1'), tenant('t2')],
    relays: [relay('shared', { host: 'smtp.shared.test' }), relay('own', { host: 'smtp.own.test', tenantId: 't2' })],
    domains: [
      domain('d1', 't1', 'one.example', { relayId: 'shared' }),
      domain('d2', 't2', 'two.example', { relayId: 'own' }),
      domain('d3', 't2', 'three.example', { relayId: 'own' }),
      domain('d4', 't2', 'four.example', { relayId: 'shared' }),
    ],
    credentials: [credential('c1', 'shared', 'd1'), credential('c-own', 'own', null), credential('c3', 'own', 'd3')],
  });
}

/** `good()` with one row replaced (by id) in one table. */
function withRow<K extends 'tenants' | 'domains' | 'relays' | 'credentials'>(
  base: Snapshot,
  table: K,
  row: Snapshot[K][number],
): Snapshot {
  return { ...base, [table]: (base[table] as Array<{ id: string }>).map((r) => (r.id === row.id ? row : r)) };
}

describe('quarantine', () => {
  it('holds a relay with no earlier version, and only the domains it reaches (451, not a refusal)', () => {
    const broken = withRow(good(), 'relays', relay('own', { host: 'smtp.own.test#evil', tenantId: 't2' }));
    const b = compile(broken);
    expect(b.quarantine).toEqual([
      {
        resourceType: 'relay',
        resourceId: 'own',
        tenantId: 't2',
        problems: [expect.objectContaining({ code: 'invalid_host' })],
        treatment: 'held',
        heldDomains: 2,
      },
    ]);
    expect(access(b, 'two.example')).toMatch(/^two\.example 451 4\.7\.1 Relayplane: /);
    expect(access(b, 'three.example')).toMatch(/^three\.example 451 4\.7\.1 /);
    expect(access(b, 'one.example')).toBe('one.example OK');
    expect(lines(b, 'sender_relay')).toEqual([
      '@four.example [smtp.shared.test]:587',
      '@one.example [smtp.shared.test]:587',
    ]);
    expect(lines(b, 'sasl_passwd').map((l) => l.split(' ')[0])).toEqual(['@one.example']);
    const e = explainRoute(broken, 'a@two.example', 'r@gmail.test');
    expect(e.outcome).toBe('rejected');
    expect(e.reason).toContain('451 4.7.1');
  });

  it('keeps the last compiled version of a row that stopped compiling: the same routes as before', () => {
    const before = compile(good());
    const broken = withRow(good(), 'relays', relay('own', { host: 'smtp.own.test#evil', tenantId: 't2' }));
    const b = compile(broken, { lastGood: good() });
    expect(b.quarantine).toEqual([
      expect.objectContaining({ resourceType: 'relay', resourceId: 'own', treatment: 'last-good', heldDomains: 0 }),
    ]);
    expect(b.version).toBe(before.version);
    expect(b.files).toEqual(before.files);
  });

  it('a domain whose limits clash with its relay’s (a race between two writes): that domain only', () => {
    const limited = withRow(
      good(),
      'relays',
      relay('shared', {
        host: 'smtp.shared.test',
        limits: { ...LIMITS, concurrency: 5, connectionReuseSeconds: null },
      }),
    );
    const clash = withRow(
      limited,
      'domains',
      domain('d4', 't2', 'four.example', { relayId: 'shared', limits: { ...LIMITS, recipientsPerMessage: 1 } }),
    );
    const held = compile(clash);
    expect(held.quarantine).toEqual([
      expect.objectContaining({
        resourceType: 'domain',
        resourceId: 'd4',
        tenantId: 't2',
        treatment: 'held',
        heldDomains: 1,
      }),
    ]);
    expect(held.quarantine[0]?.problems[0]?.code).toBe('limits_conflict');
    expect(access(held, 'four.example')).toMatch(/ 451 4\.7\.1 /);
    expect(access(held, 'one.example')).toBe('one.example OK');

    // With the domain's last compiled row it keeps its route (without the limit that cannot be honoured).
    const kept = compile(clash, { lastGood: limited });
    expect(kept.quarantine).toEqual([expect.objectContaining({ resourceId: 'd4', treatment: 'last-good' })]);
    expect(kept.files).toEqual(compile(limited).files);
  });

  it('a relay-wide credential Postfix cannot carry holds the domains that would use it, not those with their own', () => {
    const b = compile(withRow(good(), 'credentials', credential('c-own', 'own', null, 'user', 'line\nbreak')));
    expect(b.quarantine).toEqual([
      expect.objectContaining({
        resourceType: 'credential',
        resourceId: 'c-own',
        tenantId: 't2',
        treatment: 'held',
        heldDomains: 1,
      }),
    ]);
    expect(access(b, 'two.example')).toMatch(/ 451 /);
    expect(access(b, 'three.example')).toBe('three.example OK');
    expect(b.quarantine[0]?.problems[0]?.message).not.toContain('line');
    for (const file of Object.values(b.files)) expect(file.content).not.toContain('break');
  });

  it('a tenant row that cannot be expressed holds its domains; another tenant’s mail is untouched', () => {
    const b = compile(withRow(good(), 'tenants', tenant('t1', { defaultLimits: { ...LIMITS, concurrency: -7 } })));
    expect(b.quarantine).toEqual([
      expect.objectContaining({
        resourceType: 'tenant',
        resourceId: 't1',
        tenantId: 't1',
        treatment: 'held',
        heldDomains: 1,
      }),
    ]);
    expect(access(b, 'one.example')).toMatch(/ 451 /);
    for (const name of ['two.example', 'three.example', 'four.example']) expect(access(b, name)).toBe(`${name} OK`);
  });

  it('a fallback Postfix cannot combine with the primary holds that domain only', () => {
    const relays = [...good().relays, relay('tls', { host: 'smtp.tls.test', port: 465, tls: 'implicit' })];
    const b = compile({
      ...good(),
      relays,
      domains: [...good().domains, domain('d5', 't1', 'five.example', { relayId: 'shared', fallbackRelayId: 'tls' })],
    });
    expect(b.quarantine).toEqual([
      expect.objectContaining({ resourceType: 'domain', resourceId: 'd5', treatment: 'held' }),
    ]);
    expect(b.quarantine[0]?.problems[0]?.code).toBe('fallback_tls_mismatch');
    expect(access(b, 'one.example')).toBe('one.example OK');
  });

  it('settings out of range fall back to the last compiled ones, else to the defaults', () => {
    const bad = { ...good(), settings: settings({ defaultConcurrency: 0 }) };
    const tuned = { ...good(), settings: settings({ defaultConcurrency: 7 }) };
    expect(compile(bad, { lastGood: tuned }).mainCf.default_destination_concurrency_limit).toBe('7');
    expect(compile(bad, { lastGood: tuned }).quarantine).toEqual([
      expect.objectContaining({ resourceType: 'settings', treatment: 'last-good' }),
    ]);
    const fresh = compile(bad);
    expect(fresh.mainCf.default_destination_concurrency_limit).toBe('20');
    expect(fresh.quarantine).toEqual([
      expect.objectContaining({ resourceType: 'settings', resourceId: null, treatment: 'defaults' }),
    ]);
  });

  it('a domain name no table can carry gets no line at all; its twin by name keeps its route', () => {
    const b = compile({
      ...good(),
      domains: [
        ...good().domains,
        domain('evil', 't2', 'x.example\nrelayhost = evil', { relayId: 'own' }),
        domain('twin', 't2', 'one.example', { relayId: 'own' }),
      ],
    });
    expect(b.quarantine.map((u) => [u.resourceId, u.treatment])).toEqual([
      ['evil', 'held'],
      ['twin', 'held'],
    ]);
    expect(lines(b, 'sender_access').filter((l) => l.includes('one.example'))).toEqual(['one.example OK']);
    expect(Object.values(b.files).some((f) => f.content.includes('evil'))).toBe(false);
  });
});
