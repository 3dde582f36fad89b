/**
 * The sync job's compiler: the same bundle as compile(snapshot), byte for byte, but a change that
 * touches a few sender domains or their credentials costs work for those domains only, instead of
 * validating, resolving and rendering all of them again (≈ 1 s at 100,000 domains, BENCHMARKS.md).
 *
 * How it knows what changed: object identity. The snapshot loader hands out the same (frozen) row
 * object for a row that did not change; a new object is a changed or new row, a missing id a deleted
 * one. Everything is derived from rows through the functions compile() itself uses (validation,
 * resolveDomain, placement, groupServices, domainRoute, the table entry functions, assembleBundle),
 * so the two paths cannot drift apart in what they mean; they differ only in how much they redo.
 *
 * Incremental: any change to tenants, relays, domains, credentials (domain-scoped or relay-wide)
 * and destination policies. A changed tenant, relay or relay-wide credential redoes every domain
 * that refers to it (found in one pass over the domains); destination policies only feed the TLS
 * policy table and the warnings, which are rebuilt on every compile anyway. A full compile, which
 * also rebuilds the state kept here: the settings (they reach every domain), a change that reaches
 * many domains at once (see BULK_SHARE and REACHED_SHARE), any problem the
 * compiler would refuse, a first compile, and anything unexpected: the incremental path never guesses.
 */
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { assembleBundle, bundleFile, compilePlan, secretBundleFile } from './compiler.js';
import { CompileError, ProblemList } from './errors.js';
import type { Bundle, BundleFile, FileDigests } from './bundle.js';
import { MapEncodingError, formatNexthop, renderHashMap } from './map-encoding.js';
import {
  DEFAULT_SERVICE,
  checkServiceLimits,
  domainRoute,
  domainService,
  groupServices,
  placement,
  type DetailedPlan,
  type DomainRoute,
  type PlannedService,
  type RoutePlan,
  type Routed,
  type ServicePlan,
  type UnroutedDomain,
} from './plan.js';
import { planWithQuarantine } from './quarantine.js';
import { defaultLimits, resolveDomain, type RelayTlsPolicy } from './resolve.js';
import type { Credential, DestinationPolicy, Domain, Relay, Snapshot, Tenant } from './snapshot.js';
import { senderKey, transportValue } from './table-keys.js';
import {
  TABLE,
  globalSaslCredential,
  saslValues,
  senderAccessEntry,
  serviceSaslEntries,
  tlsPolicyEntries,
} from './tables.js';
import { checkCredential, checkDomain, checkRelay, checkTenant, indexPolicies, type SnapshotIndex } from './validate.js';
import { planWarnings } from './warnings.js';

/** More changed rows than the larger of MIN_BULK and BULK_SHARE of the domains: a full compile is cheaper. */
const BULK_SHARE = 0.02;
const MIN_BULK = 1000;
/**
 * More domains reached than this share (and MIN_BULK): a full compile. Redoing a domain costs
 * ≈ 50 µs here against ≈ 15 µs of a full compile's (BENCHMARKS.md, compile: 2,000 domains of a
 * relay ≈ 0.1 s), so the two meet near 30 % of the domains; a tenth keeps the incremental path
 * clearly the cheaper one where it is taken.
 */
const REACHED_SHARE = 0.1;

export type CompileMode = 'full' | 'incremental';

export interface IncrementalCompiler {
  /** Same result as compile(snapshot, { lastGood }), quarantine included. */
  compile(snapshot: Snapshot): Bundle;
  /** How the last successful compile was done (null before the first). */
  readonly lastMode: CompileMode | null;
  /**
   * The route plan of the last successful compile (for explainRoute), null after a failed one.
   * Updated in place by the next compile: use it before the next compile starts.
   */
  readonly plan: RoutePlan | null;
  /**
   * The rows the last compile was made of, quarantined ones left out: compile(snapshot, { lastGood })
   * gives what this compiler gives for the next snapshot.
   */
  readonly lastGood: Snapshot | null;
  /** Forget the kept plan and tables: the next compile is a full one (the last-good rows stay). */
  reset(): void;
}

