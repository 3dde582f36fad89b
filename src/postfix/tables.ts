/**
 * Table entries derived from the route plan. Each function returns [key, value] pairs; compiler.ts
 * renders them and explain.ts quotes them, so an explanation always names the entry that exists.
 *
 * Keys of the sender-dependent tables are `@domain`: Postfix looks up the full sender address,
 * then `@domain` (mail_addr_find), in sender_dependent_default_transport_maps,
 * sender_dependent_relayhost_maps and (with smtp_sender_dependent_authentication) in
 * smtp_sasl_password_maps alike, so the three can never disagree about which domain matched.
 */
import { lookupDomain } from './address.js';
import { maskedSaslPasswordValue, saslPasswordValue } from './map-encoding.js';
import {
  DEFAULT_SERVICE,
  GLOBAL_SASL_MAP,
  GLOBAL_TLS_POLICY_MAP,
  type DomainRoute,
  type RoutePlan,
  type ServicePlan,
  type UnroutedDomain,
} from './plan.js';
import type { Credential } from './snapshot.js';
import { transportValue } from './table-keys.js';

export const TABLE = {
  /**
   * sender_dependent_default_transport_maps, second: `@domain smtp:` for every routed sender (empty
   * nexthop on purpose), so an unlisted sender falls through to the `retry:` default_transport.
   */
  senderTransport: 'sender_transport',
  /**
   * sender_dependent_default_transport_maps, first (first match wins): `@domain service:` for the
   * senders with a service of their own. A relay's first limit moves its domains to a service: it
   * adds their entries here, in one small table, and leaves the large sender_transport as it was.
   */
  senderService: 'sender_service',
  /** sender_dependent_relayhost_maps: `@domain [primary]:port,[fallback]:port`. */
  senderRelay: 'sender_relay',
  /** smtp_sasl_password_maps (global, by sender): `@domain user:secret`. */
  saslPasswd: GLOBAL_SASL_MAP,
  /**
   * smtp_tls_policy_maps: `[host]:port level` for relays, `domain`/`.domain` level for direct mail.
   * A service reaching a nexthop that another relay row reaches with another level has its own
   * `tls_<service>` map instead.
   */
  tlsPolicy: GLOBAL_TLS_POLICY_MAP,
  /** smtpd_sender_restrictions check_sender_access (hash, keyed by domain name): who may submit at all. */
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

/** smtpd's lookup key for the null sender (smtpd_null_access_lookup_key's default). */
export const NULL_SENDER_KEY = '<>';
export const REJECT_NULL_SENDER = 'REJECT Relayplane: a null sender cannot be routed to a tenant relay';
const REJECT_UNKNOWN_SENDER = 'REJECT Relayplane: the sender domain is not configured on this relay';
/** OK, not DUNNO: the sender stage must end here, before the catch-all REJECT that follows the table. */
export const PERMIT_SENDER = 'OK';

export const REJECT_NON_FQDN_SENDER = 'reject_non_fqdn_sender';
export const REJECT_UNLISTED_SENDER = `check_sender_access static:{${REJECT_UNKNOWN_SENDER}}`;

/**
 * smtpd_sender_restrictions, in order: senders without a fully-qualified domain are refused first
 * (smtpd completes a bare `MAIL FROM:<x>` with $myorigin before the table lookup, and the queue
 * routes it as that address: were the node's own domain a tenant's, bare senders would pass as that
 * tenant); then the table by domain name; then everyone the table does not list. `static:{…}`
 * (Postfix 3.0+) is the catch-all a hash table cannot hold.
 */
export function senderRestrictions(accessTable: string): string {
  return `${REJECT_NON_FQDN_SENDER}, check_sender_access ${accessTable}, ${REJECT_UNLISTED_SENDER}`;
}

/**
 * Postfix's default without smtpd_access_maps: with it, the access table's key `a.example` would
 * also match every `x.a.example` sender, which has no route of its own. Without it, smtpd looks
 * subdomains up as `.a.example`, a key the table never has.
 */
export const PARENT_DOMAIN_MATCHES_SUBDOMAINS =
  'debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains';

export function rejectText(reason: string): string {
  return `REJECT Relayplane: ${reason}`;
}

/** A quarantined sender is refused for now, not for good: its client keeps the mail and retries. */
export function deferText(reason: string): string {
  return `451 4.7.1 Relayplane: ${reason}`;
}

/** The sender_access value of a configured sender domain without a route. */
export function unroutedAccessValue(unrouted: UnroutedDomain): string {
  return unrouted.code === 'quarantined' ? deferText(unrouted.reason) : rejectText(unrouted.reason);
}

/** The global map holds a domain's credential only for sender-authenticated single-nexthop routes. */
export function globalSaslCredential(route: DomainRoute) {
  const hop = route.hops[0];
  return route.sasl === 'sender' && route.hops.length === 1 && hop !== undefined ? hop.credential : null;
}

/** sender_transport's value: every routed sender's, whatever its service (sender_service overrides it). */
export const ROUTED_TRANSPORT = transportValue(DEFAULT_SERVICE);

export function senderTransportEntries(plan: RoutePlan): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  for (const r of plan.routes.values()) entries.push([r.senderKey, ROUTED_TRANSPORT]);
  return entries;
}

