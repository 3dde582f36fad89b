import { directPool, type Db } from '../db/prisma.js';
import type { Prisma, Tenant, TenantStatus } from '../generated/prisma/client.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const TENANT_BY_ID = `
  SELECT id::text, name, slug, status::text AS status, external_ref AS "externalRef",
         allow_direct_delivery AS "allowDirectDelivery", default_concurrency AS "defaultConcurrency",
         default_rate_delay_seconds AS "defaultRateDelaySeconds",
         default_recipients_per_message AS "defaultRecipientsPerMessage",
         version, created_at AS "createdAt", updated_at AS "updatedAt"
    FROM tenants WHERE id = $1::uuid`;

export interface TenantQuery {
  id?: string | undefined;
  status?: TenantStatus | undefined;
  externalRef?: string | undefined;
  afterId?: string | undefined;
  take: number;
}

export function createTenantRepository() {
  return {
    create(db: Db, data: Prisma.TenantUncheckedCreateInput) {
      return db.tenant.create({ data });
    },
    /**
     * The hottest read (tenant-scoped requests resolve their tenant): plain SQL through $queryRaw
     * skips Prisma's query compiler, which costs ~100 µs a call (see BENCHMARKS.md).
     */
    async findById(db: Db, id: string): Promise<Tenant | null> {
      if (!UUID.test(id)) return null;
      // Outside a transaction, straight through node-postgres: Prisma's runtime costs more than
      // the query itself on this path (BENCHMARKS.md, api-read).
      const pool = directPool(db);
      if (pool !== undefined) {
        // A named statement: each pooled connection parses and plans it once, then only binds and
        // executes (PostgreSQL's own CPU per read drops, and it shares the machine with us).
        return (
          (await pool.query<Tenant>({ name: 'relayplane_tenant_by_id', text: TENANT_BY_ID, values: [id] })).rows[0] ??
          null
        );
      }
      const rows = await db.$queryRawUnsafe<Tenant[]>(TENANT_BY_ID, id);
      return rows[0] ?? null;
    },
    list(db: Db, query: TenantQuery) {
      return db.tenant.findMany({
        where: {
          status: query.status,
          externalRef: query.externalRef,
          AND: [
            query.id === undefined ? {} : { id: query.id },
            query.afterId === undefined ? {} : { id: { gt: query.afterId } },
          ],
        },
        orderBy: { id: 'asc' },
        take: query.take,
      });
    },
    /** Optimistic update: bumps the version; returns null if `expectedVersion` no longer matches. */
    async update(db: Db, id: string, expectedVersion: number, data: Prisma.TenantUncheckedUpdateInput) {
      const result = await db.tenant.updateMany({
        where: { id, version: expectedVersion },
        data: { ...data, version: { increment: 1 } },
      });
      return result.count === 1 ? db.tenant.findUnique({ where: { id } }) : null;
    },
    countDomains(db: Db, tenantId: string) {
      return db.domain.count({ where: { tenantId } });
    },
    /** Other tenants' domains whose primary or fallback relay is one of this tenant's relays. */
    countForeignDomainsOnRelays(db: Db, tenantId: string) {
      return db.domain.count({
        where: {
          tenantId: { not: tenantId },
          OR: [{ relay: { tenantId } }, { fallbackRelay: { tenantId } }],
        },
      });
    },
    /**
     * What a cascading delete takes with the tenant, in this order (credentials reference domains
     * and relays): its credentials and those on its domains and relays, its domains, its relays;
     * its active keys are revoked at `at`.
     */
    async deleteDependents(db: Db, tenantId: string, at: Date) {
      await db.relayCredential.deleteMany({
        where: { OR: [{ tenantId }, { domain: { tenantId } }, { relay: { tenantId } }] },
      });
      await db.domain.deleteMany({ where: { tenantId } });
      await db.relay.deleteMany({ where: { tenantId } });
      await db.apiKey.updateMany({ where: { tenantId, revokedAt: null }, data: { revokedAt: at } });
    },
    delete(db: Db, id: string) {
      return db.tenant.delete({ where: { id } });
    },
  };
}

export type TenantRepository = ReturnType<typeof createTenantRepository>;
