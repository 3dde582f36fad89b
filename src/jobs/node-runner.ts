/**
 * Runs one bundle on nodes and records what each node runs afterwards. Nodes change under a run:
 *
 * - Each node is read again at its turn. One deleted or disabled since the run's list was read is
 *   skipped; one re-addressed is deployed at its new address.
 * - A node re-addressed while its own deploy runs: the deploy finishes at the address read at its
 *   turn, but the node's status is written only while it still has that address (compare-and-set),
 *   and the run is recorded as skipped. The stale result never makes the new address look up to
 *   date, and the update's own notification makes the worker deploy again right after this run.
 * - A node deleted while its deploy runs: the result is recorded as it happened (the deployment's
 *   row for it keeps the node's name; its node id is cleared by the delete).
 * - Drift found on a live release is written to the node before the repair starts, so the API
 *   shows it while the repair runs, and keeps showing it if the repair fails.
 */
import DataLoader from 'dataloader';
import type { PrismaClient } from '../db/prisma.js';
import { mapLimit, syncNode, type Bundle, type DriftReport, type NodeSyncResult } from '../deploy/index.js';
import { ConnectionPool, nodeTarget, type SshSettings } from '../ssh/index.js';
import type { Node } from '../generated/prisma/client.js';
import { addressOf, type NodeRepository } from '../repositories/node.repository.js';
import type { DeployMetrics } from '../services/deploy-metrics.js';
import { syncError, type NodeOutcome } from '../services/deployment-records.js';

interface Deps {
  prisma: PrismaClient;
  nodes: NodeRepository;
  ssh: SshSettings;
  readPrivateKey: () => Promise<string>;
  metrics: DeployMetrics;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  now: () => Date;
}

export interface RunHooks {
  /** The node's sync starts (not called for a node skipped at its turn). */
  started?: (node: Node) => Promise<void>;
  done?: (outcome: NodeOutcome) => Promise<void>;
}

/** Bundles kept for deltas: the current one and those nodes that lag a change or two behind may run. */
const RECENT_BUNDLES = 3;

