import type { Db } from '../db/prisma.js';
import type { Prisma } from '../generated/prisma/client.js';

export function createPolicyRepository() {
  return {
    create(db: Db, data: Prisma.DestinationPolicyUncheckedCreateInput) {
      return db.destinationPolicy.create({ data });
    },
    findById(db: Db, id: string) {
      return db.destinationPolicy.findUnique({ where: { id } });
    },
    list(db: Db, query: { afterId?: string | undefined; take: number }) {
      return db.destinationPolicy.findMany({
        where: { id: query.afterId === undefined ? undefined : { gt: query.afterId } },
        orderBy: { id: 'asc' },
        take: query.take,
      });
    },
    async update(db: Db, id: string, expectedVersion: number, data: Prisma.DestinationPolicyUncheckedUpdateInput) {
      const result = await db.destinationPolicy.updateMany({
        where: { id, version: expectedVersion },
        data: { ...data, version: { increment: 1 } },
      });
      return result.count === 1 ? db.destinationPolicy.findUnique({ where: { id } }) : null;
    },
    delete(db: Db, id: string) {
      return db.destinationPolicy.delete({ where: { id } });
    },
  };
}

export type PolicyRepository = ReturnType<typeof createPolicyRepository>;

export function createSettingsRepository() {
  return {
    /** The single settings row, created with Postfix-like defaults on first read. */
    get(db: Db) {
      return db.settings.upsert({ where: { id: 1 }, create: { id: 1 }, update: {} });
    },
    async update(db: Db, expectedVersion: number, data: Prisma.SettingsUncheckedUpdateInput) {
      const result = await db.settings.updateMany({
        where: { id: 1, version: expectedVersion },
        data: { ...data, version: { increment: 1 } },
      });
      return result.count === 1 ? db.settings.findUnique({ where: { id: 1 } }) : null;
    },
  };
}

export type SettingsRepository = ReturnType<typeof createSettingsRepository>;
