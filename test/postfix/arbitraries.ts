/**
 * fast-check generators of whole snapshots: tenants sharing relays, tenant-owned relays, fallback
 * relays, domain/tenant/relay limits, TLS modes, credentials of every scope, destination policies,
 * suspended tenants and unverified domains. Mostly valid; some combinations the compiler must
 * refuse slip through on purpose (the differential test checks those refusals are clean).
 */
import fc from 'fast-check';
import {
  isValidSaslSecret,
  type Credential,
  type DestinationPolicy,
  type Domain,
  type Relay,
  type RelayLimits,
  type SenderLimits,
  type Snapshot,
  type Tenant,
} from '../../src/postfix/index.js';
import { fingerprintOf, settings } from './fixtures.js';

export const DOMAIN_POOL = ['a.example', 'b.example', 'c.example', 'd.example', 'e.test', 'f.test'];
const HOST_POOL = ['smtp.one.test', 'smtp.two.test', '10.0.0.5', '2001:db8::25', 'mx.shared.test'];
const PATTERN_POOL = ['gmail.test', '.yahoo.test', 'yahoo.test', '.mx.yahoo.test', 'a.example'];
export const RECIPIENT_POOL = ['r@gmail.test', 'r@x.yahoo.test', 'r@yahoo.test', 'r@deep.mx.yahoo.test', 'r@b.example'];

/** null with weight `nulls` against one for a value. */
const opt = <T>(arb: fc.Arbitrary<T>, nulls = 1) =>
  fc.oneof({ weight: nulls, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });

const senderLimits: fc.Arbitrary<SenderLimits> = fc
  .oneof(
    fc.record({
      concurrency: opt(fc.integer({ min: 1, max: 5 })),
      rateDelaySeconds: fc.constant(null),
      recipientsPerMessage: opt(fc.integer({ min: 2, max: 100 })),
    }),
    fc.record({
      concurrency: opt(fc.constant(1)),
      rateDelaySeconds: opt(fc.integer({ min: 0, max: 3 })),
      recipientsPerMessage: opt(fc.integer({ min: 2, max: 100 })),
    }),
    fc.constant({ concurrency: null, rateDelaySeconds: null, recipientsPerMessage: 1 }),
  )
  .chain((l) =>
    l.recipientsPerMessage === 1 ? fc.constantFrom(l, { ...l, recipientsPerMessage: 3 }) : fc.constant(l),
  );

const relayLimits: fc.Arbitrary<RelayLimits> = fc
  .tuple(senderLimits, opt(fc.integer({ min: 1, max: 600 }), 2))
  .map(([l, reuse]) => ({ ...l, connectionReuseSeconds: reuse }));

const secret = fc
  .oneof(
    fc.string({ minLength: 1, maxLength: 20 }),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
    fc.constantFrom('pa ss:wo#rd', '"q\'uo:te"', 'ünï€ødé 😀', '#hash'),
  )
  .filter(isValidSaslSecret);
const username = fc.stringMatching(/^[A-Za-z0-9@._+-]{1,16}$/);

