/**
 * The sync worker's runs (src/deploy/sync-worker.ts calls them, leading process only): a requested
 * deploy, a config change, the periodic reconcile. Each compiles through the config service, runs
 * the bundle on every enabled node (node-runner.ts), records the deployment and its node
 * runs, and retires (through the credential rotation) the credentials no node runs any more.
 */
import DataLoader from 'dataloader';
import type { PrismaClient } from '../db/prisma.js';
import { checkBundle, type Bundle, type SyncHandlers } from '../deploy/index.js';
import type { DeploymentReason, Node } from '../generated/prisma/client.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import type { DeploymentRepository } from '../repositories/deployment.repository.js';
import type { NodeRepository } from '../repositories/node.repository.js';
import { auditEntry } from '../services/audit.service.js';
import type { ConfigService } from '../services/config.service.js';
import type { CredentialRotation } from '../services/credential-rotation.js';
import type { DeployMetrics } from '../services/deploy-metrics.js';
import { nodeRun, overallState } from '../services/deployment-records.js';
import { createNodeRunner } from './node-runner.js';
import type { NodeOutcome } from '../services/deployment-records.js';
import type { SshSettings } from '../ssh/index.js';

interface JobLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

type Compiled = { bundle: Bundle; credentialIds: string[] };

interface Deps {
  prisma: PrismaClient;
  nodes: NodeRepository;
  deployments: DeploymentRepository;
  audit: AuditRepository;
  rotation: Pick<CredentialRotation, 'retireSuperseded'>;
  config: Pick<ConfigService, 'compileForDeploy' | 'deployedStored'>;
  ssh: SshSettings;
  readPrivateKey: () => Promise<string>;
  metrics: DeployMetrics;
  log: JobLog;
  now?: () => Date;
}

