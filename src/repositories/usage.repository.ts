import type { Db } from '../db/prisma.js';
import type { FinishedMessage, MessageState, UsageBucket, UsageCounters } from '../lib/usage-types.js';

/** tenant_id of mail that belongs to no tenant (usage_hourly's key has no NULLs). */
export const NO_TENANT = '00000000-0000-0000-0000-000000000000';

export interface LogCursorRow {
  nodeId: string;
  path: string;
  inode: bigint | null;
  offset: bigint;
  headDigest: string | null;
  lastCollectedAt: Date | null;
  lastLineAt: Date | null;
  lastError: string | null;
  lastErrorAt: Date | null;
  linesRead: bigint;
  linesMalformed: bigint;
  unattributedLines: bigint;
  lateEvents: bigint;
  bytesLost: bigint;
}

export interface CursorAdvance {
  path: string;
  inode: bigint;
  offset: bigint;
  headDigest: string | null;
  lastLineAt: Date | null;
  /** Set when the batch reached the end of the log. */
  lastCollectedAt?: Date;
  lines: number;
  malformed: number;
  unattributed: number;
  late: number;
  bytesLost: number;
  /** null clears the last error. */
  error?: { message: string; at: Date } | null;
}

export interface MessageRecordRow {
  id: bigint;
  nodeName: string;
  queueId: string;
  tenantId: string;
  sender: string;
  senderDomain: string;
  acceptedAt: Date;
  removedAt: Date;
  size: bigint;
  recipients: number;
  delivered: number;
  deferred: number;
  bounced: number;
  expired: boolean;
}

export interface OwnershipRow {
  domain: string;
  tenantId: string;
  validFrom: Date;
  validTo: Date | null;
}

export type UsageGroupBy = 'tenant' | 'domain' | 'recipientDomain';
export type UsageGranularity = 'hour' | 'day' | 'month';

export interface UsageQuery {
  from: Date;
  to: Date;
  granularity: UsageGranularity;
  groupBy: UsageGroupBy;
  tenantId?: string | undefined;
  /** Leave out mail of no tenant (tenant principals never see it). */
  attributedOnly: boolean;
  after?: { start: Date; tenantId: string; key: string } | undefined;
  take: number;
}

export interface UsageRow extends UsageCounters {
  start: Date;
  tenantId: string;
  /** The sender or recipient domain, by groupBy; '' for groupBy tenant. */
  key: string;
}

interface RawUsageRow {
  start: Date;
  tenant_id: string;
  key: string;
  messages: bigint;
  recipients: bigint;
  delivered: bigint;
  deferred: bigint;
  bounced: bigint;
  expired: bigint;
  bytes: bigint;
}

const COUNTERS = ['messages', 'recipients', 'delivered', 'deferred', 'bounced', 'expired', 'bytes'] as const;

function toUsageRow(r: RawUsageRow): UsageRow {
  return {
    start: r.start,
    tenantId: r.tenant_id,
    key: r.key,
    messages: Number(r.messages),
    recipients: Number(r.recipients),
    delivered: Number(r.delivered),
    deferred: Number(r.deferred),
    bounced: Number(r.bounced),
    expired: Number(r.expired),
    bytes: Number(r.bytes),
  };
}

const KEY_COLUMN: Record<UsageGroupBy, string> = {
  tenant: `''`,
  domain: 'sender_domain',
  recipientDomain: 'recipient_domain',
};

