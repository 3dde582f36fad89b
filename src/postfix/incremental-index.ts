// The incremental compiler's index maintenance (incremental.ts): which rows changed, the index
// as buildIndex would build it from the new rows, and the domains a change reaches.
import type { ProblemList } from './errors.js';
import { formatNexthop } from './map-encoding.js';
import type { Credential, DestinationPolicy, Domain, Relay, Snapshot, Tenant } from './snapshot.js';
import { checkCredential, checkDomain, checkRelay, checkTenant } from './row-checks.js';
import { indexPolicies } from './validate.js';
import { MIN_BULK, REACHED_SHARE, needsFull, type State } from './incremental-state.js';

export interface RowDiff<T> {
  added: T[];
  changed: Array<[previous: T, next: T]>;
  removed: T[];
}

/**
 * What differs between the previous rows (`previous`, also by id in `byId`) and `rows`; null when
 * the ids of `rows` are not unique. Rows are first paired by position with the same object (the
 * loader keeps unchanged rows in place, so this is a walk over pointers, resynchronised after a
 * removal); only what is left over is looked up by id. Correct for any order, fast for a stable one.
 */
function diffRows<T extends { id: string }>(
  previous: readonly T[],
  byId: ReadonlyMap<string, T>,
  rows: readonly T[],
): RowDiff<T> | null {
  // The loader hands out the same array for a table none of whose rows changed.
  if (rows === previous) return { added: [], changed: [], removed: [] };
  const leftNew: T[] = [];
  const leftOld = new Set<T>();
  let i = 0;
  let j = 0;
  while (i < rows.length && j < previous.length) {
    if (rows[i] === previous[j]) {
      i += 1;
      j += 1;
      continue;
    }
    // A few removed rows in a row: skip them if the walk meets this row again just after.
    let skip = 1;
    while (skip <= 8 && j + skip < previous.length && previous[j + skip] !== rows[i]) skip += 1;
    if (skip <= 8 && j + skip < previous.length) {
      for (let k = j; k < j + skip; k += 1) leftOld.add(previous[k]!);
      j += skip;
      continue;
    }
    leftNew.push(rows[i]!);
    leftOld.add(previous[j]!);
    i += 1;
    j += 1;
  }
  for (; i < rows.length; i += 1) leftNew.push(rows[i]!);
  for (; j < previous.length; j += 1) leftOld.add(previous[j]!);

  const diff: RowDiff<T> = { added: [], changed: [], removed: [] };
  const newIds = new Set<string>();
  for (const row of leftNew) {
    if (newIds.has(row.id)) return null;
    newIds.add(row.id);
    const old = byId.get(row.id);
    if (old === undefined) diff.added.push(row);
    // The previous row of this id was paired by position: `rows` holds this id twice.
    else if (!leftOld.has(old)) return null;
    else if (old !== row) diff.changed.push([old, row]);
  }
  for (const old of leftOld) if (!newIds.has(old.id)) diff.removed.push(old);
  return diff;
}

export const unchanged = (diff: RowDiff<unknown> | null) =>
  diff !== null && diff.added.length === 0 && diff.changed.length === 0 && diff.removed.length === 0;

/** What changed between the state's rows and a snapshot's, table by table. */
export interface SnapshotDiff {
  tenants: RowDiff<Tenant>;
  relays: RowDiff<Relay>;
  policies: RowDiff<DestinationPolicy>;
  /** Removed and changed domains as they were, added and changed ones as they are now. */
  oldDomains: Domain[];
  newDomains: Domain[];
  removedDomains: Domain[];
  oldCredentials: Credential[];
  newCredentials: Credential[];
}

/** Rows a change touched, and the domains whose lines it may change (by name). */
export interface Reach {
  affected: Set<string>;
  changedTenants: Set<string>;
  changedRelays: Set<string>;
  /** Relays whose relay-wide credential came, went or changed: every domain routed through them without one of its own. */
  relayWideChanged: Set<string>;
}

