import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MIGRATIONS_DIR, applyMigrations, migrationStatus } from '../../src/db/migrate.js';
import { PrismaClient } from '../../src/generated/prisma/client.js';

const SERVER_URL = process.env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/postgres';

interface MigrationRow {
  id: string;
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
  applied_steps_count: number;
}

function urlFor(database: string, schema?: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${database}`;
  url.search = '';
  if (schema !== undefined) url.searchParams.set('schema', schema);
  return url.toString();
}

async function withClient<T>(connectionString: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function localMigrations(dir = DEFAULT_MIGRATIONS_DIR): Promise<{ name: string; sql: string }[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  return Promise.all(
    names.map(async (name) => ({ name, sql: await readFile(path.join(dir, name, 'migration.sql'), 'utf8') })),
  );
}

async function migrationRows(database: string, schema = 'public'): Promise<MigrationRow[]> {
  return withClient(urlFor(database), async (client) => {
    const result = await client.query<MigrationRow>(
      `SELECT id, migration_name, checksum, finished_at, rolled_back_at, applied_steps_count
         FROM "${schema}"._prisma_migrations ORDER BY migration_name`,
    );
    return result.rows;
  });
}

async function tablesIn(database: string, schema: string): Promise<string[]> {
  return withClient(urlFor(database), async (client) => {
    const result = await client.query<{ tablename: string }>(
      'SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename',
      [schema],
    );
    return result.rows.map((r) => r.tablename);
  });
}

/** Other sessions on `database` (the migrator must have closed all of its own). */
async function otherSessions(database: string): Promise<number> {
  return withClient(urlFor(database), async (client) => {
    const deadline = Date.now() + 3000;
    for (;;) {
      const result = await client.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [database],
      );
      const n = result.rows[0]!.n;
      if (n === 0 || Date.now() > deadline) return n;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('applyMigrations / migrationStatus', () => {
  const admin = new pg.Client({ connectionString: SERVER_URL });
  const database = `rp_mig_${process.pid}_${randomBytes(4).toString('hex')}`;
  let tmpDir: string | undefined;

  beforeAll(async () => {
    await admin.connect();
    await admin.query(`CREATE DATABASE "${database}"`);
  });

  afterAll(async () => {
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.end();
    if (tmpDir !== undefined) await rm(tmpDir, { recursive: true, force: true });
  });

  it('applies every migration once, with Prisma-compatible bookkeeping', async () => {
    const local = await localMigrations();
    expect(local.length).toBeGreaterThan(0);
    const databaseUrl = urlFor(database);

    expect(await migrationStatus({ databaseUrl })).toEqual({ pending: local.map((m) => m.name), applied: [] });

    const logged: object[] = [];
    const first = await applyMigrations({ databaseUrl, logger: { info: (obj) => logged.push(obj) } });
    expect(first.applied).toEqual(local.map((m) => m.name));
    expect(logged.length).toBe(local.length);

    expect(await tablesIn(database, 'public')).toEqual(
      expect.arrayContaining(['_prisma_migrations', 'api_keys', 'audit_events']),
    );
    const rows = await migrationRows(database);
    expect(rows.map((r) => r.migration_name)).toEqual(local.map((m) => m.name));
    for (const [i, row] of rows.entries()) {
      expect(row.finished_at).toBeInstanceOf(Date);
      expect(row.rolled_back_at).toBeNull();
      expect(row.checksum).toBe(sha256(local[i]!.sql));
      expect(row.applied_steps_count).toBe(1);
    }
    expect(await otherSessions(database)).toBe(0);

    const second = await applyMigrations({ databaseUrl });
    expect(second.applied).toEqual([]);
    expect(await migrationRows(database)).toEqual(rows);
    expect(await migrationStatus({ databaseUrl })).toEqual({ pending: [], applied: local.map((m) => m.name) });
    expect(await otherSessions(database)).toBe(0);
  });

  it('lets the generated Prisma client query the migrated tables', async () => {
    const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: urlFor(database) }) });
    try {
      expect(await prisma.apiKey.count()).toBe(0);
      expect(await prisma.auditEvent.count()).toBe(0);
    } finally {
      await prisma.$disconnect();
    }
  });

  it('honours ?schema= like Prisma, creating the schema when missing', async () => {
    const schema = 'rp_mig_tenant_schema';
    const databaseUrl = urlFor(database, schema);
    const names = (await localMigrations()).map((m) => m.name);

    expect(await migrationStatus({ databaseUrl })).toEqual({ pending: names, applied: [] });
    expect((await applyMigrations({ databaseUrl })).applied).toEqual(names);
    expect(await tablesIn(database, schema)).toEqual(
      expect.arrayContaining(['_prisma_migrations', 'api_keys', 'audit_events']),
    );
    expect((await migrationRows(database, schema)).length).toBe(names.length);
    expect((await applyMigrations({ databaseUrl })).applied).toEqual([]);
    expect(await migrationStatus({ databaseUrl })).toEqual({ pending: [], applied: names });

    const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: urlFor(database) }, { schema }) });
    try {
      expect(await prisma.apiKey.count()).toBe(0);
    } finally {
      await prisma.$disconnect();
    }
  });

  it('runs each script whole and reports a failing migration on one line', async () => {
    tmpDir = await mkdtemp(path.join(os.tmpdir(), 'rp-mig-test-'));
    const write = async (name: string, sql: string) => {
      await mkdir(path.join(tmpDir!, name), { recursive: true });
      await writeFile(path.join(tmpDir!, name, 'migration.sql'), sql);
    };
    await writeFile(path.join(tmpDir, 'migration_lock.toml'), 'provider = "postgresql"\n');
    // Semicolons inside a dollar-quoted body: split naively, this script would break.
    await write(
      '20000101000000_function',
      `CREATE TABLE "things" ("id" INTEGER NOT NULL);
CREATE FUNCTION "answer"() RETURNS integer AS $$ BEGIN RETURN 42; END; $$ LANGUAGE plpgsql;
INSERT INTO "things" VALUES ("answer"());
`,
    );
    await write('20000102000000_broken', 'CREATE TABLE "half" ("id" INTEGER);\nSELECT * FROM "no_such_table";\n');
    const databaseUrl = urlFor(database, 'rp_mig_failing');

    const error = await applyMigrations({ databaseUrl, migrationsDir: tmpDir }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error!.message).toContain('20000102000000_broken');
    expect(error!.message).toContain('no_such_table');
    expect(error!.message).not.toContain('\n');

    expect(await tablesIn(database, 'rp_mig_failing')).toEqual(['_prisma_migrations', 'things']); // "half" rolled back
    expect(await migrationStatus({ databaseUrl, migrationsDir: tmpDir })).toEqual({
      pending: ['20000102000000_broken'],
      applied: ['20000101000000_function'],
    });
    const value = await withClient(urlFor(database), (c) => c.query('SELECT "id" FROM rp_mig_failing."things"'));
    expect(value.rows).toEqual([{ id: 42 }]);
    expect(await otherSessions(database)).toBe(0);
  });

  it('fails with a clear message when the server is unreachable', async () => {
    await expect(applyMigrations({ databaseUrl: 'postgresql://postgres@127.0.0.1:1/nowhere' })).rejects.toThrow(
      /ECONNREFUSED/,
    );
    await expect(migrationStatus({ databaseUrl: 'postgresql://postgres@127.0.0.1:1/nowhere' })).rejects.toThrow(
      /ECONNREFUSED/,
    );
  });
});
