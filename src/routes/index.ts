import type { AppServices } from '../services/index.js';
import { apiKeyRoutes } from './api-keys/api-keys.routes.js';
import { auditRoutes } from './audit/audit.routes.js';
import { authRoutes } from './auth/auth.routes.js';
import { configRoutes } from './config/config.routes.js';
import { credentialRoutes } from './credentials/credentials.routes.js';
import { deploymentRoutes } from './deployments/deployments.routes.js';
import { domainRoutes } from './domains/domains.routes.js';
import { nodeRoutes } from './nodes/nodes.routes.js';
import { operationsRoutes } from './operations/operations.routes.js';
import { policyRoutes } from './policies/policies.routes.js';
import { relayRoutes } from './relays/relays.routes.js';
import { tenantRoutes } from './tenants/tenants.routes.js';
import type { OperationHandlers } from './types.js';
import { usageRoutes } from './usage/usage.routes.js';

/** Every operation of openapi.yaml and the handler serving it; the spec supplies method, path and schemas. */
export function operationHandlers(services: AppServices): OperationHandlers {
  return {
    ...operationsRoutes(services),
    ...authRoutes(services),
    ...apiKeyRoutes(services),
    ...auditRoutes(services),
    ...tenantRoutes(services),
    ...domainRoutes(services),
    ...relayRoutes(services),
    ...credentialRoutes(services),
    ...policyRoutes(services),
    ...configRoutes(services),
    ...nodeRoutes(services),
    ...deploymentRoutes(services),
    ...usageRoutes(services),
  };
}
