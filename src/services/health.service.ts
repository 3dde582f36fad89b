import type { PrismaClient } from '../db/prisma.js';
import { listMigrations } from '../db/migrations.js';
import { ServiceUnavailableError } from '../lib/errors.js';

export function createHealthService(deps: { prisma: PrismaClient; quarantine: { count(): Promise<number> } }) {
  // The migrations this build ships are fixed for the life of the process: read them once.
  const shipped = listMigrations();
  return {
    async readiness() {
      let applied: Set<string>;
      try {
        const rows = await deps.prisma.$queryRaw<Array<{ migration_name: string }>>`
          SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`;
        applied = new Set(rows.map((row) => row.migration_name));
      } catch {
        throw new ServiceUnavailableError('the database is unreachable or not migrated');
      }
      const pending = shipped.filter((name) => !applied.has(name)).length;
      if (pending > 0) {
        throw new ServiceUnavailableError(`${pending} migration(s) not applied yet: run relayplane migrate`);
      }
      // Ready either way (the API works), but a quarantine is something to see at a glance.
      const quarantinedUnits = await deps.quarantine.count();
      return {
        status: 'ready' as const,
        database: 'ok' as const,
        migrations: { applied: applied.size, pending },
        config: { quarantinedUnits },
      };
    },
  };
}
