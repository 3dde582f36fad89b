import type { PrismaClient } from '../db/prisma.js';
import { cursorCodec, type PageRequest, toPage } from '../lib/pagination.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import { type Principal, visibleTenant } from './principal.js';

const listCursor = cursorCodec('audit-events', ['int']);

export interface AuditListQuery extends PageRequest {
  tenantId?: string | undefined;
  resourceType?: string | undefined;
  resourceId?: string | undefined;
}

export function createAuditService(deps: { prisma: PrismaClient; audit: AuditRepository }) {
  return {
    async list(actor: Principal, query: AuditListQuery) {
      const cursor = listCursor.decode(query.cursor)?.[0];
      const rows = await deps.audit.list(deps.prisma, {
        tenantId: visibleTenant(actor, query.tenantId),
        resourceType: query.resourceType,
        resourceId: query.resourceId,
        beforeId: cursor === undefined ? undefined : BigInt(cursor),
        take: query.limit + 1,
      });
      const page = toPage(rows, query.limit, (row) => listCursor.encode(row.id.toString()));
      return {
        items: page.items.map((row) => ({
          id: row.id.toString(),
          occurredAt: row.occurredAt.toISOString(),
          actorKeyId: row.actorKeyId,
          tenantId: row.tenantId,
          action: row.action,
          resourceType: row.resourceType,
          resourceId: row.resourceId,
          changes: row.changes as Record<string, unknown> | null,
          requestId: row.requestId,
        })),
        next_cursor: page.next_cursor,
      };
    },
  };
}
