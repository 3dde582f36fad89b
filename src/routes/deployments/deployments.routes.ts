import type { AppServices } from '../../services/index.js';
import { contextOf } from '../context.js';
import type { OperationHandlers } from '../types.js';

export function deploymentRoutes(services: AppServices) {
  return {
    createDeployment: async (request, reply) =>
      reply.status(202).send(await services.deployments.request(contextOf(request))),
    listDeployments: async (request) =>
      services.deployments.list(contextOf(request), { limit: request.query.limit ?? 50, cursor: request.query.cursor }),
    getDeployment: async (request) => services.deployments.get(contextOf(request), request.params.deploymentId),
  } satisfies OperationHandlers;
}
