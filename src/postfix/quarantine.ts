/**
 * Defence in depth: no row may stop the whole configuration from compiling. The API refuses at
 * write time what Postfix cannot express, but a race between two writes, a migration or a row
 * edited by hand can still bring one in. Then only the smallest unit the compiler blames (the
 * domain, its tenant, a relay, a credential, a destination policy) is quarantined:
 *
 * - its last compiled version stands in for it (`last-good`: the routes it had stay as they were),
 *   when the compile before had one and that version still fits;
 * - otherwise it is `held`: every sender domain it reaches gets no route, and smtpd answers those
 *   senders `451 4.7.1` (temporary: their mail waits at the client instead of bouncing);
 * - settings fall back to their last compiled value, else Postfix-safe defaults (`defaults`).
 *
 * Everything else compiles and deploys as usual; the report says what was quarantined and why.
 * Pure like the rest of the compiler: the same rows and the same last-good rows give the same plan.
 */
import { CompileError, type CompileProblem, type ProblemCode, type ResourceType } from './errors.js';
import { planRoutesDetailed, type DetailedPlan } from './plan.js';
import { DEFAULT_SETTINGS, type Snapshot } from './snapshot.js';
import { unitKey } from './validate.js';

export type QuarantineTreatment = 'last-good' | 'held' | 'defaults';

export interface QuarantinedUnit {
  resourceType: ResourceType;
  /** null for the settings. */
  resourceId: string | null;
  /** The tenant the unit belongs to: null for shared relays, destination policies and the settings. */
  tenantId: string | null;
  /** What Postfix could not express about the row as it is now (messages name no secret). */
  problems: Array<{ code: ProblemCode; message: string }>;
  treatment: QuarantineTreatment;
  /** Sender domains whose mail the unit holds (451): itself, its tenant's, its relay's. */
  heldDomains: number;
}

export interface QuarantinedPlan {
  detailed: DetailedPlan;
  /** Sorted by resource type and id; empty for a configuration that compiled as it is. */
  quarantine: QuarantinedUnit[];
  /** The rows the plan was made of, quarantined ones left out: the next compile's last-good rows. */
  effective: Snapshot;
}

/** Each round quarantines at least one more unit; a snapshot has few stages of checks. */
const MAX_ROUNDS = 64;

type Row = Snapshot['tenants' | 'domains' | 'relays' | 'credentials' | 'destinationPolicies'][number];
type TableName = 'tenants' | 'domains' | 'relays' | 'credentials' | 'destinationPolicies';

const TABLES: Partial<Record<ResourceType, TableName>> = {
  tenant: 'tenants',
  domain: 'domains',
  relay: 'relays',
  credential: 'credentials',
  destinationPolicy: 'destinationPolicies',
};

function byId(snapshot: Snapshot | null): Map<string, Row> {
  const rows = new Map<string, Row>();
  if (snapshot === null) return rows;
  for (const [type, table] of Object.entries(TABLES)) {
    for (const row of snapshot[table] as readonly Row[]) rows.set(unitKey(type as ResourceType, row.id), row);
  }
  return rows;
}

/** A copy of the snapshot's arrays, to put last-good rows in place of the rows as they are. */
function copyOf(snapshot: Snapshot): Snapshot {
  return {
    settings: snapshot.settings,
    tenants: [...snapshot.tenants],
    domains: [...snapshot.domains],
    relays: [...snapshot.relays],
    credentials: [...snapshot.credentials],
    destinationPolicies: [...snapshot.destinationPolicies],
  };
}

/**
 * The plan of `snapshot`, with whatever Postfix cannot express quarantined. `lastGood` is the
 * effective snapshot of the previous compile (null: none, e.g. the first compile after a start).
 * Throws CompileError only for a problem no unit can be blamed for (a compiler bug).
 */
