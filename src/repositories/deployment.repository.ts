import type { Db } from '../db/prisma.js';
import type { DeploymentState, NodeDeploymentState, Prisma } from '../generated/prisma/client.js';
import { DEPLOY_CHANNEL } from '../db/channels.js';

/** A step of a node's run as its row keeps it (the deployer's step record, times as ISO strings). */
export type NodeRunStep = {
  step: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  ok: boolean;
  detail?: string;
};

/** How a node's run ended. */
export type NodeRunOutcome = {
  state: NodeDeploymentState;
  attempts: number;
  previousVersion: string | null;
  startedAt: Date;
  finishedAt: Date;
  error: string | null;
  steps: NodeRunStep[];
};

export interface DeploymentCursor {
  createdAt: Date;
  id: string;
}

export function createDeploymentRepository() {
  return {
    create(db: Db, data: Prisma.DeploymentUncheckedCreateInput) {
      return db.deployment.create({ data, include: { nodes: { orderBy: { nodeName: 'asc' } } } });
    },
    /** Tells the leading sync worker (in whichever process) that a requested run waits; sent on commit. */
    async notifyRequested(db: Db) {
      await db.$executeRaw`SELECT pg_notify(${DEPLOY_CHANNEL}, '')`;
    },
    findById(db: Db, id: string) {
      return db.deployment.findUnique({ where: { id }, include: { nodes: { orderBy: { nodeName: 'asc' } } } });
    },
    /** Newest first; the cursor is the (createdAt, id) of the last row of the previous page. */
    list(db: Db, query: { after?: DeploymentCursor | undefined; take: number }) {
      const after = query.after;
      return db.deployment.findMany({
        where:
          after === undefined
            ? undefined
            : { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] },
        orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
        take: query.take,
        include: { nodes: { orderBy: { nodeName: 'asc' } } },
      });
    },
    oldestPending(db: Db) {
      return db.deployment.findFirst({ where: { state: 'pending' }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    },
    update(db: Db, id: string, data: Prisma.DeploymentUncheckedUpdateInput) {
      return db.deployment.update({ where: { id }, data });
    },
    /** Marks runs a dead leader left `running` as failed (a new leader never resumes them). */
    abandonRunning(db: Db, finishedAt: Date) {
      return db.deployment.updateMany({
        where: { state: 'running' },
        data: { state: 'failed' as DeploymentState, finishedAt },
      });
    },
    /** A node id must be of a node locked by NodeRepository.lockRegistered in the same transaction (or null). */
    createNodeRuns(db: Db, rows: Prisma.NodeDeploymentCreateManyInput[]) {
      return db.nodeDeployment.createManyAndReturn({ data: rows, select: { id: true, nodeId: true } });
    },
    /** Node runs whose nodes' syncs start now, in one statement (by the runs' own ids). */
    async startNodeRuns(db: Db, ids: readonly string[], startedAt: Date) {
      await db.nodeDeployment.updateMany({ where: { id: { in: [...ids] } }, data: { state: 'running', startedAt } });
    },
    /**
     * By the run's own id: its node id is cleared when the node is deleted. One raw statement, which
     * costs the control plane less CPU than the client's own update: it runs once per node and change.
     */
    async updateNodeRun(db: Db, id: string, run: NodeRunOutcome) {
      await db.$executeRaw`UPDATE node_deployments SET state = ${run.state}::node_deployment_state,
        attempts = ${run.attempts}, previous_version = ${run.previousVersion}, started_at = ${run.startedAt},
        finished_at = ${run.finishedAt}, error = ${run.error}, steps = ${JSON.stringify(run.steps)}::jsonb
        WHERE id = ${id}::uuid`;
    },
  };
}

export type DeploymentRepository = ReturnType<typeof createDeploymentRepository>;
