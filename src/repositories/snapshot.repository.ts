import type pg from 'pg';
import { directPool, type Db, type Prisma, type PrismaClient } from '../db/prisma.js';

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
const TENANT = {
  id: true,
  slug: true,
  status: true,
  defaultConcurrency: true,
  defaultRateDelaySeconds: true,
  defaultRecipientsPerMessage: true,
} as const satisfies Prisma.TenantSelect;
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
const CREDENTIAL = {
  id: true,
  relayId: true,
  domainId: true,
  username: true,
  secretCiphertext: true,
  secretNonce: true,
  secretKeyId: true,
} as const satisfies Prisma.RelayCredentialSelect;
const POLICY = {
  id: true,
  pattern: true,
  concurrency: true,
  rateDelaySeconds: true,
  tls: true,
} as const satisfies Prisma.DestinationPolicySelect;

/** The rows of one snapshot, as read by either path below (same columns, same names, same types). */
export interface SnapshotRows {
  settings: Prisma.SettingsGetPayload<{ select: typeof SETTINGS }> | null;
  tenants: Array<Prisma.TenantGetPayload<{ select: typeof TENANT }>>;
  domains: Array<Prisma.DomainGetPayload<{ select: typeof DOMAIN }>>;
  relays: Array<Prisma.RelayGetPayload<{ select: typeof RELAY }>>;
  credentials: Array<Prisma.RelayCredentialGetPayload<{ select: typeof CREDENTIAL }>>;
  destinationPolicies: Array<Prisma.DestinationPolicyGetPayload<{ select: typeof POLICY }>>;
}

export type TableKey = Exclude<keyof SnapshotRows, 'settings'>;

/** One table of a load: every row, or only the rows of the ids that changed (an id without a row was deleted). */
export type TableChanges<K extends TableKey> =
  { full: true; rows: SnapshotRows[K] } | { full: false; ids: string[]; rows: SnapshotRows[K] };

/** What a load read: everything, or what committed since the snapshot it was given. */
export interface SnapshotChanges {
  kind: 'full' | 'delta';
  /** The transaction snapshot of this read (pg_current_snapshot), to pass as `since` next time; undefined on the Prisma path. */
  snapshot: string | undefined;
  settings: { changed: false } | { changed: true; row: SnapshotRows['settings'] };
  tables: { [K in TableKey]: TableChanges<K> };
}

/** Where the previous load stood: its snapshot and how many rows of each table it holds. */
export interface SnapshotSince {
  snapshot: string;
  rows: Record<TableKey, number>;
}

// The same selections in SQL. Enums come back as text, uuids as their canonical lower-case text,
// bytea as Buffer: what Prisma returns for these columns.
const SETTINGS_SQL = `
    SELECT default_concurrency AS "defaultConcurrency", default_rate_delay_seconds AS "defaultRateDelaySeconds",
           inet_protocols AS "inetProtocols", address_preference AS "addressPreference",
           maximal_queue_lifetime_seconds AS "maximalQueueLifetimeSeconds", bounce_queue_lifetime_seconds AS "bounceQueueLifetimeSeconds",
           minimal_backoff_seconds AS "minimalBackoffSeconds", maximal_backoff_seconds AS "maximalBackoffSeconds"
      FROM settings WHERE id = 1`;
