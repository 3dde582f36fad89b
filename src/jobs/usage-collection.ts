/**
 * Usage collection from every node (the leading sync worker's periodic task `usage`): each
 * node's Postfix log read over SSH from its saved position, counted per tenant, committed with the
 * new position in one transaction per batch (see usage/node-collector.ts), so collecting twice, or
 * after a crash, counts nothing twice. The reads billing systems make: services/usage.service.ts.
 */
import type { PrismaClient } from '../db/prisma.js';
import { mapLimit } from '../deploy/index.js';
import { ConnectionPool, excerpt, nodeTarget, type NodeConnection, type SshSettings } from '../ssh/index.js';
import type { Node } from '../generated/prisma/client.js';
import { DEFAULT_USAGE_MESSAGE_RETENTION_DAYS } from '../lib/retention.js';
import type { NodeRepository } from '../repositories/node.repository.js';
import type { LogCursorRow, OwnershipRow, UsageRepository } from '../repositories/usage.repository.js';
import { UsageAccumulator, floorHour, type TenantAttribution } from '../usage/accumulator.js';
import { MaillogMovedError } from '../usage/log-reader.js';
import { collectNodeLog, type LogPosition, type ParsedBatch } from '../usage/node-collector.js';
import type { DeployMetrics } from '../services/deploy-metrics.js';

export interface UsageSettings {
  /** Hours ending more than this before every node's last complete collection are final. */
  finalDelaySeconds: number;
  /** Bytes read from a log per transaction. */
  chunkBytes: number;
  /** Batches per node per run (a node far behind catches up over several runs). */
  maxBatches: number;
  /** Join states of messages never seen leaving the queue are dropped after this long. */
  stateRetentionSeconds: number;
  /** Per-message records (GET /v1/usage/messages) are kept this long after acceptance. */
  messageRetentionSeconds: number;
  /**
   * How long a node's SSH connection stays open after a collection, for the next one (0: closed at
   * once). The jobs plugin sets it past the collection period: a run then costs one command.
   */
  connectionIdleMs: number;
}

export const DEFAULT_USAGE: UsageSettings = {
  finalDelaySeconds: 7200,
  chunkBytes: 4 * 1024 * 1024,
  maxBatches: 16,
  stateRetentionSeconds: 10 * 86_400,
  messageRetentionSeconds: DEFAULT_USAGE_MESSAGE_RETENTION_DAYS * 86_400,
  connectionIdleMs: 0,
};
interface Deps {
  prisma: PrismaClient;
  usage: UsageRepository;
  nodes: NodeRepository;
  ssh: SshSettings;
  readPrivateKey: () => Promise<string>;
  settings: UsageSettings;
  metrics: Pick<DeployMetrics, 'usageCollected'>;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  now?: () => Date;
}

/** The tenant that owned a domain when the message was queued (or, after it was removed, its last owner). */
export function attributionOf(rows: OwnershipRow[]): TenantAttribution {
  const byDomain = new Map<string, OwnershipRow[]>();
  for (const r of rows) {
    const list = byDomain.get(r.domain) ?? [];
    list.push(r);
    byDomain.set(r.domain, list);
  }
  return (domain, at) => {
    const list = byDomain.get(domain);
    if (list === undefined) return null;
    let owner = list[0]!;
    for (const r of list) if (r.validFrom.getTime() <= at) owner = r;
    return owner.tenantId;
  };
}

