import { mkdtemp, rm, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openEmbeddedDatabase, type EmbeddedDatabase } from '../src/db/embedded.js';
import { applyMigrations } from '../src/db/migrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A PostgreSQL server URL (database part ignored) the tests may create databases on. */
    serverUrl: string;
    /** A migrated database each test file clones. */
    templateDatabase: string;
  }
}

const quietLogger = { info() {}, debug() {} };

interface SharedDatabase {
  serverUrl: string;
  template: string;
  users: number;
  teardown(): Promise<void>;
}

/**
 * Each vitest project (unit, lab: vitest.config.ts) runs this setup in the same process; the
 * projects share one server and template (two schema engines migrating at once crash), and the
 * last project to finish tears it down.
 */
const shared = globalThis as { relayplaneTestDatabase?: Promise<SharedDatabase> };

/**
 * Tests use DATABASE_URL's server when set (CI: the machine's PostgreSQL), otherwise an embedded
 * PostgreSQL of their own. Migrations run once into a template; every test file clones it.
 */
export default async function setup(project: TestProject) {
  shared.relayplaneTestDatabase ??= openSharedDatabase();
  const db = await shared.relayplaneTestDatabase;
  db.users += 1;
  project.provide('serverUrl', db.serverUrl);
  project.provide('templateDatabase', db.template);
  return async () => {
    db.users -= 1;
    if (db.users > 0) return;
    shared.relayplaneTestDatabase = undefined;
    await db.teardown();
  };
}

async function openSharedDatabase(): Promise<SharedDatabase> {
  let embedded: EmbeddedDatabase | undefined;
  let embeddedDir: string | undefined;
  let serverUrl = process.env.DATABASE_URL;
  if (serverUrl === undefined || serverUrl === '') {
    embeddedDir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-test-pg-'));
    await chmod(embeddedDir, 0o711);
    embedded = await openEmbeddedDatabase(embeddedDir, quietLogger);
    serverUrl = embedded.url;
  }
  const template = `rp_tpl_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${template}`);
  const templateUrl = new URL(serverUrl);
  templateUrl.pathname = `/${template}`;
  await applyMigrations({ databaseUrl: templateUrl.toString() });
  return {
    serverUrl,
    template,
    users: 0,
    async teardown() {
      await admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
      await admin.end();
      await embedded?.stop();
      if (embeddedDir !== undefined) await rm(embeddedDir, { recursive: true, force: true });
    },
  };
}
