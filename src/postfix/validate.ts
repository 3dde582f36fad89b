/**
 * Structural validation of a Snapshot and the lookup index the resolver works on. Everything that
 * could reach a Postfix file is checked here (names, hosts, credentials, limits, times: each row by
 * row-checks.ts, ids and names across rows here), so the resolver and the renderer only ever see
 * well-formed data. Route semantics (ownership, fallback compatibility, limit combinations) are
 * checked in resolve.ts, for routed domains only.
 */
import type { ProblemList, ResourceType } from './errors.js';
import { formatNexthop, isValidDomainName } from './map-encoding.js';
import { checkCredential, checkDomain, checkPolicy, checkRelay, checkSettings, checkTenant } from './row-checks.js';
import type { Credential, DestinationPolicy, Domain, Relay, Settings, Snapshot, Tenant } from './snapshot.js';

export interface SnapshotIndex {
  settings: Settings;
  tenants: ReadonlyMap<string, Tenant>;
  relays: ReadonlyMap<string, Relay>;
  domainsById: ReadonlyMap<string, Domain>;
  domainsByName: ReadonlyMap<string, Domain>;
  /** Active credentials by relay id, then by domain id (null: the relay-wide one). */
  credentialsByRelay: ReadonlyMap<string, ReadonlyMap<string | null, Credential>>;
  /** `[host]:port` of every relay, formatted once: every hop of every route uses it. */
  nexthops: ReadonlyMap<string, string>;
  /** Relays holding at least one domain-scoped credential. */
  relaysWithDomainCredentials: ReadonlySet<string>;
  /** Sorted by pattern. */
  destinationPolicies: readonly DestinationPolicy[];
  /**
   * Quarantined rows (`unitKey()`s) the compiler could not express: not checked, and every sender
   * domain they reach resolves as `quarantined` (quarantine.ts). Empty but for such compiles.
   */
  held: ReadonlySet<string>;
}

/** How a row is named in `held` and in quarantine reports. */
export function unitKey(resourceType: ResourceType, resourceId: string | null): string {
  return `${resourceType}:${resourceId ?? ''}`;
}

const NOTHING_HELD: ReadonlySet<string> = new Set();

function uniqueById<T extends { id: string }>(
  rows: readonly T[],
  type: ResourceType,
  problems: ProblemList,
  held: ReadonlySet<string> = NOTHING_HELD,
): Map<string, T> {
  const byId = new Map<string, T>();
  for (const row of rows) {
    if (typeof row.id !== 'string' || row.id === '') {
      problems.add('invalid_value', type, null, `a ${type} has an empty id`);
    } else if (byId.has(row.id)) {
      // A quarantined duplicate is left out: the first row of the id stands.
      if (!held.has(unitKey(type, row.id)))
        problems.add('duplicate_id', type, row.id, `two ${type} rows share the id ${row.id}`);
    } else {
      byId.set(row.id, row);
    }
  }
  return byId;
}

/** The destination policies checked and sorted by pattern, as the index holds them (quarantined ones left out). */
export function indexPolicies(
  rows: readonly DestinationPolicy[],
  problems: ProblemList,
  held: ReadonlySet<string> = NOTHING_HELD,
): DestinationPolicy[] {
  const policies = [...uniqueById(rows, 'destinationPolicy', problems, held).values()].filter(
    (p) => !held.has(unitKey('destinationPolicy', p.id)),
  );
  const patterns = new Map<string, string>();
  for (const p of policies) {
    checkPolicy(p, problems);
    const other = patterns.get(p.pattern);
    if (other !== undefined)
      problems.add(
        'duplicate_name',
        'destinationPolicy',
        p.id,
        `destination pattern ${p.pattern} also exists as ${other}`,
      );
    else patterns.set(p.pattern, p.id);
  }
  policies.sort((a, b) => (a.pattern < b.pattern ? -1 : a.pattern > b.pattern ? 1 : a.id < b.id ? -1 : 1));
  return policies;
}

/**
 * Validates everything structural and indexes the snapshot; problems go to `problems`. Rows in
 * `held` are indexed (so that what refers to them resolves as quarantined) but not checked; a held
 * domain whose name no table could carry, or that another domain has, gets no name at all.
 */
export function buildIndex(
  snapshot: Snapshot,
  problems: ProblemList,
  held: ReadonlySet<string> = NOTHING_HELD,
): SnapshotIndex {
  const isHeld = (type: ResourceType, id: string) => held.size > 0 && held.has(unitKey(type, id));
  checkSettings(snapshot.settings, problems);
  const tenants = uniqueById(snapshot.tenants, 'tenant', problems, held);
  for (const t of tenants.values()) if (!isHeld('tenant', t.id)) checkTenant(t, problems);
  const relays = uniqueById(snapshot.relays, 'relay', problems, held);
  const nexthops = new Map<string, string>();
  for (const r of relays.values()) {
    if (isHeld('relay', r.id)) continue;
    checkRelay(r, tenants, problems);
    nexthops.set(r.id, formatNexthop(r.host, r.port));
  }

  const domainsById = uniqueById(snapshot.domains, 'domain', problems, held);
  const domainsByName = new Map<string, Domain>();
  for (const d of domainsById.values()) {
    const heldDomain = isHeld('domain', d.id);
    if (!heldDomain) checkDomain(d, { tenants, relays }, problems);
    const other = domainsByName.get(d.name);
    if (heldDomain && (other !== undefined || typeof d.name !== 'string' || !isValidDomainName(d.name))) continue;
    if (other !== undefined)
      problems.add('duplicate_name', 'domain', d.id, `domain ${d.name} also exists as ${other.id}`);
    else domainsByName.set(d.name, d);
  }

  const credentialsByRelay = new Map<string, Map<string | null, Credential>>();
  const relaysWithDomainCredentials = new Set<string>();
  for (const c of uniqueById(snapshot.credentials, 'credential', problems, held).values()) {
    const domain = c.domainId === null ? undefined : domainsById.get(c.domainId);
    if (!isHeld('credential', c.id)) checkCredential(c, domain, relays, problems);
    let scopes = credentialsByRelay.get(c.relayId);
    if (scopes === undefined) credentialsByRelay.set(c.relayId, (scopes = new Map()));
    // Keyed by the domain's own id string where it exists: the resolver looks up with domain.id,
    // and the same string object compares without reading its characters (100,000 lookups).
    const scope = c.domainId === null ? null : (domain?.id ?? c.domainId);
    const other = scopes.get(scope);
    if (other !== undefined) {
      if (!isHeld('credential', c.id))
        problems.add(
          'duplicate_credential',
          'credential',
          c.id,
          `credential ${other.id} is already active for the same relay and domain scope`,
        );
    } else {
      scopes.set(scope, c);
    }
    if (c.domainId !== null) relaysWithDomainCredentials.add(c.relayId);
  }

  const policies = indexPolicies(snapshot.destinationPolicies, problems, held);

  return {
    held,
    settings: snapshot.settings,
    tenants,
    relays,
    domainsById,
    domainsByName,
    credentialsByRelay,
    nexthops,
    relaysWithDomainCredentials,
    destinationPolicies: policies,
  };
}