export function createNodeRunner(deps: Deps) {
  const { prisma, now } = deps;
  // Deploys only: usage collection keeps its own connections (another lane, its own schedule).
  const pool = new ConnectionPool({
    idleMs: deps.ssh.idleMs,
    ...(deps.ssh.connect !== undefined ? { connect: deps.ssh.connect } : {}),
  });
  // The bundles deployed last, in memory only (they hold secrets): a node running one of them gets
  // the next as a delta. After a restart there are none, and the next release is full.
  const recent = new Map<string, Bundle>();
  function remember(bundle: Bundle): void {
    recent.delete(bundle.version);
    recent.set(bundle.version, bundle);
    for (const version of [...recent.keys()].slice(0, Math.max(0, recent.size - RECENT_BUNDLES)))
      recent.delete(version);
  }

  /** What the node runs now and its last error, if it still has the address the result is from. */
  function recordStatus(node: Node, result: NodeSyncResult, version: string): Promise<boolean> {
    const at = result.finishedAt;
    if (result.state === 'live' || result.state === 'unchanged') {
      return deps.nodes.recordStatus(
        prisma,
        node.id,
        {
          liveVersion: version,
          driftDetected: false,
          driftFiles: [],
          lastError: null,
          lastCheckAt: at,
          ...(result.state === 'live' ? { lastDeployedAt: at } : {}),
        },
        addressOf(node),
      );
    }
    // A failure never clears a drift seen before: only a sync that ends in sync does.
    return deps.nodes.recordStatus(
      prisma,
      node.id,
      {
        ...(result.previousVersion !== null ? { liveVersion: result.previousVersion } : {}),
        ...(result.driftFound ? { driftDetected: true, driftFiles: result.driftFiles } : {}),
        lastError: syncError(result),
        lastCheckAt: at,
      },
      addressOf(node),
    );
  }

  function recordDrift(node: Node, drift: DriftReport): Promise<void> {
    return deps.nodes
      .recordStatus(
        prisma,
        node.id,
        { driftDetected: true, driftFiles: drift.files, lastCheckAt: now() },
        addressOf(node),
      )
      .then(() => undefined);
  }

  async function syncOne(node: Node, bundle: Bundle, privateKey: string | { error: string }): Promise<NodeSyncResult> {
    if (typeof privateKey !== 'string') {
      const at = now();
      return {
        state: 'failed',
        attempts: 0,
        previousVersion: null,
        liveVersion: null,
        driftFound: false,
        driftFiles: [],
        hostKeyMismatch: false,
        error: privateKey.error,
        steps: [],
        warnings: [],
        startedAt: at,
        finishedAt: at,
      };
    }
    return syncNode(nodeTarget(node, privateKey, deps.ssh), bundle, {
      configDir: node.configDir,
      expectedLiveVersion: node.liveVersion,
      base: node.liveVersion === null ? undefined : recent.get(node.liveVersion),
      retry: deps.ssh.retry,
      connectTimeoutMs: deps.ssh.connectTimeoutMs,
      ...(deps.ssh.keepReleases !== undefined ? { keepReleases: deps.ssh.keepReleases } : {}),
      connect: (target) => pool.acquire(target),
      onDrift: (drift) => recordDrift(node, drift),
    });
  }

  /** Nodes read again at their turns: turns that start together are read in one query. */
  function rereader(): DataLoader<string, Node | null> {
    return new DataLoader(
      async (ids) => {
        const found = new Map((await deps.nodes.findByIds(prisma, ids)).map((node) => [node.id, node]));
        return ids.map((id) => found.get(id) ?? null);
      },
      { cache: false },
    );
  }

  /** One node's turn: read it again, sync it, record what it runs. */
  async function turn(
    listed: Node,
    bundle: Bundle,
    privateKey: string | { error: string },
    hooks: RunHooks,
    reread: DataLoader<string, Node | null>,
  ): Promise<NodeOutcome> {
    const node = await reread.load(listed.id);
    if (node === null || !node.enabled) {
      const outcome = {
        node: node ?? listed,
        result: null,
        skipped:
          node === null ? 'deleted before its turn: nothing was sent' : 'disabled before its turn: nothing was sent',
      };
      await hooks.done?.(outcome);
      deps.log.info({ nodeId: listed.id, node: listed.name, reason: outcome.skipped }, 'node sync skipped');
      return outcome;
    }
    await hooks.started?.(node);
    const result = await syncOne(node, bundle, privateKey);
    let skipped: string | null = null;
    if (!(await recordStatus(node, result, bundle.version)) && (await deps.nodes.findById(prisma, node.id)) !== null) {
      skipped = `re-addressed during its deploy: this ran at ${node.sshHost}:${node.sshPort} ${node.configDir}; the node's new address is deployed next`;
    }
    const outcome = { node, result, skipped };
    await hooks.done?.(outcome);
    const seconds = (result.finishedAt.getTime() - result.startedAt.getTime()) / 1000;
    deps.metrics.nodeSynced(result.state, seconds);
    const log =
      result.state === 'failed' || result.state === 'rolled_back' || skipped !== null
        ? deps.log.warn.bind(deps.log)
        : deps.log.info.bind(deps.log);
    log(
      {
        nodeId: node.id,
        node: node.name,
        state: result.state,
        attempts: result.attempts,
        seconds,
        error: result.error,
        skipped,
      },
      'node sync finished',
    );
    return outcome;
  }

  return {
    /** Syncs every node, at most `concurrency` at once; one slow or dead node never holds the others. */
    async syncAll(nodes: Node[], bundle: Bundle, hooks: RunHooks = {}): Promise<NodeOutcome[]> {
      let privateKey: string | { error: string };
      try {
        privateKey = await deps.readPrivateKey();
      } catch (error) {
        privateKey = { error: (error as Error).message };
      }
      const reread = rereader();
      const outcomes = await mapLimit(nodes, deps.ssh.concurrency, (node) =>
        turn(node, bundle, privateKey, hooks, reread),
      );
      remember(bundle);
      return outcomes;
    },

    /** Closes the SSH connections kept for the next deploy. */
    close() {
      pool.close();
    },
  };
}

export type NodeRunner = ReturnType<typeof createNodeRunner>;
