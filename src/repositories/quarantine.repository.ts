import type { Db, PrismaClient } from '../db/prisma.js';
import type { Prisma } from '../generated/prisma/client.js';

/** A quarantined unit as stored (see ConfigQuarantine in prisma/schema.prisma). */
export interface QuarantineRow {
  resourceType: string;
  /** '' for the settings. */
  resourceId: string;
  tenantId: string | null;
  treatment: string;
  problems: Array<{ code: string; message: string }>;
  heldDomains: number;
  since: Date;
}

export type QuarantineInput = Omit<QuarantineRow, 'since'>;

/** What a replace changed: units that entered, left, or stayed with another treatment or other problems. */
export interface QuarantineChanges {
  entered: QuarantineRow[];
  left: QuarantineRow[];
  changed: Array<{ before: QuarantineRow; after: QuarantineRow }>;
}

// Compiles in several processes may record at once: one at a time, so each sees the other's rows.
const LOCK = `SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtextextended('relayplane/config-quarantine/' || current_schema(), 0))) AS lock`;

const toRow = (row: {
  resourceType: string;
  resourceId: string;
  tenantId: string | null;
  treatment: string;
  problems: unknown;
  heldDomains: number;
  since: Date;
}): QuarantineRow => ({
  resourceType: row.resourceType,
  resourceId: row.resourceId,
  tenantId: row.tenantId,
  treatment: row.treatment,
  problems: row.problems as QuarantineRow['problems'],
  heldDomains: row.heldDomains,
  since: row.since,
});

const keyOf = (row: { resourceType: string; resourceId: string }) => `${row.resourceType}:${row.resourceId}`;

export function createQuarantineRepository() {
  return {
    async list(db: Db): Promise<QuarantineRow[]> {
      return (await db.configQuarantine.findMany({ orderBy: [{ resourceType: 'asc' }, { resourceId: 'asc' }] })).map(
        toRow,
      );
    },

    /**
     * The units that reach one domain: itself, its tenant, the relays of its route and the active
     * credentials it would use there (its own, or a relay's relay-wide one).
     */
    async forDomain(
      db: Db,
      domain: { id: string; tenantId: string; relayId: string | null; fallbackRelayId: string | null },
    ): Promise<QuarantineRow[]> {
      const relayIds = [domain.relayId, domain.fallbackRelayId].filter((id): id is string => id !== null);
      const credentials =
        relayIds.length === 0
          ? []
          : await db.relayCredential.findMany({
              where: { status: 'active', relayId: { in: relayIds }, OR: [{ domainId: domain.id }, { domainId: null }] },
              select: { id: true },
            });
      const units = [
        { resourceType: 'domain', resourceId: domain.id },
        { resourceType: 'tenant', resourceId: domain.tenantId },
        ...relayIds.map((id) => ({ resourceType: 'relay', resourceId: id })),
        ...credentials.map((c) => ({ resourceType: 'credential', resourceId: c.id })),
      ];
      const rows = await db.configQuarantine.findMany({
        where: { OR: units },
        orderBy: [{ resourceType: 'asc' }, { resourceId: 'asc' }],
      });
      return rows.map(toRow);
    },

    async count(db: Db): Promise<number> {
      return db.configQuarantine.count();
    },

    /**
     * Makes the table hold exactly `units` (a unit that stays keeps its `since`) and reports what
     * changed; `record` runs in the same transaction (the audit of the changes).
     */
    async replace(
      prisma: PrismaClient,
      units: QuarantineInput[],
      now: Date,
      record: (tx: Db, changes: QuarantineChanges) => Promise<void>,
    ): Promise<QuarantineChanges> {
      return prisma.$transaction(async (tx) => {
        await tx.$queryRawUnsafe(LOCK);
        const before = new Map((await tx.configQuarantine.findMany()).map((row) => [keyOf(row), toRow(row)]));
        const changes: QuarantineChanges = { entered: [], left: [], changed: [] };
        const wanted = new Set<string>();
        for (const unit of units) {
          const key = keyOf(unit);
          wanted.add(key);
          const previous = before.get(key);
          const row: QuarantineRow = { ...unit, since: previous?.since ?? now };
          if (previous === undefined) changes.entered.push(row);
          else if (
            previous.treatment !== row.treatment ||
            JSON.stringify(previous.problems) !== JSON.stringify(row.problems) ||
            previous.heldDomains !== row.heldDomains
          ) {
            changes.changed.push({ before: previous, after: row });
          } else {
            continue;
          }
          const data = {
            tenantId: row.tenantId,
            treatment: row.treatment,
            problems: row.problems as Prisma.InputJsonValue,
            heldDomains: row.heldDomains,
            updatedAt: now,
          };
          await tx.configQuarantine.upsert({
            where: { resourceType_resourceId: { resourceType: row.resourceType, resourceId: row.resourceId } },
            create: { resourceType: row.resourceType, resourceId: row.resourceId, since: row.since, ...data },
            update: data,
          });
        }
        for (const [key, row] of before) {
          if (wanted.has(key)) continue;
          changes.left.push(row);
          await tx.configQuarantine.delete({
            where: { resourceType_resourceId: { resourceType: row.resourceType, resourceId: row.resourceId } },
          });
        }
        await record(tx, changes);
        return changes;
      });
    },
  };
}

export type QuarantineRepository = ReturnType<typeof createQuarantineRepository>;
