import { expectedVersion } from '../../lib/etag.js';
import type { AppServices } from '../../services/index.js';
import { contextOf, sendVersioned } from '../context.js';
import type { OperationHandlers } from '../types.js';

export function nodeRoutes(services: AppServices) {
  return {
    createNode: async (request, reply) =>
      sendVersioned(reply, await services.nodes.create(contextOf(request), request.body), 201),
    listNodes: async (request) =>
      services.nodes.list(contextOf(request), { limit: request.query.limit ?? 50, cursor: request.query.cursor }),
    getNode: async (request, reply) =>
      sendVersioned(reply, await services.nodes.get(contextOf(request), request.params.nodeId)),
    updateNode: async (request, reply) =>
      sendVersioned(
        reply,
        await services.nodes.update(
          contextOf(request),
          request.params.nodeId,
          request.body,
          expectedVersion(request.headers['if-match']),
        ),
      ),
    deleteNode: async (request, reply) => {
      await services.nodes.delete(
        contextOf(request),
        request.params.nodeId,
        expectedVersion(request.headers['if-match']),
      );
      return reply.status(204).send();
    },
    checkNode: async (request) => services.nodes.check(contextOf(request), request.params.nodeId),
    scanNodeHostKey: async (request) => services.nodes.scanHostKey(contextOf(request), request.body),
  } satisfies OperationHandlers;
}
