/**
 * prisma/schema.prisma and prisma/migrations must describe the same database: the diff
 * `npm run migration:new` would write has to be empty. Hand-written parts Prisma does not model
 * (functions, triggers, seed rows) are outside the diff.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MIGRATIONS_DIR, NO_FILTER, PACKAGE_ROOT, readMigrationsList, withSchemaEngine } from '../../src/db/migrate.js';
import { testServerUrl } from '../helpers/database.js';

/**
 * Prisma's WebAssembly schema engine panics (a WebAssembly "unreachable" trap, then no answer) in
 * this diff against PostgreSQL 18, the embedded default's version; it works against the machine's
 * PostgreSQL 15, which CI uses.
 */
async function serverVersion(): Promise<number> {
  const client = new pg.Client({ connectionString: testServerUrl() });
  await client.connect();
  try {
    return Number((await client.query<{ server_version_num: string }>('SHOW server_version_num')).rows[0]?.server_version_num);
  } finally {
    await client.end();
  }
}
const version = await serverVersion();
const unsupported = version >= 180000 ? `PostgreSQL ${Math.floor(version / 10000)}: Prisma's schema engine fails on it` : undefined;

describe.skipIf(unsupported !== undefined)(`schema.prisma and the migrations${unsupported === undefined ? '' : ` (SKIPPED: ${unsupported})`}`, () => {
  it('have no difference', async () => {
    const schemaPath = path.join(PACKAGE_ROOT, 'prisma', 'schema.prisma');
    const schema = await readFile(schemaPath, 'utf8');
    const migrationsList = await readMigrationsList(DEFAULT_MIGRATIONS_DIR);
    const admin = new pg.Client({ connectionString: testServerUrl() });
    const shadow = `rp_shadow_${randomBytes(6).toString('hex')}`;
    await admin.connect();
    await admin.query(`CREATE DATABASE ${shadow}`);
    try {
      const url = new URL(testServerUrl());
      url.pathname = `/${shadow}`;
      const result = await withSchemaEngine(
        { databaseUrl: url.toString(), shadowDatabaseUrl: url.toString(), datamodels: [[schemaPath, schema]] },
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
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${shadow} WITH (FORCE)`);
      await admin.end();
    }
  });
});
