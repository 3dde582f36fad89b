/**
 * The ONE resolution per sender domain that every table and every explanation derives from:
 * which relays (in order), which credential each of them gets, which TLS policy, which limits.
 * Panels that build the relay map and the SASL map separately end up sending one relay's password
 * to another; here both come from the same Hop list.
 *
 * Credential rule, per hop (= per relay in the route): the credential scoped to (relay, this
 * domain), else the relay-wide credential of that relay, else none. A domain never gets a
 * credential scoped to another domain, even on a relay where only other domains have one.
 *
 * Limits: a domain's level is its own non-null fields, else its tenant's defaults (per domain, not
 * a tenant-wide budget). The queue that carries the mail gets the most restrictive of the domain
 * level and every relay in its route (min concurrency and recipients, max delay), because Postfix's
 * queue manager enforces limits per (service, nexthop) queue and one queue feeds primary and
 * fallback alike. Unset fields inherit Settings (default_destination_*).
 */
import { isIP, isIPv4, isIPv6 } from 'node:net';
import type { ProblemList } from './errors.js';
import { formatNexthop } from './map-encoding.js';
import type { Credential, Domain, Relay, RelayLimits, SenderLimits, Settings, Tenant } from './snapshot.js';
import { unitKey, type SnapshotIndex } from './validate.js';

/** TLS levels written to smtp_tls_policy_maps for relays. */
export type RelayTlsPolicy = 'may' | 'encrypt' | 'verify' | 'secure';

export interface Hop {
  relay: Relay;
  /** `[host]:port` — also the key of the TLS policy and of per-service SASL maps. */
  nexthop: string;
  tlsPolicy: RelayTlsPolicy;
  credential: Credential | null;
}

export type UnroutedCode =
  | 'null_sender'
  | 'no_domain'
  | 'unknown_domain'
  | 'tenant_suspended'
  | 'domain_disabled'
  | 'domain_unverified'
  /** Only while collecting problems: such a domain is quarantined (quarantine.ts). */
  | 'invalid_route'
  /** The domain, its tenant, a relay of its route or its credential is quarantined, with no earlier version to stand in. */
  | 'quarantined';

export interface LimitSource {
  resourceType: 'tenant' | 'domain' | 'relay';
  resourceId: string;
  limits: SenderLimits | RelayLimits;
}

export type SenderDomainResolution =
  | { kind: 'unrouted'; code: UnroutedCode; domain: Domain | null; reason: string }
  | { kind: 'direct'; domain: Domain; tenant: Tenant; limitSources: LimitSource[] }
  | { kind: 'relay'; domain: Domain; tenant: Tenant; hops: Hop[]; implicitTls: boolean; limitSources: LimitSource[] };

export interface EffectiveLimits {
  /** What the queue manager uses: 1 whenever a rate delay is in effect. */
  concurrency: number;
  rateDelaySeconds: number;
  /** null = Postfix's default_destination_recipient_limit (50). */
  recipientsPerMessage: number | null;
  /** smtp_connection_reuse_time_limit for the service; null = Postfix default (300s). */
  connectionReuseSeconds: number | null;
  /** Per-service main.cf parameters to set (`<service>_destination_*`); absent ones inherit defaults. */
  params: { concurrency?: number; rateDelaySeconds?: number; recipientsPerMessage?: number };
}

export function relayTlsPolicy(relay: Pick<Relay, 'tls' | 'verify' | 'host'>): RelayTlsPolicy {
  if (relay.tls === 'opportunistic') return 'may';
  if (!relay.verify) return 'encrypt';
  // `secure` for a bracketed nexthop matches the certificate against the relay host name itself
  // (smtp_tls_secure_cert_match = nexthop, dot-nexthop); no DNS answer is trusted. It matches names
  // only, never an IP address, even one the certificate lists as IP SAN (posttls-finger: "hostname
  // mismatch"); `verify` on an IP literal checks the chain and the IP SAN ("Verified", else "IP
  // address mismatch"), and with no DNS involved it is as strict as `secure` is for names.
  return isIP(relay.host) === 0 ? 'secure' : 'verify';
}

export function credentialFor(index: SnapshotIndex, relayId: string, domainId: string): Credential | null {
  const scopes = index.credentialsByRelay.get(relayId);
  return scopes === undefined ? null : (scopes.get(domainId) ?? scopes.get(null) ?? null);
}

export function hasLimits(limits: SenderLimits | RelayLimits | null): boolean {
  if (limits === null) return false;
  const reuse = 'connectionReuseSeconds' in limits ? limits.connectionReuseSeconds : null;
  return (limits.concurrency ?? reuse ?? limits.rateDelaySeconds ?? limits.recipientsPerMessage ?? null) !== null;
}

