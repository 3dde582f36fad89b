/** The one admin check every admin-only use case goes through (src/services/principal.ts). */
import { expect, it } from 'vitest';
import { ForbiddenError } from '../../src/lib/errors.js';
import { requireAdmin, type Principal } from '../../src/services/principal.js';

const ctx = (actor: Principal) => ({ actor, requestId: 'req-1' });

it('lets an admin key through, bound to a tenant or not', () => {
  expect(() =>
    requireAdmin(ctx({ keyId: 'k1', scopes: ['admin'], tenantId: null }), 'nodes: admin only'),
  ).not.toThrow();
  expect(() =>
    requireAdmin(ctx({ keyId: 'k2', scopes: ['tenant', 'admin'], tenantId: 't1' }), 'nodes: admin only'),
  ).not.toThrow();
});

it('refuses every other key with 403 and the reason given', () => {
  for (const scopes of [['tenant'], ['usage:read'], []] as Principal['scopes'][]) {
    let thrown: unknown;
    try {
      requireAdmin(ctx({ keyId: 'k3', scopes, tenantId: null }), 'nodes are shared infrastructure: admin only');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ForbiddenError);
    expect((thrown as ForbiddenError).status).toBe(403);
    expect((thrown as ForbiddenError).message).toBe('nodes are shared infrastructure: admin only');
  }
});
