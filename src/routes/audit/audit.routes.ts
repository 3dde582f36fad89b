import type { AppServices } from '../../services/index.js';
import type { OperationHandlers } from '../types.js';

export function auditRoutes(services: AppServices) {
  return {
    listAuditEvents: async (request) =>
      services.audit.list(request.principal, {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
        tenantId: request.query.tenantId,
        resourceType: request.query.resourceType,
        resourceId: request.query.resourceId,
      }),
  } satisfies OperationHandlers;
}
