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
import { compilePlan } from './compiler.js';
import { CompileError, ProblemList } from './errors.js';
import type { Bundle, FileDigests } from './bundle.js';
import { MapEncodingError } from './map-encoding.js';
import type { RoutePlan } from './plan.js';
import { planWithQuarantine } from './quarantine.js';
import type { Snapshot } from './snapshot.js';
import { assembleFromState } from './incremental-assemble.js';
import { diffSnapshot, updateIndex } from './incremental-index.js';
import { checkSharedNexthops, regroup, replan, rerender } from './incremental-replan.js';
import { BULK_SHARE, MIN_BULK, NeedsFullCompile, buildState, needsFull, type State } from './incremental-state.js';

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
  if (diff.oldDomains.length + diff.newDomains.length + diff.oldCredentials.length + diff.newCredentials.length > bulk)
    needsFull();

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
