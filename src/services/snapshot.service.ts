import type { PrismaClient } from '../db/prisma.js';
import type { SecretBox } from '../lib/secret-box.js';
import type { Snapshot } from '../postfix/index.js';
import type { SnapshotRepository } from '../repositories/snapshot.repository.js';

const DEFAULT_SETTINGS = {
  defaultConcurrency: 20,
  defaultRateDelaySeconds: 0,
  inetProtocols: 'all',
  addressPreference: 'any',
  maximalQueueLifetimeSeconds: 432_000,
  bounceQueueLifetimeSeconds: 432_000,
  minimalBackoffSeconds: 300,
  maximalBackoffSeconds: 4000,
} as const;

/** The thin loader in front of the pure compiler: database rows → Snapshot, secrets decrypted. */
export function createSnapshotService(deps: { prisma: PrismaClient; snapshots: SnapshotRepository; secretBox: SecretBox }) {
  return {
    async load(): Promise<Snapshot> {
      const rows = await deps.snapshots.load(deps.prisma);
      const settings = rows.settings ?? DEFAULT_SETTINGS;
      return {
        settings: {
          defaultConcurrency: settings.defaultConcurrency,
          defaultRateDelaySeconds: settings.defaultRateDelaySeconds,
          inetProtocols: settings.inetProtocols as Snapshot['settings']['inetProtocols'],
          addressPreference: settings.addressPreference as Snapshot['settings']['addressPreference'],
          maximalQueueLifetime: `${settings.maximalQueueLifetimeSeconds}s`,
          bounceQueueLifetime: `${settings.bounceQueueLifetimeSeconds}s`,
          minimalBackoffTime: `${settings.minimalBackoffSeconds}s`,
          maximalBackoffTime: `${settings.maximalBackoffSeconds}s`,
        },
        tenants: rows.tenants.map((tenant) => ({
          id: tenant.id,
          slug: tenant.slug,
          status: tenant.status,
          defaultLimits:
            tenant.defaultConcurrency === null && tenant.defaultRateDelaySeconds === null && tenant.defaultRecipientsPerMessage === null
              ? null
              : {
                  concurrency: tenant.defaultConcurrency,
                  rateDelaySeconds: tenant.defaultRateDelaySeconds,
                  recipientsPerMessage: tenant.defaultRecipientsPerMessage,
                },
        })),
        domains: rows.domains.map((domain) => ({
          id: domain.id,
          tenantId: domain.tenantId,
          name: domain.name,
          status: domain.status,
          compileOverride: domain.compileOverride,
          route: domain.route,
          relayId: domain.relayId,
          fallbackRelayId: domain.fallbackRelayId,
          limits:
            domain.concurrency === null && domain.rateDelaySeconds === null && domain.recipientsPerMessage === null
              ? null
              : { concurrency: domain.concurrency, rateDelaySeconds: domain.rateDelaySeconds, recipientsPerMessage: domain.recipientsPerMessage },
        })),
        relays: rows.relays.map((relay) => ({
          id: relay.id,
          name: relay.name,
          host: relay.host,
          port: relay.port,
          tls: relay.tls,
          verify: relay.verify,
          tenantId: relay.tenantId,
          limits:
            relay.concurrency === null && relay.rateDelaySeconds === null && relay.recipientsPerMessage === null && relay.connectionReuseSeconds === null
              ? null
              : {
                  concurrency: relay.concurrency,
                  rateDelaySeconds: relay.rateDelaySeconds,
                  recipientsPerMessage: relay.recipientsPerMessage,
                  connectionReuseSeconds: relay.connectionReuseSeconds,
                },
        })),
        credentials: rows.credentials.map((credential) => ({
          id: credential.id,
          relayId: credential.relayId,
          domainId: credential.domainId,
          username: credential.username,
          secret: deps.secretBox.open({ ciphertext: credential.secretCiphertext, nonce: credential.secretNonce, keyId: credential.secretKeyId }, credential.id),
        })),
        destinationPolicies: rows.destinationPolicies.map((policy) => ({
          id: policy.id,
          pattern: policy.pattern,
          concurrency: policy.concurrency,
          rateDelaySeconds: policy.rateDelaySeconds,
          tls: policy.tls,
        })),
      };
    },
  };
}

export type SnapshotService = ReturnType<typeof createSnapshotService>;
