import type { Db, PrismaClient } from '../db/prisma.js';
import type { QuarantinedUnit } from '../postfix/index.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import { auditEntry, SYSTEM } from './audit.service.js';
import type { QuarantineChanges, QuarantineRepository, QuarantineRow } from '../repositories/quarantine.repository.js';
import { isAdmin, type Principal } from './principal.js';

/**
 * Keeps config_quarantine equal to what the sync job's last compile quarantined, and audits every
 * unit that enters, leaves or changes. Only codes reach the audit log: a problem's message may name
 * rows of other tenants (two domains with one name, say); admins read messages through the API.
 */
export function createQuarantineRecorder(deps: {
  prisma: PrismaClient;
  repository: QuarantineRepository;
  audit: AuditRepository;
  now?: () => Date;
}) {
  const now = deps.now ?? (() => new Date());
  let recorded: string | undefined;

  async function audit(tx: Db, changes: QuarantineChanges) {
    const entry = (action: string, row: QuarantineRow, extra: Record<string, unknown>) =>
      deps.audit.record(
        tx,
        auditEntry(SYSTEM, {
          tenantId: row.tenantId,
          action,
          resourceType: row.resourceType,
          resourceId: row.resourceId === '' ? null : row.resourceId,
          changes: {
            treatment: row.treatment,
            codes: [...new Set(row.problems.map((p) => p.code))],
            heldDomains: row.heldDomains,
            ...extra,
          },
        }),
      );
    for (const row of changes.entered) await entry('config.quarantined', row, {});
    for (const { before, after } of changes.changed)
      await entry('config.quarantine_changed', after, { previousTreatment: before.treatment });
    for (const row of changes.left) await entry('config.released', row, { since: row.since.toISOString() });
  }

  return {
    /** Records the units of a compile; nothing is written while they stay the same. */
    async record(units: readonly QuarantinedUnit[]): Promise<void> {
      const rows = units.map((u) => ({
        resourceType: u.resourceType,
        resourceId: u.resourceId ?? '',
        tenantId: u.tenantId,
        treatment: u.treatment,
        problems: u.problems,
        heldDomains: u.heldDomains,
      }));
      const key = JSON.stringify(rows);
      if (key === recorded) return;
      await deps.repository.replace(deps.prisma, rows, now(), audit);
      recorded = key;
    },
  };
}

export type QuarantineRecorder = ReturnType<typeof createQuarantineRecorder>;

/** A quarantined unit as the API shows it: problems' messages only to admins and the unit's own tenant. */
export function presentQuarantine(row: QuarantineRow, viewer: Principal) {
  const mine = isAdmin(viewer) || (row.tenantId !== null && row.tenantId === viewer.tenantId);
  return {
    resourceType: row.resourceType,
    resourceId: row.resourceId === '' ? null : row.resourceId,
    treatment: row.treatment,
    problems: row.problems.map((p) => (mine ? { code: p.code, message: p.message } : { code: p.code, message: null })),
    heldDomains: row.heldDomains,
    since: row.since.toISOString(),
  };
}

/** Reading what is quarantined: for domains, nodes and readiness. */
export function createQuarantineService(deps: { prisma: PrismaClient; repository: QuarantineRepository }) {
  return {
    list: () => deps.repository.list(deps.prisma),
    count: () => deps.repository.count(deps.prisma),

    /** What keeps a domain's mail from its configured route, as `viewer` may see it ([]: nothing). */
    async ofDomain(
      domain: { id: string; tenantId: string; relayId: string | null; fallbackRelayId: string | null },
      viewer: Principal,
    ) {
      return (await deps.repository.forDomain(deps.prisma, domain)).map((row) => presentQuarantine(row, viewer));
    },
  };
}

export type QuarantineService = ReturnType<typeof createQuarantineService>;
