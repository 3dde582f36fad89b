import type { Db } from '../db/prisma.js';
import type { Prisma, TenantStatus } from '../generated/prisma/client.js';

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
    findById(db: Db, id: string) {
      return db.tenant.findUnique({ where: { id } });
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
      const result = await db.tenant.updateMany({ where: { id, version: expectedVersion }, data: { ...data, version: { increment: 1 } } });
      return result.count === 1 ? db.tenant.findUnique({ where: { id } }) : null;
    },
    countDomains(db: Db, tenantId: string) {
      return db.domain.count({ where: { tenantId } });
    },
    delete(db: Db, id: string) {
      return db.tenant.delete({ where: { id } });
    },
  };
}

export type TenantRepository = ReturnType<typeof createTenantRepository>;
