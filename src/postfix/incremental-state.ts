// What the incremental compiler keeps between compiles (incremental.ts), and when it gives up on it.
import type { Bundle, FileDigests } from './bundle.js';
import {
  DEFAULT_SERVICE,
  placement,
  type DetailedPlan,
  type RoutePlan,
  type Routed,
  type ServicePlan,
} from './plan.js';
import type { RelayTlsPolicy } from './resolve.js';
import type { Credential, DestinationPolicy, Snapshot } from './snapshot.js';
import { TABLE } from './tables.js';
import type { SnapshotIndex } from './validate.js';
import { SortedLines } from './incremental-lines.js';

/** More changed rows than the larger of MIN_BULK and BULK_SHARE of the domains: a full compile is cheaper. */
export const BULK_SHARE = 0.02;
export const MIN_BULK = 1000;
/**
 * More domains reached than this share (and MIN_BULK): a full compile. Redoing a domain costs
 * ≈ 50 µs here against ≈ 15 µs of a full compile's (BENCHMARKS.md, compile: 2,000 domains of a
 * relay ≈ 0.1 s), so the two meet near 30 % of the domains; a tenth keeps the incremental path
 * clearly the cheaper one where it is taken.
 */
export const REACHED_SHARE = 0.1;

/** Thrown inside the incremental path: this change needs a full compile. */
export class NeedsFullCompile extends Error {}

/** This change needs a full compile: the caller drops the state, which may be half-updated. */
export const needsFull = (): never => {
  throw new NeedsFullCompile();
};

export type Mutable<T> = {
  -readonly [K in keyof T]: T[K] extends ReadonlyMap<infer A, infer B>
    ? Map<A, B>
    : T[K] extends ReadonlySet<infer S>
      ? Set<S>
      : T[K];
};

/** How many hops of routed domains reach a nexthop with each TLS policy (gone at zero). */
export type NexthopUse = Map<RelayTlsPolicy, number>;

export interface State {
  /** The rows of the last compile, in their order (diffRows walks them by position). */
  rows: Snapshot;
  /** The bundle those rows compiled to: given again while no row changes. */
  bundle: Bundle;
  /** The SHA-256 of each file of the last bundle (bundleVersion). */
  digests: FileDigests;
  index: Mutable<SnapshotIndex>;
  plan: Mutable<RoutePlan>;
  credentialsById: Map<string, Credential>;
  policiesById: Map<string, DestinationPolicy>;
  /** Domain-scoped credentials per relay (relaysWithDomainCredentials holds the relays counted > 0). */
  domainCredentialCount: Map<string, number>;
  /** Routed domains' resolutions and group keys, by name. */
  resolved: Map<string, Routed>;
  groupOf: Map<string, string>;
  groups: Map<string, Set<string>>;
  /** The services each group produced, and the service of each domain not on `smtp`. */
  groupServiceNames: Map<string, Set<string>>;
  serviceOf: Map<string, string>;
  services: Map<string, ServicePlan>;
  identities: Map<string, string>;
  nexthops: Map<string, NexthopUse>;
  /** Nexthops reached with several TLS policies (the plan's sharedNexthops); a change to this set needs a full compile. */
  shared: Set<string>;
  /** Nexthops whose uses this compile changed: checked against `shared` once the plan is updated. */
  touchedNexthops: Set<string>;
  transports: Map<string, string>;
  /** `saslMasked`: the lines of `sasl` as BundleFile.masked shows them, key for key. */
  tables: {
    transport: SortedLines;
    service: SortedLines;
    relay: SortedLines;
    sasl: SortedLines;
    saslMasked: SortedLines;
    access: SortedLines;
  };
}

/** The state of a plan compile() just rendered. */
export function buildState(snapshot: Snapshot, detailed: DetailedPlan, digests: FileDigests, bundle: Bundle): State {
  const plan = detailed.plan as Mutable<RoutePlan>;
  const index = plan.index as Mutable<SnapshotIndex>;
  const resolved = detailed.routed;
  const groupOf = new Map<string, string>();
  const groups = new Map<string, Set<string>>();
  for (const [name, res] of resolved) {
    const placed = placement(res, plan.sharedNexthops);
    if (placed.kind !== 'group') continue;
    groupOf.set(name, placed.key);
    let members = groups.get(placed.key);
    if (members === undefined) groups.set(placed.key, (members = new Set()));
    members.add(name);
  }
  const serviceOf = new Map<string, string>();
  const groupServiceNames = new Map<string, Set<string>>();
  const nexthops = new Map<string, NexthopUse>();
  for (const [name, route] of plan.routes) {
    if (route.service !== DEFAULT_SERVICE) {
      serviceOf.set(name, route.service);
      const key = groupOf.get(name);
      if (key !== undefined) {
        let names = groupServiceNames.get(key);
        if (names === undefined) groupServiceNames.set(key, (names = new Set()));
        names.add(route.service);
      }
    }
    for (const hop of route.hops) addNexthopUse(nexthops, hop.nexthop, hop.tlsPolicy);
  }
  const domainCredentialCount = new Map<string, number>();
  for (const c of snapshot.credentials) {
    if (c.domainId !== null) domainCredentialCount.set(c.relayId, (domainCredentialCount.get(c.relayId) ?? 0) + 1);
  }

  const file = (name: string) => bundle.files[name]?.content ?? '';
  const masked = (name: string) => bundle.files[name]?.masked ?? '';
  return {
    rows: snapshot,
    bundle,
    digests,
    index,
    plan,
    credentialsById: new Map(snapshot.credentials.map((c) => [c.id, c])),
    policiesById: new Map(snapshot.destinationPolicies.map((p) => [p.id, p])),
    domainCredentialCount,
    resolved,
    groupOf,
    groups,
    groupServiceNames,
    serviceOf,
    services: new Map(plan.services.map((s) => [s.name, s])),
    identities: new Map(detailed.identities),
    nexthops,
    shared: new Set(plan.sharedNexthops),
    touchedNexthops: new Set(),
    transports: new Map(),
    tables: {
      transport: SortedLines.fromHashMap(file(TABLE.senderTransport)),
      service: SortedLines.fromHashMap(file(TABLE.senderService)),
      relay: SortedLines.fromHashMap(file(TABLE.senderRelay)),
      sasl: SortedLines.fromHashMap(file(TABLE.saslPasswd)),
      saslMasked: SortedLines.fromHashMap(masked(TABLE.saslPasswd)),
      access: SortedLines.fromHashMap(file(TABLE.senderAccess)),
    },
  };
}

export function addNexthopUse(nexthops: Map<string, NexthopUse>, nexthop: string, policy: RelayTlsPolicy): void {
  let use = nexthops.get(nexthop);
  if (use === undefined) nexthops.set(nexthop, (use = new Map()));
  use.set(policy, (use.get(policy) ?? 0) + 1);
}

export function removeNexthopUse(nexthops: Map<string, NexthopUse>, nexthop: string, policy: RelayTlsPolicy): void {
  const use = nexthops.get(nexthop);
  const count = use?.get(policy);
  if (use === undefined || count === undefined) return;
  if (count > 1) use.set(policy, count - 1);
  else use.delete(policy);
  if (use.size === 0) nexthops.delete(nexthop);
}
