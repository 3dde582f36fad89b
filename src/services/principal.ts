import { ForbiddenError, NotFoundError } from '../lib/errors.js';

export const SCOPES = ['admin', 'tenant', 'usage:read'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling: the API key behind the bearer token. */
export interface Principal {
  keyId: string;
  scopes: Scope[];
  /** Set when the key is bound to one tenant: every read and write is confined to it. */
  tenantId: string | null;
}

/** Per-request facts services record in the audit log. */
export interface RequestContext {
  actor: Principal;
  requestId: string;
}

export function isAdmin(principal: Principal): boolean {
  return principal.scopes.includes('admin');
}

/** Refuses (403) a caller without the admin scope; `reason` tells the caller why the operation is admin only. */
export function requireAdmin(ctx: RequestContext, reason: string): void {
  if (!isAdmin(ctx.actor)) throw new ForbiddenError(reason);
}

/**
 * The tenant a list is confined to. Admins (and unbound billing keys) see what they ask for;
 * tenant-bound keys always see only their own tenant, whatever they ask.
 */
export function visibleTenant(principal: Principal, requested: string | undefined): string | undefined {
  if (principal.tenantId === null) return requested;
  return principal.tenantId;
}

/** Another tenant's resource is reported as missing, never as forbidden: its existence is not disclosed. */
export function assertVisible(
  principal: Principal,
  resourceTenantId: string | null,
  resource: string,
  id: string,
): void {
  if (principal.tenantId !== null && resourceTenantId !== principal.tenantId) {
    throw new NotFoundError(resource, id);
  }
}
