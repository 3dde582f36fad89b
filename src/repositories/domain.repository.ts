import type { Db } from '../db/prisma.js';
import type { DomainStatus, Prisma } from '../generated/prisma/client.js';

export interface DomainQuery {
  tenantId?: string | undefined;
  status?: DomainStatus | undefined;
  relayId?: string | undefined;
  afterId?: string | undefined;
  take: number;
}

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
          ...(query.relayId === undefined ? {} : { OR: [{ relayId: query.relayId }, { fallbackRelayId: query.relayId }] }),
          id: query.afterId === undefined ? undefined : { gt: query.afterId },
        },
        orderBy: { id: 'asc' },
        take: query.take,
      });
    },
    /** Optimistic update: bumps the version; null if `expectedVersion` no longer matches. */
    async update(db: Db, id: string, expectedVersion: number, data: Prisma.DomainUncheckedUpdateInput) {
      const result = await db.domain.updateMany({ where: { id, version: expectedVersion }, data: { ...data, version: { increment: 1 } } });
      return result.count === 1 ? db.domain.findUnique({ where: { id }, include: { tenant: true } }) : null;
    },
    delete(db: Db, id: string) {
      return db.domain.delete({ where: { id } });
    },
  };
}

export type DomainRepository = ReturnType<typeof createDomainRepository>;