/** The rows' differences; null when no row changed. Throws NeedsFullCompile when ids are not unique. */
export function diffSnapshot(state: State, snapshot: Snapshot): SnapshotDiff | null {
  const { index } = state;
  const previous = state.rows;
  const relays = diffRows<Relay>(previous.relays, index.relays, snapshot.relays);
  const policies = diffRows<DestinationPolicy>(
    previous.destinationPolicies,
    state.policiesById,
    snapshot.destinationPolicies,
  );
  const tenants = diffRows<Tenant>(previous.tenants, index.tenants, snapshot.tenants);
  const domains = diffRows<Domain>(previous.domains, index.domainsById, snapshot.domains);
  const credentials = diffRows<Credential>(previous.credentials, state.credentialsById, snapshot.credentials);
  if (relays === null || policies === null || tenants === null || domains === null || credentials === null)
    return needsFull();
  if ([relays, policies, tenants, domains, credentials].every(unchanged)) return null;
  return {
    tenants,
    relays,
    policies,
    oldDomains: [...domains.removed, ...domains.changed.map(([old]) => old)],
    newDomains: [...domains.added, ...domains.changed.map(([, next]) => next)],
    removedDomains: domains.removed,
    oldCredentials: [...credentials.removed, ...credentials.changed.map(([old]) => old)],
    newCredentials: [...credentials.added, ...credentials.changed.map(([, next]) => next)],
  };
}

/**
 * The index, as buildIndex would have built it from the new rows, with the checks buildIndex makes
 * of them (into `problems`); returns which domains the change reaches.
 */
export function updateIndex(state: State, snapshot: Snapshot, diff: SnapshotDiff, problems: ProblemList): Reach {
  const reach: Reach = {
    affected: new Set(),
    changedTenants: new Set(),
    changedRelays: new Set(),
    relayWideChanged: new Set(),
  };
  for (const d of diff.oldDomains) reach.affected.add(d.name);
  for (const c of diff.oldCredentials) {
    const d = state.index.domainsById.get(c.domainId ?? '');
    if (d !== undefined) reach.affected.add(d.name);
  }
  // Tenants and relays first (domains and credentials are checked against them), and removals
  // before additions (a rename may free a name that another changed domain takes).
  updateTenantsAndRelays(state, snapshot, diff, reach, problems);
  updateDomains(state, diff, reach, problems);
  updateCredentials(state, diff, reach, problems);
  // A credential left behind by its deleted domain is refused by the full compile.
  for (const old of diff.removedDomains) {
    for (const scopes of state.index.credentialsByRelay.values()) if (scopes.has(old.id)) needsFull();
  }
  const reached = reachedDomains(state, reach);
  if (reach.affected.size > Math.max(MIN_BULK, REACHED_SHARE * snapshot.domains.length)) needsFull();
  recheckReferences(state, diff, reach, reached, problems);
  return reach;
}

function updateTenantsAndRelays(
  state: State,
  snapshot: Snapshot,
  diff: SnapshotDiff,
  reach: Reach,
  problems: ProblemList,
): void {
  const { index } = state;
  const { tenants, relays, policies } = diff;
  for (const t of [...tenants.added, ...tenants.changed.map(([, next]) => next)]) {
    if (typeof t.id !== 'string' || t.id === '') needsFull();
    checkTenant(t, problems);
    index.tenants.set(t.id, t);
  }
  for (const [old] of tenants.changed) reach.changedTenants.add(old.id);
  for (const old of tenants.removed) {
    index.tenants.delete(old.id);
    reach.changedTenants.add(old.id);
  }
  for (const old of relays.removed) {
    index.relays.delete(old.id);
    index.nexthops.delete(old.id);
    reach.changedRelays.add(old.id);
  }
  for (const r of [...relays.added, ...relays.changed.map(([, next]) => next)]) {
    if (typeof r.id !== 'string' || r.id === '') needsFull();
    index.relays.set(r.id, r);
    index.nexthops.set(r.id, formatNexthop(r.host, r.port));
  }
  for (const [old] of relays.changed) reach.changedRelays.add(old.id);
  // A relay's owner must exist: every relay again when tenants went or relays changed (a few dozen rows).
  if (reach.changedTenants.size > 0 || reach.changedRelays.size > 0 || relays.added.length > 0) {
    for (const r of index.relays.values()) checkRelay(r, index.tenants, problems);
  }
  if (!unchanged(policies)) {
    index.destinationPolicies = indexPolicies(snapshot.destinationPolicies, problems);
    state.policiesById = new Map(snapshot.destinationPolicies.map((p) => [p.id, p]));
  }
}

