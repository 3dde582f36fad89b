import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { DEFAULT_TRANSACTION_RETRY, retryTransactions, type TransactionRetryPolicy } from './transaction-retry.js';

export type { PrismaClient } from '../generated/prisma/client.js';
export { Prisma } from '../generated/prisma/client.js';
export { isUniqueViolation } from './errors.js';

/** Prisma's own default, stated: a burst queues for connections this long per attempt. */
const DEFAULT_TRANSACTION_MAX_WAIT_MS = 2_000;

/** The client every repository receives, or a transaction client inside `$transaction`. */
export type Db = Omit<PrismaClient, '$connect' | '$disconnect' | '$on' | '$transaction' | '$extends'>;

export interface PrismaClientOptions {
  poolSize?: number;
  /** How long a transaction may wait for a pooled connection before that attempt fails (Prisma's maxWait). */
  transactionMaxWaitMs?: number;
  transactionRetry?: Partial<TransactionRetryPolicy>;
}

/**
 * Builds a Prisma client over node-postgres. A `?schema=` parameter in the URL selects the
 * PostgreSQL schema, as with Prisma's own engines. Its interactive transactions are retried on
 * contention (see retryTransactions).
 */
export function createPrismaClient(databaseUrl: string, options: PrismaClientOptions = {}): PrismaClient {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema') ?? undefined;
  url.searchParams.delete('schema');
  // Our own pool, shared with the adapter (which ends it on $disconnect), so the few hottest reads
  // can skip Prisma's per-query runtime (see directPool).
  const pool = new pg.Pool({
    connectionString: url.toString(),
    max: options.poolSize ?? 10,
    ...(schema === undefined ? {} : { options: `-c search_path="${schema.replaceAll('"', '""')}"` }),
  });
  // An idle connection the server ended (a restart, a failover, a fast shutdown) is already out of
  // the pool, and the next query opens another. Prisma's adapter listens only once it connects: a
  // pool that has served direct reads alone would throw the event as an uncaught exception.
  pool.on('error', () => {});
  const adapter = new PrismaPg(pool, { ...(schema === undefined ? {} : { schema }), disposeExternalPool: true });
  const client = new PrismaClient({
    adapter,
    transactionOptions: { maxWait: options.transactionMaxWaitMs ?? DEFAULT_TRANSACTION_MAX_WAIT_MS },
  });
  retryTransactions(client, { ...DEFAULT_TRANSACTION_RETRY, ...options.transactionRetry });
  pools.set(client, pool);
  return client;
}

const pools = new WeakMap<object, pg.Pool>();

/**
 * The node-postgres pool behind a root client, for a read that must not pay Prisma's per-query
 * cost (≈ 100 µs, BENCHMARKS.md api-read). Undefined for a transaction client: reads inside a
 * transaction stay on its connection.
 */
export function directPool(db: Db): pg.Pool | undefined {
  return pools.get(db);
}
