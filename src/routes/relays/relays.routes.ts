import { expectedVersion } from '../../lib/etag.js';
import type { AppServices } from '../../services/index.js';
import { contextOf, sendVersioned } from '../context.js';
import type { OperationHandlers } from '../types.js';

export function relayRoutes(services: AppServices) {
  return {
    createRelay: async (request, reply) =>
      sendVersioned(reply, await services.relays.create(contextOf(request), request.body), 201),
    listRelays: async (request) =>
      services.relays.list(contextOf(request), {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
        tenantId: request.query.tenantId,
        shared: request.query.shared,
      }),
    getRelay: async (request, reply) =>
      sendVersioned(reply, await services.relays.get(contextOf(request), request.params.relayId)),
    updateRelay: async (request, reply) =>
      sendVersioned(
        reply,
        await services.relays.update(
          contextOf(request),
          request.params.relayId,
          request.body,
          expectedVersion(request.headers['if-match']),
        ),
      ),
    deleteRelay: async (request, reply) => {
      await services.relays.delete(
        contextOf(request),
        request.params.relayId,
        expectedVersion(request.headers['if-match']),
      );
      return reply.status(204).send();
    },
    getRelayLimits: async (request, reply) =>
      sendVersioned(reply, await services.relays.getLimits(contextOf(request), request.params.relayId)),
    putRelayLimits: async (request, reply) =>
      sendVersioned(
        reply,
        await services.relays.putLimits(
          contextOf(request),
          request.params.relayId,
          request.body,
          expectedVersion(request.headers['if-match']),
        ),
      ),
    deleteRelayLimits: async (request, reply) => {
      await services.relays.putLimits(
        contextOf(request),
        request.params.relayId,
        null,
        expectedVersion(request.headers['if-match']),
      );
      return reply.status(204).send();
    },
  } satisfies OperationHandlers;
}