export function planWithQuarantine(snapshot: Snapshot, lastGood: Snapshot | null): QuarantinedPlan {
  let refusal: CompileError;
  try {
    return { detailed: planRoutesDetailed(snapshot), quarantine: [], effective: snapshot };
  } catch (error) {
    if (!(error instanceof CompileError)) throw error;
    refusal = error;
  }

  const good = byId(lastGood);
  const current = copyOf(snapshot);
  const held = new Set<string>();
  const units = new Map<string, QuarantinedUnit>();

  /** Where each row sits in its table of `current`, indexed when first needed. */
  const positions = new Map<TableName, Map<string, number>>();
  const positionOf = (table: TableName, id: string): number => {
    let index = positions.get(table);
    if (index === undefined) {
      index = new Map();
      (current[table] as Row[]).forEach((row, at) => index!.has(row.id) || index!.set(row.id, at));
      positions.set(table, index);
    }
    return index.get(id) ?? -1;
  };

  /** Puts the last-good version of a row in its place; false when there is none to try. */
  const substitute = (type: ResourceType, id: string | null): boolean => {
    if (type === 'settings') {
      const fallback =
        lastGood !== null && lastGood.settings !== current.settings ? lastGood.settings : DEFAULT_SETTINGS;
      if (fallback === current.settings) return false;
      current.settings = fallback;
      return true;
    }
    const table = TABLES[type];
    const previous = good.get(unitKey(type, id));
    if (table === undefined || id === null || previous === undefined) return false;
    const rows = current[table] as Row[];
    const at = positionOf(table, id);
    if (at < 0 || rows[at] === previous) return false;
    rows[at] = previous;
    return true;
  };

  /** The round each unit was last treated in: a problem it still has in a later round escalates it. */
  const treatedIn = new Map<string, number>();
  for (let round = 0; round < MAX_ROUNDS; round += 1) {
    let progress = false;
    for (const problem of refusal.problems) {
      const type = problem.resourceType;
      const key = unitKey(type, problem.resourceId);
      let unit = units.get(key);
      if (unit === undefined)
        units.set(
          key,
          (unit = {
            resourceType: type,
            resourceId: problem.resourceId,
            tenantId: null,
            problems: [],
            treatment: 'last-good',
            heldDomains: 0,
          }),
        );
      if (!unit.problems.some((p) => p.code === problem.code && p.message === problem.message))
        unit.problems.push({ code: problem.code, message: problem.message });
      const last = treatedIn.get(key);
      if (last === round || unit.treatment === 'held') continue;
      if (last === undefined && substitute(type, problem.resourceId)) {
        // The settings' last-good value is the previous compile's, else the defaults.
        if (type === 'settings' && current.settings === DEFAULT_SETTINGS) unit.treatment = 'defaults';
      } else if (type === 'settings' && unit.treatment === 'last-good' && current.settings !== DEFAULT_SETTINGS) {
        current.settings = DEFAULT_SETTINGS;
        unit.treatment = 'defaults';
      } else if (type !== 'settings' && problem.resourceId !== null) {
        held.add(key);
        unit.treatment = 'held';
      } else {
        continue;
      }
      treatedIn.set(key, round);
      progress = true;
    }
    if (!progress) throw refusal;
    try {
      const detailed = planRoutesDetailed(current, held);
      return { detailed, quarantine: report(units, current, detailed), effective: withoutHeld(current, held) };
    } catch (error) {
      if (!(error instanceof CompileError)) throw error;
      refusal = error;
    }
  }
  throw refusal;
}

/** The rows of a quarantined compile that the next one may take as last-good: all but the held ones. */
function withoutHeld(snapshot: Snapshot, held: ReadonlySet<string>): Snapshot {
  const keep = <T extends { id: string }>(type: ResourceType, rows: readonly T[]) =>
    rows.filter((row) => !held.has(unitKey(type, row.id)));
  return {
    settings: snapshot.settings,
    tenants: keep('tenant', snapshot.tenants),
    domains: keep('domain', snapshot.domains),
    relays: keep('relay', snapshot.relays),
    credentials: keep('credential', snapshot.credentials),
    destinationPolicies: keep('destinationPolicy', snapshot.destinationPolicies),
  };
}

/** The units with their owning tenant and how many sender domains each holds, in a stable order. */
function report(
  units: ReadonlyMap<string, QuarantinedUnit>,
  snapshot: Snapshot,
  detailed: DetailedPlan,
): QuarantinedUnit[] {
  const rows = byId(snapshot);
  const domainsById = new Map(snapshot.domains.map((d) => [d.id, d]));
  const ownerOf = (type: ResourceType, id: string | null): string | null => {
    const row = rows.get(unitKey(type, id)) as Record<string, unknown> | undefined;
    if (row === undefined) return null;
    if (type === 'tenant') return id;
    if (type === 'credential') {
      const domain = typeof row.domainId === 'string' ? domainsById.get(row.domainId) : undefined;
      if (domain !== undefined) return domain.tenantId;
      return ownerOf('relay', typeof row.relayId === 'string' ? row.relayId : null);
    }
    return typeof row.tenantId === 'string' ? row.tenantId : null;
  };
  const quarantined = [...detailed.plan.unrouted.values()].filter((u) => u.code === 'quarantined').map((u) => u.domain);
  const credentials = new Map(snapshot.credentials.map((c) => [c.id, c]));
  const reaches = (unit: QuarantinedUnit, d: Snapshot['domains'][number]): boolean => {
    switch (unit.resourceType) {
      case 'domain':
        return d.id === unit.resourceId;
      case 'tenant':
        return d.tenantId === unit.resourceId;
      case 'relay':
        return d.relayId === unit.resourceId || d.fallbackRelayId === unit.resourceId;
      case 'credential': {
        const c = credentials.get(unit.resourceId ?? '');
        return (
          c !== undefined &&
          (c.domainId === d.id || (c.domainId === null && (d.relayId === c.relayId || d.fallbackRelayId === c.relayId)))
        );
      }
      default:
        return false;
    }
  };
  return [...units.values()]
    .map((unit) => ({
      ...unit,
      tenantId: ownerOf(unit.resourceType, unit.resourceId),
      heldDomains: unit.treatment === 'held' ? quarantined.filter((d) => reaches(unit, d)).length : 0,
    }))
    .sort((a, b) => {
      const ka = unitKey(a.resourceType, a.resourceId);
      const kb = unitKey(b.resourceType, b.resourceId);
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
}

/** The problems of a snapshot as it is, without quarantining anything (the API's write-time check). */
export function problemsOf(snapshot: Snapshot): readonly CompileProblem[] {
  try {
    planRoutesDetailed(snapshot);
    return [];
  } catch (error) {
    if (!(error instanceof CompileError)) throw error;
    return error.problems;
  }
}
