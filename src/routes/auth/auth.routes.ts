import type { AppServices } from '../../services/index.js';
import type { OperationHandlers } from '../types.js';

export function authRoutes(services: AppServices) {
  return {
    createToken: async (request) => services.apiKeys.exchange(request.body.key),
  } satisfies OperationHandlers;
}
