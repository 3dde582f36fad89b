/**
 * explainRoute(): what Postfix will do with mail from `sender` to `recipient`, read from the same
 * RoutePlan (and the same table-entry builders) the compiler renders, so the explanation cannot
 * drift from the config. Shaped for a differential test against real `postmap -q` answers and for
 * comparison with what smart hosts observe. Never contains a secret.
 */
import { normaliseAddress } from './address.js';
import { isRoutePlan, type DomainRoute, type RoutePlan } from './plan.js';
import { planWithQuarantine } from './quarantine.js';
import type { EffectiveLimits } from './resolve.js';
import type { DestinationPolicy, Snapshot } from './snapshot.js';
import {
  NULL_SENDER_KEY,
  PERMIT_SENDER,
  REJECT_NON_FQDN_SENDER,
  REJECT_NULL_SENDER,
  REJECT_UNLISTED_SENDER,
  TABLE,
  UNROUTED_SERVICE,
  UNROUTED_TRANSPORT,
  globalSaslCredential,
  serviceTable,
  unroutedAccessValue,
} from './tables.js';

export interface MatchedEntry {
  /**
   * A table name from TABLE, a per-service SASL map, or 'main.cf' (key: the parameter; value: its
   * value, or for smtpd_sender_restrictions the one restriction of its list that decided).
   */
  table: string;
  key: string;
  /** SASL values are masked: `username:********`. */
  value: string;
}

export interface NexthopCredential {
  credentialId: string;
  username: string;
}

export interface Explanation {
  sender: string;
  recipient: string;
  /** The sender as smtpd/cleanup/trivial-rewrite leave it (address.ts): trailing dot stripped, case kept. */
  envelopeSender: string;
  envelopeRecipient: string;
  /** The sender's domain as the tables look it up (lower case, no trailing dot); null for the null sender or an address without domain. */
  senderDomain: string | null;
  recipientDomain: string | null;
  /**
   * relay/direct: delivered that way. rejected: smtpd refuses new mail with 554 5.7.1, or 504 5.5.2
   * when the sender has no fully-qualified domain (mail already queued is held by the retry:
   * default transport). The null sender too is rejected (`<> REJECT`): only bounces the node
   * generates itself carry it, and they wait in the queue.
   */
  outcome: 'relay' | 'direct' | 'rejected';
  /** master.cf service: 'smtp', a generated 'rp_…' service, or 'retry' for unrouted mail. */
  service: string;
  /** The service speaks TLS from the first byte (smtp_tls_wrappermode = yes): relays with `tls: implicit`. */
  implicitTls: boolean;
  /** In the order Postfix tries them: `[host]:port` for relays, the recipient domain for direct. */
  nexthops: string[];
  /** Credential offered to the first nexthop. */
  credentialId: string | null;
  credentialsByNexthop: Record<string, NexthopCredential | null>;
  /** The SASL map the service consults, or null when the service cannot authenticate. */
  saslMap: string | null;
  /** true: lookup by sender (`@domain`) first; false: by nexthop only. */
  senderDependentAuth: boolean;
  /** TLS level for the first nexthop. */
  tlsPolicy: string | null;
  tlsPolicyByNexthop: Record<string, string>;
  /** The destination policy whose TLS entry applies (direct deliveries only). */
  destinationPolicyId: string | null;
  /** Queue-manager limits of the service's queue; null for unrouted mail. */
  limits: EffectiveLimits | null;
  matched: MatchedEntry[];
  reason: string;
}

function masked(username: string): string {
  return `${username}:********`;
}

