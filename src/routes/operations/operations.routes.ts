import type { AppServices } from '../../services/index.js';
import type { OperationHandlers } from '../types.js';

export function operationsRoutes(services: AppServices) {
  return {
    getHealth: async () => ({ status: 'ok' as const }),
    getReadiness: async () => services.health.readiness(),
  } satisfies OperationHandlers;
}