function unrouted(code: UnroutedCode, domain: Domain | null, reason: string): SenderDomainResolution {
  return { kind: 'unrouted', code, domain, reason };
}

/**
 * Resolves one sender domain. Semantic problems of routed domains (ownership, fallback
 * compatibility) go to `problems`; planRoutes() refuses the whole snapshot if there are any.
 */
export function resolveSenderDomain(
  index: SnapshotIndex,
  domainName: string,
  problems: ProblemList,
): SenderDomainResolution {
  const domain = index.domainsByName.get(domainName);
  if (domain === undefined)
    return unrouted('unknown_domain', null, `sender domain ${domainName} is not configured in Relayplane`);
  return resolveDomain(index, domain, problems);
}

/** Is a relay of the domain's route, or the credential it would get there, quarantined? */
function routeHeld(index: SnapshotIndex, domain: Domain): boolean {
  if (domain.route !== 'relay') return false;
  for (const relayId of [domain.relayId, domain.fallbackRelayId]) {
    if (relayId === null) continue;
    if (index.held.has(unitKey('relay', relayId))) return true;
    const credential = credentialFor(index, relayId, domain.id);
    if (credential !== null && index.held.has(unitKey('credential', credential.id))) return true;
  }
  return false;
}

/** The text smtpd answers (451 4.7.1) for a quarantined sender domain: no detail, it reaches the sender. */
export const QUARANTINE_REASON = 'its configuration cannot be applied on this node yet; the operator has been told';

/** resolveSenderDomain for a domain of the index in hand (planRoutes walks all of them: no lookup by name). */
export function resolveDomain(index: SnapshotIndex, domain: Domain, problems: ProblemList): SenderDomainResolution {
  const domainName = domain.name;
  const held = index.held.size > 0;
  const quarantined = () => unrouted('quarantined', domain, `sender domain ${domainName}: ${QUARANTINE_REASON}`);
  // A quarantined row's fields cannot be trusted; a quarantined relay or credential only matters to a domain that would be routed.
  if (held && (index.held.has(unitKey('domain', domain.id)) || index.held.has(unitKey('tenant', domain.tenantId))))
    return quarantined();
  const tenant = index.tenants.get(domain.tenantId);
  if (tenant === undefined) return unrouted('unknown_domain', domain, `sender domain ${domainName} has no tenant`);
  if (tenant.status === 'suspended')
    return unrouted('tenant_suspended', domain, `the tenant of sender domain ${domainName} is suspended`);
  if (domain.status === 'disabled')
    return unrouted('domain_disabled', domain, `sender domain ${domainName} is disabled`);
  // A degraded domain (a record disappeared) keeps its route during the grace period; the
  // verifier moves it to `failed` when the period ends, and that recompiles without it.
  if (domain.status !== 'verified' && domain.status !== 'degraded' && !domain.compileOverride) {
    return unrouted('domain_unverified', domain, `sender domain ${domainName} is ${domain.status}, not verified`);
  }
  if (held && routeHeld(index, domain)) return quarantined();

  const domainSources: LimitSource[] = [];
  if (hasLimits(tenant.defaultLimits) && tenant.defaultLimits !== null)
    domainSources.push({ resourceType: 'tenant', resourceId: tenant.id, limits: tenant.defaultLimits });
  if (hasLimits(domain.limits) && domain.limits !== null)
    domainSources.push({ resourceType: 'domain', resourceId: domain.id, limits: domain.limits });

  if (domain.route === 'direct') return { kind: 'direct', domain, tenant, limitSources: domainSources };

  const primary = domain.relayId === null ? undefined : index.relays.get(domain.relayId);
  const fallback = domain.fallbackRelayId === null ? undefined : index.relays.get(domain.fallbackRelayId);
  const relays: Relay[] = [];
  if (primary !== undefined) relays.push(primary);
  if (fallback !== undefined) relays.push(fallback);
  let ok = true;
  if (primary === undefined) {
    problems.add('route_inconsistent', 'domain', domain.id, `domain ${domainName} routes via a relay but has no relay`);
    ok = false;
  }
  const [first, second] = relays;
  if (domain.fallbackRelayId !== null && domain.fallbackRelayId === domain.relayId) {
    problems.add(
      'route_inconsistent',
      'domain',
      domain.id,
      `domain ${domainName} names the same relay as primary and fallback`,
    );
    ok = false;
  } else if (first !== undefined && second !== undefined && first.host === second.host && first.port === second.port) {
    // One nexthop twice: the per-nexthop SASL and TLS keys could not tell the two relays apart.
    problems.add(
      'route_inconsistent',
      'domain',
      domain.id,
      `domain ${domainName}: primary and fallback relay are both ${formatNexthop(first.host, first.port)}`,
    );
    ok = false;
  }
  let implicitCount = 0;
  for (const relay of relays) {
    if (relay.tenantId !== null && relay.tenantId !== domain.tenantId) {
      problems.add(
        'relay_not_allowed',
        'domain',
        domain.id,
        `domain ${domainName} uses relay ${relay.id}, which belongs to another tenant`,
      );
      ok = false;
    }
    if (relay.tls === 'implicit') implicitCount += 1;
    const family = unreachableFamily(relay.host, index.settings.inetProtocols);
    if (family !== null) {
      problems.add(
        'relay_unreachable',
        'domain',
        domain.id,
        `domain ${domainName}: relay ${formatNexthop(relay.host, relay.port)} is an ${family} address but inetProtocols is ` +
          `${index.settings.inetProtocols}; Postfix would bounce its mail (5.4.4 "Name service error")`,
      );
      ok = false;
    }
  }
  if (implicitCount > 0 && implicitCount < relays.length) {
    problems.add(
      'fallback_tls_mismatch',
      'domain',
      domain.id,
      `domain ${domainName}: primary and fallback relay must both use implicit TLS or both not, ` +
        'because Postfix sets TLS-on-connect (smtp_tls_wrappermode) per delivery service, and one service tries both relays',
    );
    ok = false;
  }
  if (!ok || primary === undefined)
    return unrouted('invalid_route', domain, `sender domain ${domainName} has an invalid route`);

  const hops: Hop[] = relays.map((relay) => ({
    relay,
    nexthop: index.nexthops.get(relay.id) ?? formatNexthop(relay.host, relay.port),
    tlsPolicy: relayTlsPolicy(relay),
    credential: credentialFor(index, relay.id, domain.id),
  }));
  const limitSources = domainSources;
  for (const relay of relays) {
    if (hasLimits(relay.limits) && relay.limits !== null)
      limitSources.push({ resourceType: 'relay', resourceId: relay.id, limits: relay.limits });
  }
  return { kind: 'relay', domain, tenant, hops, implicitTls: implicitCount === relays.length, limitSources };
}

