import type { PrismaClient } from '../db/prisma.js';
import { appliedMigrations, listMigrations } from '../db/migrations.js';
import { ServiceUnavailableError } from '../lib/errors.js';

export function createHealthService(deps: { prisma: PrismaClient; quarantine: { count(): Promise<number> } }) {
  // The migrations this build ships are fixed for the life of the process: read them once.
  const shipped = listMigrations();
  return {
    async readiness() {
      let applied: Set<string>;
      try {
        applied = new Set(await appliedMigrations(deps.prisma));
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
