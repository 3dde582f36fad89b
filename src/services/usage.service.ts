/**
 * Per-tenant volumes: collection from every node (run by the leading sync worker) and the usage
 * reads billing systems make. Counts and log positions are committed in one transaction per batch
 * (see usage/node-collector.ts), so collecting twice, or after a crash, counts nothing twice.
 */
import type { PrismaClient } from '../db/prisma.js';
import { mapLimit } from '../deploy/index.js';
import { connectNode, excerpt, type NodeConnection, type SshSettings } from '../ssh/index.js';
import type { Node } from '../generated/prisma/client.js';
import { NotFoundError, ValidationError } from '../lib/errors.js';
import { cursorCodec, toPage } from '../lib/pagination.js';
import { DEFAULT_USAGE_MESSAGE_RETENTION_DAYS } from '../lib/retention.js';
import type { NodeRepository } from '../repositories/node.repository.js';
import type { TenantRepository } from '../repositories/tenant.repository.js';
import {
  NO_TENANT,
  type LogCursorRow,
  type OwnershipRow,
  type UsageGranularity,
  type UsageGroupBy,
  type UsageRepository,
  type UsageRow,
} from '../repositories/usage.repository.js';
import { UsageAccumulator, emptyCounters, type TenantAttribution, type UsageCounters } from '../usage/accumulator.js';
import { collectNodeLog, type LogPosition, type ParsedBatch } from '../usage/node-collector.js';
import type { DeployMetrics } from './deploy-metrics.js';
import type { RequestContext } from './principal.js';

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
}

export const DEFAULT_USAGE: UsageSettings = {
  finalDelaySeconds: 7200,
  chunkBytes: 4 * 1024 * 1024,
  maxBatches: 16,
  stateRetentionSeconds: 10 * 86_400,
  messageRetentionSeconds: DEFAULT_USAGE_MESSAGE_RETENTION_DAYS * 86_400,
};

interface Deps {
  prisma: PrismaClient;
  usage: UsageRepository;
  nodes: NodeRepository;
  tenants: TenantRepository;
  ssh: SshSettings;
  readPrivateKey: () => Promise<string>;
  settings: UsageSettings;
  metrics: Pick<DeployMetrics, 'usageCollected'>;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  now?: () => Date;
}

const HOUR = 3_600_000;
/** A bucket's sort key: its start, tenant (NO_TENANT for unattributed) and group key (a domain, or ''). */
const bucketCursor = cursorCodec('usage', ['timestamp', 'uuid', 'text']);
const messageCursor = cursorCodec('usage-messages', ['timestamp', 'int']);
const GRANULARITIES: readonly UsageGranularity[] = ['hour', 'day', 'month'];
const GROUPS: readonly UsageGroupBy[] = ['tenant', 'domain', 'recipientDomain'];

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

function floorHour(ms: number): number {
  return ms - (ms % HOUR);
}

function bucketEnd(start: Date, granularity: UsageGranularity): Date {
  if (granularity === 'hour') return new Date(start.getTime() + HOUR);
  if (granularity === 'day') return new Date(start.getTime() + 24 * HOUR);
  return new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
}

function aligned(d: Date, granularity: UsageGranularity): boolean {
  if (d.getUTCMinutes() !== 0 || d.getUTCSeconds() !== 0 || d.getUTCMilliseconds() !== 0) return false;
  if (granularity === 'hour') return true;
  if (d.getUTCHours() !== 0) return false;
  return granularity === 'day' || d.getUTCDate() === 1;
}

export interface UsageListQuery {
  tenantId?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  granularity?: UsageGranularity | undefined;
  groupBy?: UsageGroupBy | undefined;
  limit: number;
  cursor?: string | undefined;
}

export interface UsageItem extends UsageCounters {
  start: string;
  end: string;
  final: boolean;
  tenantId: string | null;
  senderDomain?: string;
  recipientDomain?: string | null;
}

export const CSV_COLUMNS = ['start', 'end', 'final', 'tenantId', 'senderDomain', 'recipientDomain', 'messages', 'recipients', 'delivered', 'deferred', 'bounced', 'expired', 'bytes'] as const;