/** Postfix's smtp_tls_policy_maps lookup for a domain nexthop: the name, then `.parent` suffixes. */
export function matchDestinationPolicy(
  plan: RoutePlan,
  recipientDomain: string,
  onlyWithTls = true,
): DestinationPolicy | null {
  const byPattern = new Map(
    plan.index.destinationPolicies.filter((p) => !onlyWithTls || p.tls !== null).map((p) => [p.pattern, p]),
  );
  // Address literals and other non-hostnames get one exact lookup, no parent walk.
  if (!/^[a-z0-9.-]+$/.test(recipientDomain)) return byPattern.get(recipientDomain) ?? null;
  let name: string | null = recipientDomain;
  while (name !== null) {
    const hit = byPattern.get(name);
    if (hit !== undefined) return hit;
    const dot: number = name.indexOf('.', 1);
    name = dot < 0 ? null : name.slice(dot);
  }
  return null;
}

function base(sender: string, recipient: string): Explanation {
  const from = normaliseAddress(sender);
  const to = normaliseAddress(recipient);
  return {
    sender,
    recipient,
    envelopeSender: from.address,
    envelopeRecipient: to.address,
    senderDomain: from.domain,
    recipientDomain: to.domain,
    outcome: 'rejected',
    service: UNROUTED_SERVICE,
    implicitTls: false,
    nexthops: [],
    credentialId: null,
    credentialsByNexthop: {},
    saslMap: null,
    senderDependentAuth: false,
    tlsPolicy: null,
    tlsPolicyByNexthop: {},
    destinationPolicyId: null,
    limits: null,
    matched: [],
    reason: '',
  };
}

function explainUnrouted(plan: RoutePlan, e: Explanation): Explanation {
  const nullSender = e.envelopeSender === '';
  const domain = e.senderDomain;
  const known = domain === null ? undefined : plan.unrouted.get(domain);
  e.outcome = 'rejected';
  let why: string;
  let reply = '554 5.7.1';
  if (nullSender) {
    why = 'the null sender belongs to no tenant';
    e.matched.push({ table: TABLE.senderAccess, key: NULL_SENDER_KEY, value: REJECT_NULL_SENDER });
  } else if (domain === null || (!domain.includes('.') && !domain.startsWith('['))) {
    // reject_non_fqdn_sender: no domain, or one without a dot; address literals are left to the table.
    why = domain === null ? 'the sender address has no domain' : `sender domain ${domain} is not fully qualified`;
    reply = '504 5.5.2';
    e.matched.push({ table: 'main.cf', key: 'smtpd_sender_restrictions', value: REJECT_NON_FQDN_SENDER });
  } else if (known !== undefined) {
    why = known.reason;
    if (known.code === 'quarantined') reply = '451 4.7.1';
    e.matched.push({ table: TABLE.senderAccess, key: domain, value: unroutedAccessValue(known) });
  } else {
    why = `sender domain ${domain} is not configured in Relayplane`;
    e.matched.push({ table: 'main.cf', key: 'smtpd_sender_restrictions', value: REJECT_UNLISTED_SENDER });
  }
  e.matched.push({ table: 'main.cf', key: 'default_transport', value: UNROUTED_TRANSPORT });
  e.reason = nullSender
    ? `${why}: submission (MAIL FROM:<>) is rejected with ${reply}; bounces the node generates wait in the queue (retry:) until bounce_queue_lifetime`
    : `${why}: submission is ${reply.startsWith('4') ? 'refused for now' : 'rejected'} with ${reply}; mail already queued is held by the retry: default transport and never leaves`;
  return e;
}

