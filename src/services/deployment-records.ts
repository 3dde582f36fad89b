/** How deployments are shown and recorded: API shapes, the per-node record, the overall state, the cursor. */
import type { NodeSyncResult } from '../deploy/index.js';
import type { Deployment, DeploymentState, Node, NodeDeployment, Prisma } from '../generated/prisma/client.js';
import { cursorCodec } from '../lib/pagination.js';
import type { DeploymentCursor } from '../repositories/deployment.repository.js';

export type DeploymentRow = Deployment & { nodes: NodeDeployment[] };
export type NodeRun = Omit<Prisma.NodeDeploymentCreateManyInput, 'deploymentId'>;

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
    durationMs: run.startedAt !== null && run.finishedAt !== null ? run.finishedAt.getTime() - run.startedAt.getTime() : null,
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
export function nodeRun(node: Node, result: NodeSyncResult): NodeRun {
  return {
    nodeId: node.id,
    nodeName: node.name,
    state: result.state,
    attempts: result.attempts,
    previousVersion: result.previousVersion,
    startedAt: result.startedAt,
    finishedAt: result.finishedAt,
    error: result.error?.slice(0, 500) ?? null,
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

export function overallState(results: NodeSyncResult[]): DeploymentState {
  const ok = results.filter((r) => r.state === 'live' || r.state === 'unchanged').length;
  if (ok === results.length) return 'succeeded';
  return ok === 0 ? 'failed' : 'partial';
}