/**
 * The address family of a relay's IP literal when Postfix's inet_protocols leaves it out: the smtp
 * client then finds no usable address and bounces permanently. Host names resolve per protocol.
 */
export function unreachableFamily(host: string, inetProtocols: Settings['inetProtocols']): 'IPv4' | 'IPv6' | null {
  if (inetProtocols === 'ipv4' && isIPv6(host)) return 'IPv6';
  if (inetProtocols === 'ipv6' && isIPv4(host)) return 'IPv4';
  return null;
}

/** Domain level first (domain fields over tenant defaults), then relays: min/max across all. */
export function effectiveLimits(settings: Settings, sources: readonly LimitSource[]): EffectiveLimits {
  const domainLevel = (field: keyof SenderLimits): number | null => {
    const domain = sources.find((s) => s.resourceType === 'domain')?.limits[field] ?? null;
    return domain ?? sources.find((s) => s.resourceType === 'tenant')?.limits[field] ?? null;
  };
  const relayValues = (field: keyof RelayLimits): number[] =>
    sources
      .filter((s) => s.resourceType === 'relay')
      .map((s) => (s.limits as Partial<RelayLimits>)[field] ?? null)
      .filter((v): v is number => v !== null);
  const combine = (field: keyof SenderLimits, pick: (values: number[]) => number): number | undefined => {
    const values = [domainLevel(field), ...relayValues(field)].filter((v): v is number => v !== null);
    return values.length === 0 ? undefined : pick(values);
  };
  const concurrency = combine('concurrency', (v) => Math.min(...v));
  const rateDelaySeconds = combine('rateDelaySeconds', (v) => Math.max(...v));
  const recipientsPerMessage = combine('recipientsPerMessage', (v) => Math.min(...v));
  const reuse = relayValues('connectionReuseSeconds');

  const params: EffectiveLimits['params'] = {};
  if (concurrency !== undefined) params.concurrency = concurrency;
  if (rateDelaySeconds !== undefined) params.rateDelaySeconds = rateDelaySeconds;
  if (recipientsPerMessage !== undefined) params.recipientsPerMessage = recipientsPerMessage;
  const delay = rateDelaySeconds ?? settings.defaultRateDelaySeconds;
  return {
    concurrency: delay > 0 ? 1 : (concurrency ?? settings.defaultConcurrency),
    rateDelaySeconds: delay,
    recipientsPerMessage: recipientsPerMessage ?? null,
    connectionReuseSeconds: reuse.length === 0 ? null : Math.min(...reuse),
    params,
  };
}

/** The Settings-only limits of Postfix's own `smtp` service. */
export function defaultLimits(settings: Settings): EffectiveLimits {
  return effectiveLimits(settings, []);
}
