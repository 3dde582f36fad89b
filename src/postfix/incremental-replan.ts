// The incremental compiler's replanning (incremental.ts): the affected domains resolved and
// placed again, the relay groups they touched, their routes and table lines.
import { isDeepStrictEqual } from 'node:util';
import type { ProblemList } from './errors.js';
import {
  DEFAULT_SERVICE,
  domainRoute,
  domainService,
  groupServices,
  placement,
  type DomainRoute,
  type PlannedService,
  type ServicePlan,
  type UnroutedDomain,
} from './plan.js';
import { defaultLimits, resolveDomain } from './resolve.js';
import { senderKey, transportValue } from './table-keys.js';
import { ROUTED_TRANSPORT, globalSaslCredential, saslValues, senderAccessEntry } from './tables.js';
import { hashLine } from './incremental-lines.js';
import { NeedsFullCompile, addNexthopUse, needsFull, removeNexthopUse, type State } from './incremental-state.js';
import { routeReplaced } from './warnings.js';

/** The domains a change put back into the plan, and what that did to the relay groups. */
export interface Replanned {
  /** Domains whose route and lines are rendered again. */
  rebuild: Set<string>;
  touchedGroups: Set<string>;
  /** Services of domains placed on their own in this change: a split group they left used the same names. */
  ownServices: Set<string>;
}

/**
 * Takes every affected domain out of the plan, then resolves and places again those that still
 * exist: in that order, a domain's own service removed under its old name cannot remove the one
 * just added.
 */
export function replan(state: State, affected: ReadonlySet<string>, problems: ProblemList): Replanned {
  const { index, plan } = state;
  const replanned: Replanned = { rebuild: new Set(), touchedGroups: new Set(), ownServices: new Set() };
  for (const name of affected) detach(state, name, replanned.touchedGroups);
  for (const name of affected) {
    const domain = index.domainsByName.get(name);
    if (domain === undefined) {
      setLines(state, name, null, undefined);
      continue;
    }
    const res = resolveDomain(index, domain, problems);
    if (problems.items.length > 0) needsFull();
    if (res.kind === 'unrouted') {
      const entry: UnroutedDomain = { domain, code: res.code, reason: res.reason };
      plan.unrouted.set(name, entry);
      setLines(state, name, null, entry);
      continue;
    }
    state.resolved.set(name, res);
    for (const hop of res.kind === 'relay' ? res.hops : []) {
      addNexthopUse(state.nexthops, hop.nexthop, hop.tlsPolicy);
      state.touchedNexthops.add(hop.nexthop);
    }
    const placed = placement(res, state.shared);
    if (placed.kind === 'own') {
      const planned = domainService(index.settings, res, state.shared);
      addService(state, planned);
      replanned.ownServices.add(planned.plan.name);
      state.serviceOf.set(name, planned.plan.name);
    } else if (placed.kind === 'group') {
      state.groupOf.set(name, placed.key);
      let members = state.groups.get(placed.key);
      if (members === undefined) state.groups.set(placed.key, (members = new Set()));
      members.add(name);
      replanned.touchedGroups.add(placed.key);
    }
    replanned.rebuild.add(name);
  }
  return replanned;
}

/**
 * A relay group's services depend on all its members (one shared service, or one each): plans the
 * touched groups again, and adds their members to `rebuild` where the shared service changed.
 */
export function regroup(state: State, { touchedGroups, ownServices, rebuild }: Replanned): void {
  for (const key of touchedGroups) {
    const before = [...(state.groupServiceNames.get(key) ?? [])].map((name) => state.services.get(name));
    for (const name of state.groupServiceNames.get(key) ?? []) {
      if (ownServices.has(name)) continue;
      state.services.delete(name);
      state.identities.delete(name);
    }
    state.groupServiceNames.delete(key);
    const memberNames = [...(state.groups.get(key) ?? [])].sort();
    if (memberNames.length === 0) {
      state.groups.delete(key);
      continue;
    }
    const members = memberNames.map((name) => state.resolved.get(name) ?? needsFull());
    const planned = groupServices(state.index.settings, key, members, state.shared);
    const names = new Set<string>();
    for (const service of planned) {
      addService(state, service);
      names.add(service.plan.name);
      for (const d of service.plan.domains) state.serviceOf.set(d, service.plan.name);
    }
    state.groupServiceNames.set(key, names);
    // The other members keep their routes if the shared service is the same apart from its
    // domain list (the usual case: a domain joined or left); otherwise every member is redone.
    const [was] = before;
    const [now] = planned;
    const same =
      before.length === 1 &&
      planned.length === 1 &&
      was !== undefined &&
      now !== undefined &&
      sameForRoutes(was, now.plan);
    if (!same) for (const name of memberNames) rebuild.add(name);
  }
}

