import type { Db } from '../db/prisma.js';
import type { Prisma } from '../generated/prisma/client.js';

export interface RelayQuery {
  /** Relays a tenant can see: shared ones and its own. */
  visibleTo?: string | undefined;
  tenantId?: string | undefined;
  shared?: boolean | undefined;
  afterId?: string | undefined;
  take: number;
}

export function createRelayRepository() {
  return {
    create(db: Db, data: Prisma.RelayUncheckedCreateInput) {
      return db.relay.create({ data });
    },
    findById(db: Db, id: string) {
      return db.relay.findUnique({ where: { id } });
    },
    /** Serializes credential lifecycle changes of one relay (one active credential per scope). */
    async lock(db: Db, id: string) {
      await db.$queryRaw`SELECT id FROM relays WHERE id = ${id}::uuid FOR UPDATE`;
    },
    list(db: Db, query: RelayQuery) {
      return db.relay.findMany({
        where: {
          AND: [
            query.visibleTo === undefined ? {} : { OR: [{ tenantId: null }, { tenantId: query.visibleTo }] },
            query.tenantId === undefined ? {} : { tenantId: query.tenantId },
            query.shared === undefined ? {} : query.shared ? { tenantId: null } : { tenantId: { not: null } },
            query.afterId === undefined ? {} : { id: { gt: query.afterId } },
          ],
        },
        orderBy: { id: 'asc' },
        take: query.take,
      });
    },
    async update(db: Db, id: string, expectedVersion: number, data: Prisma.RelayUncheckedUpdateInput) {
      const result = await db.relay.updateMany({
        where: { id, version: expectedVersion },
        data: { ...data, version: { increment: 1 } },
      });
      return result.count === 1 ? db.relay.findUnique({ where: { id } }) : null;
    },
    countRoutedDomains(db: Db, id: string) {
      return db.domain.count({ where: { OR: [{ relayId: id }, { fallbackRelayId: id }] } });
    },
    countDomainScopedCredentials(db: Db, id: string) {
      return db.relayCredential.count({ where: { relayId: id, domainId: { not: null }, status: { not: 'retired' } } });
    },
    delete(db: Db, id: string) {
      return db.relay.delete({ where: { id } });
    },
  };
}

export type RelayRepository = ReturnType<typeof createRelayRepository>;