function updateDomains(state: State, diff: SnapshotDiff, reach: Reach, problems: ProblemList): void {
  const { index } = state;
  for (const old of diff.oldDomains) {
    index.domainsById.delete(old.id);
    if (index.domainsByName.get(old.name) === old) index.domainsByName.delete(old.name);
  }
  for (const d of diff.newDomains) {
    if (typeof d.id !== 'string' || d.id === '' || index.domainsByName.has(d.name)) needsFull();
    checkDomain(d, index, problems);
    index.domainsById.set(d.id, d);
    index.domainsByName.set(d.name, d);
    reach.affected.add(d.name);
  }
}

function updateCredentials(state: State, diff: SnapshotDiff, reach: Reach, problems: ProblemList): void {
  const { index } = state;
  for (const old of diff.oldCredentials) {
    const scopes = index.credentialsByRelay.get(old.relayId) as Map<string | null, Credential> | undefined;
    if (scopes?.get(old.domainId) !== old) needsFull();
    scopes?.delete(old.domainId);
    if (scopes?.size === 0) index.credentialsByRelay.delete(old.relayId);
    state.credentialsById.delete(old.id);
    if (old.domainId === null) {
      reach.relayWideChanged.add(old.relayId);
      continue;
    }
    const count = (state.domainCredentialCount.get(old.relayId) ?? 0) - 1;
    state.domainCredentialCount.set(old.relayId, count);
    if (count <= 0) index.relaysWithDomainCredentials.delete(old.relayId);
  }
  for (const c of diff.newCredentials) {
    if (typeof c.id !== 'string' || c.id === '') needsFull();
    const domain = index.domainsById.get(c.domainId ?? '');
    checkCredential(c, domain, index.relays, problems);
    let scopes = index.credentialsByRelay.get(c.relayId) as Map<string | null, Credential> | undefined;
    if (scopes === undefined) index.credentialsByRelay.set(c.relayId, (scopes = new Map()));
    if (scopes.has(c.domainId)) needsFull();
    scopes.set(domain?.id ?? c.domainId, c);
    state.credentialsById.set(c.id, c);
    if (c.domainId === null) {
      reach.relayWideChanged.add(c.relayId);
      continue;
    }
    state.domainCredentialCount.set(c.relayId, (state.domainCredentialCount.get(c.relayId) ?? 0) + 1);
    index.relaysWithDomainCredentials.add(c.relayId);
    if (domain !== undefined) reach.affected.add(domain.name);
  }
}

/** The domains a changed tenant, relay or relay-wide credential reaches (one pass over the index), added to the affected ones. */
function reachedDomains(state: State, reach: Reach): Set<Domain> {
  const { changedTenants, changedRelays, relayWideChanged } = reach;
  const reached = new Set<Domain>();
  if (changedTenants.size === 0 && changedRelays.size === 0 && relayWideChanged.size === 0) return reached;
  const viaRelay = (id: string | null) => id !== null && (changedRelays.has(id) || relayWideChanged.has(id));
  for (const d of state.index.domainsById.values()) {
    if (changedTenants.has(d.tenantId) || viaRelay(d.relayId) || viaRelay(d.fallbackRelayId)) {
      reached.add(d);
      reach.affected.add(d.name);
    }
  }
  return reached;
}

/**
 * What buildIndex checks against tenants and relays, again for the rows that refer to changed
 * ones: the reached domains, and the credentials of changed relays and of changed domains (a
 * domain's tenant may no longer own the relay of its credential).
 */
function recheckReferences(
  state: State,
  diff: SnapshotDiff,
  reach: Reach,
  reached: ReadonlySet<Domain>,
  problems: ProblemList,
): void {
  const { index } = state;
  const newDomainSet = new Set(diff.newDomains);
  for (const d of reached) if (!newDomainSet.has(d)) checkDomain(d, index, problems);
  const rechecked = new Set(diff.newCredentials);
  const recheck = (c: Credential | undefined) => {
    if (c === undefined || rechecked.has(c)) return;
    rechecked.add(c);
    checkCredential(c, c.domainId === null ? undefined : index.domainsById.get(c.domainId), index.relays, problems);
  };
  for (const relayId of reach.changedRelays)
    for (const c of index.credentialsByRelay.get(relayId)?.values() ?? []) recheck(c);
  for (const d of diff.newDomains) {
    for (const scopes of index.credentialsByRelay.values()) recheck(scopes.get(d.id));
  }
}
