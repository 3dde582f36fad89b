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
          // Only the columns the compiler reads: at 100,000 domains, mapping unused columns is most of the load time.
          const tenants = await tx.tenant.findMany({
            select: { id: true, slug: true, status: true, defaultConcurrency: true, defaultRateDelaySeconds: true, defaultRecipientsPerMessage: true },
          });
          const domains = await tx.domain.findMany({
            select: {
              id: true,
              tenantId: true,
              name: true,
              status: true,
              compileOverride: true,
              route: true,
              relayId: true,
              fallbackRelayId: true,
              concurrency: true,
              rateDelaySeconds: true,
              recipientsPerMessage: true,
            },
          });
          const relays = await tx.relay.findMany();
          const credentials = await tx.relayCredential.findMany({
            where: { status: 'active' },
            select: { id: true, relayId: true, domainId: true, username: true, secretCiphertext: true, secretNonce: true, secretKeyId: true },
          });
          const destinationPolicies = await tx.destinationPolicy.findMany();
          return { settings, tenants, domains, relays, credentials, destinationPolicies };
        },
        { isolationLevel: 'RepeatableRead', timeout: 60_000 },
      );
    },
  };
}

export type SnapshotRepository = ReturnType<typeof createSnapshotRepository>;