function samePosition(stored: LogCursorRow, from: LogPosition): boolean {
  if (stored.inode === null) return stored.offset === 0n && from.offset === 0n;
  return stored.inode === from.inode && stored.offset === from.offset;
}
export function createUsageCollection(deps: Deps) {
  const now = deps.now ?? (() => new Date());
  const { prisma, usage } = deps;
  const pool = new ConnectionPool({
    idleMs: deps.settings.connectionIdleMs,
    ...(deps.ssh.connect !== undefined ? { connect: deps.ssh.connect } : {}),
  });

  async function commitBatch(node: Node, path: string, batch: ParsedBatch, runStartedAt: Date): Promise<void> {
    const queueIds = [...new Set(batch.events.map((e) => e.queueId))];
    const domains = new Set<string>();
    for (const e of batch.events) {
      if (e.kind === 'queued') {
        const at = e.sender.lastIndexOf('@');
        if (at >= 0) domains.add(e.sender.slice(at + 1).toLowerCase());
      }
    }
    await prisma.$transaction(
      async (tx) => {
        const cursor = await usage.lockCursor(tx, node.id, path);
        if (!samePosition(cursor, batch.from)) {
          throw new Error(
            'the log position moved while this batch was read (another collector?): batch dropped, read again next run',
          );
        }
        const known = await usage.loadStates(tx, node.id, queueIds);
        const owners = await usage.ownership(tx, [...domains]);
        const finalBefore = await usage.finalBefore(tx);
        const acc = new UsageAccumulator(known, attributionOf(owners), finalBefore.getTime());
        for (const e of batch.events) acc.add(e);
        await usage.addBuckets(tx, acc.result());
        await usage.saveStates(tx, node.id, acc.stateChanges());
        await usage.saveFinished(tx, node.name, acc.finished);
        await usage.advanceCursor(tx, node.id, {
          path,
          inode: batch.to.inode!,
          offset: batch.to.offset,
          headDigest: batch.to.headDigest,
          lastLineAt: batch.lastLineAt === null ? null : new Date(batch.lastLineAt),
          ...(batch.atEnd ? { lastCollectedAt: runStartedAt } : {}),
          lines: batch.lines,
          malformed: batch.malformed,
          unattributed: acc.stats.unattributedLines,
          late: acc.stats.lateEvents,
          bytesLost: batch.bytesLost,
          ...(batch.notice !== undefined
            ? { error: { message: batch.notice, at: now() } }
            : batch.atEnd
              ? { error: null }
              : {}),
        });
      },
      { timeout: 120_000, maxWait: 10_000 },
    );
  }

  async function askMaillog(conn: NodeConnection): Promise<string> {
    const r = await conn.exec('postconf -xh maillog_file');
    if (r.code !== 0) throw new Error(`postconf -xh maillog_file failed: ${excerpt(r.stderr, 200)}`);
    return r.stdout.trim();
  }

  /** A node's log: its logPath, or its maillog_file (as last seen: the read checks it on the node). */
  async function logOf(
    node: Node,
    conn: NodeConnection,
    cursor: LogCursorRow | null,
  ): Promise<{ path: string; checked: boolean }> {
    if (node.logPath !== null) return { path: node.logPath, checked: false };
    const path = cursor?.path ?? (await askMaillog(conn));
    if (path === '')
      throw new Error(
        "Postfix logs to syslog on this node (maillog_file is empty): set the node's logPath to the file syslog writes",
      );
    return { path, checked: true };
  }

  /** One node: read from the saved position, commit batch by batch. Errors are recorded, not thrown. */
  async function collectNode(node: Node, privateKey: string): Promise<void> {
    const runStartedAt = now();
    let path = node.logPath ?? '';
    let conn: NodeConnection | undefined;
    try {
      conn = await pool.acquire(nodeTarget(node, privateKey, deps.ssh));
      let cursor = await usage.findCursor(prisma, node.id);
      let log = await logOf(node, conn, cursor);
      for (;;) {
        path = log.path;
        // A changed log path starts over at the new file's beginning.
        const start: LogPosition =
          cursor === null || cursor.path !== path
            ? { inode: null, offset: 0n, headDigest: null }
            : { inode: cursor.inode, offset: cursor.offset, headDigest: cursor.headDigest };
        if (cursor !== null && cursor.path !== path) {
          await usage.resetCursor(prisma, node.id, path);
          cursor = { ...cursor, path, inode: null, offset: 0n, headDigest: null };
        }
        try {
          const r = await collectNodeLog(conn, start, {
            path,
            chunkBytes: deps.settings.chunkBytes,
            maxBatches: deps.settings.maxBatches,
            checkMaillog: log.checked,
            commit: (batch) => commitBatch(node, path, batch, runStartedAt),
          });
          deps.metrics.usageCollected(node.name, 'ok', r.lines);
          if (!r.atEnd)
            deps.log.info(
              { nodeId: node.id, lines: r.lines },
              'usage collection paused before the end of the log; it goes on next run',
            );
          return;
        } catch (error) {
          // Postfix now logs elsewhere: read that file instead (checked once: it cannot move twice in a run).
          if (!(error instanceof MaillogMovedError) || !log.checked) throw error;
          if (error.path === '')
            throw new Error(
              "Postfix logs to syslog on this node (maillog_file is empty): set the node's logPath to the file syslog writes",
            );
          log = { path: error.path, checked: false };
        }
      }
    } catch (error) {
      const message = excerpt(error instanceof Error ? error.message : String(error), 500);
      deps.log.warn({ nodeId: node.id, error: message }, 'usage collection failed');
      deps.metrics.usageCollected(node.name, 'failed', 0);
      await usage.recordError(prisma, node.id, path, message, now()).catch(() => undefined);
    } finally {
      conn?.close();
    }
  }

  /** Hours ending before every enabled node's last complete collection minus the delay become final. */
  async function advanceFinal(nodes: Node[]): Promise<void> {
    const cursors = new Map((await usage.listCursors(prisma)).map((c) => [c.nodeId, c]));
    let through = now().getTime();
    for (const node of nodes) {
      const at = cursors.get(node.id)?.lastCollectedAt;
      if (at === null || at === undefined) return; // a node never collected: nothing is final yet
      through = Math.min(through, at.getTime());
    }
    await usage.advanceFinalBefore(prisma, new Date(floorHour(through - deps.settings.finalDelaySeconds * 1000)));
  }
  return {
    /** Every enabled node, `ssh.concurrency` at a time; then the final watermark and old join states. */
    async collectAll(): Promise<void> {
      const nodes = await deps.nodes.listEnabled(prisma);
      let privateKey: string;
      try {
        privateKey = await deps.readPrivateKey();
      } catch (error) {
        const message = (error as Error).message;
        for (const node of nodes) await usage.recordError(prisma, node.id, node.logPath ?? '', message, now());
        return;
      }
      await mapLimit(nodes, deps.ssh.concurrency, (node) => collectNode(node, privateKey));
      await advanceFinal(nodes);
      await usage.purgeStates(prisma, new Date(now().getTime() - deps.settings.stateRetentionSeconds * 1000));
      await usage.purgeRecords(prisma, new Date(now().getTime() - deps.settings.messageRetentionSeconds * 1000));
    },
    /** Closes the SSH connections kept for the next collection. */
    close(): void {
      pool.close();
    },
  };
}

export type UsageCollection = ReturnType<typeof createUsageCollection>;
