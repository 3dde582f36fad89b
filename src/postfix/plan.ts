/**
 * From per-domain resolutions to delivery services. Postfix picks the service per sender through
 * sender_dependent_default_transport_maps (`@domain service:` with an EMPTY nexthop keeps the
 * sender-dependent relayhost), and its queue manager applies limits per (service, nexthop) queue.
 *
 * - `smtp` (Postfix's own): routes without limits or implicit TLS. SASL by sender: the global
 *   smtp_sasl_password_maps holds `@domain user:pass` (smtp_sender_dependent_authentication=yes).
 * - `rp_r_<hash of relay ids>`: every domain without limits of its own on the same relay list whose
 *   relays have limits or implicit TLS; the relays' limits then cap that one shared queue. If all
 *   its domains resolve to the same credential per nexthop, it has its own nexthop-keyed SASL map
 *   and `-o smtp_sender_dependent_authentication=no`, so connections can be cached and reused.
 * - `rp_d_<hash of domain id>`: one sender domain with limits of its own (the domain gets its own
 *   queue), or a primary+fallback route whose credentials differ between the domains sharing it.
 *   Always its own nexthop-keyed SASL map, sender-dependent authentication off. Why: an `@domain`
 *   credential is offered to WHATEVER nexthop is being tried, so with a fallback relay one global
 *   key would hand the primary's password to the fallback; a per-service map keyed `[host]:port`
 *   gives each relay exactly its own credential.
 * A service without any credential gets `-o smtp_sasl_auth_enable=no`: it can never offer one.
 */
import { createHash } from 'node:crypto';
import { ProblemList, type ResourceType } from './errors.js';
import {
  defaultLimits,
  effectiveLimits,
  hasLimits,
  resolveDomain,
  type EffectiveLimits,
  type Hop,
  type RelayTlsPolicy,
  type SenderDomainResolution,
} from './resolve.js';
import type { Settings, Snapshot } from './snapshot.js';
import { buildIndex } from './validate.js';
import { senderKey, transportValue } from './table-keys.js';
import { planWarnings } from './warnings.js';
import type { DomainRoute, RoutePlan, SaslMode, ServicePlan, UnroutedDomain } from './plan-types.js';

export type { DomainRoute, RoutePlan, SaslMode, ServicePlan, UnroutedDomain };

export const GLOBAL_SASL_MAP = 'sasl_passwd';
export const GLOBAL_TLS_POLICY_MAP = 'tls_policy';
export const DEFAULT_SERVICE = 'smtp';

export type Routed = Extract<SenderDomainResolution, { kind: 'relay' | 'direct' }>;

function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 12);
}

export function isRoutePlan(value: unknown): value is RoutePlan {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'relayplane.route-plan';
}

function hops(res: Routed): Hop[] {
  return res.kind === 'relay' ? res.hops : [];
}

/** The sender_dependent_relayhost_maps value: the nexthops in order, null for direct routes. */
function relayhost(res: Routed): string | null {
  if (res.kind !== 'relay') return null;
  // Nearly every route has one hop: its nexthop string as is, not a new string per domain.
  const [only] = res.hops;
  return res.hops.length === 1 && only !== undefined ? only.nexthop : res.hops.map((h) => h.nexthop).join(',');
}

function credentialTuple(res: Routed): string {
  return hops(res)
    .map((h) => h.credential?.id ?? '')
    .join('\u0000');
}

const NO_NEXTHOPS: ReadonlySet<string> = new Set();

/** The service's own TLS policy map, needed only when one of its nexthops is reached with another policy elsewhere. */
function serviceTls(
  name: string,
  routeHops: readonly Hop[],
  shared: ReadonlySet<string>,
): Pick<ServicePlan, 'tlsPolicyMap' | 'tlsPolicies'> {
  if (!routeHops.some((h) => shared.has(h.nexthop))) return { tlsPolicyMap: null, tlsPolicies: [] };
  return {
    tlsPolicyMap: `tls_${name}`,
    tlsPolicies: routeHops.map((h): [string, RelayTlsPolicy] => [h.nexthop, h.tlsPolicy]),
  };
}

/** The nexthops that routed hops reach with more than one TLS policy. */
export function sharedNexthopsOf(routed: Iterable<Routed>): Set<string> {
  const policies = new Map<string, RelayTlsPolicy>();
  const shared = new Set<string>();
  for (const res of routed) {
    if (res.kind !== 'relay') continue;
    for (const hop of res.hops) {
      const seen = policies.get(hop.nexthop);
      if (seen === undefined) policies.set(hop.nexthop, hop.tlsPolicy);
      else if (seen !== hop.tlsPolicy) shared.add(hop.nexthop);
    }
  }
  return shared;
}

