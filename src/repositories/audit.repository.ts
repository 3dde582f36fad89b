import type { Db } from '../db/prisma.js';
import type { Prisma } from '../generated/prisma/client.js';

export interface AuditEntry {
  actorKeyId: string | null;
  tenantId: string | null;
  action: string;
  resourceType: string;
  resourceId: string | null;
  changes?: Record<string, unknown> | null;
  requestId: string | null;
}

export interface AuditQuery {
  tenantId?: string | undefined;
  resourceType?: string | undefined;
  resourceId?: string | undefined;
  beforeId?: bigint | undefined;
  take: number;
}

export function createAuditRepository() {
  return {
    /** Always called with the transaction client of the mutation it records. */
    async record(db: Db, entry: AuditEntry) {
      await db.auditEvent.create({
        data: {
          ...entry,
          changes: (entry.changes ?? undefined) as Prisma.InputJsonValue | undefined,
        },
      });
    },

    async list(db: Db, query: AuditQuery) {
      return db.auditEvent.findMany({
        where: {
          tenantId: query.tenantId,
          resourceType: query.resourceType,
          resourceId: query.resourceId,
          id: query.beforeId === undefined ? undefined : { lt: query.beforeId },
        },
        orderBy: { id: 'desc' },
        take: query.take,
      });
    },
  };
}

export type AuditRepository = ReturnType<typeof createAuditRepository>;
