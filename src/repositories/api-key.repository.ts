import type { Db } from '../db/prisma.js';

export interface NewApiKey {
  id: string;
  name: string;
  secretHash: string;
  scopes: string[];
  tenantId: string | null;
  createdBy: string | null;
  expiresAt: Date | null;
}

export interface ApiKeyQuery {
  tenantId?: string | undefined;
  status?: 'active' | 'revoked' | 'expired' | undefined;
  afterId?: string | undefined;
  take: number;
  now: Date;
}

export function createApiKeyRepository() {
  return {
    create(db: Db, key: NewApiKey) {
      return db.apiKey.create({ data: key });
    },

    /** Every key, oldest first (the CLI's listing: no paging, no filter). */
    listAll(db: Db) {
      return db.apiKey.findMany({ orderBy: { createdAt: 'asc' } });
    },

    findById(db: Db, id: string) {
      return db.apiKey.findUnique({ where: { id } });
    },

    /** What the key may do now: read on every authenticated request (through a short cache). */
    findGrant(db: Db, id: string) {
      return db.apiKey.findUnique({
        where: { id },
        select: { scopes: true, tenantId: true, revokedAt: true, expiresAt: true },
      });
    },

    list(db: Db, query: ApiKeyQuery) {
      const status =
        query.status === 'active'
          ? { revokedAt: null, OR: [{ expiresAt: null }, { expiresAt: { gt: query.now } }] }
          : query.status === 'revoked'
            ? { revokedAt: { not: null } }
            : query.status === 'expired'
              ? { revokedAt: null, expiresAt: { lte: query.now } }
              : {};
      return db.apiKey.findMany({
        where: {
          tenantId: query.tenantId,
          id: query.afterId === undefined ? undefined : { gt: query.afterId },
          ...status,
        },
        orderBy: { id: 'asc' },
        take: query.take,
      });
    },

    revoke(db: Db, id: string, at: Date) {
      return db.apiKey.update({ where: { id }, data: { revokedAt: at } });
    },

    touch(db: Db, id: string, at: Date) {
      return db.apiKey.updateMany({ where: { id }, data: { lastUsedAt: at } });
    },
  };
}

export type ApiKeyRepository = ReturnType<typeof createApiKeyRepository>;