function csvField(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function createUsageService(deps: Deps) {
  const now = deps.now ?? (() => new Date());
  const { prisma, usage } = deps;

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
          throw new Error('the log position moved while this batch was read (another collector?): batch dropped, read again next run');
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
          ...(batch.notice !== undefined ? { error: { message: batch.notice, at: now() } } : batch.atEnd ? { error: null } : {}),
        });
      },
      { timeout: 120_000, maxWait: 10_000 },
    );
  }

  async function logPathOf(node: Node, conn: NodeConnection): Promise<string> {
    if (node.logPath !== null) return node.logPath;
    const r = await conn.exec('postconf -xh maillog_file');
    const path = r.stdout.trim();
    if (r.code !== 0) throw new Error(`postconf -xh maillog_file failed: ${excerpt(r.stderr, 200)}`);
    if (path === '') throw new Error("Postfix logs to syslog on this node (maillog_file is empty): set the node's logPath to the file syslog writes");
    return path;
  }

  /** One node: connect, read from the saved position, commit batch by batch. Errors are recorded, not thrown. */
  async function collectNode(node: Node, privateKey: string): Promise<void> {
    const runStartedAt = now();
    let path = node.logPath ?? '';
    let conn: NodeConnection | undefined;
    try {
      conn = await (deps.ssh.connect ?? connectNode)({
        host: node.sshHost, port: node.sshPort, username: node.sshUser, privateKey, hostKey: node.hostKey, readyTimeoutMs: deps.ssh.connectTimeoutMs,
      });
      path = await logPathOf(node, conn);
      const cursor = await usage.findCursor(prisma, node.id);
      // A changed log path starts over at the new file's beginning.
      const start: LogPosition =
        cursor === null || cursor.path !== path
          ? { inode: null, offset: 0n, headDigest: null }
          : { inode: cursor.inode, offset: cursor.offset, headDigest: cursor.headDigest };
      if (cursor !== null && cursor.path !== path) {
        await prisma.nodeLogCursor.update({ where: { nodeId: node.id }, data: { path, inode: null, offset: 0n, headDigest: null } });
      }
      const r = await collectNodeLog(conn, start, {
        path,
        chunkBytes: deps.settings.chunkBytes,
        maxBatches: deps.settings.maxBatches,
        commit: (batch) => commitBatch(node, path, batch, runStartedAt),
      });
      deps.metrics.usageCollected(node.name, 'ok', r.lines);
      if (!r.atEnd) deps.log.info({ nodeId: node.id, lines: r.lines }, 'usage collection paused before the end of the log; it goes on next run');
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

  async function resolveQuery(ctx: RequestContext, q: UsageListQuery) {
    const granularity = q.granularity ?? 'day';
    const groupBy = q.groupBy ?? 'tenant';
    if (!GRANULARITIES.includes(granularity)) throw new ValidationError('granularity must be hour, day or month', [{ field: 'querystring/granularity', message: 'must be hour, day or month' }]);
    if (!GROUPS.includes(groupBy)) throw new ValidationError('groupBy must be tenant, domain or recipientDomain', [{ field: 'querystring/groupBy', message: 'must be tenant, domain or recipientDomain' }]);
    const current = now();
    const from = q.from === undefined ? new Date(Date.UTC(current.getUTCFullYear(), current.getUTCMonth(), 1)) : new Date(q.from);
    const to = q.to === undefined ? bucketEnd(new Date(floorHour(current.getTime())), 'hour') : new Date(q.to);
    for (const [field, d, given] of [['from', from, q.from], ['to', to, q.to]] as const) {
      if (Number.isNaN(d.getTime())) throw new ValidationError(`${field} is not a date-time`, [{ field: `querystring/${field}`, message: 'must be an RFC 3339 date-time' }]);
      if (given !== undefined && !aligned(d, granularity)) {
        throw new ValidationError(`${field} must start a UTC ${granularity} (buckets are whole UTC ${granularity}s)`, [
          { field: `querystring/${field}`, message: `must be the start of a UTC ${granularity}` },
        ]);
      }
    }
    if (from.getTime() >= to.getTime()) throw new ValidationError('from must be before to', [{ field: 'querystring/from', message: 'must be before to' }]);
    let tenantId = q.tenantId;
    if (ctx.actor.tenantId !== null) {
      if (tenantId !== undefined && tenantId !== ctx.actor.tenantId) throw new NotFoundError('tenant', tenantId);
      tenantId = ctx.actor.tenantId;
    } else if (tenantId !== undefined && (await deps.tenants.findById(prisma, tenantId)) === null) {
      // Usage outlives a deleted tenant; an id that never had usage is still answered with no rows.
      const any = await usage.query(prisma, { from: new Date(0), to: new Date(8.64e15), granularity: 'month', groupBy: 'tenant', tenantId, attributedOnly: true, take: 1 });
      if (any.length === 0) throw new NotFoundError('tenant', tenantId);
    }
    return { from, to, granularity, groupBy, tenantId, attributedOnly: ctx.actor.tenantId !== null };
  }

  function present(row: UsageRow, granularity: UsageGranularity, groupBy: UsageGroupBy, finalBefore: Date): UsageItem {
    const end = bucketEnd(row.start, granularity);
    const { start: _s, tenantId, key, ...counters } = row;
    return {
      start: row.start.toISOString(),
      end: end.toISOString(),
      final: end.getTime() <= finalBefore.getTime(),
      tenantId: tenantId === NO_TENANT ? null : tenantId,
      ...(groupBy === 'domain' ? { senderDomain: key } : {}),
      ...(groupBy === 'recipientDomain' ? { recipientDomain: key === '' ? null : key } : {}),
      ...counters,
    };
  }

  function cursorOf(row: UsageRow): string {
    return bucketCursor.encode(row.start.toISOString(), row.tenantId, row.key);
  }

  function decodeUsageCursor(cursor: string | undefined) {
    const key = bucketCursor.decode(cursor);
    return key === undefined ? undefined : { start: new Date(key[0]), tenantId: key[1], key: key[2] };
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

    /** Collection status of one node (GET /v1/nodes/{id}), undefined before its first collection. */
    async nodeStatus(nodeId: string): Promise<LogCursorRow | undefined> {
      return (await usage.findCursor(prisma, nodeId)) ?? undefined;
    },

    /** Collection status per node id, for GET /v1/nodes. */
    async nodeStatuses(): Promise<Map<string, LogCursorRow>> {
      return new Map((await usage.listCursors(prisma)).map((c) => [c.nodeId, c]));
    },

    async list(ctx: RequestContext, q: UsageListQuery) {
      const r = await resolveQuery(ctx, q);
      const after = decodeUsageCursor(q.cursor);
      const rows = await usage.query(prisma, { ...r, after, take: q.limit + 1 });
      const finalBefore = await usage.finalBefore(prisma);
      const page = toPage(rows, q.limit, cursorOf);
      return {
        from: r.from.toISOString(),
        to: r.to.toISOString(),
        granularity: r.granularity,
        groupBy: r.groupBy,
        items: page.items.map((row) => present(row, r.granularity, r.groupBy, finalBefore)),
        next_cursor: page.next_cursor,
      };
    },

    /** The whole range as CSV (header + one line per bucket), read page by page. */
    async *csv(ctx: RequestContext, q: Omit<UsageListQuery, 'limit' | 'cursor'>): AsyncGenerator<string> {
      const r = await resolveQuery(ctx, { ...q, limit: 1 });
      const finalBefore = await usage.finalBefore(prisma);
      yield `${CSV_COLUMNS.join(',')}\r\n`;
      let after: { start: Date; tenantId: string; key: string } | undefined;
      for (;;) {
        const rows = await usage.query(prisma, { ...r, after, take: 5000 });
        if (rows.length === 0) return;
        let out = '';
        for (const row of rows) {
          const item = present(row, r.granularity, r.groupBy, finalBefore) as unknown as Record<string, unknown>;
          out += `${CSV_COLUMNS.map((c) => csvField(item[c])).join(',')}\r\n`;
        }
        yield out;
        const last = rows.at(-1)!;
        after = { start: last.start, tenantId: last.tenantId, key: last.key };
        if (rows.length < 5000) return;
      }
    },

    /** The messages behind the numbers: one record per counted message that left the queue. */
    async messages(ctx: RequestContext, q: { tenantId?: string | undefined; senderDomain?: string | undefined; from?: string | undefined; to?: string | undefined; limit: number; cursor?: string | undefined }) {
      const r = await resolveQuery(ctx, { tenantId: q.tenantId, from: q.from, to: q.to, granularity: 'hour', limit: q.limit });
      const raw = messageCursor.decode(q.cursor);
      const after = raw === undefined ? undefined : { at: new Date(raw[0]), id: BigInt(raw[1]) };
      const rows = await usage.messages(prisma, { from: r.from, to: r.to, tenantId: r.tenantId, attributedOnly: r.attributedOnly, senderDomain: q.senderDomain?.toLowerCase(), after, take: q.limit + 1 });
      const page = toPage(rows, q.limit, (last) => messageCursor.encode(last.acceptedAt.toISOString(), last.id.toString()));
      return {
        items: page.items.map((m) => ({
          node: m.nodeName,
          queueId: m.queueId,
          tenantId: m.tenantId === NO_TENANT ? null : m.tenantId,
          sender: m.sender,
          senderDomain: m.senderDomain,
          acceptedAt: m.acceptedAt.toISOString(),
          removedAt: m.removedAt.toISOString(),
          bytes: Number(m.size),
          recipients: m.recipients,
          delivered: m.delivered,
          deferred: m.deferred,
          bounced: m.bounced,
          expired: m.expired,
        })),
        next_cursor: page.next_cursor,
      };
    },

    /** One tenant's month: totals and per sender domain. */
    async summary(ctx: RequestContext, tenantId: string, month: string) {
      const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month);
      if (m === null) throw new ValidationError('month must be YYYY-MM', [{ field: 'querystring/month', message: 'must be YYYY-MM' }]);
      const from = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1));
      const to = bucketEnd(from, 'month');
      const r = await resolveQuery(ctx, { tenantId, from: from.toISOString(), to: to.toISOString(), granularity: 'month', groupBy: 'domain', limit: 1 });
      const rows = await usage.query(prisma, { ...r, take: 100_000 });
      const finalBefore = await usage.finalBefore(prisma);
      const totals = emptyCounters();
      const domains = rows
        .filter((row) => row.key !== '')
        .map((row) => {
          const { start: _s, tenantId: _t, key, ...counters } = row;
          return { senderDomain: key, ...counters };
        });
      for (const row of rows) for (const k of Object.keys(totals) as (keyof UsageCounters)[]) totals[k] += row[k];
      return {
        tenantId,
        month,
        from: from.toISOString(),
        to: to.toISOString(),
        final: to.getTime() <= finalBefore.getTime(),
        totals,
        domains,
      };
    },
  };
}

export type UsageService = ReturnType<typeof createUsageService>;
