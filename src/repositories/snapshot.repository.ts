import type { PrismaClient } from '../db/prisma.js';

/**
 * Everything the compiler needs, read in ONE repeatable-read transaction so the snapshot is
 * consistent (a credential rotation half-seen with its old domain would compile a wrong map).
 * Only active credentials are read; their secrets stay sealed here.
 */
export function createSnapshotRepository() {
  return {
    load(prisma: PrismaClient) {
      return prisma.$transaction(
        async (tx) => {
          const settings = await tx.settings.findUnique({ where: { id: 1 } });
          const tenants = await tx.tenant.findMany({ orderBy: { id: 'asc' } });
          const domains = await tx.domain.findMany({ orderBy: { id: 'asc' } });
          const relays = await tx.relay.findMany({ orderBy: { id: 'asc' } });
          const credentials = await tx.relayCredential.findMany({ where: { status: 'active' }, orderBy: { id: 'asc' } });
          const destinationPolicies = await tx.destinationPolicy.findMany({ orderBy: { id: 'asc' } });
          return { settings, tenants, domains, relays, credentials, destinationPolicies };
        },
        { isolationLevel: 'RepeatableRead', timeout: 60_000 },
      );
    },
  };
}

export type SnapshotRepository = ReturnType<typeof createSnapshotRepository>;