/** Thrown inside the incremental path: this change needs a full compile. */
class NeedsFullCompile extends Error {}

/** Lines per chunk of a SortedLines: small enough to re-join cheaply, large enough to be few. */
const CHUNK = 512;

interface Chunk {
  keys: string[];
  lines: string[];
  /** The chunk's lines joined, until one of them changes. */
  joined: string | undefined;
}

/**
 * The lines of one table sorted by key (code units, like renderHashMap), in chunks: changing a line
 * re-joins its chunk only, and the table's text is the chunks' texts joined.
 */
class SortedLines {
  private readonly chunks: Chunk[] = [];
  private joined: string | undefined;

  constructor(keys: readonly string[], lines: readonly string[]) {
    for (let i = 0; i < keys.length; i += CHUNK) {
      this.chunks.push({ keys: keys.slice(i, i + CHUNK), lines: lines.slice(i, i + CHUNK), joined: undefined });
    }
  }

  /** The chunk `key` belongs in: the last one whose first key is not above it. */
  private chunkFor(key: string): Chunk | undefined {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >>> 1;
      if (this.chunks[mid]!.keys[0]! <= key) low = mid;
      else high = mid - 1;
    }
    return this.chunks[low];
  }

  /** Sets (line) or removes (null) the line of `key`. */
  set(key: string, line: string | null): void {
    let chunk = this.chunkFor(key);
    if (chunk === undefined) {
      if (line === null) return;
      this.chunks.push((chunk = { keys: [], lines: [], joined: undefined }));
    }
    const { keys, lines } = chunk;
    let at = 0;
    let high = keys.length;
    while (at < high) {
      const mid = (at + high) >>> 1;
      if (keys[mid]! < key) at = mid + 1;
      else high = mid;
    }
    const present = keys[at] === key;
    if (line === null) {
      if (!present) return;
      keys.splice(at, 1);
      lines.splice(at, 1);
      if (keys.length === 0) this.chunks.splice(this.chunks.indexOf(chunk), 1);
    } else if (present) {
      if (lines[at] === line) return;
      lines[at] = line;
    } else {
      keys.splice(at, 0, key);
      lines.splice(at, 0, line);
      if (keys.length > 2 * CHUNK) {
        const half = { keys: keys.splice(CHUNK), lines: lines.splice(CHUNK), joined: undefined };
        this.chunks.splice(this.chunks.indexOf(chunk) + 1, 0, half);
      }
    }
    chunk.joined = undefined;
    this.joined = undefined;
  }

  private chunkTexts(): string[] {
    return this.chunks.map((chunk) => (chunk.joined ??= chunk.lines.join('')));
  }

  content(): string {
    return (this.joined ??= this.chunkTexts().join(''));
  }

  /**
   * The SHA-256 of content(), fed chunk by chunk: the same bytes as hashing the
   * whole text (chunks end with a newline, so no character is split), without converting a
   * multi-megabyte string to UTF-8 in one piece.
   */
  digest(): string {
    const hash = createHash('sha256');
    for (const text of this.chunkTexts()) hash.update(text);
    return hash.digest('hex');
  }

  /** From a rendered table whose lines are `key value` in key order. */
  static fromHashMap(content: string): SortedLines {
    const lines = content.split('\n');
    lines.pop(); // after the last '\n'
    return new SortedLines(
      lines.map((line) => line.slice(0, line.indexOf(' '))),
      lines.map((line) => `${line}\n`),
    );
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends ReadonlyMap<infer A, infer B> ? Map<A, B> : T[K] extends ReadonlySet<infer S> ? Set<S> : T[K] };

/** How many hops of routed domains reach a nexthop with each TLS policy (gone at zero). */
type NexthopUse = Map<RelayTlsPolicy, number>;

interface State {
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
  tables: { transport: SortedLines; relay: SortedLines; sasl: SortedLines; saslMasked: SortedLines; access: SortedLines };
}

