import { expectedVersion } from '../../lib/etag.js';
import type { AppServices } from '../../services/index.js';
import { contextOf, sendVersioned } from '../context.js';
import type { OperationHandlers } from '../types.js';

export function tenantRoutes(services: AppServices) {
  return {
    createTenant: async (request, reply) =>
      sendVersioned(reply, await services.tenants.create(contextOf(request), request.body), 201),
    listTenants: async (request) =>
      services.tenants.list(contextOf(request), {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
        status: request.query.status,
        externalRef: request.query.externalRef,
      }),
    getTenant: async (request, reply) =>
      sendVersioned(reply, await services.tenants.get(contextOf(request), request.params.tenantId)),
    updateTenant: async (request, reply) =>
      sendVersioned(
        reply,
        await services.tenants.update(
          contextOf(request),
          request.params.tenantId,
          request.body,
          expectedVersion(request.headers['if-match']),
        ),
      ),
    deleteTenant: async (request, reply) => {
      await services.tenants.delete(contextOf(request), request.params.tenantId, {
        cascade: request.query.cascade ?? false,
        expected: expectedVersion(request.headers['if-match']),
      });
      return reply.status(204).send();
    },
  } satisfies OperationHandlers;
}
