/**
 * Things Postfix will do as configured but an operator should know: compiled anyway, yet worth a
 * line in the deployment record. Refusals live in validate.ts / resolve.ts / plan.ts.
 */
import type { DomainRoute, RoutePlan } from './plan-types.js';

/** What one route contributes: its own warnings, and the queues it opens to relays with limits. */
interface RouteFacts {
  warnings: string[];
  /** `[nexthop, "service relayhost"]` for each hop to a relay with limits. */
  queues: Array<[string, string]>;
}

/**
 * What a plan's routes contribute, summed, so that a compile that redoes a few domains updates it
 * for those routes instead of visiting all of them (≈ 20 ms at 100,000 domains, BENCHMARKS.md).
 * Routes are never changed in place (the incremental compiler makes a new one for a domain it
 * redoes): the incremental compiler reports each route it replaces or removes (routeReplaced).
 * A route's unauthenticated hops depend on which relays hold domain credentials, which a change
 * elsewhere can alter: when that set differs from the one counted with, everything is counted again.
 */
class RouteTally {
  /** Each route's warning, with the number of routes giving it. */
  private readonly warnings = new Map<string, number>();
  /** Relay nexthop → the queues (`service relayhost`) delivering to it, with their routes. */
  private readonly queues = new Map<string, Map<string, number>>();
  private readonly counted = new WeakMap<DomainRoute, RouteFacts>();
  private relaysWithDomainCredentials = new Set<string>();
  directRoutes = 0;
  relayRoutes = 0;

  constructor(private readonly plan: RoutePlan) {
    this.recount();
  }

  recount(): void {
    this.warnings.clear();
    this.queues.clear();
    this.directRoutes = 0;
    this.relayRoutes = 0;
    this.relaysWithDomainCredentials = new Set(this.plan.index.relaysWithDomainCredentials);
    for (const route of this.plan.routes.values()) this.add(route);
  }

  /** Whether routes were counted with the relays that hold domain credentials now. */
  current(): boolean {
    const now = this.plan.index.relaysWithDomainCredentials;
    if (now.size !== this.relaysWithDomainCredentials.size) return false;
    for (const relay of now) if (!this.relaysWithDomainCredentials.has(relay)) return false;
    return true;
  }

  add(route: DomainRoute): void {
    const facts = factsOf(route, unauthenticatedHops(route, this.relaysWithDomainCredentials));
    this.counted.set(route, facts);
    if (route.kind === 'direct') this.directRoutes += 1;
    else this.relayRoutes += 1;
    for (const warning of facts.warnings) this.warnings.set(warning, (this.warnings.get(warning) ?? 0) + 1);
    for (const [nexthop, queue] of facts.queues) {
      let queues = this.queues.get(nexthop);
      if (queues === undefined) this.queues.set(nexthop, (queues = new Map()));
      queues.set(queue, (queues.get(queue) ?? 0) + 1);
    }
  }

  remove(route: DomainRoute): void {
    const facts = this.counted.get(route);
    if (facts === undefined) return;
    this.counted.delete(route);
    if (route.kind === 'direct') this.directRoutes -= 1;
    else this.relayRoutes -= 1;
    for (const warning of facts.warnings) decrement(this.warnings, warning);
    for (const [nexthop, queue] of facts.queues) {
      const queues = this.queues.get(nexthop)!;
      decrement(queues, queue);
      if (queues.size === 0) this.queues.delete(nexthop);
    }
  }

  routeWarnings(): IterableIterator<string> {
    return this.warnings.keys();
  }

  queuesByRelay(): IterableIterator<[string, Map<string, number>]> {
    return this.queues.entries();
  }
}

function decrement<K>(counts: Map<K, number>, key: K): void {
  const left = (counts.get(key) ?? 0) - 1;
  if (left > 0) counts.set(key, left);
  else counts.delete(key);
}

const tallies = new WeakMap<RoutePlan, RouteTally>();

/** The incremental compiler replaced (or, with `next` null, removed) a plan's route. */
export function routeReplaced(plan: RoutePlan, previous: DomainRoute | undefined, next: DomainRoute | null): void {
  const tally = tallies.get(plan);
  if (tally === undefined) return;
  if (previous !== undefined) tally.remove(previous);
  if (next !== null) tally.add(next);
}

function unauthenticatedHops(route: DomainRoute, relaysWithDomainCredentials: ReadonlySet<string>): number {
  let bits = 0;
  route.hops.forEach((hop, i) => {
    if (hop.credential === null && relaysWithDomainCredentials.has(hop.relay.id)) bits |= 1 << i;
  });
  return bits;
}

/** `unauthenticated`: hops without a credential on a relay that has credentials for other sender domains (bit i: hop i). */
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
  return { warnings, queues };
}

export function planWarnings(plan: RoutePlan): string[] {
  const warnings = new Set<string>();
  let tally = tallies.get(plan);
  if (tally === undefined) tallies.set(plan, (tally = new RouteTally(plan)));
  else if (!tally.current()) tally.recount();
  const { index } = plan;
  const { directRoutes, relayRoutes } = tally;
  for (const warning of tally.routeWarnings()) warnings.add(warning);

  for (const s of plan.services) {
    if (s.limits.recipientsPerMessage === 1) {
      warnings.add(
        `service ${s.name} (${s.domains.join(', ')}) delivers one recipient per message: Postfix then applies the default concurrency per recipient, not per destination`,
      );
    }
  }

  // A relay's limits cap each (service, nexthop list) queue that delivers to it, not their sum.
  for (const [nexthop, queues] of tally.queuesByRelay()) {
    if (queues.size > 1) {
      warnings.add(
        `relay ${nexthop} is reached through ${queues.size} delivery queues (${[...queues.keys()].sort().join('; ')}); ` +
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
