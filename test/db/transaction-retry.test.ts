import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseProblem, isRetryableTransactionError } from '../../src/db/errors.js';
import { createPrismaClient, directPool, type PrismaClient } from '../../src/db/prisma.js';
import { onTransactionRetry, type TransactionRetry } from '../../src/db/transaction-retry.js';
import { ConflictError, ServiceUnavailableError, ValidationError } from '../../src/lib/errors.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => database?.drop());

/** Resolves with the first retry `client` reports. */
function nextRetry(client: PrismaClient): Promise<TransactionRetry> {
  return new Promise((resolve) => {
    const stop = onTransactionRetry(client, (retry) => {
      stop();
      resolve(retry);
    });
  });
}

async function caught(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error('expected a failure');
}

describe('interactive transactions under contention', () => {
  it('runs the loser of a real deadlock (40P01) again, and both commit', async () => {
    const prisma = createPrismaClient(database.url, { poolSize: 2 });
    try {
      const [a, b] = await Promise.all([
        prisma.tenant.create({ data: { name: 'A', slug: 'deadlock-a' } }),
        prisma.tenant.create({ data: { name: 'B', slug: 'deadlock-b' } }),
      ]);
      // Each transaction locks one row, waits until the other holds its row, then wants the other's.
      let arrived = 0;
      let bothHold!: () => void;
      const barrier = new Promise<void>((resolve) => (bothHold = resolve));
      const runs = { first: 0, second: 0 };
      const crossing = (name: 'first' | 'second', mine: string, theirs: string) =>
        prisma.$transaction(async (tx) => {
          runs[name] += 1;
          await tx.tenant.update({ where: { id: mine }, data: { name: `${name} ${runs[name]}` } });
          if (runs[name] === 1 && ++arrived === 2) bothHold();
          if (runs[name] === 1) await barrier;
          await tx.tenant.update({ where: { id: theirs }, data: { externalRef: `${name}-${runs[name]}` } });
        });
      const retried = nextRetry(prisma);
      await Promise.all([crossing('first', a.id, b.id), crossing('second', b.id, a.id)]);
      expect((await retried).reason).toBe('40P01');
      expect(runs.first + runs.second).toBe(3);
    } finally {
      await prisma.$disconnect();
    }
  });

  it('runs a transaction again when no connection came free within maxWait (nothing had run)', async () => {
    const prisma = createPrismaClient(database.url, { poolSize: 1, transactionMaxWaitMs: 100 });
    let release = () => {};
    try {
      const held = new Promise<void>((resolve) => (release = resolve));
      let started!: () => void;
      const holding = new Promise<void>((resolve) => (started = resolve));
      const holder = prisma.$transaction(
        async () => {
          started();
          await held;
        },
        { timeout: 60_000 },
      );
      await holding;
      let runs = 0;
      const retried = nextRetry(prisma);
      const waiter = prisma.$transaction(async (tx) => {
        runs += 1;
        return tx.tenant.count();
      });
      const first = await Promise.race([
        retried.then((retry) => retry.reason),
        waiter.then(
          () => 'ran',
          () => 'failed',
        ),
      ]);
      expect(first).toBe('P2028');
      release();
      await holder;
      expect(await waiter).toEqual(expect.any(Number));
      expect(runs).toBe(1);
    } finally {
      release();
      await prisma.$disconnect();
    }
  });
});

describe('database errors in the API’s terms', () => {
  let prisma: PrismaClient;
  beforeAll(() => {
    prisma = createPrismaClient(database.url, { poolSize: 2 });
  });
  afterAll(async () => prisma?.$disconnect());

  it('maps a unique violation to 409, through Prisma and straight from node-postgres', async () => {
    await prisma.tenant.create({ data: { name: 'U', slug: 'unique-one' } });
    const viaPrisma = await caught(() => prisma.tenant.create({ data: { name: 'U', slug: 'unique-one' } }));
    const viaPg = await caught(() =>
      directPool(prisma)!.query(
        `INSERT INTO tenants (id, name, slug, updated_at) VALUES (gen_random_uuid(), 'U', 'unique-one', now())`,
      ),
    );
    for (const error of [viaPrisma, viaPg]) {
      expect(databaseProblem(error)).toBeInstanceOf(ConflictError);
      expect(isRetryableTransactionError(error)).toBe(false);
    }
  });

  it('maps NUL in text (22021) and a malformed uuid (22P02) to 400', async () => {
    const nul = await caught(() => prisma.tenant.create({ data: { name: 'a\u0000b', slug: 'nul' } }));
    const uuid = await caught(() => prisma.tenant.findMany({ where: { id: { gt: 'not-a-uuid' } } }));
    const nulViaPg = await caught(() => directPool(prisma)!.query('SELECT $1::text', ['a\u0000b']));
    for (const error of [nul, uuid, nulViaPg]) expect(databaseProblem(error)).toBeInstanceOf(ValidationError);
  });

  it('maps serialization failures that outlast the retries to 503 with Retry-After', async () => {
    const error = await caught(() =>
      prisma.$transaction(async (tx) => {
        await tx.$executeRawUnsafe(`DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`);
      }),
    );
    const problem = databaseProblem(error);
    expect(problem).toBeInstanceOf(ServiceUnavailableError);
    expect((problem as ServiceUnavailableError).retryAfterSeconds).toBe(1);
  });

  it('leaves genuine server faults unmapped (500)', async () => {
    const error = await caught(() => prisma.$queryRawUnsafe('SELECT * FROM no_such_table'));
    expect(databaseProblem(error)).toBeUndefined();
  });
});
