import type { Db } from '../db/prisma.js';
import { UnprocessableError } from '../lib/errors.js';
import { DEFAULT_SETTINGS, problemsOf, type CompileProblem, type Snapshot } from '../postfix/index.js';
import type { RouteRows, RouteScope, SnapshotRepository } from '../repositories/snapshot.repository.js';
import { toDomain, toRelay, toSettings, toTenant } from './snapshot.service.js';

/**
 * Options for a transaction that checks the routes of many domains: a settings write (every route)
 * or a write to a relay they share. At 100,000 domains the check outlasts Prisma's 5 s
 * interactive-transaction default on a busy machine, which then answered 503 to every try. Long
 * enough for the whole check, still finite so a stuck transaction releases its rows.
 */
export const ROUTE_CHECK_TRANSACTION = { timeout: 60_000 } as const;

/**
 * The compiler's own checks, run at write time inside the writing transaction: a write that would
 * give a route Postfix cannot express is refused with 422, in the writer's terms, before anyone
 * else's deploy could meet it. Every domain of the scope is checked as if verified and its tenant
 * active (a pending domain is refused now, not when it verifies). Only problems the write is
 * answerable for refuse it: a domain write answers for that domain, a tenant or relay write for
 * itself and the domains it reaches, a settings write for everything. What slips through (a race
 * between two writes) is quarantined by the compiler instead.
 */
export function createRouteCheck(deps: { snapshots: Pick<SnapshotRepository, 'loadRouteRows'> }) {
  function snapshotOf(rows: RouteRows): Snapshot {
    return {
      settings: rows.settings === null ? { ...DEFAULT_SETTINGS } : toSettings(rows.settings),
      tenants: rows.tenants.map((row) => ({ ...toTenant(row), status: 'active' as const })),
      domains: rows.domains.map((row) => ({ ...toDomain(row), status: 'verified' as const, compileOverride: false })),
      relays: rows.relays.map(toRelay),
      credentials: [],
      destinationPolicies: [],
    };
  }

  function answerable(scope: RouteScope, snapshot: Snapshot, problem: CompileProblem): boolean {
    if ('all' in scope) return true;
    const checkedDomain =
      problem.resourceType === 'domain' && snapshot.domains.some((d) => d.id === problem.resourceId);
    if ('domainIds' in scope) return checkedDomain;
    if ('tenantId' in scope)
      return checkedDomain || (problem.resourceType === 'tenant' && problem.resourceId === scope.tenantId);
    return checkedDomain || (problem.resourceType === 'relay' && problem.resourceId === scope.relayId);
  }

  return {
    async assertExpressible(tx: Db, scope: RouteScope): Promise<void> {
      const snapshot = snapshotOf(await deps.snapshots.loadRouteRows(tx, scope));
      const problems = problemsOf(snapshot).filter((problem) => answerable(scope, snapshot, problem));
      const [first] = problems;
      if (first === undefined) return;
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
      const stranded = problems.filter((problem) => problem.code === 'relay_unreachable');
      if (stranded.length > 0) {
        // Its own code: the write itself is fine for Postfix, but would strand these routes' mail.
        throw new UnprocessableError(
          `this change leaves routes without a reachable relay: ${stranded.map((p) => p.message).join('; ')}`,
          'relay-unreachable',
          {
            problems: stranded.map(({ code, resourceType, resourceId, message }) => ({
              code,
              resourceType,
              resourceId,
              message,
            })),
          },
        );
      }
      throw new UnprocessableError(
        `Postfix cannot express this change: ${first.message}${more}`,
        'config-not-expressible',
        {
          problems: problems.map(({ code, resourceType, resourceId, message }) => ({
            code,
            resourceType,
            resourceId,
            message,
          })),
        },
      );
    },
  };
}

export type RouteCheck = ReturnType<typeof createRouteCheck>;
