import type { Db } from '../db/prisma.js';
import type { Prisma } from '../generated/prisma/client.js';

export function createIdempotencyRepository() {
  return {
    find(db: Db, actorKeyId: string, key: string) {
      return db.idempotencyRecord.findUnique({ where: { actorKeyId_key: { actorKeyId, key } } });
    },

    /** Claims the key for a first request; false when another request holds it already. */
    async claim(db: Db, actorKeyId: string, key: string, requestHash: string): Promise<boolean> {
      const inserted = await db.idempotencyRecord.createMany({
        data: [{ actorKeyId, key, requestHash }],
        skipDuplicates: true,
      });
      return inserted.count === 1;
    },

    complete(db: Db, actorKeyId: string, key: string, status: number, body: unknown, headers: Record<string, string>) {
      return db.idempotencyRecord.update({
        where: { actorKeyId_key: { actorKeyId, key } },
        data: { responseStatus: status, responseBody: body as Prisma.InputJsonValue, responseHeaders: headers },
      });
    },

    release(db: Db, actorKeyId: string, key: string) {
      return db.idempotencyRecord.deleteMany({ where: { actorKeyId, key } });
    },

    purgeOlderThan(db: Db, cutoff: Date) {
      return db.idempotencyRecord.deleteMany({ where: { createdAt: { lt: cutoff } } });
    },
  };
}

export type IdempotencyRepository = ReturnType<typeof createIdempotencyRepository>;