interface RowDiff<T> {
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
function diffRows<T extends { id: string }>(previous: readonly T[], byId: ReadonlyMap<string, T>, rows: readonly T[]): RowDiff<T> | null {
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

const unchanged = (diff: RowDiff<unknown> | null) => diff !== null && diff.added.length === 0 && diff.changed.length === 0 && diff.removed.length === 0;

function hashLine(key: string, value: string): string {
  return renderHashMap([[key, value]]);
}

export function createIncrementalCompiler(): IncrementalCompiler {
  let state: State | null = null;
  let lastMode: CompileMode | null = null;
  /** The rows the last compile was made of, quarantined ones left out: what stands in for a row that stops compiling. */
  let lastGood: Snapshot | null = null;
  /** The plan of a quarantined compile (no state is kept for one: every compile is full while a unit is quarantined). */
  let quarantinedPlan: RoutePlan | null = null;

  function full(snapshot: Snapshot): Bundle {
    state = null;
    quarantinedPlan = null;
    const { detailed, quarantine, effective } = planWithQuarantine(snapshot, lastGood);
    const { plan } = detailed;
    const digests: FileDigests = new Map();
    const bundle: Bundle = { ...compilePlan(plan, digests), quarantine };
    if (quarantine.length === 0) state = buildState(snapshot, detailed, digests, bundle);
    else quarantinedPlan = plan;
    lastGood = effective;
    lastMode = 'full';
    return bundle;
  }

  return {
    get lastMode() {
      return lastMode;
    },
    get plan() {
      return state?.plan ?? quarantinedPlan;
    },
    get lastGood() {
      return lastGood;
    },
    reset() {
      state = null;
      quarantinedPlan = null;
      lastMode = null;
    },
    compile(snapshot: Snapshot): Bundle {
      if (state === null) return full(snapshot);
      try {
        const bundle = incremental(state, snapshot);
        lastMode = 'incremental';
        lastGood = snapshot;
        return bundle;
      } catch (error) {
        // The state may be half-updated: drop it whatever went wrong, and let the full compile
        // (which reports every problem of a refused snapshot) decide.
        state = null;
        if (!(error instanceof NeedsFullCompile) && !isExpectedFailure(error)) throw error;
        return full(snapshot);
      }
    },
  };
}

/** Refusals and encoding errors the incremental path may hit: the full compile reports them properly. */
function isExpectedFailure(error: unknown): boolean {
  return error instanceof CompileError || error instanceof MapEncodingError;
}


/** The state of a plan compile() just rendered. */
function buildState(snapshot: Snapshot, detailed: DetailedPlan, digests: FileDigests, bundle: Bundle): State {
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
      relay: SortedLines.fromHashMap(file(TABLE.senderRelay)),
      sasl: SortedLines.fromHashMap(file(TABLE.saslPasswd)),
      saslMasked: SortedLines.fromHashMap(masked(TABLE.saslPasswd)),
      access: SortedLines.fromHashMap(file(TABLE.senderAccess)),
    },
  };
}

/** This change needs a full compile: the caller drops the state, which may be half-updated. */
const needsFull = (): never => {
  throw new NeedsFullCompile();
};

