import type pg from 'pg';
import { directPool, type Prisma, type PrismaClient } from '../db/prisma.js';

// Only the columns the compiler reads: at 100,000 domains, mapping unused columns is most of the load time.
const SETTINGS = {
  defaultConcurrency: true,
  defaultRateDelaySeconds: true,
  inetProtocols: true,
  addressPreference: true,
  maximalQueueLifetimeSeconds: true,
  bounceQueueLifetimeSeconds: true,
  minimalBackoffSeconds: true,
  maximalBackoffSeconds: true,
} as const satisfies Prisma.SettingsSelect;
const TENANT = { id: true, slug: true, status: true, defaultConcurrency: true, defaultRateDelaySeconds: true, defaultRecipientsPerMessage: true } as const satisfies Prisma.TenantSelect;
const DOMAIN = {
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
} as const satisfies Prisma.DomainSelect;
const RELAY = {
  id: true,
  tenantId: true,
  name: true,
  host: true,
  port: true,
  tls: true,
  verify: true,
  concurrency: true,
  rateDelaySeconds: true,
  recipientsPerMessage: true,
  connectionReuseSeconds: true,
} as const satisfies Prisma.RelaySelect;
const CREDENTIAL = { id: true, relayId: true, domainId: true, username: true, secretCiphertext: true, secretNonce: true, secretKeyId: true } as const satisfies Prisma.RelayCredentialSelect;
const POLICY = { id: true, pattern: true, concurrency: true, rateDelaySeconds: true, tls: true } as const satisfies Prisma.DestinationPolicySelect;

/** The rows of one snapshot, as read by either path below (same columns, same names, same types). */
export interface SnapshotRows {
  settings: Prisma.SettingsGetPayload<{ select: typeof SETTINGS }> | null;
  tenants: Array<Prisma.TenantGetPayload<{ select: typeof TENANT }>>;
  domains: Array<Prisma.DomainGetPayload<{ select: typeof DOMAIN }>>;
  relays: Array<Prisma.RelayGetPayload<{ select: typeof RELAY }>>;
  credentials: Array<Prisma.RelayCredentialGetPayload<{ select: typeof CREDENTIAL }>>;
  destinationPolicies: Array<Prisma.DestinationPolicyGetPayload<{ select: typeof POLICY }>>;
}

// The same selections in SQL. Enums come back as text, uuids as their canonical lower-case text,
// bytea as Buffer: what Prisma returns for these columns.
const SQL = {
  settings: `
    SELECT default_concurrency AS "defaultConcurrency", default_rate_delay_seconds AS "defaultRateDelaySeconds",
           inet_protocols AS "inetProtocols", address_preference AS "addressPreference",
           maximal_queue_lifetime_seconds AS "maximalQueueLifetimeSeconds", bounce_queue_lifetime_seconds AS "bounceQueueLifetimeSeconds",
           minimal_backoff_seconds AS "minimalBackoffSeconds", maximal_backoff_seconds AS "maximalBackoffSeconds"
      FROM settings WHERE id = 1`,
  tenants: `
    SELECT id::text, slug, status::text, default_concurrency AS "defaultConcurrency",
           default_rate_delay_seconds AS "defaultRateDelaySeconds", default_recipients_per_message AS "defaultRecipientsPerMessage"
      FROM tenants`,
  domains: `
    SELECT id::text, tenant_id::text AS "tenantId", name, status::text, compile_override AS "compileOverride", route::text,
           relay_id::text AS "relayId", fallback_relay_id::text AS "fallbackRelayId", concurrency,
           rate_delay_seconds AS "rateDelaySeconds", recipients_per_message AS "recipientsPerMessage"
      FROM domains`,
  relays: `
    SELECT id::text, tenant_id::text AS "tenantId", name, host, port, tls::text, verify, concurrency,
           rate_delay_seconds AS "rateDelaySeconds", recipients_per_message AS "recipientsPerMessage",
           connection_reuse_seconds AS "connectionReuseSeconds"
      FROM relays`,
  credentials: `
    SELECT id::text, relay_id::text AS "relayId", domain_id::text AS "domainId", username,
           secret_ciphertext AS "secretCiphertext", secret_nonce AS "secretNonce", secret_key_id AS "secretKeyId"
      FROM relay_credentials WHERE status = 'active'`,
  destinationPolicies: `
    SELECT id::text, pattern, concurrency, rate_delay_seconds AS "rateDelaySeconds", tls::text
      FROM destination_policies`,
} as const;

async function loadDirect(pool: pg.Pool): Promise<SnapshotRows> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const rows = <K extends keyof SnapshotRows>(key: K) => client.query(SQL[key]).then((result) => result.rows);
    const settings = ((await rows('settings'))[0] ?? null) as SnapshotRows['settings'];
    const tenants = (await rows('tenants')) as SnapshotRows['tenants'];
    const domains = (await rows('domains')) as SnapshotRows['domains'];
    const relays = (await rows('relays')) as SnapshotRows['relays'];
    const credentials = (await rows('credentials')) as SnapshotRows['credentials'];
    const destinationPolicies = (await rows('destinationPolicies')) as SnapshotRows['destinationPolicies'];
    await client.query('COMMIT');
    client.release();
    return { settings, tenants, domains, relays, credentials, destinationPolicies };
  } catch (err) {
    // Destroys the connection, which ends the transaction with it: nothing half-done goes back to the pool.
    client.release(err instanceof Error ? err : true);
    throw err;
  }
}

/**
 * Everything the compiler needs, read in ONE repeatable-read transaction so the snapshot is
 * consistent (a credential rotation half-seen with its old domain would compile a wrong map).
 * Only active credentials are read; their secrets stay sealed here.
 */
export function createSnapshotRepository() {
  return {
    load(prisma: PrismaClient): Promise<SnapshotRows> {
      // Straight through node-postgres when the pool is reachable: Prisma's per-row mapping costs
      // more than the queries at 100,000 domains (BENCHMARKS.md, compile).
      const pool = directPool(prisma);
      if (pool !== undefined) return loadDirect(pool);
      return prisma.$transaction(
        async (tx) => ({
          settings: await tx.settings.findUnique({ where: { id: 1 }, select: SETTINGS }),
          tenants: await tx.tenant.findMany({ select: TENANT }),
          domains: await tx.domain.findMany({ select: DOMAIN }),
          relays: await tx.relay.findMany({ select: RELAY }),
          credentials: await tx.relayCredential.findMany({ where: { status: 'active' }, select: CREDENTIAL }),
          destinationPolicies: await tx.destinationPolicy.findMany({ select: POLICY }),
        }),
        { isolationLevel: 'RepeatableRead', timeout: 60_000 },
      );
    },
  };
}

export type SnapshotRepository = ReturnType<typeof createSnapshotRepository>;