const SQL: Record<TableKey, { select: string; where?: string }> = {
  tenants: {
    select: `
    SELECT id::text, slug, status::text, default_concurrency AS "defaultConcurrency",
           default_rate_delay_seconds AS "defaultRateDelaySeconds", default_recipients_per_message AS "defaultRecipientsPerMessage"
      FROM tenants`,
  },
  domains: {
    select: `
    SELECT id::text, tenant_id::text AS "tenantId", name, status::text, compile_override AS "compileOverride", route::text,
           relay_id::text AS "relayId", fallback_relay_id::text AS "fallbackRelayId", concurrency,
           rate_delay_seconds AS "rateDelaySeconds", recipients_per_message AS "recipientsPerMessage"
      FROM domains`,
  },
  relays: {
    select: `
    SELECT id::text, tenant_id::text AS "tenantId", name, host, port, tls::text, verify, concurrency,
           rate_delay_seconds AS "rateDelaySeconds", recipients_per_message AS "recipientsPerMessage",
           connection_reuse_seconds AS "connectionReuseSeconds"
      FROM relays`,
  },
  credentials: {
    select: `
    SELECT id::text, relay_id::text AS "relayId", domain_id::text AS "domainId", username,
           secret_ciphertext AS "secretCiphertext", secret_nonce AS "secretNonce", secret_key_id AS "secretKeyId"
      FROM relay_credentials`,
    where: `status = 'active'`,
  },
  destinationPolicies: {
    select: `
    SELECT id::text, pattern, concurrency, rate_delay_seconds AS "rateDelaySeconds", tls::text
      FROM destination_policies`,
  },
};
const TABLE_KEYS = Object.keys(SQL) as TableKey[];
const KEY_OF_TABLE: Record<string, TableKey | 'settings'> = {
  tenants: 'tenants',
  domains: 'domains',
  relays: 'relays',
  relay_credentials: 'credentials',
  destination_policies: 'destinationPolicies',
  settings: 'settings',
};

// A delta is exact while every pruned change is below the previous snapshot's xmin, i.e. was seen by
// it. A missing state row gives NULL: read everything.
const HEAD_SQL = `
    SELECT pg_current_snapshot()::text AS snapshot,
           pg_snapshot_xmin($1::pg_snapshot) > (SELECT pruned_through FROM config_change_log_state WHERE id = 1) AS usable`;
// Visible now and not to the previous snapshot. A transaction still running now is invisible to
// both and is read by the next load; txid >= xmin only lets the index skip what both see.
const CHANGES_SQL = `
    SELECT DISTINCT table_name AS "table", row_id AS "rowId" FROM config_changes
     WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)`;
// Delete and raise the mark in one statement: no reader sees the rows gone and the mark still low.
// greatest(): a concurrent prune of later rows may have raised it already.
const PRUNE_SQL = `
    WITH deleted AS (DELETE FROM config_changes WHERE created_at < now() - $1::float8 * interval '1 millisecond' RETURNING txid)
    UPDATE config_change_log_state SET pruned_through = greatest(pruned_through, (SELECT max(txid) FROM deleted))
     WHERE id = 1 AND EXISTS (SELECT FROM deleted)
    RETURNING (SELECT count(*) FROM deleted)::int AS deleted`;

/** Above this many changed ids, and a fifth of the table, one scan is cheaper than an index probe per id. */
const BY_ID_LIMIT = 1000;

function tableQuery(key: TableKey, ids?: string[]): { text: string; values: unknown[] } {
  const { select, where } = SQL[key];
  const conditions = [...(where === undefined ? [] : [where]), ...(ids === undefined ? [] : ['id = ANY($1::uuid[])'])];
  return {
    text: conditions.length === 0 ? select : `${select} WHERE ${conditions.join(' AND ')}`,
    values: ids === undefined ? [] : [ids],
  };
}

/**
 * The statements of a full load, in the order it runs them. Only for measuring (bench/compile):
 * what PostgreSQL itself takes to hand out the same rows.
 */
export function fullLoadQueries(): string[] {
  return [SETTINGS_SQL, ...TABLE_KEYS.map((key) => tableQuery(key).text)];
}

/** Changed ids per table, or 'all' (a TRUNCATE, or too many to read one by one). */
function changedIds(rows: Array<{ table: string; rowId: string | null }>, since: SnapshotSince) {
  const changed = new Map<TableKey | 'settings', Set<string> | 'all'>();
  for (const { table, rowId } of rows) {
    const key = KEY_OF_TABLE[table];
    if (key === undefined) continue;
    const ids = changed.get(key);
    if (ids === 'all') continue;
    if (rowId === null) changed.set(key, 'all');
    else if (ids === undefined) changed.set(key, new Set([rowId]));
    else ids.add(rowId);
  }
  for (const key of TABLE_KEYS) {
    const ids = changed.get(key);
    if (ids !== undefined && ids !== 'all' && ids.size > BY_ID_LIMIT && ids.size > since.rows[key] / 5)
      changed.set(key, 'all');
  }
  return changed;
}

