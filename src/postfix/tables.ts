/**
 * Table entries derived from the route plan. Each function returns [key, value] pairs; compiler.ts
 * renders them and explain.ts quotes them, so an explanation always names the entry that exists.
 *
 * Keys of the sender-dependent tables are `@domain`: Postfix looks up the full sender address,
 * then `@domain` (mail_addr_find), in sender_dependent_default_transport_maps,
 * sender_dependent_relayhost_maps and (with smtp_sender_dependent_authentication) in
 * smtp_sasl_password_maps alike, so the three can never disagree about which domain matched.
 */
import { saslPasswordValue, senderDomainPattern } from './map-encoding.js';
import { GLOBAL_SASL_MAP, type DomainRoute, type RoutePlan, type ServicePlan, type UnroutedDomain } from './plan.js';

export const TABLE = {
  /** sender_dependent_default_transport_maps: `@domain service:` (empty nexthop on purpose). */
  senderTransport: 'sender_transport',
  /** sender_dependent_relayhost_maps: `@domain [primary]:port,[fallback]:port`. */
  senderRelay: 'sender_relay',
  /** smtp_sasl_password_maps (global, by sender): `@domain user:secret`. */
  saslPasswd: GLOBAL_SASL_MAP,
  /** smtp_tls_policy_maps: `[host]:port level` for relays, `domain`/`.domain` level for direct mail. */
  tlsPolicy: 'tls_policy',
  /** smtpd_sender_restrictions check_sender_access (regexp): who may submit at all. */
  senderAccess: 'sender_access',
} as const;

/**
 * default_transport for every sender without a route (unknown, suspended, unverified, disabled,
 * and the null sender of node-generated bounces): `retry:` defers with this text, so queued mail
 * neither leaves through a relay, nor goes out directly, nor vanishes; it waits visibly in the
 * queue (`postqueue -p`) until the sender is routed again or maximal_queue_lifetime expires.
 * A non-empty nexthop here also overrides any relayhost (trivial-rewrite resolve.c).
 */
export const UNROUTED_TRANSPORT = 'retry:4.7.1 Relayplane: this sender has no active route on this node';
export const UNROUTED_SERVICE = 'retry';

export const NULL_SENDER_PATTERN = '/^<>$/';
export const CATCH_ALL_PATTERN = '/^/';
export const REJECT_NULL_SENDER = 'REJECT Relayplane: a null sender cannot be routed to a tenant relay';
export const REJECT_UNKNOWN_SENDER = 'REJECT Relayplane: the sender domain is not configured on this relay';
export const PERMIT_SENDER = 'DUNNO';

export function rejectText(reason: string): string {
  return `REJECT Relayplane: ${reason}`;
}


/** The global map holds a domain's credential only for sender-authenticated single-nexthop routes. */
export function globalSaslCredential(route: DomainRoute) {
  const hop = route.hops[0];
  return route.sasl === 'sender' && route.hops.length === 1 && hop !== undefined ? hop.credential : null;
}

export function senderTransportEntries(plan: RoutePlan): Array<[string, string]> {
  return [...plan.routes.values()].map((r) => [r.senderKey, r.transport]);
}

// Loops rather than flatMap: at 100,000 domains, flatMap's per-route arrays are 100,000 more objects per table.
export function senderRelayEntries(plan: RoutePlan): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  for (const r of plan.routes.values()) if (r.relayhost !== null) entries.push([r.senderKey, r.relayhost]);
  return entries;
}

export function globalSaslEntries(plan: RoutePlan): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  for (const r of plan.routes.values()) {
    const c = globalSaslCredential(r);
    if (c !== null) entries.push([r.senderKey, saslPasswordValue(c.username, c.secret)]);
  }
  return entries;
}

export function serviceSaslEntries(service: ServicePlan): Array<[string, string]> {
  return service.saslEntries.map((e) => [e.nexthop, saslPasswordValue(e.credential.username, e.credential.secret)]);
}

export function tlsPolicyEntries(plan: RoutePlan): Array<[string, string]> {
  const entries: Array<[string, string]> = [...plan.relayTlsPolicies.entries()];
  for (const p of plan.index.destinationPolicies) if (p.tls !== null) entries.push([p.pattern, p.tls]);
  return entries;
}

/**
 * Every configured domain name once, in code-unit order. planRoutes fills routes and unrouted in
 * name order, so the two are merged rather than sorted again; anything else is sorted.
 */
export function configuredDomainNames(plan: RoutePlan): string[] {
  const routed = [...plan.routes.keys()];
  const unrouted = [...plan.unrouted.keys()];
  const names: string[] = [];
  let i = 0;
  let j = 0;
  while (i < routed.length && j < unrouted.length) names.push(routed[i]! < unrouted[j]! ? routed[i++]! : unrouted[j++]!);
  while (i < routed.length) names.push(routed[i++]!);
  while (j < unrouted.length) names.push(unrouted[j++]!);
  for (let k = 1; k < names.length; k += 1) {
    if (!(names[k - 1]! < names[k]!)) return [...new Set(names)].sort();
  }
  return names;
}

/** One configured domain's sender_access entry: DUNNO when routed, REJECT with the reason otherwise. */
export function senderAccessEntry(name: string, unrouted: UnroutedDomain | undefined): [string, string] {
  return [senderDomainPattern(name), unrouted === undefined ? PERMIT_SENDER : rejectText(unrouted.reason)];
}

export const FIRST_ACCESS_ENTRY: [string, string] = [NULL_SENDER_PATTERN, REJECT_NULL_SENDER];
export const LAST_ACCESS_ENTRY: [string, string] = [CATCH_ALL_PATTERN, REJECT_UNKNOWN_SENDER];

/** Regexp entries in match order: null sender, one per configured domain, then the catch-all. */
export function senderAccessEntries(plan: RoutePlan): Array<[string, string]> {
  const names = configuredDomainNames(plan);
  return [FIRST_ACCESS_ENTRY, ...names.map((name) => senderAccessEntry(name, plan.unrouted.get(name))), LAST_ACCESS_ENTRY];
}