export function createSyncJob(deps: Deps) {
  const now = deps.now ?? (() => new Date());
  const { prisma } = deps;
  // Set when the process shuts down: a compile that fails then is most likely the database going
  // away under it (a Ctrl-C reaches the embedded PostgreSQL too), not a config that cannot compile.
  let stopping = false;
  const compileFailed = (error: unknown, what: string) =>
    stopping
      ? deps.log.info({ error }, `${what} ended by the shutdown`)
      : deps.log.warn({ error }, `${what}: the config does not compile`);
  const runner = createNodeRunner({
    prisma,
    nodes: deps.nodes,
    ssh: deps.ssh,
    readPrivateKey: deps.readPrivateKey,
    metrics: deps.metrics,
    log: deps.log,
    now,
  });

  async function compile(options: { verify?: boolean } = {}): Promise<Compiled | { error: string }> {
    try {
      return await deps.config.compileForDeploy(options);
    } catch (error) {
      return { error: error instanceof Error ? error.message.slice(0, 500) : String(error) };
    }
  }

  function auditRollbacks(
    tx: Parameters<AuditRepository['record']>[0],
    deployment: { id: string; requestedBy: string | null },
    outcomes: NodeOutcome[],
  ) {
    return Promise.all(
      outcomes
        .flatMap(({ node, result }) => (result?.state === 'rolled_back' ? [[node, result] as const] : []))
        .map(([node, r]) =>
          deps.audit.record(
            tx,
            auditEntry(
              { actorKeyId: deployment.requestedBy, requestId: null },
              {
                tenantId: null,
                action: 'deployment.rolled_back',
                resourceId: deployment.id,
                changes: { node: node.name, nodeId: node.id, liveVersion: r.previousVersion, error: r.error ?? null },
              },
            ),
          ),
        ),
    );
  }

  async function finish(
    deployment: { id: string; reason: DeploymentReason; requestedBy: string | null },
    compiled: Compiled,
    outcomes: NodeOutcome[],
  ) {
    const state = overallState(outcomes);
    // Stored while the nodes deployed: a run recorded finished has its bundle stored.
    await deps.config.deployedStored();
    await prisma.$transaction(async (tx) => {
      await deps.deployments.update(tx, deployment.id, { state, finishedAt: now() });
      await auditRollbacks(tx, deployment, outcomes);
      await deps.audit.record(
        tx,
        auditEntry(
          { actorKeyId: deployment.requestedBy, requestId: null },
          {
            tenantId: null,
            action: 'deployment.finished',
            resourceId: deployment.id,
            changes: {
              state,
              reason: deployment.reason,
              version: compiled.bundle.version,
              nodes: Object.fromEntries(
                outcomes.map(({ node, result, skipped }) => [
                  node.name,
                  skipped !== null || result === null ? 'skipped' : result.state,
                ]),
              ),
            },
          },
        ),
      );
    });
    deps.metrics.deploymentFinished(deployment.reason, state);
    await retireSuperseded(compiled);
  }

  /** The credentials this deploy left live nowhere are retired (src/services/credential-rotation.ts). */
  async function retireSuperseded(compiled: Compiled) {
    await deps.config.deployedStored();
    await deps.rotation.retireSuperseded({ version: compiled.bundle.version, credentialIds: compiled.credentialIds });
  }

  /**
   * Runs a deployment on every enabled node, recording progress as it goes: a requested row that
   * exists (pending), or a change's, written running with its node runs in one transaction.
   */
  async function execute(
    run: { pending: { id: string; reason: DeploymentReason; requestedBy: string | null } } | { reason: 'change' },
    compiled: Compiled,
    enabled?: Node[],
  ) {
    const listed = enabled ?? (await deps.nodes.listEnabled(prisma));
    const { deployment, nodes, runIds } = await prisma.$transaction(async (tx) => {
      const started = { state: 'running', startedAt: now(), version: compiled.bundle.version } as const;
      let deployment: { id: string; reason: DeploymentReason; requestedBy: string | null };
      if ('pending' in run) {
        await deps.deployments.update(tx, run.pending.id, started);
        deployment = run.pending;
      } else {
        deployment = await deps.deployments.create(tx, { ...started, reason: run.reason });
      }
      // A node deleted since the list was read gets no run (and no deploy).
      const registered = await deps.nodes.lockRegistered(
        tx,
        listed.map((node) => node.id),
      );
      const targets = listed.filter((node) => registered.has(node.id));
      const runs = await deps.deployments.createNodeRuns(
        tx,
        targets.map((node) => ({
          deploymentId: deployment.id,
          nodeId: node.id,
          nodeName: node.name,
          state: 'pending',
        })),
      );
      return { deployment, nodes: targets, runIds: new Map(runs.map((r) => [r.nodeId, r.id])) };
    });
    // Runs are found by their own id: a node deleted during the run leaves its run without a node id.
    const runOf = (nodeId: string) => runIds.get(nodeId)!;
    // Runs whose nodes start together are marked running in one statement.
    const starting = new DataLoader<string, void>(
      async (ids) => {
        await deps.deployments.startNodeRuns(prisma, ids, now());
        return ids.map(() => undefined);
      },
      { cache: false },
    );
    const outcomes = await runner.syncAll(nodes, compiled.bundle, {
      started: (node) => starting.load(runOf(node.id)),
      done: (outcome) => {
        const { nodeId: _id, nodeName: _name, ...data } = nodeRun(outcome, now());
        return deps.deployments.updateNodeRun(prisma, runOf(outcome.node.id), data);
      },
    });
    await finish(deployment, compiled, outcomes);
  }

  const handlers: SyncHandlers = {
    /**
     * During the debounce: compile what the database says now, bring the bundle over from the
     * engine's thread and check it. The run's own compile (after the debounce) then only adds what
     * committed since, and an unchanged bundle comes back as the same object, already checked.
     */
    async prepareChange() {
      const { bundle } = await deps.config.compileForDeploy({ keep: false });
      checkBundle(bundle);
    },

    /** Pending runs requested through the API, oldest first. Only the leader calls this, one job at a time. */
    async runRequested() {
      // Nothing of ours runs now: a `running` row is a run a dead leader left behind.
      await deps.deployments.abandonRunning(prisma, now());
      for (;;) {
        const pending = await deps.deployments.oldestPending(prisma);
        if (pending === null) return;
        const compiled = await compile();
        if ('error' in compiled) {
          await deps.deployments.update(prisma, pending.id, {
            state: 'failed',
            startedAt: now(),
            finishedAt: now(),
            error: compiled.error,
          });
          deps.metrics.deploymentFinished(pending.reason, 'failed');
          continue;
        }
        await execute({ pending }, compiled);
      }
    },

    /** The config changed: deploy when the compiled version is not what every node runs. */
    async runChange() {
      const compiled = await compile();
      if ('error' in compiled) {
        compileFailed(compiled.error, 'config change not deployed');
        return;
      }
      const nodes = await deps.nodes.listEnabled(prisma);
      if (nodes.every((n) => n.liveVersion === compiled.bundle.version && !n.driftDetected && n.lastError === null)) {
        await retireSuperseded(compiled);
        return;
      }
      await execute({ reason: 'change' }, compiled, nodes);
    },

    /**
     * Every enabled node against the current config: the deployer verifies a node already on the
     * version (main.cf/master.cf, table digests) and repairs drift. Recorded as a deployment only
     * when something changed, rolled back, or failed on a node that is behind or drifted.
     */
    async runReconcile() {
      const compiled = await compile({ verify: true });
      if ('error' in compiled) {
        compileFailed(compiled.error, 'reconcile skipped');
        return;
      }
      const nodes = await deps.nodes.listEnabled(prisma);
      const startedAt = now();
      const outcomes = await runner.syncAll(nodes, compiled.bundle);
      const version = compiled.bundle.version;
      const worth = outcomes.some(
        ({ node, result: r }) =>
          r !== null &&
          (r.state === 'live' ||
            r.state === 'rolled_back' ||
            (r.state === 'failed' && (node.liveVersion !== version || r.driftFound))),
      );
      if (worth) {
        const row = await prisma.$transaction(async (tx) => {
          const created = await deps.deployments.create(tx, {
            version,
            reason: 'reconcile',
            state: overallState(outcomes),
            startedAt,
          });
          // Written after the fact: a node deleted meanwhile keeps its run, by name only.
          const registered = await deps.nodes.lockRegistered(
            tx,
            outcomes.map(({ node }) => node.id),
          );
          const at = now();
          await deps.deployments.createNodeRuns(
            tx,
            outcomes.map((outcome) => {
              const run = nodeRun(outcome, at);
              return {
                deploymentId: created.id,
                ...run,
                nodeId: registered.has(outcome.node.id) ? outcome.node.id : null,
              };
            }),
          );
          return created;
        });
        await finish(row, compiled, outcomes);
      } else {
        await retireSuperseded(compiled);
      }
    },
  };

  return {
    handlers,

    /** The process is shutting down: a compile failing from now on is logged as its consequence. */
    stopping() {
      stopping = true;
    },

    /** Closes the SSH connections kept for the next deploy (a running deploy's closes when it ends). */
    close() {
      runner.close();
    },
  };
}

export type SyncJob = ReturnType<typeof createSyncJob>;
