import type { AppServices } from '../../services/index.js';
import type { OperationHandlers } from '../types.js';

export function apiKeyRoutes(services: AppServices) {
  return {
    createApiKey: async (request, reply) => {
      const created = await services.apiKeys.create(request.principal, request.body, request.id);
      return reply.status(201).send(created);
    },
    listApiKeys: async (request) =>
      services.apiKeys.list(request.principal, {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
        tenantId: request.query.tenantId,
        status: request.query.status,
      }),
    getApiKey: async (request) => services.apiKeys.get(request.principal, request.params.keyId),
    revokeApiKey: async (request, reply) => {
      await services.apiKeys.revoke(request.principal, request.params.keyId, request.id);
      request.server.forgetKeyStatus(request.params.keyId);
      return reply.status(204).send();
    },
  } satisfies OperationHandlers;
}
