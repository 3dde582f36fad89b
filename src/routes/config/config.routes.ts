import type { AppServices } from '../../services/index.js';
import { contextOf } from '../context.js';
import type { OperationHandlers } from '../types.js';

export function configRoutes(services: AppServices) {
  return {
    getConfig: async (request, reply) => {
      const bundle = await services.config.current(contextOf(request));
      return reply.header('etag', `"${bundle.version}"`).send(bundle);
    },
    diffConfig: async (request) => services.config.diff(contextOf(request), request.query.from),
    explainRoute: async (request) =>
      services.config.explain(contextOf(request), request.query.sender, request.query.recipient),
  } satisfies OperationHandlers;
}