export function createUsageRepository() {
  return {
    async findCursor(db: Db, nodeId: string): Promise<LogCursorRow | null> {
      return db.nodeLogCursor.findUnique({ where: { nodeId } });
    },

    async listCursors(db: Db): Promise<LogCursorRow[]> {
      return db.nodeLogCursor.findMany();
    },

    /** Points the node's cursor at the beginning of another log file. */
    async resetCursor(db: Db, nodeId: string, path: string): Promise<void> {
      await db.nodeLogCursor.update({
        where: { nodeId },
        data: { path, inode: null, offset: 0n, headDigest: null },
      });
    },

    /** Creates the node's cursor if missing and locks it for the rest of the transaction. */
    async lockCursor(db: Db, nodeId: string, path: string): Promise<LogCursorRow> {
      await db.$executeRaw`
        INSERT INTO node_log_cursors (node_id, path, updated_at) VALUES (${nodeId}::uuid, ${path}, now())
        ON CONFLICT (node_id) DO NOTHING`;
      await db.$queryRaw`SELECT 1 FROM node_log_cursors WHERE node_id = ${nodeId}::uuid FOR UPDATE`;
      const row = await db.nodeLogCursor.findUnique({ where: { nodeId } });
      if (row === null) throw new Error(`log cursor of node ${nodeId} vanished`);
      return row;
    },

    async advanceCursor(db: Db, nodeId: string, a: CursorAdvance): Promise<void> {
      await db.nodeLogCursor.update({
        where: { nodeId },
        data: {
          path: a.path,
          inode: a.inode,
          offset: a.offset,
          headDigest: a.headDigest,
          ...(a.lastLineAt !== null ? { lastLineAt: a.lastLineAt } : {}),
          ...(a.lastCollectedAt !== undefined ? { lastCollectedAt: a.lastCollectedAt } : {}),
          ...(a.error === null ? { lastError: null, lastErrorAt: null } : {}),
          ...(a.error !== undefined && a.error !== null ? { lastError: a.error.message, lastErrorAt: a.error.at } : {}),
          linesRead: { increment: a.lines },
          linesMalformed: { increment: a.malformed },
          unattributedLines: { increment: a.unattributed },
          lateEvents: { increment: a.late },
          bytesLost: { increment: a.bytesLost },
        },
      });
    },

    /** A failed collection: the position stays, the error is shown on the node. */
    async recordError(db: Db, nodeId: string, path: string, message: string, at: Date): Promise<void> {
      await db.$executeRaw`
        INSERT INTO node_log_cursors (node_id, path, last_error, last_error_at, updated_at)
        VALUES (${nodeId}::uuid, ${path}, ${message}, ${at}, now())
        ON CONFLICT (node_id) DO UPDATE SET last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at, updated_at = now()`;
    },

    async loadStates(db: Db, nodeId: string, queueIds: string[]): Promise<Map<string, MessageState>> {
      const states = new Map<string, MessageState>();
      if (queueIds.length === 0) return states;
      const rows = await db.$queryRaw<
        {
          queue_id: string;
          origin: boolean;
          queued: boolean;
          sender: string;
          sender_domain: string;
          tenant_id: string | null;
          size: bigint;
          first_seen_at: Date;
          recipients: number;
          delivered: number;
          deferred: number;
          bounced: number;
          expired: boolean;
        }[]
      >`SELECT queue_id, origin, queued, sender, sender_domain, tenant_id::text, size, first_seen_at, recipients, delivered, deferred, bounced, expired
          FROM usage_messages WHERE node_id = ${nodeId}::uuid AND queue_id = ANY(${queueIds}::text[])`;
      for (const r of rows) {
        states.set(r.queue_id, {
          queueId: r.queue_id,
          origin: r.origin,
          queued: r.queued,
          sender: r.sender,
          senderDomain: r.sender_domain,
          tenantId: r.tenant_id,
          size: Number(r.size),
          firstSeenAt: r.first_seen_at.getTime(),
          recipients: r.recipients,
          delivered: r.delivered,
          deferred: r.deferred,
          bounced: r.bounced,
          expired: r.expired,
          removedAt: 0,
        });
      }
      return states;
    },

    async saveStates(db: Db, nodeId: string, changes: { upsert: MessageState[]; remove: string[] }): Promise<void> {
      if (changes.remove.length > 0) {
        await db.$executeRaw`DELETE FROM usage_messages WHERE node_id = ${nodeId}::uuid AND queue_id = ANY(${changes.remove}::text[])`;
      }
      const u = changes.upsert;
      if (u.length === 0) return;
      await db.$executeRaw`
        INSERT INTO usage_messages (node_id, queue_id, origin, queued, sender, sender_domain, tenant_id, size, first_seen_at,
                                    recipients, delivered, deferred, bounced, expired, updated_at)
        SELECT ${nodeId}::uuid, q, o, qd, s, d, t, sz, to_timestamp(f / 1000.0), rc, dl, df, bo, ex, now()
          FROM unnest(${u.map((s) => s.queueId)}::text[], ${u.map((s) => s.origin)}::boolean[], ${u.map((s) => s.queued)}::boolean[],
                      ${u.map((s) => s.sender)}::text[], ${u.map((s) => s.senderDomain)}::text[], ${u.map((s) => s.tenantId)}::uuid[],
                      ${u.map((s) => s.size)}::bigint[], ${u.map((s) => s.firstSeenAt)}::float8[], ${u.map((s) => s.recipients)}::int[],
                      ${u.map((s) => s.delivered)}::int[], ${u.map((s) => s.deferred)}::int[], ${u.map((s) => s.bounced)}::int[],
                      ${u.map((s) => s.expired)}::boolean[]) AS x(q, o, qd, s, d, t, sz, f, rc, dl, df, bo, ex)
        ON CONFLICT (node_id, queue_id) DO UPDATE SET origin = EXCLUDED.origin, queued = EXCLUDED.queued, sender = EXCLUDED.sender,
          sender_domain = EXCLUDED.sender_domain, tenant_id = EXCLUDED.tenant_id, size = EXCLUDED.size,
          first_seen_at = EXCLUDED.first_seen_at, recipients = EXCLUDED.recipients, delivered = EXCLUDED.delivered,
          deferred = EXCLUDED.deferred, bounced = EXCLUDED.bounced, expired = EXCLUDED.expired, updated_at = now()`;
    },

    /** Records of counted messages that left the queue (appended, never changed). */
    async saveFinished(db: Db, nodeName: string, finished: FinishedMessage[]): Promise<void> {
      const f = finished;
      if (f.length === 0) return;
      await db.$executeRaw`
        INSERT INTO usage_message_records (node_name, queue_id, tenant_id, sender, sender_domain, accepted_at, removed_at, size,
                                           recipients, delivered, deferred, bounced, expired)
        SELECT ${nodeName}, q, t, s, d, to_timestamp(a / 1000.0), to_timestamp(r / 1000.0), sz, rc, dl, df, bo, ex
          FROM unnest(${f.map((m) => m.queueId)}::text[], ${f.map((m) => m.tenantId ?? NO_TENANT)}::uuid[], ${f.map((m) => m.sender)}::text[],
                      ${f.map((m) => m.senderDomain)}::text[], ${f.map((m) => m.firstSeenAt)}::float8[], ${f.map((m) => m.removedAt)}::float8[],
                      ${f.map((m) => m.size)}::bigint[], ${f.map((m) => m.recipients)}::int[], ${f.map((m) => m.delivered)}::int[],
                      ${f.map((m) => m.deferred)}::int[], ${f.map((m) => m.bounced)}::int[], ${f.map((m) => m.expired)}::boolean[])
               AS x(q, t, s, d, a, r, sz, rc, dl, df, bo, ex)`;
    },

    async purgeRecords(db: Db, acceptedBefore: Date): Promise<number> {
      return db.$executeRaw`DELETE FROM usage_message_records WHERE accepted_at < ${acceptedBefore}`;
    },

    /** Message records of one tenant (or all), accepted in [from, to), oldest first, keyset-paginated by (acceptedAt, id). */
    async messages(
      db: Db,
      q: {
        from: Date;
        to: Date;
        tenantId?: string | undefined;
        attributedOnly: boolean;
        senderDomain?: string | undefined;
        after?: { at: Date; id: bigint } | undefined;
        take: number;
      },
    ) {
      const params: unknown[] = [q.from, q.to, q.take];
      const where = ['accepted_at >= $1', 'accepted_at < $2'];
      if (q.tenantId !== undefined) {
        params.push(q.tenantId);
        where.push(`tenant_id = $${params.length}::uuid`);
      }
      if (q.attributedOnly) where.push(`tenant_id <> '${NO_TENANT}'::uuid`);
      if (q.senderDomain !== undefined) {
        params.push(q.senderDomain);
        where.push(`sender_domain = $${params.length}`);
      }
      if (q.after !== undefined) {
        params.push(q.after.at, q.after.id.toString());
        where.push(`(accepted_at, id) > ($${params.length - 1}::timestamptz, $${params.length}::bigint)`);
      }
      return db.$queryRawUnsafe<MessageRecordRow[]>(
        `SELECT id, node_name AS "nodeName", queue_id AS "queueId", tenant_id::text AS "tenantId", sender, sender_domain AS "senderDomain",
                accepted_at AS "acceptedAt", removed_at AS "removedAt", size, recipients, delivered, deferred, bounced, expired
           FROM usage_message_records WHERE ${where.join(' AND ')} ORDER BY accepted_at, id LIMIT $3`,
        ...params,
      );
    },

    /** Join states of messages that never logged `removed` (a lost line) and were not touched since `before`. */
    async purgeStates(db: Db, before: Date): Promise<number> {
      return db.$executeRaw`DELETE FROM usage_messages WHERE updated_at < ${before}`;
    },

    async ownership(db: Db, domains: string[]): Promise<OwnershipRow[]> {
      if (domains.length === 0) return [];
      return db.$queryRaw<OwnershipRow[]>`
        SELECT domain, tenant_id::text AS "tenantId", valid_from AS "validFrom", valid_to AS "validTo"
          FROM domain_ownership WHERE domain = ANY(${domains}::text[]) ORDER BY domain, valid_from`;
    },

    /** Adds a batch's buckets to the stored hours (one statement). */
    async addBuckets(db: Db, buckets: UsageBucket[]): Promise<void> {
      if (buckets.length === 0) return;
      const col = (k: (typeof COUNTERS)[number]) => buckets.map((b) => b[k]);
      await db.$executeRaw`
        INSERT INTO usage_hourly (hour, tenant_id, sender_domain, recipient_domain, messages, recipients, delivered, deferred, bounced, expired, bytes)
        SELECT to_timestamp(h / 1000), t, sd, rd, m, r, dl, df, bo, ex, by
          FROM unnest(${buckets.map((b) => b.hour)}::float8[], ${buckets.map((b) => b.tenantId ?? NO_TENANT)}::uuid[],
                      ${buckets.map((b) => b.senderDomain)}::text[], ${buckets.map((b) => b.recipientDomain)}::text[],
                      ${col('messages')}::bigint[], ${col('recipients')}::bigint[], ${col('delivered')}::bigint[], ${col('deferred')}::bigint[],
                      ${col('bounced')}::bigint[], ${col('expired')}::bigint[], ${col('bytes')}::bigint[])
                 AS x(h, t, sd, rd, m, r, dl, df, bo, ex, by)
        ON CONFLICT (hour, tenant_id, sender_domain, recipient_domain) DO UPDATE SET
          messages = usage_hourly.messages + EXCLUDED.messages, recipients = usage_hourly.recipients + EXCLUDED.recipients,
          delivered = usage_hourly.delivered + EXCLUDED.delivered, deferred = usage_hourly.deferred + EXCLUDED.deferred,
          bounced = usage_hourly.bounced + EXCLUDED.bounced, expired = usage_hourly.expired + EXCLUDED.expired,
          bytes = usage_hourly.bytes + EXCLUDED.bytes`;
    },

    async finalBefore(db: Db): Promise<Date> {
      const rows = await db.$queryRaw<{ final_before: Date }[]>`SELECT final_before FROM usage_watermark WHERE id = 1`;
      return rows[0]?.final_before ?? new Date(0);
    },

    /** Moves the final watermark forward (never back). */
    async advanceFinalBefore(db: Db, to: Date): Promise<Date> {
      const rows = await db.$queryRaw<{ final_before: Date }[]>`
        INSERT INTO usage_watermark (id, final_before) VALUES (1, ${to})
        ON CONFLICT (id) DO UPDATE SET final_before = GREATEST(usage_watermark.final_before, EXCLUDED.final_before)
        RETURNING final_before`;
      return rows[0]!.final_before;
    },

    /** Usage summed per bucket × tenant (× sender or recipient domain), ordered by (start, tenant, key). */
    async query(db: Db, q: UsageQuery): Promise<UsageRow[]> {
      const trunc = q.granularity;
      const key = KEY_COLUMN[q.groupBy];
      const params: unknown[] = [q.from, q.to, q.take];
      const where: string[] = ['hour >= $1', 'hour < $2'];
      if (q.tenantId !== undefined) {
        params.push(q.tenantId);
        where.push(`tenant_id = $${params.length}::uuid`);
      }
      if (q.attributedOnly) where.push(`tenant_id <> '${NO_TENANT}'::uuid`);
      let after = '';
      if (q.after !== undefined) {
        params.push(q.after.start, q.after.tenantId, q.after.key);
        const n = params.length;
        after = `WHERE (start, tenant_id, key) > ($${n - 2}::timestamptz, $${n - 1}::uuid, $${n}::text)`;
      }
      // date_trunc in UTC: buckets are UTC days and months whatever the server's time zone.
      const sql = `
        SELECT * FROM (
          SELECT date_trunc('${trunc}', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start, tenant_id, ${key} AS key,
                 ${COUNTERS.map((c) => `SUM(${c})::bigint AS ${c}`).join(', ')}
            FROM usage_hourly WHERE ${where.join(' AND ')}
           GROUP BY 1, 2, 3) AS g
        ${after}
        ORDER BY start, tenant_id, key
        LIMIT $3`;
      const rows = await db.$queryRawUnsafe<RawUsageRow[]>(sql, ...params);
      return rows.map(toUsageRow);
    },
  };
}

export type UsageRepository = ReturnType<typeof createUsageRepository>;
