import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import { createPrismaClient, type PrismaClient } from '../../src/db/prisma.js';

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** A fresh, migrated database of its own for one test file (a clone of the run's template). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = inject('serverUrl');
  const template = inject('templateDatabase');
  const name = `rp_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: async () => {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/**
 * For a test file that talks to its database through Prisma: a fresh database and a client on it
 * (a pool of two), made before the file's tests and gone after them.
 */
export function usePrismaDatabase(): { readonly database: TestDatabase; readonly prisma: PrismaClient } {
  let database: TestDatabase | undefined;
  let prisma: PrismaClient | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
    prisma = createPrismaClient(database.url, { poolSize: 2 });
  });
  afterAll(async () => {
    await prisma?.$disconnect();
    await database?.drop();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the test database is only there inside the tests');
    return value;
  };
  return {
    get database() {
      return ready(database);
    },
    get prisma() {
      return ready(prisma);
    },
  };
}

/** A server URL with no database chosen, for tests that create their own (e.g. migrate). */
export function testServerUrl(): string {
  return inject('serverUrl');
}