function explainRouted(plan: RoutePlan, route: DomainRoute, e: Explanation): Explanation {
  const key = route.senderKey;
  e.service = route.service;
  e.limits = route.limits;
  e.saslMap = route.saslMap;
  e.senderDependentAuth = route.sasl === 'sender';
  e.matched.push({ table: TABLE.senderAccess, key: route.domain.name, value: PERMIT_SENDER });
  e.matched.push({ table: serviceTable(route), key, value: route.transport });
  const destination = e.recipientDomain === null ? null : matchDestinationPolicy(plan, e.recipientDomain);

  if (route.kind === 'direct') {
    e.outcome = 'direct';
    const nexthop = e.recipientDomain ?? '';
    e.matched.push({ table: 'main.cf', key: 'relayhost', value: '' });
    e.nexthops = [nexthop];
    e.credentialsByNexthop[nexthop] = null;
    if (destination !== null && destination.tls !== null) {
      e.destinationPolicyId = destination.id;
      e.tlsPolicy = destination.tls;
      e.matched.push({ table: TABLE.tlsPolicy, key: destination.pattern, value: destination.tls });
    } else {
      e.tlsPolicy = 'may';
      e.matched.push({ table: 'main.cf', key: 'smtp_tls_security_level', value: 'may' });
    }
    e.tlsPolicyByNexthop[nexthop] = e.tlsPolicy;
    e.reason =
      `sender domain ${route.domain.name} routes directly: no sender_relay entry and an empty relayhost leave the recipient domain ` +
      `as nexthop (MX lookup) via service ${route.service}; no SASL credential is ever offered`;
    return e;
  }

  e.outcome = 'relay';
  e.nexthops = route.hops.map((h) => h.nexthop);
  e.implicitTls = route.hops.length > 0 && route.hops.every((h) => h.relay.tls === 'implicit');
  e.matched.push({ table: TABLE.senderRelay, key, value: route.relayhost ?? '' });
  const globalCredential = globalSaslCredential(route);
  if (globalCredential !== null)
    e.matched.push({ table: TABLE.saslPasswd, key, value: masked(globalCredential.username) });
  for (const hop of route.hops) {
    const credential = route.sasl === 'service' ? hop.credential : route.sasl === 'sender' ? globalCredential : null;
    e.credentialsByNexthop[hop.nexthop] =
      credential === null ? null : { credentialId: credential.id, username: credential.username };
    if (route.sasl === 'service' && credential !== null && route.saslMap !== null) {
      e.matched.push({ table: route.saslMap, key: hop.nexthop, value: masked(credential.username) });
    }
    e.tlsPolicyByNexthop[hop.nexthop] = hop.tlsPolicy;
    e.matched.push({ table: route.tlsPolicyMap, key: hop.nexthop, value: hop.tlsPolicy });
  }
  const first = route.hops[0];
  e.credentialId = first === undefined ? null : (e.credentialsByNexthop[first.nexthop]?.credentialId ?? null);
  e.tlsPolicy = first === undefined ? null : (e.tlsPolicyByNexthop[first.nexthop] ?? null);
  const anyCredential = Object.values(e.credentialsByNexthop).some((c) => c !== null);
  const auth = !anyCredential
    ? 'no SASL is used: no credential exists for this sender domain on its relay(s), so Postfix sends without AUTH (a relay that requires AUTH answers 530, which bounces)'
    : route.sasl === 'sender'
      ? `SASL by sender from ${TABLE.saslPasswd}`
      : route.sasl === 'service'
        ? `SASL by nexthop from ${route.saslMap ?? '?'} (sender-dependent authentication off)`
        : 'SASL authentication disabled for this service';
  const ignored =
    destination === null ? '' : `; destination policy ${destination.pattern} does not apply to relayed mail`;
  e.reason = `sender domain ${route.domain.name} relays via ${e.nexthops.join(' then ')} using service ${route.service}; ${auth}${ignored}`;
  return e;
}

/**
 * Explains the route of one message. Accepts a Snapshot (planned here, quarantining what cannot be expressed)
 * or a RoutePlan from planRoutes() to explain many pairs cheaply.
 */
export function explainRoute(source: Snapshot | RoutePlan, sender: string, recipient: string): Explanation {
  const plan = isRoutePlan(source) ? source : planWithQuarantine(source, null).detailed.plan;
  const e = base(sender, recipient);
  const route = e.senderDomain === null ? undefined : plan.routes.get(e.senderDomain);
  return route === undefined ? explainUnrouted(plan, e) : explainRouted(plan, route, e);
}
