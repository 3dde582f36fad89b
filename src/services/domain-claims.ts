/**
 * Who holds a domain name. Any number of tenants may claim a name (each claim is a domain row with
 * its own ownership token); the first claim whose DNS records verify wins it: it becomes
 * `verified` and the other tenants' pending claims on the name and on the names under it become
 * `failed`. A name is held by one domain at most (the partial unique index
 * domains_name_held_key: verified, degraded or compiled in by an administrator), and a tenant
 * cannot claim, nor win, a name that another tenant holds or that lies under a name another tenant
 * holds. Reasons and errors never say which tenant holds a name.
 */
import { isUniqueViolation, type Db } from '../db/prisma.js';
import type { Domain, DomainStatus } from '../generated/prisma/client.js';
import { ConflictError } from '../lib/errors.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import type { DomainRepository } from '../repositories/domain.repository.js';

/** Statuses that hold the name (compileOverride holds it too). */
export const HOLDING: readonly DomainStatus[] = ['verified', 'degraded'];

export function holds(domain: Pick<Domain, 'status' | 'compileOverride'>): boolean {
  return HOLDING.includes(domain.status) || domain.compileOverride;
}

/** Why a claim cannot hold its name: `held` is the name (this one or one above it) held elsewhere. */
export function heldElsewhereReason(name: string, held: string): string {
  return held === name
    ? `another claim on ${name} proved ownership first; this claim can no longer be verified`
    : `${held} is verified by another account, and the names under it with it; this claim can no longer be verified`;
}

/** The name (or one above it) is held by another tenant's verified domain; says nothing of which tenant. */
export function heldConflict(name: string, held: string): ConflictError {
  const what = held === name ? `the domain ${name} is` : `${held}, above ${name}, is`;
  return new ConflictError(`${what} verified by another account: it cannot be claimed`, 'domain-held', {
    domain: name,
  });
}

/** A unique index a domain write can meet, as the client's problem. */
export function domainConflict(error: unknown, name: string): ConflictError | null {
  if (isUniqueViolation(error, 'domains_name_held_key')) return heldConflict(name, name);
  if (isUniqueViolation(error, 'name'))
    return new ConflictError(`this tenant already has the domain ${name}`, 'domain-taken', { domain: name });
  return null;
}

interface Deps {
  domains: DomainRepository;
  audit: AuditRepository;
}

export function createDomainClaims(deps: Deps) {
  return {
    /** The name (this one or one above it) another tenant holds, or null when this claim may hold its name. */
    heldElsewhere(db: Db, domain: Pick<Domain, 'name' | 'tenantId'>): Promise<string | null> {
      return deps.domains.heldByOther(db, domain.name, domain.tenantId);
    },

    /**
     * The winner just verified: every other tenant's pending claim on its name or a name under it
     * fails, audited in that tenant's log with a reason that names neither the winner nor its tenant.
     */
    async settleCompetitors(tx: Db, winner: Pick<Domain, 'name' | 'tenantId'>, at: Date): Promise<number> {
      const losers = await deps.domains.competingClaims(tx, winner.name, winner.tenantId);
      let failed = 0;
      for (const loser of losers) {
        const reason = heldElsewhereReason(loser.name, winner.name);
        const row = await deps.domains.update(tx, loser.id, loser.version, {
          status: 'failed',
          statusChangedAt: at,
          statusReason: reason,
        });
        if (row === null) continue; // changed meanwhile: its next check meets the held name
        failed += 1;
        // Recorded as the system's doing: the winner's key or request id would point at the winner.
        await deps.audit.record(tx, {
          actorKeyId: null,
          tenantId: loser.tenantId,
          action: 'domain.claim_lost',
          resourceType: 'domain',
          resourceId: loser.id,
          changes: {
            status: { from: loser.status, to: 'failed' },
            statusReason: { from: loser.statusReason, to: reason },
          },
          requestId: null,
        });
      }
      return failed;
    },
  };
}

export type DomainClaims = ReturnType<typeof createDomainClaims>;
