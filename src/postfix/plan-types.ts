/**
 * The route plan's types, apart from plan.ts so that warnings.ts (which plan.ts calls) can name
 * them without an import cycle. plan.ts re-exports them.
 */
import type { EffectiveLimits, Hop, LimitSource, RelayTlsPolicy } from './resolve.js';
import type { Credential, Domain, Tenant } from './snapshot.js';
import type { SnapshotIndex } from './validate.js';

/** sender: global map by `@domain`; service: the service's own map by nexthop; none: AUTH disabled. */
export type SaslMode = 'sender' | 'service' | 'none';

export interface ServicePlan {
  name: string;
  scope: 'relay' | 'domain';
  route: 'relay' | 'direct';
  implicitTls: boolean;
  sasl: SaslMode;
  /** File name of the service's own SASL map (sasl 'service'), else null. */
  saslMap: string | null;
  saslEntries: Array<{ nexthop: string; credential: Credential }>;
  /**
   * File name of the service's own TLS policy map (`-o smtp_tls_policy_maps`), when one of its
   * nexthops is also reached with another TLS policy; else null (the global tls_policy).
   */
  tlsPolicyMap: string | null;
  /** The entries of tlsPolicyMap: every nexthop of the service and its level. */
  tlsPolicies: Array<[nexthop: string, policy: RelayTlsPolicy]>;
  limits: EffectiveLimits;
  /** Sender domains delivered by this service, sorted. */
  domains: string[];
}

export interface DomainRoute {
  domain: Domain;
  tenant: Tenant;
  kind: 'relay' | 'direct';
  service: string;
  /** `@domain`: the key of this sender in every sender-dependent table. */
  senderKey: string;
  /** `service:`: the sender_dependent_default_transport_maps value (empty nexthop on purpose). */
  transport: string;
  /** Relays in order (primary, fallback); empty for direct. */
  hops: Hop[];
  /** sender_dependent_relayhost_maps value (`[a]:587,[b]:587`), null for direct. */
  relayhost: string | null;
  sasl: SaslMode;
  /** The map the SASL lookup uses: GLOBAL_SASL_MAP, a per-service map, or null (AUTH disabled). */
  saslMap: string | null;
  /** The map the TLS policy lookup uses: GLOBAL_TLS_POLICY_MAP or the service's own. */
  tlsPolicyMap: string;
  limits: EffectiveLimits;
  limitSources: LimitSource[];
}

export interface UnroutedDomain {
  domain: Domain;
  code: string;
  reason: string;
}

export interface RoutePlan {
  kind: 'relayplane.route-plan';
  index: SnapshotIndex;
  /** Routed sender domains by name. */
  routes: ReadonlyMap<string, DomainRoute>;
  /** Configured but unrouted sender domains by name. */
  unrouted: ReadonlyMap<string, UnroutedDomain>;
  /** Generated services, sorted by name (Postfix's `smtp` is not listed). */
  services: readonly ServicePlan[];
  /** TLS policy per relay nexthop in use, for the global tls_policy (nexthops reached with one policy only). */
  relayTlsPolicies: ReadonlyMap<string, RelayTlsPolicy>;
  /**
   * Nexthops reached with more than one TLS policy (two relay rows on one `[host]:port`, say one
   * verifying the certificate and one not): never in the global map; every service that delivers
   * to one carries its own TLS policy map instead, so each relay row keeps its own policy.
   */
  sharedNexthops: ReadonlySet<string>;
  warnings: string[];
}