async function loadDirect(pool: pg.Pool, since: SnapshotSince | undefined): Promise<SnapshotChanges> {
  const client = await pool.connect();
  // pg-pool takes its own listener off a client it hands out. A connection the server ends (a fast
  // shutdown, pg_terminate_backend) fails the read in progress, then emits 'error' too: unheard,
  // that event would end the process (or the engine thread) instead of this one load.
  const ignoreEnded = () => {};
  client.on('error', ignoreEnded);
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const head = (await client.query<{ snapshot: string; usable: boolean | null }>(HEAD_SQL, [since?.snapshot ?? null]))
      .rows[0]!;
    const changed =
      since !== undefined && head.usable === true
        ? changedIds(
            (await client.query<{ table: string; rowId: string | null }>(CHANGES_SQL, [since.snapshot])).rows,
            since,
          )
        : undefined;
    const settings: SnapshotChanges['settings'] =
      changed === undefined || changed.has('settings')
        ? { changed: true, row: ((await client.query(SETTINGS_SQL)).rows[0] ?? null) as SnapshotRows['settings'] }
        : { changed: false };
    const tables = {} as Record<TableKey, TableChanges<TableKey>>;
    for (const key of TABLE_KEYS) {
      const ids = changed === undefined ? 'all' : (changed.get(key) ?? new Set<string>());
      if (ids === 'all') {
        tables[key] = { full: true, rows: (await client.query(tableQuery(key))).rows };
      } else {
        const list = [...ids];
        tables[key] = {
          full: false,
          ids: list,
          rows: list.length === 0 ? [] : (await client.query(tableQuery(key, list))).rows,
        };
      }
    }
    await client.query('COMMIT');
    client.off('error', ignoreEnded);
    client.release();
    return {
      kind: changed === undefined ? 'full' : 'delta',
      snapshot: head.snapshot,
      settings,
      tables: tables as SnapshotChanges['tables'],
    };
  } catch (err) {
    // Destroys the connection, which ends the transaction with it: nothing half-done goes back to the pool.
    // The listener stays: a destroyed connection can still report its end.
    client.release(err instanceof Error ? err : true);
    throw err;
  }
}

/**
 * Everything the compiler needs, read in ONE repeatable-read transaction so the snapshot is
 * consistent (a credential rotation half-seen with its old domain would compile a wrong map).
 * Only active credentials are read; their secrets stay sealed here.
 */
/** Which sender domains a write can change the routes of (see loadRouteRows). */
export type RouteScope = { domainIds: string[] } | { tenantId: string } | { relayId: string } | { all: true };

/** The rows the compiler's route checks read, for the domains of a scope (RouteRows.domains: one per distinct route). */
export type RouteRows = Pick<SnapshotRows, 'settings' | 'tenants' | 'domains' | 'relays'>;

// Everything a route check reads of a domain besides its id and name: domains alike in these
// fields pass or fail alike, so one of each kind is checked (a relay's 2,000 domains across 2,000
// tenants with the same defaults: one). Of its tenant the compiler reads only the default limits
// (its status is taken as active) and whether the domain may use its relays (a tenant's own relay
// serves that tenant's domains only), so those stand for the tenant, not its id.
const ROUTE_PROFILE =
  'tenant_default_concurrency, tenant_default_rate_delay_seconds, tenant_default_recipients_per_message, ' +
  'relay_usable, fallback_usable, route, relay_id, fallback_relay_id, concurrency, rate_delay_seconds, recipients_per_message';
const PROFILED_DOMAINS = `(
    SELECT d.*, t.default_concurrency AS tenant_default_concurrency,
           t.default_rate_delay_seconds AS tenant_default_rate_delay_seconds,
           t.default_recipients_per_message AS tenant_default_recipients_per_message,
           r.tenant_id IS NULL OR r.tenant_id = d.tenant_id AS relay_usable,
           f.tenant_id IS NULL OR f.tenant_id = d.tenant_id AS fallback_usable
      FROM domains d
      JOIN tenants t ON t.id = d.tenant_id
      LEFT JOIN relays r ON r.id = d.relay_id
      LEFT JOIN relays f ON f.id = d.fallback_relay_id
  ) domains`;