function serviceSasl(name: string, routeHops: Hop[]): Pick<ServicePlan, 'sasl' | 'saslMap' | 'saslEntries'> {
  const saslEntries = routeHops.flatMap((h) =>
    h.credential === null ? [] : [{ nexthop: h.nexthop, credential: h.credential }],
  );
  return saslEntries.length === 0
    ? { sasl: 'none', saslMap: null, saslEntries }
    : { sasl: 'service', saslMap: `sasl_${name}`, saslEntries };
}

/** Where a routed domain's mail goes: a service of its own, its relay group's service(s), or Postfix's `smtp`. */
export type Placement = { kind: 'own' } | { kind: 'group'; key: string } | { kind: 'smtp' };

export function placement(res: Routed, shared: ReadonlySet<string> = NO_NEXTHOPS): Placement {
  if (res.limitSources.some((s) => s.resourceType !== 'relay')) return { kind: 'own' };
  if (res.kind === 'direct') return { kind: 'smtp' }; // Postfix's smtp service, no limits of its own
  // A nexthop reached with several TLS policies has no entry in the global map: never via `smtp`.
  const needsService = res.implicitTls || res.hops.some((h) => hasLimits(h.relay.limits) || shared.has(h.nexthop));
  const perNexthopCredentials = res.hops.length > 1 && res.hops.some((h) => h.credential !== null);
  if (!needsService && !perNexthopCredentials) return { kind: 'smtp' };
  return { kind: 'group', key: res.hops.map((h) => h.relay.id).join('\u0000') };
}

/** A generated service with what makes it unique (two identities under one name are a hash collision). */
export interface PlannedService {
  identity: string;
  plan: ServicePlan;
  owner: { type: ResourceType; id: string };
}

/** The service of one sender domain with limits of its own (or of a split relay group). */
export function domainService(
  settings: Settings,
  res: Routed,
  shared: ReadonlySet<string> = NO_NEXTHOPS,
): PlannedService {
  const name = `rp_d_${shortHash(res.domain.id)}`;
  return {
    identity: `d:${res.domain.id}`,
    plan: {
      name,
      scope: 'domain',
      route: res.kind,
      implicitTls: res.kind === 'relay' && res.implicitTls,
      ...serviceSasl(name, hops(res)),
      ...serviceTls(name, hops(res), shared),
      limits: effectiveLimits(settings, res.limitSources),
      domains: [res.domain.name],
    },
    owner: { type: 'domain', id: res.domain.id },
  };
}

/**
 * The services of one relay group (same relay list, placement 'group'), members in name order:
 * one shared service, or one per member when a multi-hop route's credentials differ between them.
 */
export function groupServices(
  settings: Settings,
  key: string,
  members: readonly Routed[],
  shared: ReadonlySet<string> = NO_NEXTHOPS,
): PlannedService[] {
  const first = members[0];
  if (first === undefined || first.kind !== 'relay') return [];
  const uniform = members.every((m) => credentialTuple(m) === credentialTuple(first));
  if (!uniform && first.hops.length > 1) return members.map((m) => domainService(settings, m, shared));
  const name = `rp_r_${shortHash(key)}`;
  const sasl: Pick<ServicePlan, 'sasl' | 'saslMap' | 'saslEntries'> = uniform
    ? serviceSasl(name, first.hops)
    : { sasl: 'sender', saslMap: null, saslEntries: [] };
  const limits = effectiveLimits(
    settings,
    first.limitSources.filter((s) => s.resourceType === 'relay'),
  );
  // Per-sender SASL keeps Postfix from caching connections at all: a reuse time has nothing to limit (warned).
  if (!uniform) limits.connectionReuseSeconds = null;
  return [
    {
      identity: `r:${key}`,
      plan: {
        name,
        scope: 'relay',
        route: 'relay',
        implicitTls: first.implicitTls,
        ...sasl,
        ...serviceTls(name, first.hops, shared),
        limits,
        domains: members.map((m) => m.domain.name),
      },
      owner: { type: 'relay', id: first.hops[0]?.relay.id ?? key },
    },
  ];
}

/** The route of a routed domain on its service (undefined: Postfix's own `smtp`). */
export function domainRoute(
  res: Routed,
  service: ServicePlan | undefined,
  transport: string,
  smtpLimits: EffectiveLimits,
): DomainRoute {
  const sasl: SaslMode = service?.sasl ?? 'sender';
  return {
    domain: res.domain,
    tenant: res.tenant,
    kind: res.kind,
    service: service?.name ?? DEFAULT_SERVICE,
    senderKey: senderKey(res.domain.name),
    transport,
    hops: hops(res),
    relayhost: relayhost(res),
    sasl,
    saslMap: sasl === 'sender' ? GLOBAL_SASL_MAP : (service?.saslMap ?? null),
    tlsPolicyMap: service?.tlsPolicyMap ?? GLOBAL_TLS_POLICY_MAP,
    limits: service?.limits ?? smtpLimits,
    limitSources: res.limitSources,
  };
}