/** The routes of `rebuild`'s domains, and their lines in the per-domain tables. */
export function rerender(state: State, rebuild: ReadonlySet<string>): void {
  const smtpLimits = defaultLimits(state.index.settings);
  for (const name of rebuild) {
    const res = state.resolved.get(name);
    if (res === undefined) continue;
    const serviceName = state.serviceOf.get(name) ?? DEFAULT_SERVICE;
    const service = state.services.get(serviceName);
    if (serviceName !== DEFAULT_SERVICE && service === undefined) needsFull();
    let transport = state.transports.get(serviceName);
    if (transport === undefined) state.transports.set(serviceName, (transport = transportValue(serviceName)));
    const route = domainRoute(res, service, transport, smtpLimits);
    routeReplaced(state.plan, state.plan.routes.get(name), route);
    state.plan.routes.set(name, route);
    setLines(state, name, route, undefined);
  }
}

/** Removes a domain's route, resolution, nexthop uses, group membership and own service. */
function detach(state: State, name: string, touchedGroups: Set<string>): void {
  state.plan.unrouted.delete(name);
  routeReplaced(state.plan, state.plan.routes.get(name), null);
  state.plan.routes.delete(name);
  const old = state.resolved.get(name);
  if (old === undefined) return;
  state.resolved.delete(name);
  for (const hop of old.kind === 'relay' ? old.hops : []) {
    removeNexthopUse(state.nexthops, hop.nexthop, hop.tlsPolicy);
    state.touchedNexthops.add(hop.nexthop);
  }
  const key = state.groupOf.get(name);
  if (key !== undefined) {
    state.groupOf.delete(name);
    state.groups.get(key)?.delete(name);
    touchedGroups.add(key);
  } else {
    const own = state.serviceOf.get(name);
    if (own !== undefined) {
      state.services.delete(own);
      state.identities.delete(own);
    }
  }
  state.serviceOf.delete(name);
}

/** Everything a member's route (and so its lines) takes from its service: domainRoute reads no more. */
function sameForRoutes(a: ServicePlan, b: ServicePlan): boolean {
  return (
    a.name === b.name &&
    a.sasl === b.sasl &&
    a.saslMap === b.saslMap &&
    a.tlsPolicyMap === b.tlsPolicyMap &&
    isDeepStrictEqual(a.limits, b.limits)
  );
}

/**
 * Domains were placed with the nexthops shared before this change: should a nexthop become
 * shared, or stop being so, every route through it is placed anew, which only the full compile does.
 */
export function checkSharedNexthops(state: State): void {
  for (const nexthop of state.touchedNexthops) {
    if ((state.nexthops.get(nexthop)?.size ?? 0) > 1 !== state.shared.has(nexthop)) needsFull();
  }
  state.touchedNexthops.clear();
}

function addService(state: State, { identity, plan }: PlannedService): void {
  const seen = state.identities.get(plan.name);
  // A name collision is refused by the full compile, with the problem it reports.
  if (seen !== undefined && seen !== identity) throw new NeedsFullCompile();
  state.identities.set(plan.name, identity);
  state.services.set(plan.name, plan);
}

/** A domain's lines in the five per-domain tables: routed, unrouted (`unrouted` set) or gone (neither). */
function setLines(state: State, name: string, route: DomainRoute | null, unrouted: UnroutedDomain | undefined): void {
  const { tables } = state;
  const key = route?.senderKey ?? senderKey(name);
  tables.transport.set(key, route === null ? null : hashLine(key, ROUTED_TRANSPORT));
  tables.service.set(key, route === null || route.service === DEFAULT_SERVICE ? null : hashLine(key, route.transport));
  tables.relay.set(key, route?.relayhost == null ? null : hashLine(key, route.relayhost));
  const credential = route === null ? null : globalSaslCredential(route);
  const sasl = credential === null ? null : saslValues(credential);
  tables.sasl.set(key, sasl === null ? null : hashLine(key, sasl.value));
  tables.saslMasked.set(key, sasl === null ? null : hashLine(key, sasl.masked));
  tables.access.set(
    name,
    route === null && unrouted === undefined ? null : hashLine(...senderAccessEntry(name, unrouted)),
  );
}
