import type { PrismaClient } from '../db/prisma.js';
import { cursorCodec, type PageRequest, toPage } from '../lib/pagination.js';
import type { AuditEntry, AuditRepository } from '../repositories/audit.repository.js';
import { type Principal, type RequestContext, visibleTenant } from './principal.js';

const listCursor = cursorCodec('audit-events', ['int']);

/**
 * Who an audit record names: the caller of a request (its key and request id), or for work no
 * request does (the sync worker, the compiler, the CLI) the key it is done for, or nobody.
 */
export type AuditBy = RequestContext | { actorKeyId: string | null; requestId: string | null };

/** The system acting on its own: no key, no request. */
export const SYSTEM: AuditBy = { actorKeyId: null, requestId: null };

export interface AuditEvent {
  /** `<resource type>.<what happened>`, e.g. `relay.created`. */
  action: string;
  tenantId: string | null;
  resourceId: string | null;
  /** Defaults to the action's prefix (`relay` for `relay.created`). */
  resourceType?: string;
  changes?: Record<string, unknown> | null;
}

/** The one way services build an audit record; they write it with the transaction of the change it records. */
export function auditEntry(by: AuditBy, event: AuditEvent): AuditEntry {
  const request = 'actor' in by;
  return {
    actorKeyId: request ? by.actor.keyId : by.actorKeyId,
    tenantId: event.tenantId,
    action: event.action,
    resourceType: event.resourceType ?? event.action.split('.')[0]!,
    resourceId: event.resourceId,
    changes: event.changes ?? null,
    requestId: by.requestId,
  };
}

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
