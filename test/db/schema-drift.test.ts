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

describe('schema.prisma and the migrations', () => {
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
