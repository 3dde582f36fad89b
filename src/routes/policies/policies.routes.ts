import { expectedVersion } from '../../lib/etag.js';
import type { AppServices } from '../../services/index.js';
import { contextOf, sendVersioned } from '../context.js';
import type { OperationHandlers } from '../types.js';

export function policyRoutes(services: AppServices) {
  return {
    createDestinationPolicy: async (request, reply) =>
      sendVersioned(reply, await services.policies.create(contextOf(request), request.body), 201),
    listDestinationPolicies: async (request) =>
      services.policies.list(contextOf(request), { limit: request.query.limit ?? 50, cursor: request.query.cursor }),
    getDestinationPolicy: async (request, reply) =>
      sendVersioned(reply, await services.policies.get(contextOf(request), request.params.policyId)),
    updateDestinationPolicy: async (request, reply) =>
      sendVersioned(
        reply,
        await services.policies.update(
          contextOf(request),
          request.params.policyId,
          request.body,
          expectedVersion(request.headers['if-match']),
        ),
      ),
    deleteDestinationPolicy: async (request, reply) => {
      await services.policies.delete(
        contextOf(request),
        request.params.policyId,
        expectedVersion(request.headers['if-match']),
      );
      return reply.status(204).send();
    },
    getSettings: async (request, reply) =>
      sendVersioned(reply, await services.policies.getSettings(contextOf(request))),
    putSettings: async (request, reply) =>
      sendVersioned(
        reply,
        await services.policies.putSettings(
          contextOf(request),
          request.body,
          expectedVersion(request.headers['if-match']),
        ),
      ),
  } satisfies OperationHandlers;
}
