/**
 * Per-tenant volumes as billing systems read them, and each node's collection status. The counts
 * are written by the collection (usage-collection.ts).
 */
import type { PrismaClient } from '../db/prisma.js';
import { NotFoundError, ValidationError } from '../lib/errors.js';
import { cursorCodec, toPage } from '../lib/pagination.js';
import type { TenantRepository } from '../repositories/tenant.repository.js';
import {
  NO_TENANT,
  type LogCursorRow,
  type UsageGranularity,
  type UsageGroupBy,
  type UsageRepository,
  type UsageRow,
} from '../repositories/usage.repository.js';
import { HOUR, emptyCounters, floorHour, type UsageCounters } from '../usage/accumulator.js';
import type { RequestContext } from './principal.js';

interface Deps {
  prisma: PrismaClient;
  usage: UsageRepository;
  tenants: TenantRepository;
  now?: () => Date;
}

/** A bucket's sort key: its start, tenant (NO_TENANT for unattributed) and group key (a domain, or ''). */
const bucketCursor = cursorCodec('usage', ['timestamp', 'uuid', 'text']);
const messageCursor = cursorCodec('usage-messages', ['timestamp', 'int']);
const GRANULARITIES: readonly UsageGranularity[] = ['hour', 'day', 'month'];
const GROUPS: readonly UsageGroupBy[] = ['tenant', 'domain', 'recipientDomain'];

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

export const CSV_COLUMNS = [
  'start',
  'end',
  'final',
  'tenantId',
  'senderDomain',
  'recipientDomain',
  'messages',
  'recipients',
  'delivered',
  'deferred',
  'bounced',
  'expired',
  'bytes',
] as const;

function csvField(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function createUsageService(deps: Deps) {
  const now = deps.now ?? (() => new Date());
  const { prisma, usage } = deps;

  async function resolveQuery(ctx: RequestContext, q: UsageListQuery) {
    const granularity = q.granularity ?? 'day';
    const groupBy = q.groupBy ?? 'tenant';
    if (!GRANULARITIES.includes(granularity))
      throw new ValidationError('granularity must be hour, day or month', [
        { field: 'querystring/granularity', message: 'must be hour, day or month' },
      ]);
    if (!GROUPS.includes(groupBy))
      throw new ValidationError('groupBy must be tenant, domain or recipientDomain', [
        { field: 'querystring/groupBy', message: 'must be tenant, domain or recipientDomain' },
      ]);
    const current = now();
    const from =
      q.from === undefined ? new Date(Date.UTC(current.getUTCFullYear(), current.getUTCMonth(), 1)) : new Date(q.from);
    const to = q.to === undefined ? bucketEnd(new Date(floorHour(current.getTime())), 'hour') : new Date(q.to);
    for (const [field, d, given] of [
      ['from', from, q.from],
      ['to', to, q.to],
    ] as const) {
      if (Number.isNaN(d.getTime()))
        throw new ValidationError(`${field} is not a date-time`, [
          { field: `querystring/${field}`, message: 'must be an RFC 3339 date-time' },
        ]);
      if (given !== undefined && !aligned(d, granularity)) {
        throw new ValidationError(`${field} must start a UTC ${granularity} (buckets are whole UTC ${granularity}s)`, [
          { field: `querystring/${field}`, message: `must be the start of a UTC ${granularity}` },
        ]);
      }
    }
    if (from.getTime() >= to.getTime())
      throw new ValidationError('from must be before to', [
        { field: 'querystring/from', message: 'must be before to' },
      ]);
    let tenantId = q.tenantId;
    if (ctx.actor.tenantId !== null) {
      if (tenantId !== undefined && tenantId !== ctx.actor.tenantId) throw new NotFoundError('tenant', tenantId);
      tenantId = ctx.actor.tenantId;
    } else if (tenantId !== undefined && (await deps.tenants.findById(prisma, tenantId)) === null) {
      // Usage outlives a deleted tenant; an id that never had usage is still answered with no rows.
      const any = await usage.query(prisma, {
        from: new Date(0),
        to: new Date(8.64e15),
        granularity: 'month',
        groupBy: 'tenant',
        tenantId,
        attributedOnly: true,
        take: 1,
      });
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
    async messages(
      ctx: RequestContext,
      q: {
        tenantId?: string | undefined;
        senderDomain?: string | undefined;
        from?: string | undefined;
        to?: string | undefined;
        limit: number;
        cursor?: string | undefined;
      },
    ) {
      const r = await resolveQuery(ctx, {
        tenantId: q.tenantId,
        from: q.from,
        to: q.to,
        granularity: 'hour',
        limit: q.limit,
      });
      const raw = messageCursor.decode(q.cursor);
      const after = raw === undefined ? undefined : { at: new Date(raw[0]), id: BigInt(raw[1]) };
      const rows = await usage.messages(prisma, {
        from: r.from,
        to: r.to,
        tenantId: r.tenantId,
        attributedOnly: r.attributedOnly,
        senderDomain: q.senderDomain?.toLowerCase(),
        after,
        take: q.limit + 1,
      });
      const page = toPage(rows, q.limit, (last) =>
        messageCursor.encode(last.acceptedAt.toISOString(), last.id.toString()),
      );
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
      if (m === null)
        throw new ValidationError('month must be YYYY-MM', [
          { field: 'querystring/month', message: 'must be YYYY-MM' },
        ]);
      const from = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1));
      const to = bucketEnd(from, 'month');
      const r = await resolveQuery(ctx, {
        tenantId,
        from: from.toISOString(),
        to: to.toISOString(),
        granularity: 'month',
        groupBy: 'domain',
        limit: 1,
      });
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