export const snapshotArb: fc.Arbitrary<Snapshot> = fc
  .record({
    delay: fc.constantFrom(0, 0, 0, 1),
    protocols: fc.constantFrom('ipv4' as const, 'all' as const),
    tenants: fc.array(
      fc.record({ suspended: fc.constantFrom(false, false, false, true), limits: opt(senderLimits, 3) }),
      { minLength: 1, maxLength: 3 },
    ),
    relays: fc.array(
      fc.record({
        host: fc.nat({ max: HOST_POOL.length - 1 }),
        port: fc.constantFrom(25, 465, 587, 2525),
        tls: fc.constantFrom('starttls' as const, 'implicit' as const, 'opportunistic' as const),
        verify: fc.boolean(),
        owner: opt(fc.nat({ max: 2 }), 2),
        limits: opt(relayLimits, 2),
        // On the first relay's [host]:port: several relay rows on one nexthop, often with other TLS.
        twin: fc.constantFrom(false, false, true),
      }),
      { minLength: 2, maxLength: 4 },
    ),
    domains: fc.array(
      fc.record({
        tenant: fc.nat({ max: 2 }),
        status: fc.constantFrom(
          'verified',
          'verified',
          'verified',
          'pending',
          'degraded',
          'failed',
          'disabled',
        ) as fc.Arbitrary<Domain['status']>,
        override: fc.boolean(),
        direct: fc.boolean().chain((b) => (b ? fc.boolean() : fc.constant(false))),
        relay: fc.nat({ max: 3 }),
        fallback: opt(fc.nat({ max: 2 })),
        limits: opt(senderLimits, 3),
        respectOwnership: fc.constantFrom(true, true, true, true, false),
      }),
      { minLength: 1, maxLength: DOMAIN_POOL.length },
    ),
    credentials: fc.array(
      fc.record({ relay: fc.nat({ max: 3 }), domain: opt(fc.nat({ max: 5 }), 1), username, secret }),
      { maxLength: 8 },
    ),
    policies: fc.array(
      fc.record({
        pattern: fc.constantFrom(...PATTERN_POOL),
        tls: opt(fc.constantFrom('may' as const, 'encrypt' as const, 'verify' as const, 'secure' as const), 1),
        concurrency: opt(fc.constant(2), 3),
      }),
      { maxLength: 3 },
    ),
  })
  .map((g): Snapshot => {
    const tenants: Tenant[] = g.tenants.map((t, i) => ({
      id: `t${i}`,
      slug: `t${i}`,
      status: t.suspended ? 'suspended' : 'active',
      defaultLimits: t.limits,
    }));
    const tenantId = (n: number) => tenants[n % tenants.length]?.id ?? 't0';
    const first = g.relays[0];
    const relays: Relay[] = g.relays.map((r, i) => ({
      id: `r${i}`,
      name: `relay ${i}`,
      host: HOST_POOL[r.twin && first !== undefined ? first.host : r.host] ?? 'smtp.one.test',
      port: r.twin && first !== undefined ? first.port : r.port,
      tls: r.tls,
      verify: r.tls === 'opportunistic' ? false : r.verify,
      tenantId: r.owner === null ? null : tenantId(r.owner),
      limits: r.limits,
    }));
    const allowed = (tenant: string) => relays.filter((r) => r.tenantId === null || r.tenantId === tenant);
    const domains: Domain[] = g.domains.map((d, i) => {
      const tenant = tenantId(d.tenant);
      const pool = d.respectOwnership && allowed(tenant).length > 0 ? allowed(tenant) : relays;
      const primary = pool[d.relay % pool.length];
      // An offset from the primary, so that a fallback is usually another relay.
      const candidates = pool.filter(
        (r) => r !== primary && (!d.respectOwnership || (r.tls === 'implicit') === (primary?.tls === 'implicit')),
      );
      const fallback =
        d.fallback === null || candidates.length === 0 ? undefined : candidates[d.fallback % candidates.length];
      return {
        id: `d${i}`,
        tenantId: tenant,
        name: DOMAIN_POOL[i] ?? `x${i}.example`,
        status: d.status,
        compileOverride: d.override,
        route: d.direct ? 'direct' : 'relay',
        relayId: d.direct ? null : (primary?.id ?? null),
        fallbackRelayId: d.direct || fallback === undefined || fallback.id === primary?.id ? null : fallback.id,
        limits: d.limits,
      };
    });
    const scopes = new Set<string>();
    const credentials: Credential[] = [];
    g.credentials.forEach((c, i) => {
      const relay = relays[c.relay % relays.length];
      const domain = c.domain === null ? undefined : domains[c.domain % domains.length];
      if (relay === undefined) return;
      if (domain !== undefined && relay.tenantId !== null && relay.tenantId !== domain.tenantId) return;
      const scope = `${relay.id}/${domain?.id ?? ''}`;
      if (scopes.has(scope)) return;
      scopes.add(scope);
      credentials.push({
        id: `c${i}`,
        relayId: relay.id,
        domainId: domain?.id ?? null,
        username: c.username,
        secret: c.secret,
        fingerprint: fingerprintOf(c.secret),
      });
    });
    const patterns = new Set<string>();
    const destinationPolicies: DestinationPolicy[] = [];
    g.policies.forEach((p, i) => {
      if (patterns.has(p.pattern)) return;
      patterns.add(p.pattern);
      destinationPolicies.push({
        id: `p${i}`,
        pattern: p.pattern,
        tls: p.tls,
        concurrency: p.concurrency,
        rateDelaySeconds: null,
      });
    });
    return {
      settings: settings({
        defaultConcurrency: g.delay > 0 ? 1 : 10,
        defaultRateDelaySeconds: g.delay,
        inetProtocols: g.protocols,
      }),
      tenants,
      relays,
      domains,
      credentials,
      destinationPolicies,
    };
  });

/** Sender/recipient pairs for a snapshot: every domain in several spellings, plus the strangers. */
export function pairsFor(snapshot: Snapshot): Array<[string, string]> {
  const senders = [
    ...snapshot.domains.flatMap((d) => [
      `u@${d.name}`,
      `u+tag@${d.name}`,
      `U@${d.name.toUpperCase()}`,
      `x@sub.${d.name}`,
    ]),
    'x@unknown.test',
    'nodomain',
    '',
  ];
  return senders.map((s, i): [string, string] => [s, RECIPIENT_POOL[i % RECIPIENT_POOL.length] ?? 'r@gmail.test']);
}