/** planRoutes() and what an incremental recompile needs to pick up from it. */
export interface DetailedPlan {
  plan: RoutePlan;
  /** Routed resolutions by domain name (a new map, the caller's to keep and change). */
  routed: Map<string, Routed>;
  /** Generated service name → identity. */
  identities: ReadonlyMap<string, string>;
}

/**
 * Validates the snapshot, resolves every sender domain once and assigns delivery services.
 * Throws CompileError with every problem found. compile() renders this plan; explainRoute() reads it.
 */
export function planRoutes(snapshot: Snapshot): RoutePlan {
  return planRoutesDetailed(snapshot).plan;
}

/** `held`: rows quarantine.ts quarantined (not checked; whatever they reach resolves as quarantined). */
export function planRoutesDetailed(snapshot: Snapshot, held?: ReadonlySet<string>): DetailedPlan {
  const problems = new ProblemList();
  const index = buildIndex(snapshot, problems, held);
  problems.throwIfAny();
  const settings = index.settings;

  const unrouted = new Map<string, UnroutedDomain>();
  const routed: Routed[] = [];
  for (const domain of [...index.domainsByName.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const res = resolveDomain(index, domain, problems);
    if (res.kind === 'unrouted') {
      unrouted.set(domain.name, { domain, code: res.code, reason: res.reason });
    } else {
      routed.push(res);
    }
  }
  problems.throwIfAny();

  const services = new Map<string, ServicePlan>();
  const serviceOf = new Map<string, string>();
  const identities = new Map<string, string>();
  const addService = ({ identity, plan, owner }: PlannedService) => {
    const seen = identities.get(plan.name);
    if (seen !== undefined && seen !== identity) {
      problems.add(
        'service_name_collision',
        owner.type,
        owner.id,
        `generated service name ${plan.name} collides; rename is impossible, report this`,
      );
      return;
    }
    identities.set(plan.name, identity);
    services.set(plan.name, plan);
    for (const d of plan.domains) serviceOf.set(d, plan.name);
  };

  const shared = sharedNexthopsOf(routed);
  const groups = new Map<string, Routed[]>();
  for (const res of routed) {
    const placed = placement(res, shared);
    if (placed.kind === 'own') addService(domainService(settings, res, shared));
    if (placed.kind !== 'group') continue;
    const group = groups.get(placed.key);
    if (group === undefined) groups.set(placed.key, [res]);
    else group.push(res);
  }
  for (const key of [...groups.keys()].sort()) {
    for (const service of groupServices(settings, key, groups.get(key) ?? [], shared)) addService(service);
  }

  const routes = new Map<string, DomainRoute>();
  const routedByName = new Map<string, Routed>();
  const smtpLimits = defaultLimits(settings);
  // One `service:` string per service, not one per domain (100,000 routes share a handful).
  const transports = new Map<string, string>();
  for (const res of routed) {
    const name = serviceOf.get(res.domain.name) ?? DEFAULT_SERVICE;
    let transport = transports.get(name);
    if (transport === undefined) transports.set(name, (transport = transportValue(name)));
    routes.set(res.domain.name, domainRoute(res, services.get(name), transport, smtpLimits));
    routedByName.set(res.domain.name, res);
  }

  const relayTlsPolicies = new Map<string, RelayTlsPolicy>();
  for (const route of routes.values()) {
    for (const hop of route.hops) if (!shared.has(hop.nexthop)) relayTlsPolicies.set(hop.nexthop, hop.tlsPolicy);
  }

  const sortedServices = [...services.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  checkServiceLimits(sortedServices, routes, problems);
  problems.throwIfAny();

  const plan: RoutePlan = {
    kind: 'relayplane.route-plan',
    index,
    routes,
    unrouted,
    services: sortedServices,
    relayTlsPolicies,
    sharedNexthops: shared,
    warnings: [],
  };
  plan.warnings = planWarnings(plan);
  return { plan, routed: routedByName, identities };
}

/** Combinations that only appear once domain and relay limits meet in one service. */
export function checkServiceLimits(
  services: readonly ServicePlan[],
  routes: ReadonlyMap<string, DomainRoute>,
  problems: ProblemList,
): void {
  for (const s of services) {
    const route = routes.get(s.domains[0] ?? '');
    const owner: { type: ResourceType; id: string } =
      s.scope === 'domain' && route !== undefined
        ? { type: 'domain', id: route.domain.id }
        : { type: 'relay', id: route?.hops[0]?.relay.id ?? s.name };
    if (
      s.limits.recipientsPerMessage === 1 &&
      (s.limits.params.concurrency !== undefined || s.limits.rateDelaySeconds > 0)
    ) {
      problems.add(
        'limits_conflict',
        owner.type,
        owner.id,
        `service ${s.name} (${s.domains.join(', ')}): recipientsPerMessage 1 combined with a concurrency limit or rate delay ` +
          '(from the domain, its tenant, its relays or the settings) cannot be honoured: with a recipient limit of 1 Postfix applies ' +
          'concurrency and delay per recipient instead of per destination.',
      );
    }
  }
}