/** The table that decides a route's service: sender_service when it has its own, else sender_transport. */
export function serviceTable(route: DomainRoute): string {
  return route.service === DEFAULT_SERVICE ? TABLE.senderTransport : TABLE.senderService;
}

export function senderServiceEntries(plan: RoutePlan): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  for (const r of plan.routes.values()) if (r.service !== DEFAULT_SERVICE) entries.push([r.senderKey, r.transport]);
  return entries;
}

// Loops rather than flatMap: at 100,000 domains, flatMap's per-route arrays are 100,000 more objects per table.
export function senderRelayEntries(plan: RoutePlan): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  for (const r of plan.routes.values()) if (r.relayhost !== null) entries.push([r.senderKey, r.relayhost]);
  return entries;
}

/**
 * A SASL table's entries twice, key for key: `entries` as written to the nodes (`user:secret`),
 * `masked` as shown and stored (`user:sha:<fingerprint>`, see maskedSaslPasswordValue).
 */
export interface SaslTable {
  entries: Array<[string, string]>;
  masked: Array<[string, string]>;
}

/** A credential's value in a SASL table, and its masked form. */
export function saslValues(credential: Credential): { value: string; masked: string } {
  return {
    value: saslPasswordValue(credential.username, credential.secret),
    masked: maskedSaslPasswordValue(credential.username, credential.fingerprint),
  };
}

function addSaslEntry(table: SaslTable, key: string, credential: Credential): void {
  const { value, masked } = saslValues(credential);
  table.entries.push([key, value]);
  table.masked.push([key, masked]);
}

export function globalSaslEntries(plan: RoutePlan): SaslTable {
  const table: SaslTable = { entries: [], masked: [] };
  for (const r of plan.routes.values()) {
    const c = globalSaslCredential(r);
    if (c !== null) addSaslEntry(table, r.senderKey, c);
  }
  return table;
}

export function serviceSaslEntries(service: ServicePlan): SaslTable {
  const table: SaslTable = { entries: [], masked: [] };
  for (const e of service.saslEntries) addSaslEntry(table, e.nexthop, e.credential);
  return table;
}

export function tlsPolicyEntries(plan: RoutePlan): Array<[string, string]> {
  const entries: Array<[string, string]> = [...plan.relayTlsPolicies.entries()];
  for (const p of plan.index.destinationPolicies) if (p.tls !== null) entries.push([lookupDomain(p.pattern), p.tls]);
  return entries;
}

/**
 * Every configured domain name once, in code-unit order. planRoutes fills routes and unrouted in
 * name order, so the two are merged rather than sorted again; anything else is sorted.
 */
function configuredDomainNames(plan: RoutePlan): string[] {
  const routed = [...plan.routes.keys()];
  const unrouted = [...plan.unrouted.keys()];
  const names: string[] = [];
  let i = 0;
  let j = 0;
  while (i < routed.length && j < unrouted.length)
    names.push(routed[i]! < unrouted[j]! ? routed[i++]! : unrouted[j++]!);
  while (i < routed.length) names.push(routed[i++]!);
  while (j < unrouted.length) names.push(unrouted[j++]!);
  for (let k = 1; k < names.length; k += 1) {
    if (!(names[k - 1]! < names[k]!)) return [...new Set(names)].sort();
  }
  return names;
}

/** One configured domain's sender_access entry: OK when routed, REJECT with the reason otherwise. */
export function senderAccessEntry(name: string, unrouted: UnroutedDomain | undefined): [string, string] {
  return [name, unrouted === undefined ? PERMIT_SENDER : unroutedAccessValue(unrouted)];
}

const NULL_SENDER_ENTRY: [string, string] = [NULL_SENDER_KEY, REJECT_NULL_SENDER];

/** The null sender's entry and one per configured domain, in key order (as renderHashMap wants them). */
export function senderAccessEntries(plan: RoutePlan): Array<[string, string]> {
  const names = configuredDomainNames(plan);
  const entries: Array<[string, string]> = [];
  let nullSenderPlaced = false;
  for (const name of names) {
    if (!nullSenderPlaced && NULL_SENDER_KEY < name) {
      entries.push(NULL_SENDER_ENTRY);
      nullSenderPlaced = true;
    }
    entries.push(senderAccessEntry(name, plan.unrouted.get(name)));
  }
  if (!nullSenderPlaced) entries.push(NULL_SENDER_ENTRY);
  return entries;
}
