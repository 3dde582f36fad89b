/**
 * Things Postfix will do as configured but an operator should know: compiled anyway, yet worth a
 * line in the deployment record. Refusals live in validate.ts / resolve.ts / plan.ts.
 */
import type { DomainRoute, RoutePlan } from './plan-types.js';

/** What one route contributes: its own warnings, and the queues it opens to relays with limits. */
interface RouteFacts {
  /** Hops without a credential on a relay that has credentials for other sender domains (bit i: hop i). */
  unauthenticated: number;
  warnings: string[];
  /** `[nexthop, "service relayhost"]` for each hop to a relay with limits. */
  queues: Array<[string, string]>;
}

/**
 * Routes are never changed in place (the incremental compiler makes a new one for a domain it
 * redoes), so what a route contributes is computed once; only its hops' standing among the relays
 * with domain credentials comes from elsewhere, and is checked on every call.
 */
const routeFacts = new WeakMap<DomainRoute, RouteFacts>();

function unauthenticatedHops(route: DomainRoute, relaysWithDomainCredentials: ReadonlySet<string>): number {
  let bits = 0;
  route.hops.forEach((hop, i) => {
    if (hop.credential === null && relaysWithDomainCredentials.has(hop.relay.id)) bits |= 1 << i;
  });
  return bits;
}

function factsOf(route: DomainRoute, unauthenticated: number): RouteFacts {
  const warnings: string[] = [];
  const queues: Array<[string, string]> = [];
  const d = route.domain;
  if (d.status === 'degraded') {
    warnings.push(`domain ${d.name} is degraded (a DNS record disappeared): compiled until its grace period ends`);
  } else if (d.status !== 'verified') {
    warnings.push(`domain ${d.name} is ${d.status} but compiled because an administrator set compileOverride`);
  }
  if (route.kind === 'direct') {
    if (d.relayId !== null || d.fallbackRelayId !== null)
      warnings.push(`domain ${d.name} routes directly; its relay and fallback relay are ignored`);
    if (route.service !== 'smtp') {
      warnings.push(
        `domain ${d.name} routes directly: its limits apply per recipient domain, because Postfix queues direct mail by destination`,
      );
    }
  }
  route.hops.forEach((hop, i) => {
    const relay = hop.relay;
    if (route.kind !== 'direct') {
      if (hop.credential !== null && relay.tls === 'opportunistic') {
        warnings.push(
          `relay ${hop.nexthop} uses opportunistic TLS: its SASL credentials are sent unencrypted whenever it does not offer STARTTLS`,
        );
      }
      if (route.sasl === 'sender' && route.service !== 'smtp' && relay.limits?.connectionReuseSeconds != null) {
        warnings.push(
          `relay ${hop.nexthop}: connectionReuseSeconds does not apply to its sender domains that authenticate with credentials of their own ` +
            '(per-sender SASL authentication keeps Postfix from caching those connections at all)',
        );
      }
      if ((unauthenticated & (1 << i)) !== 0) {
        warnings.push(
          `domain ${d.name} sends to relay ${hop.nexthop} without authentication: the relay only has credentials for other sender domains`,
        );
      }
      if (relay.verify && hop.tlsPolicy === 'verify') {
        warnings.push(
          `relay ${hop.nexthop} verifies its certificate against an IP literal: Postfix's \`secure\` level matches names, never addresses, ` +
            `so it gets level \`verify\`: delivery needs a certificate the nodes' CA file (smtp_tls_CAfile) trusts that lists ${relay.host} ` +
            'as an IP address subjectAltName; otherwise mail to it is deferred',
        );
      }
    }
    const l = relay.limits;
    if (l !== null && (l.concurrency !== null || l.rateDelaySeconds !== null || l.recipientsPerMessage !== null))
      queues.push([hop.nexthop, `${route.service} ${route.relayhost ?? ''}`]);
  });
  return { unauthenticated, warnings, queues };
}

export function planWarnings(plan: RoutePlan): string[] {
  const warnings = new Set<string>();
  const { index } = plan;
  let directRoutes = 0;
  let relayRoutes = 0;
  // A relay's limits cap each (service, nexthop list) queue that delivers to it, not their sum.
  const queuesByRelay = new Map<string, Set<string>>();

  for (const route of plan.routes.values()) {
    if (route.kind === 'direct') directRoutes += 1;
    else relayRoutes += 1;
    const unauthenticated = unauthenticatedHops(route, index.relaysWithDomainCredentials);
    let facts = routeFacts.get(route);
    if (facts === undefined || facts.unauthenticated !== unauthenticated)
      routeFacts.set(route, (facts = factsOf(route, unauthenticated)));
    for (const warning of facts.warnings) warnings.add(warning);
    for (const [nexthop, queue] of facts.queues) {
      let queues = queuesByRelay.get(nexthop);
      if (queues === undefined) queuesByRelay.set(nexthop, (queues = new Set()));
      queues.add(queue);
    }
  }

  for (const s of plan.services) {
    if (s.limits.recipientsPerMessage === 1) {
      warnings.add(
        `service ${s.name} (${s.domains.join(', ')}) delivers one recipient per message: Postfix then applies the default concurrency per recipient, not per destination`,
      );
    }
  }

  for (const [nexthop, queues] of queuesByRelay) {
    if (queues.size > 1) {
      warnings.add(
        `relay ${nexthop} is reached through ${queues.size} delivery queues (${[...queues].sort().join('; ')}); ` +
          'its limits apply to each queue separately, so the relay may see up to that many times its limits (and each node enforces them on its own)',
      );
    }
  }

  for (const p of index.destinationPolicies) {
    if (p.concurrency !== null || p.rateDelaySeconds !== null) {
      warnings.add(
        `destination policy ${p.pattern}: concurrency and rate delay are not applied. Postfix could only apply them through transport_maps, ` +
          'which overrides the sender-dependent relay route (relayed mail would leave directly to the recipient MX) and would also let mail ' +
          'of suspended or unverified senders out. Only its TLS level is applied, to direct deliveries.',
      );
    }
    if (p.tls !== null && directRoutes === 0) {
      warnings.add(
        `destination policy ${p.pattern}: its TLS level only applies to direct deliveries, and no sender domain routes directly`,
      );
    } else if (p.tls !== null && relayRoutes > 0 && p.concurrency === null && p.rateDelaySeconds === null) {
      // The policy table is keyed by nexthop: relayed mail's nexthop is the relay, whose own entry decides.
      warnings.add(
        `destination policy ${p.pattern}: relayed mail ignores its TLS level ${p.tls} (the TLS policy of the hop to the relay applies); ` +
          'only direct deliveries use it',
      );
    }
  }
  return [...warnings].sort();
}
