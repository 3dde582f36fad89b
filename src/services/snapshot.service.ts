import type { PrismaClient } from '../db/prisma.js';
import type { SecretBox } from '../lib/secret-box.js';
import type { Snapshot } from '../postfix/index.js';
import type { SnapshotRepository, SnapshotRows } from '../repositories/snapshot.repository.js';

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

/** A secret opened by an earlier load, with the exact sealed bytes it came from. */
interface OpenedSecret {
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  keyId: string;
  secret: string;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

/**
 * The thin loader in front of the pure compiler: database rows → Snapshot, secrets decrypted.
 *
 * Every change recompiles the whole snapshot, and opening a secret costs ≈ 5 µs (0.45 s for
 * 90,000 credentials, on every change). So the secrets of the last load are kept, each with the
 * sealed bytes it was opened from, and reused only for a row whose ciphertext, nonce and key id
 * are byte for byte the same (AES-GCM decryption is deterministic: the same bytes can only give
 * the same secret). Anything else (a rotation, a re-seal, a row changed behind our back) is opened
 * again and fails loudly if it does not authenticate. Credentials that are no longer active leave
 * the cache with the next load.
 */
export function createSnapshotService(deps: { prisma: PrismaClient; snapshots: SnapshotRepository; secretBox: SecretBox }) {
  let opened = new Map<string, OpenedSecret>();

  return {
    async load(): Promise<Snapshot> {
      const rows = await deps.snapshots.load(deps.prisma);
      const previous = opened;
      const next = new Map<string, OpenedSecret>();
      const open = (credential: SnapshotRows['credentials'][number]): string => {
        const { secretCiphertext: ciphertext, secretNonce: nonce, secretKeyId: keyId } = credential;
        const known = previous.get(credential.id);
        const secret =
          known !== undefined && known.keyId === keyId && sameBytes(known.nonce, nonce) && sameBytes(known.ciphertext, ciphertext)
            ? known.secret
            : deps.secretBox.open({ ciphertext, nonce, keyId }, credential.id);
        next.set(credential.id, { ciphertext, nonce, keyId, secret });
        return secret;
      };
      const settings = rows.settings ?? DEFAULT_SETTINGS;
      const snapshot: Snapshot = {
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
          secret: open(credential),
        })),
        destinationPolicies: rows.destinationPolicies.map((policy) => ({
          id: policy.id,
          pattern: policy.pattern,
          concurrency: policy.concurrency,
          rateDelaySeconds: policy.rateDelaySeconds,
          tls: policy.tls,
        })),
      };
      opened = next;
      return snapshot;
    },
  };
}

export type SnapshotService = ReturnType<typeof createSnapshotService>;
