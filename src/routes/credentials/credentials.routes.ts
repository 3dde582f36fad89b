import type { AppServices } from '../../services/index.js';
import { contextOf } from '../context.js';
import type { OperationHandlers } from '../types.js';

export function credentialRoutes(services: AppServices) {
  return {
    createCredential: async (request, reply) =>
      reply
        .status(201)
        .send(await services.credentials.create(contextOf(request), request.params.relayId, request.body)),
    listCredentials: async (request) =>
      services.credentials.list(contextOf(request), request.params.relayId, {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
        status: request.query.status,
        domainId: request.query.domainId,
      }),
    getCredential: async (request) => services.credentials.get(contextOf(request), request.params.credentialId),
    deleteCredential: async (request, reply) => {
      await services.credentials.delete(contextOf(request), request.params.credentialId);
      return reply.status(204).send();
    },
    activateCredential: async (request) =>
      services.credentialRotation.activate(contextOf(request), request.params.credentialId),
    testCredential: async (request) => services.credentials.test(contextOf(request), request.params.credentialId),
  } satisfies OperationHandlers;
}
