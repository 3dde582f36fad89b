import type { PrismaClient } from '../db/prisma.js';
import type { IdempotencyRepository } from '../repositories/idempotency.repository.js';

/**
 * The stored first responses of Idempotency-Key requests, per API key; src/plugins/idempotency.ts
 * decides when to claim, replay, release or complete one.
 */
export function createIdempotencyService(deps: { prisma: PrismaClient; records: IdempotencyRepository }) {
  const { prisma, records } = deps;
  return {
    purgeOlderThan: (cutoff: Date) => records.purgeOlderThan(prisma, cutoff),
    /** False when another request holds the key already. */
    claim: (actorKeyId: string, key: string, requestHash: string) =>
      records.claim(prisma, actorKeyId, key, requestHash),
    find: (actorKeyId: string, key: string) => records.find(prisma, actorKeyId, key),
    complete: (actorKeyId: string, key: string, status: number, body: unknown, headers: Record<string, string>) =>
      records.complete(prisma, actorKeyId, key, status, body, headers),
    release: (actorKeyId: string, key: string) => records.release(prisma, actorKeyId, key),
  };
}

export type IdempotencyService = ReturnType<typeof createIdempotencyService>;
