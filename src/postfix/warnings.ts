/**
 * Things Postfix will do as configured but an operator should know: compiled anyway, yet worth a
 * line in the deployment record. Refusals live in validate.ts / resolve.ts / plan.ts.
 */
import type { RoutePlan } from './plan-types.js';

export function planWarnings(plan: RoutePlan): string[] {
  const warnings = new Set<string>();
  const { index } = plan;
  let directRoutes = 0;
  let relayRoutes = 0;
  const addressChecked = new Set<string>();

  for (const route of plan.routes.values()) {
    const d = route.domain;
    if (d.status === 'degraded') {
      warnings.add(`domain ${d.name} is degraded (a DNS record disappeared): compiled until its grace period ends`);
    } else if (d.status !== 'verified') {
      warnings.add(`domain ${d.name} is ${d.status} but compiled because an administrator set compileOverride`);
    }
    if (route.kind === 'direct') {
      directRoutes += 1;
      if (d.relayId !== null || d.fallbackRelayId !== null)
        warnings.add(`domain ${d.name} routes directly; its relay and fallback relay are ignored`);
      if (route.service !== 'smtp') {
        warnings.add(
          `domain ${d.name} routes directly: its limits apply per recipient domain, because Postfix queues direct mail by destination`,
        );
      }
      continue;
    }
    relayRoutes += 1;
    for (const hop of route.hops) {
      const relay = hop.relay;
      if (hop.credential !== null && relay.tls === 'opportunistic') {
        warnings.add(
          `relay ${hop.nexthop} uses opportunistic TLS: its SASL credentials are sent unencrypted whenever it does not offer STARTTLS`,
        );
      }
      if (route.sasl === 'sender' && route.service !== 'smtp' && relay.limits?.connectionReuseSeconds != null) {
        warnings.add(
          `relay ${hop.nexthop}: connectionReuseSeconds does not apply to its sender domains that authenticate with credentials of their own ` +
            '(per-sender SASL authentication keeps Postfix from caching those connections at all)',
        );
      }
      if (hop.credential === null && index.relaysWithDomainCredentials.has(relay.id)) {
        warnings.add(
          `domain ${d.name} sends to relay ${hop.nexthop} without authentication: the relay only has credentials for other sender domains`,
        );
      }
      // Once per relay: the answer depends on the relay alone, and 100,000 routes share 50 relays.
      if (relay.verify && !addressChecked.has(relay.id)) {
        addressChecked.add(relay.id);
        if (hop.tlsPolicy === 'verify') {
          warnings.add(
            `relay ${hop.nexthop} verifies its certificate against an IP literal: Postfix's \`secure\` level matches names, never addresses, ` +
              `so it gets level \`verify\`: delivery needs a certificate the nodes' CA file (smtp_tls_CAfile) trusts that lists ${relay.host} ` +
              'as an IP address subjectAltName; otherwise mail to it is deferred',
          );
        }
      }
    }
  }

  for (const s of plan.services) {
    if (s.limits.recipientsPerMessage === 1) {
      warnings.add(
        `service ${s.name} (${s.domains.join(', ')}) delivers one recipient per message: Postfix then applies the default concurrency per recipient, not per destination`,
      );
    }
  }

  // A relay's limits cap each (service, nexthop list) queue that delivers to it, not their sum.
  const queuesByRelay = new Map<string, Set<string>>();
  for (const route of plan.routes.values()) {
    for (const hop of route.hops) {
      const l = hop.relay.limits;
      if (l === null || (l.concurrency === null && l.rateDelaySeconds === null && l.recipientsPerMessage === null))
        continue;
      const queues = queuesByRelay.get(hop.nexthop) ?? new Set<string>();
      queues.add(`${route.service} ${route.relayhost ?? ''}`);
      queuesByRelay.set(hop.nexthop, queues);
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
