import type { Db } from '../db/prisma.js';
import type { DomainStatus, Prisma } from '../generated/prisma/client.js';

export interface DomainQuery {
  tenantId?: string | undefined;
  status?: DomainStatus | undefined;
  relayId?: string | undefined;
  afterId?: string | undefined;
  take: number;
}

export interface DnsCheckRecord {
  records: Prisma.InputJsonValue;
  checkedAt: Date;
  uncheckableSince: Date | null;
}

/** A name and every name above it, nearest first: `a.b.example` → a.b.example, b.example, example. */
export function nameAndAncestors(name: string): string[] {
  const labels = name.split('.');
  return labels.map((_, i) => labels.slice(i).join('.'));
}

/** Domains that hold their name: compiled into Postfix, unique per name (domains_name_held_key). */
const HOLDS = { OR: [{ status: { in: ['verified', 'degraded'] as DomainStatus[] } }, { compileOverride: true }] };

export function createDomainRepository() {
  return {
    create(db: Db, data: Prisma.DomainUncheckedCreateInput) {
      return db.domain.create({ data, include: { tenant: true } });
    },
    findById(db: Db, id: string) {
      return db.domain.findUnique({ where: { id }, include: { tenant: true } });
    },
    list(db: Db, query: DomainQuery) {
      return db.domain.findMany({
        where: {
          tenantId: query.tenantId,
          status: query.status,
          ...(query.relayId === undefined
            ? {}
            : { OR: [{ relayId: query.relayId }, { fallbackRelayId: query.relayId }] }),
          id: query.afterId === undefined ? undefined : { gt: query.afterId },
        },
        orderBy: { id: 'asc' },
        take: query.take,
      });
    },
    /** Whether some domain's relay route (primary or fallback) goes through the relay; only `domainId` when given. */
    async routesThrough(db: Db, relayId: string, domainId?: string | null): Promise<boolean> {
      const hit = await db.domain.findFirst({
        where: {
          route: 'relay',
          OR: [{ relayId }, { fallbackRelayId: relayId }],
          ...(domainId == null ? {} : { id: domainId }),
        },
        select: { id: true },
      });
      return hit !== null;
    },
    /** Optimistic update: bumps the version; null if `expectedVersion` no longer matches. */
    async update(db: Db, id: string, expectedVersion: number, data: Prisma.DomainUncheckedUpdateInput) {
      const result = await db.domain.updateMany({
        where: { id, version: expectedVersion },
        data: { ...data, version: { increment: 1 } },
      });
      return result.count === 1 ? db.domain.findUnique({ where: { id }, include: { tenant: true } }) : null;
    },
    /** The nearest of this name and the names above it that another tenant holds, if any. */
    async heldByOther(db: Db, name: string, tenantId: string): Promise<string | null> {
      const rows = await db.domain.findMany({
        where: { name: { in: nameAndAncestors(name) }, tenantId: { not: tenantId }, ...HOLDS },
        select: { name: true },
      });
      return rows.map((r) => r.name).sort((a, b) => b.length - a.length)[0] ?? null;
    },
    /** The nearest name strictly above this one that the same tenant holds, if any. */
    async heldParent(db: Db, name: string, tenantId: string): Promise<string | null> {
      const above = nameAndAncestors(name).slice(1);
      if (above.length === 0) return null;
      const rows = await db.domain.findMany({
        where: { name: { in: above }, tenantId, ...HOLDS },
        select: { name: true },
      });
      return rows.map((r) => r.name).sort((a, b) => b.length - a.length)[0] ?? null;
    },
    /** Other tenants' pending claims on this name or a name under it. */
    competingClaims(db: Db, name: string, tenantId: string) {
      return db.domain.findMany({
        where: {
          tenantId: { not: tenantId },
          status: 'pending',
          compileOverride: false,
          OR: [{ name }, { name: { endsWith: `.${name}` } }],
        },
        orderBy: { id: 'asc' },
      });
    },
    /**
     * Takes the domain's on-demand check slot when its cooldown has passed (0), or answers the
     * seconds left. One statement: concurrent requests for one domain get one slot between them.
     */
    async takeVerifySlot(db: Db, domainId: string, cooldownSeconds: number): Promise<number> {
      const [row] = await db.$queryRaw<{ taken: boolean; wait: number | null }[]>`
        WITH taken AS (
          INSERT INTO domain_verify_requests (domain_id, requested_at) VALUES (${domainId}::uuid, now())
          ON CONFLICT (domain_id) DO UPDATE SET requested_at = now()
            WHERE domain_verify_requests.requested_at <= now() - make_interval(secs => ${cooldownSeconds})
          RETURNING 1)
        SELECT EXISTS (SELECT 1 FROM taken) AS taken,
               (SELECT ceil(extract(epoch FROM requested_at + make_interval(secs => ${cooldownSeconds}) - now()))::int
                  FROM domain_verify_requests WHERE domain_id = ${domainId}::uuid) AS wait`;
      if (row?.taken === true) return 0;
      // A racer took the slot after this statement's snapshot: the whole cooldown is left.
      return Math.min(cooldownSeconds, Math.max(1, row?.wait ?? cooldownSeconds));
    },
    delete(db: Db, id: string) {
      return db.domain.delete({ where: { id } });
    },
    /** The domain's last DNS observation, if it was ever checked. */
    findDnsCheck(db: Db, domainId: string) {
      return db.domainDnsCheck.findUnique({ where: { domainId } });
    },
    saveDnsCheck(db: Db, domainId: string, check: DnsCheckRecord) {
      return db.domainDnsCheck.upsert({
        where: { domainId },
        create: { domainId, ...check },
        update: check,
      });
    },
    /**
     * The next `take` domains whose status verification decides (not disabled) and whose last
     * check is older than `checkedBefore`, or that were never checked.
     */
    dueForDnsCheck(db: Db, checkedBefore: Date, take: number) {
      return db.domain.findMany({
        where: {
          status: { in: ['pending', 'verified', 'degraded', 'failed'] },
          OR: [{ dnsCheck: null }, { dnsCheck: { checkedAt: { lt: checkedBefore } } }],
        },
        orderBy: { id: 'asc' },
        take,
      });
    },
  };
}

export type DomainRepository = ReturnType<typeof createDomainRepository>;