function routeScopeCondition(scope: RouteScope): { where: string; values: unknown[] } {
  if ('domainIds' in scope) return { where: 'id = ANY($1::uuid[])', values: [scope.domainIds] };
  if ('tenantId' in scope) return { where: 'tenant_id = $1::uuid', values: [scope.tenantId] };
  if ('relayId' in scope)
    return { where: '(relay_id = $1::uuid OR fallback_relay_id = $1::uuid)', values: [scope.relayId] };
  return { where: 'TRUE', values: [] };
}

export function createSnapshotRepository() {
  return {
    /**
     * For a write's route check, in the writing transaction: the settings, one domain of each
     * distinct route among the scope's domains that are not disabled (the one first by name), and
     * the tenants and relays those refer to.
     */
    async loadRouteRows(db: Db, scope: RouteScope): Promise<RouteRows> {
      const { where, values } = routeScopeCondition(scope);
      const domains = await db.$queryRawUnsafe<RouteRows['domains']>(
        `${SQL.domains.select.replace('SELECT ', `SELECT DISTINCT ON (${ROUTE_PROFILE}) `).replace(/FROM domains$/, `FROM ${PROFILED_DOMAINS}`)} WHERE status <> 'disabled' AND ${where} ORDER BY ${ROUTE_PROFILE}, name`,
        ...values,
      );
      const tenantIds = [...new Set(domains.map((d) => d.tenantId))];
      const relayIds = [
        ...new Set(domains.flatMap((d) => [d.relayId, d.fallbackRelayId]).filter((id): id is string => id !== null)),
      ];
      const [settings] = await db.$queryRawUnsafe<Array<NonNullable<RouteRows['settings']>>>(SETTINGS_SQL);
      const tenants = await db.$queryRawUnsafe<RouteRows['tenants']>(
        `${SQL.tenants.select} WHERE id = ANY($1::uuid[])`,
        tenantIds,
      );
      const relays = await db.$queryRawUnsafe<RouteRows['relays']>(
        `${SQL.relays.select} WHERE id = ANY($1::uuid[])`,
        relayIds,
      );
      return { settings: settings ?? null, tenants, domains, relays };
    },

    /**
     * Only what committed since `since` (from config_changes, kept by triggers), or everything when
     * there is no `since` or the change log was pruned past it. The Prisma path (no pool of ours)
     * always reads everything: it cannot pin pg_current_snapshot() to its transaction's reads as
     * cheaply, and it only serves clients not made by createPrismaClient.
     */
    loadChanges(prisma: PrismaClient, since?: SnapshotSince): Promise<SnapshotChanges> {
      // Straight through node-postgres when the pool is reachable: Prisma's per-row mapping costs
      // more than the queries at 100,000 domains (BENCHMARKS.md, compile).
      const pool = directPool(prisma);
      if (pool !== undefined) return loadDirect(pool, since);
      return prisma.$transaction(
        async (tx) => ({
          kind: 'full' as const,
          snapshot: undefined,
          settings: {
            changed: true as const,
            row: await tx.settings.findUnique({ where: { id: 1 }, select: SETTINGS }),
          },
          tables: {
            tenants: { full: true as const, rows: await tx.tenant.findMany({ select: TENANT }) },
            domains: { full: true as const, rows: await tx.domain.findMany({ select: DOMAIN }) },
            relays: { full: true as const, rows: await tx.relay.findMany({ select: RELAY }) },
            credentials: {
              full: true as const,
              rows: await tx.relayCredential.findMany({ where: { status: 'active' }, select: CREDENTIAL }),
            },
            destinationPolicies: { full: true as const, rows: await tx.destinationPolicy.findMany({ select: POLICY }) },
          },
        }),
        { isolationLevel: 'RepeatableRead', timeout: 60_000 },
      );
    },

    /**
     * Deletes change-log rows older than `retentionMs` and raises pruned_through to the largest
     * txid deleted, in one statement. Returns how many rows went.
     */
    async prune(prisma: PrismaClient, retentionMs: number): Promise<number> {
      const pool = directPool(prisma);
      const rows =
        pool !== undefined
          ? (await pool.query<{ deleted: number }>(PRUNE_SQL, [retentionMs])).rows
          : await prisma.$queryRawUnsafe<Array<{ deleted: number }>>(PRUNE_SQL, retentionMs);
      return rows[0]?.deleted ?? 0;
    },
  };
}

export type SnapshotRepository = ReturnType<typeof createSnapshotRepository>;
