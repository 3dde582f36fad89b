/**
 * prisma/schema.prisma and prisma/migrations must describe the same database: the diff
 * `npm run migration:new` would write has to be empty. Hand-written parts Prisma does not model
 * (functions, triggers, seed rows) are outside the diff.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import {
  DEFAULT_MIGRATIONS_DIR,
  NO_FILTER,
  PACKAGE_ROOT,
  readMigrationsList,
  withSchemaEngine,
} from '../../src/db/migrate.js';
import { testServerUrl } from '../helpers/database.js';

/**
 * Prisma's WebAssembly schema engine panics (a WebAssembly "unreachable" trap, then no answer) in
 * the migrations-to-datamodel diff against PostgreSQL 18, the embedded default's version: it
 * replays the migrations into a shadow database and introspects it. Its diff from nothing to the
 * datamodel only writes SQL (no database read), so on every version the test also builds one
 * database from that SQL and one from the migrations, and compares their catalogs.
 */
async function serverVersion(): Promise<number> {
  const client = new pg.Client({ connectionString: testServerUrl() });
  await client.connect();
  try {
    return Number(
      (await client.query<{ server_version_num: string }>('SHOW server_version_num')).rows[0]?.server_version_num,
    );
  } finally {
    await client.end();
  }
}
const version = await serverVersion();
const engineDiffUnsupported =
  version >= 180000 ? `PostgreSQL ${Math.floor(version / 10000)}: Prisma's schema engine fails on it` : undefined;
if (engineDiffUnsupported !== undefined)
  console.warn(
    `schema drift: the engine's migrations diff is skipped (${engineDiffUnsupported}); the catalog comparison runs`,
  );

const schemaPath = path.join(PACKAGE_ROOT, 'prisma', 'schema.prisma');

async function withDatabase<T>(work: (url: string) => Promise<T>, template?: string): Promise<T> {
  const admin = new pg.Client({ connectionString: testServerUrl() });
  const name = `rp_drift_${randomBytes(6).toString('hex')}`;
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}${template === undefined ? '' : ` TEMPLATE ${template}`}`);
  try {
    const url = new URL(testServerUrl());
    url.pathname = `/${name}`;
    return await work(url.toString());
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

/**
 * What Prisma models of a database's public schema, one sorted line each: tables, columns (type,
 * nullability, default), enums (their values sorted: Prisma ignores their order), indexes and primary, unique and foreign keys. Left out: what
 * migrations add by hand and Prisma does not model (functions, triggers, check constraints) and
 * Prisma's own _prisma_migrations.
 */
async function catalog(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const queries = [
      `SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
              || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
              || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS line
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> '_prisma_migrations'`,
      `SELECT 'enum ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumlabel) AS line
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' GROUP BY t.typname`,
      `SELECT 'index ' || indexdef AS line FROM pg_indexes WHERE schemaname = 'public' AND tablename <> '_prisma_migrations'`,
      `SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid) AS line
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND k.contype IN ('p', 'u', 'f') AND c.relname <> '_prisma_migrations'`,
    ];
    const lines: string[] = [];
    for (const q of queries) lines.push(...(await client.query<{ line: string }>(q)).rows.map((r) => r.line));
    return lines.sort();
  } finally {
    await client.end();
  }
}

describe('schema.prisma and the migrations', () => {
  it('give the same tables, columns, enums, indexes and keys (catalogs compared; any PostgreSQL)', async () => {
    const schema = await readFile(schemaPath, 'utf8');
    const fromMigrations = await withDatabase(catalog, inject('templateDatabase'));
    const fromSchema = await withDatabase(async (url) => {
      const { stdout } = await withSchemaEngine({ databaseUrl: url, datamodels: [[schemaPath, schema]] }, (engine) =>
        engine.diff({
          from: { tag: 'empty' },
          to: { tag: 'schemaDatamodel', files: [{ path: schemaPath, content: schema }] },
          script: true,
          exitCode: false,
          filters: NO_FILTER,
        }),
      );
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(stdout ?? '');
      } finally {
        await client.end();
      }
      return catalog(url);
    });
    expect(fromSchema.length).toBeGreaterThan(50);
    expect(fromMigrations).toEqual(fromSchema);
  });

  it.skipIf(engineDiffUnsupported !== undefined)(
    `have no difference by the schema engine's own diff${engineDiffUnsupported === undefined ? '' : ` (SKIPPED: ${engineDiffUnsupported})`}`,
    async () => {
      const schema = await readFile(schemaPath, 'utf8');
      const migrationsList = await readMigrationsList(DEFAULT_MIGRATIONS_DIR);
      await withDatabase(async (url) => {
        const result = await withSchemaEngine(
          { databaseUrl: url, shadowDatabaseUrl: url, datamodels: [[schemaPath, schema]] },
          (engine) =>
            engine.diff({
              from: { tag: 'migrations', ...migrationsList },
              to: { tag: 'schemaDatamodel', files: [{ path: schemaPath, content: schema }] },
              script: true,
              exitCode: true,
              filters: NO_FILTER,
            }),
        );
        // 0: no difference (2 would mean one; the message is then the migration that is missing).
        expect(result.exitCode, result.stdout ?? undefined).toBe(0);
      });
    },
  );
});
