/** How deployments are shown and recorded: API shapes, the per-node record, the overall state, the cursor. */
import type { Deployment, DeploymentState, NodeDeployment } from '../generated/prisma/client.js';
import { cursorCodec } from '../lib/pagination.js';
import type { DeploymentCursor, NodeRunOutcome } from '../repositories/deployment.repository.js';
import type { Node } from '../generated/prisma/client.js';
import type { NodeSyncResult } from '../deploy/index.js';

export interface NodeOutcome {
  /** The node as it was read at its turn (as listed, when it was gone by then). */
  node: Node;
  /** null: skipped before anything was sent. */
  result: NodeSyncResult | null;
  /** Why the run does not count as what the node runs now; null when it does. */
  skipped: string | null;
}

/** The node's last error as the API shows it: a failed repair names what stays drifted. */
export function syncError(result: NodeSyncResult): string | null {
  const ok = result.state === 'live' || result.state === 'unchanged';
  const error = result.error ?? (ok ? null : result.state);
  if (error === null) return null;
  const drifted = !ok && result.driftFiles.length > 0 ? `drifted ${result.driftFiles.join(', ')}, not repaired: ` : '';
  return `${drifted}${error}`.slice(0, 500);
}

export type DeploymentRow = Deployment & { nodes: NodeDeployment[] };
export type NodeRun = NodeRunOutcome & { nodeId: string; nodeName: string };

const iso = (date: Date | null) => date?.toISOString() ?? null;

function presentNodeRun(run: NodeDeployment) {
  return {
    nodeId: run.nodeId,
    nodeName: run.nodeName,
    state: run.state,
    attempts: run.attempts,
    previousVersion: run.previousVersion,
    startedAt: iso(run.startedAt),
    finishedAt: iso(run.finishedAt),
    durationMs:
      run.startedAt !== null && run.finishedAt !== null ? run.finishedAt.getTime() - run.startedAt.getTime() : null,
    error: run.error,
    steps: (run.steps ?? []) as unknown[],
  };
}

export function presentDeployment(row: DeploymentRow) {
  return {
    id: row.id,
    version: row.version,
    reason: row.reason,
    state: row.state,
    requestedBy: row.requestedBy,
    error: row.error,
    createdAt: row.createdAt.toISOString(),
    startedAt: iso(row.startedAt),
    finishedAt: iso(row.finishedAt),
    nodes: row.nodes.map(presentNodeRun),
  };
}

const listCursor = cursorCodec('deployments', ['timestamp', 'uuid']);

export function encodeDeploymentCursor(deployment: { createdAt: Date; id: string }): string {
  return listCursor.encode(deployment.createdAt.toISOString(), deployment.id);
}

export function decodeDeploymentCursor(cursor: string | undefined): DeploymentCursor | undefined {
  const key = listCursor.decode(cursor);
  return key === undefined ? undefined : { createdAt: new Date(key[0]), id: key[1] };
}

/** Per-node record of a sync result; steps keep their timings, errors are short and secret-free. */
export function nodeRun({ node, result, skipped }: NodeOutcome, at: Date): NodeRun {
  const base = { nodeId: node.id, nodeName: node.name };
  if (result === null)
    return {
      ...base,
      state: 'skipped',
      attempts: 0,
      previousVersion: null,
      startedAt: at,
      finishedAt: at,
      error: skipped,
      steps: [],
    };
  return {
    ...base,
    state: skipped !== null ? 'skipped' : result.state,
    attempts: result.attempts,
    previousVersion: result.previousVersion,
    startedAt: result.startedAt,
    finishedAt: result.finishedAt,
    error: skipped ?? syncError(result),
    steps: result.steps.map((s) => ({
      step: s.step,
      startedAt: s.startedAt.toISOString(),
      finishedAt: s.finishedAt.toISOString(),
      durationMs: s.finishedAt.getTime() - s.startedAt.getTime(),
      ok: s.ok,
      ...(s.detail !== undefined ? { detail: s.detail } : {}),
    })),
  };
}

/** Over the nodes the run counts for: one skipped (deleted, disabled or re-addressed) counts for none. */
export function overallState(outcomes: NodeOutcome[]): DeploymentState {
  const counted = outcomes.flatMap(({ result, skipped }) => (result !== null && skipped === null ? [result] : []));
  const ok = counted.filter((r) => r.state === 'live' || r.state === 'unchanged').length;
  if (ok === counted.length) return 'succeeded';
  return ok === 0 ? 'failed' : 'partial';
}