/** What changed between the state's rows and a snapshot's, table by table. */
interface SnapshotDiff {
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
interface Reach {
  affected: Set<string>;
  changedTenants: Set<string>;
  changedRelays: Set<string>;
  /** Relays whose relay-wide credential came, went or changed: every domain routed through them without one of its own. */
  relayWideChanged: Set<string>;
}

/** The domains a change put back into the plan, and what that did to the relay groups. */
interface Replanned {
  /** Domains whose route and lines are rendered again. */
  rebuild: Set<string>;
  touchedGroups: Set<string>;
  /** Services of domains placed on their own in this change: a split group they left used the same names. */
  ownServices: Set<string>;
}

/**
 * The incremental path, in the order compile() works: the rows' differences, the index as
 * buildIndex would build it from the new rows, the affected domains resolved and placed again,
 * the relay groups they touched, their routes and lines, then the files. Anything it cannot do
 * exactly throws NeedsFullCompile.
 */
function incremental(state: State, snapshot: Snapshot): Bundle {
  if (snapshot.settings !== state.rows.settings) needsFull();
  const diff = diffSnapshot(state, snapshot);
  // Nothing changed (a reconcile, an explanation, a preview): the output does not depend on row order.
  if (diff === null) {
    state.rows = snapshot;
    return state.bundle;
  }
  const bulk = Math.max(MIN_BULK, BULK_SHARE * snapshot.domains.length);
  if (diff.oldDomains.length + diff.newDomains.length + diff.oldCredentials.length + diff.newCredentials.length > bulk) needsFull();

  const problems = new ProblemList();
  const reach = updateIndex(state, snapshot, diff, problems);
  if (problems.items.length > 0) needsFull();

  const replanned = replan(state, reach.affected, problems);
  checkSharedNexthops(state);
  regroup(state, replanned);
  rerender(state, replanned.rebuild);
  state.rows = snapshot;
  return assembleFromState(state, problems);
}

/** The rows' differences; null when no row changed. Throws NeedsFullCompile when ids are not unique. */
function diffSnapshot(state: State, snapshot: Snapshot): SnapshotDiff | null {
  const { index } = state;
  const previous = state.rows;
  const relays = diffRows<Relay>(previous.relays, index.relays, snapshot.relays);
  const policies = diffRows<DestinationPolicy>(previous.destinationPolicies, state.policiesById, snapshot.destinationPolicies);
  const tenants = diffRows<Tenant>(previous.tenants, index.tenants, snapshot.tenants);
  const domains = diffRows<Domain>(previous.domains, index.domainsById, snapshot.domains);
  const credentials = diffRows<Credential>(previous.credentials, state.credentialsById, snapshot.credentials);
  if (relays === null || policies === null || tenants === null || domains === null || credentials === null) return needsFull();
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
function updateIndex(state: State, snapshot: Snapshot, diff: SnapshotDiff, problems: ProblemList): Reach {
  const reach: Reach = { affected: new Set(), changedTenants: new Set(), changedRelays: new Set(), relayWideChanged: new Set() };
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

function updateTenantsAndRelays(state: State, snapshot: Snapshot, diff: SnapshotDiff, reach: Reach, problems: ProblemList): void {
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
function recheckReferences(state: State, diff: SnapshotDiff, reach: Reach, reached: ReadonlySet<Domain>, problems: ProblemList): void {
  const { index } = state;
  const newDomainSet = new Set(diff.newDomains);
  for (const d of reached) if (!newDomainSet.has(d)) checkDomain(d, index, problems);
  const rechecked = new Set(diff.newCredentials);
  const recheck = (c: Credential | undefined) => {
    if (c === undefined || rechecked.has(c)) return;
    rechecked.add(c);
    checkCredential(c, c.domainId === null ? undefined : index.domainsById.get(c.domainId), index.relays, problems);
  };
  for (const relayId of reach.changedRelays) for (const c of index.credentialsByRelay.get(relayId)?.values() ?? []) recheck(c);
  for (const d of diff.newDomains) {
    for (const scopes of index.credentialsByRelay.values()) recheck(scopes.get(d.id));
  }
}

/**
 * Takes every affected domain out of the plan, then resolves and places again those that still
 * exist: in that order, a domain's own service removed under its old name cannot remove the one
 * just added.
 */
function replan(state: State, affected: ReadonlySet<string>, problems: ProblemList): Replanned {
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
function regroup(state: State, { touchedGroups, ownServices, rebuild }: Replanned): void {
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
    const same = before.length === 1 && planned.length === 1 && was !== undefined && now !== undefined && sameForRoutes(was, now.plan);
    if (!same) for (const name of memberNames) rebuild.add(name);
  }
}

/** The routes of `rebuild`'s domains, and their lines in the per-domain tables. */
function rerender(state: State, rebuild: ReadonlySet<string>): void {
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
    state.plan.routes.set(name, route);
    setLines(state, name, route, undefined);
  }
}

/** The plan-wide parts (TLS policies, services, their limits, warnings) and the bundle: the same files, in the same order, as compilePlan. */
function assembleFromState(state: State, problems: ProblemList): Bundle {
  const { plan, tables } = state;
  const relayTlsPolicies = new Map<string, RelayTlsPolicy>();
  for (const [nexthop, use] of state.nexthops) {
    if (use.size === 1) for (const policy of use.keys()) relayTlsPolicies.set(nexthop, policy);
  }
  plan.relayTlsPolicies = relayTlsPolicies;
  plan.sharedNexthops = new Set(state.shared);
  plan.services = [...state.services.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  checkServiceLimits(plan.services, plan.routes, problems);
  if (problems.items.length > 0) needsFull();
  plan.warnings = planWarnings(plan);

  const files: Record<string, BundleFile> = {};
  const content = (name: string, lines: SortedLines) => {
    const text = lines.content();
    const known = state.digests.get(name);
    if (known?.content !== text) state.digests.set(name, { content: text, digest: lines.digest() });
    return text;
  };
  files[TABLE.senderTransport] = bundleFile(content(TABLE.senderTransport, tables.transport));
  files[TABLE.senderRelay] = bundleFile(content(TABLE.senderRelay, tables.relay));
  files[TABLE.saslPasswd] = secretBundleFile(content(TABLE.saslPasswd, tables.sasl), tables.saslMasked.content());
  files[TABLE.tlsPolicy] = bundleFile(renderHashMap(tlsPolicyEntries(plan)));
  files[TABLE.senderAccess] = bundleFile(content(TABLE.senderAccess, tables.access));
  for (const service of plan.services) {
    if (service.tlsPolicyMap !== null) files[service.tlsPolicyMap] = bundleFile(renderHashMap(service.tlsPolicies));
    if (service.saslMap === null) continue;
    const sasl = serviceSaslEntries(service);
    files[service.saslMap] = secretBundleFile(renderHashMap(sasl.entries), renderHashMap(sasl.masked));
  }
  state.bundle = assembleBundle(plan, files, problems, state.digests);
  return state.bundle;
}

/** Removes a domain's route, resolution, nexthop uses, group membership and own service. */
function detach(state: State, name: string, touchedGroups: Set<string>): void {
  state.plan.unrouted.delete(name);
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
  return a.name === b.name && a.sasl === b.sasl && a.saslMap === b.saslMap && a.tlsPolicyMap === b.tlsPolicyMap && isDeepStrictEqual(a.limits, b.limits);
}

function addNexthopUse(nexthops: Map<string, NexthopUse>, nexthop: string, policy: RelayTlsPolicy): void {
  let use = nexthops.get(nexthop);
  if (use === undefined) nexthops.set(nexthop, (use = new Map()));
  use.set(policy, (use.get(policy) ?? 0) + 1);
}

function removeNexthopUse(nexthops: Map<string, NexthopUse>, nexthop: string, policy: RelayTlsPolicy): void {
  const use = nexthops.get(nexthop);
  const count = use?.get(policy);
  if (use === undefined || count === undefined) return;
  if (count > 1) use.set(policy, count - 1);
  else use.delete(policy);
  if (use.size === 0) nexthops.delete(nexthop);
}

/**
 * Domains were placed with the nexthops shared before this change: should a nexthop become
 * shared, or stop being so, every route through it is placed anew, which only the full compile does.
 */
function checkSharedNexthops(state: State): void {
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

/** A domain's lines in the four per-domain tables: routed, unrouted (`unrouted` set) or gone (neither). */
function setLines(state: State, name: string, route: DomainRoute | null, unrouted: UnroutedDomain | undefined): void {
  const { tables } = state;
  const key = route?.senderKey ?? senderKey(name);
  tables.transport.set(key, route === null ? null : hashLine(key, route.transport));
  tables.relay.set(key, route?.relayhost == null ? null : hashLine(key, route.relayhost));
  const credential = route === null ? null : globalSaslCredential(route);
  const sasl = credential === null ? null : saslValues(credential);
  tables.sasl.set(key, sasl === null ? null : hashLine(key, sasl.value));
  tables.saslMasked.set(key, sasl === null ? null : hashLine(key, sasl.masked));
  tables.access.set(name, route === null && unrouted === undefined ? null : hashLine(...senderAccessEntry(name, unrouted)));
}
