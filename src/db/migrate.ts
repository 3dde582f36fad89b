/**
 * Applies prisma/migrations offline with Prisma's WebAssembly schema engine
 * (`@prisma/schema-engine-wasm`) driven through the node-postgres driver adapter. It keeps the
 * standard `_prisma_migrations` bookkeeping, so it stays interchangeable with `prisma migrate deploy`.
 */
import type { Dirent } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PrismaPg } from '@prisma/adapter-pg';
import {
  bindMigrationAwareSqlAdapterFactory,
  type SqlDriverAdapter,
  type SqlMigrationAwareDriverAdapterFactory,
} from '@prisma/driver-adapter-utils';
import type { MigrationList, SchemaEngine, SchemaFilter } from '@prisma/schema-engine-wasm';
import pg from 'pg';

/** Root of this package, whether running from src/ (tsx) or dist/ (compiled): both sit two levels down. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEFAULT_MIGRATIONS_DIR = path.join(PACKAGE_ROOT, 'prisma', 'migrations');

const MIGRATION_FILE = 'migration.sql';
const LOCKFILE = 'migration_lock.toml';
export const NO_FILTER: SchemaFilter = { externalTables: [], externalEnums: [] };

export interface MigrateLogger {
  info(obj: object, msg?: string): void;
}

export interface MigrateOptions {
  /** PostgreSQL URL; `?schema=name` selects the PostgreSQL schema, as with Prisma's own engines. */
  databaseUrl: string;
  /** Defaults to prisma/migrations of this package. */
  migrationsDir?: string;
  logger?: MigrateLogger;
}

/** Applies every pending migration; returns the names newly applied (empty when up to date). */
export async function applyMigrations(opts: MigrateOptions): Promise<{ applied: string[] }> {
  const migrationsDir = opts.migrationsDir ?? DEFAULT_MIGRATIONS_DIR;
  const migrationsList = await readMigrationsList(migrationsDir);
  const target = parseDatabaseUrl(opts.databaseUrl);
  await ensureSchemaExists(target);
  const applied = await withSchemaEngine({ databaseUrl: opts.databaseUrl }, async (engine) => {
    const output = await engine.applyMigrations({ migrationsList, filters: NO_FILTER });
    return output.appliedMigrationNames;
  });
  for (const migration of applied) opts.logger?.info({ migration }, 'migration applied');
  return { applied };
}

/**
 * Which migrations of the directory are applied in the database, read straight from
 * `_prisma_migrations` (a missing table means nothing is applied). Failed or rolled-back
 * migrations count as pending.
 */
export async function migrationStatus(
  opts: Pick<MigrateOptions, 'databaseUrl' | 'migrationsDir'>,
): Promise<{ pending: string[]; applied: string[] }> {
  const local = await listMigrationNames(opts.migrationsDir ?? DEFAULT_MIGRATIONS_DIR);
  const target = parseDatabaseUrl(opts.databaseUrl);
  const client = new pg.Client(target.pgConfig);
  let applied: string[];
  try {
    await client.connect();
    const table = `${quoteIdent(target.schema)}._prisma_migrations`;
    const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table]);
    if (exists.rows[0]?.t == null) {
      applied = [];
    } else {
      const rows = await client.query<{ migration_name: string }>(
        `SELECT DISTINCT migration_name FROM ${table}
          WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY migration_name`,
      );
      applied = rows.rows.map((row) => row.migration_name);
    }
  } catch (error) {
    throw new Error(`Cannot read migration status: ${oneLine(errorMessage(error))}`);
  } finally {
    await client.end().catch(() => {});
  }
  const done = new Set(applied);
  return { pending: local.filter((name) => !done.has(name)), applied };
}

// ---------------------------------------------------------------------------------------------
// Building blocks, shared with scripts/migration-new.ts.

/** Migration directory names, sorted the way Prisma applies them. A missing directory has none. */
export async function listMigrationNames(migrationsDir: string): Promise<string[]> {
  return (await readMigrationsList(migrationsDir)).migrationDirectories.map((d) => d.path);
}

/** The migrations directory loaded from disk, in the shape the schema engine expects (as the prisma CLI builds it). */
export async function readMigrationsList(migrationsDir: string, shadowDbInitScript = ''): Promise<MigrationList> {
  const baseDir = path.resolve(migrationsDir);
  const lockContent = await readFile(path.join(baseDir, LOCKFILE), 'utf8').catch(() => null);
  let entries: Dirent[];
  try {
    entries = await readdir(baseDir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    entries = [];
  }
  const migrationDirectories: MigrationList['migrationDirectories'] = [];
  for (const entry of entries.filter((e) => e.isDirectory())) {
    const content = await readFile(path.join(baseDir, entry.name, MIGRATION_FILE), 'utf8').then(
      (value) => ({ tag: 'ok' as const, value }),
      (error: Error) => ({ tag: 'error' as const, value: error.message }),
    );
    migrationDirectories.push({ path: entry.name, migrationFile: { path: MIGRATION_FILE, content } });
  }
  migrationDirectories.sort((a, b) => a.path.localeCompare(b.path));
  return { baseDir, lockfile: { path: LOCKFILE, content: lockContent }, migrationDirectories, shadowDbInitScript };
}

export interface ParsedDatabaseUrl {
  /** node-postgres configuration, with `search_path` set to the schema. */
  pgConfig: pg.ClientConfig & pg.PoolConfig;
  /** The PostgreSQL schema (`public` unless `?schema=` says otherwise). */
  schema: string;
}

/** Splits Prisma's `?schema=` parameter off a PostgreSQL URL and turns it into a search_path. */
export function parseDatabaseUrl(databaseUrl: string): ParsedDatabaseUrl {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    throw new Error('Invalid database URL: expected postgresql://user@host:port/database');
  }
  if (url.protocol !== 'postgresql:' && url.protocol !== 'postgres:') {
    throw new Error(`Invalid database URL: unsupported protocol ${url.protocol} (expected postgresql:)`);
  }
  const schema = url.searchParams.get('schema') || 'public';
  const options = url.searchParams.get('options');
  url.searchParams.delete('schema');
  url.searchParams.delete('options');
  // Prisma-only parameters node-postgres does not know about.
  for (const name of ['connection_limit', 'pool_timeout', 'pgbouncer', 'statement_cache_size', 'socket_timeout']) {
    url.searchParams.delete(name);
  }
  const searchPath = `-c search_path=${quoteIdent(schema).replace(/[\\ ]/g, (c) => `\\${c}`)}`;
  return {
    pgConfig: { connectionString: url.toString(), options: options ? `${options} ${searchPath}` : searchPath },
    schema,
  };
}

/**
 * Runs `work` with a schema engine connected to `databaseUrl` (and to `shadowDatabaseUrl` whenever
 * the engine asks for a shadow database), then frees the engine and every pool it opened.
 */
export async function withSchemaEngine<T>(
  opts: { databaseUrl: string; shadowDatabaseUrl?: string; datamodels?: [string, string][] },
  work: (engine: SchemaEngine) => Promise<T>,
): Promise<T> {
  const SchemaEngineClass = await loadSchemaEngine();
  const main = parseDatabaseUrl(opts.databaseUrl);
  const shadow = opts.shadowDatabaseUrl === undefined ? undefined : parseDatabaseUrl(opts.shadowDatabaseUrl);
  const opened: SqlDriverAdapter[] = [];
  let lastScriptError: unknown;
  const open = async (target: ParsedDatabaseUrl): Promise<SqlDriverAdapter> => {
    const adapter = await new PrismaPg(target.pgConfig, { schema: target.schema }).connect();
    sendScriptsWhole(adapter, (error) => (lastScriptError = error));
    readCatalogTypesAsText(adapter);
    opened.push(adapter);
    return adapter;
  };
  const factory: SqlMigrationAwareDriverAdapterFactory = {
    provider: 'postgres',
    adapterName: '@prisma/adapter-pg',
    connect: () => open(main),
    connectToShadowDb: () => {
      if (shadow === undefined) throw new Error('this operation needs a shadow database and none was configured');
      return open(shadow);
    },
  };
  const bound = bindMigrationAwareSqlAdapterFactory(factory);
  let engine: SchemaEngine | undefined;
  try {
    engine = await SchemaEngineClass.new({ datamodels: opts.datamodels }, () => {}, bound);
    return await work(engine);
  } catch (error) {
    throw new Error(describeEngineError(error, bound.errorRegistry, lastScriptError));
  } finally {
    try {
      engine?.free();
    } catch {
      // already freed
    }
    await Promise.all(opened.map((adapter) => disposeOnce(adapter)));
  }
}

/** Turns whatever the engine threw into one readable line. */
function describeEngineError(
  error: unknown,
  registry: { consumeError(id: number): { error: unknown } | undefined },
  lastScriptError: unknown,
): string {
  const e = error as { code?: unknown; cause?: unknown; id?: unknown } | undefined;
  // A JavaScript error raised inside our adapter, forwarded by id.
  const id = (e?.cause as { id?: unknown } | undefined)?.id ?? e?.id;
  if (typeof id === 'number') {
    const original = registry.consumeError(id)?.error;
    if (original !== undefined) return oneLine(errorMessage(original));
  }
  if (error instanceof wasmApi.RuntimeError) {
    return oneLine(`Schema engine panicked: ${panicRegistry().message || error.message}`);
  }
  const full = errorMessage(error);
  // Drop the engine's span trace ("   0: sql_schema_connector::... with ... at ...").
  const lines: string[] = [];
  for (const line of full.split('\n')) {
    if (/^\s*\d+: /.test(line)) break;
    lines.push(line);
  }
  let message = oneLine(lines.join('\n')).replace(/^external connector error\s*/i, '');
  const migration = /migration_name="([^"]+)"/.exec(full)?.[1];
  if (migration !== undefined) {
    const dbError = lastScriptError as { message?: unknown; code?: unknown } | undefined;
    if (typeof dbError?.message === 'string') {
      message = oneLine(dbError.message) + (typeof dbError.code === 'string' ? ` (SQLSTATE ${dbError.code})` : '');
    }
    return `Migration ${migration} failed: ${message}`;
  }
  return typeof e?.code === 'string' && !message.startsWith(e.code) ? `${e.code}: ${message}` : message;
}

// ---------------------------------------------------------------------------------------------
// Internals.

const disposed = new WeakSet<SqlDriverAdapter>();
async function disposeOnce(adapter: SqlDriverAdapter): Promise<void> {
  if (disposed.has(adapter)) return;
  disposed.add(adapter);
  await adapter.dispose().catch(() => {});
}

/**
 * @prisma/adapter-pg's executeScript splits scripts on `;` and runs the pieces on whichever pooled
 * connection is free, which breaks dollar-quoted bodies and session settings. Send each script as
 * one simple-protocol query instead, like Prisma's native engine: PostgreSQL then runs it in one
 * implicit transaction.
 */
function sendScriptsWhole(adapter: SqlDriverAdapter, onScriptError: (error: unknown) => void): void {
  const pgAdapter = adapter as SqlDriverAdapter & { underlyingDriver(): pg.Pool; onError(error: unknown): never };
  pgAdapter.executeScript = async (script: string) => {
    try {
      await pgAdapter.underlyingDriver().query(script);
    } catch (error) {
      onScriptError(error);
      pgAdapter.onError(error);
    }
  };
}

/** Built-in catalog types @prisma/adapter-pg refuses to map, with the type their text form stands for. */
const CATALOG_TYPES_AS_TEXT: Record<number, number> = {
  18: 25, // "char" (pg_class.relkind, pg_constraint.contype, ...)
  22: 25, // int2vector
  24: 25, // regproc
  28: 25, // xid
  30: 25, // oidvector
  194: 25, // pg_node_tree
  1033: 25, // aclitem
  2205: 25, // regclass
  2206: 25, // regtype
  3220: 25, // pg_lsn
  1003: 1009, // name[] -> text[]
};

/**
 * The schema engine describes a database through catalog queries returning `"char"` columns,
 * which @prisma/adapter-pg rejects ("Column type 'char' could not be deserialized"). The values
 * arrive as strings anyway, so report those columns as text.
 */
function readCatalogTypesAsText(adapter: SqlDriverAdapter): void {
  const pool = (adapter as SqlDriverAdapter & { underlyingDriver(): pg.Pool }).underlyingDriver();
  const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
  const retype = (result: unknown) => {
    for (const r of Array.isArray(result) ? result : [result]) {
      for (const field of (r as pg.QueryResult | undefined)?.fields ?? []) {
        const replacement = CATALOG_TYPES_AS_TEXT[field.dataTypeID];
        if (replacement !== undefined) field.dataTypeID = replacement;
      }
    }
    return result;
  };
  (pool as { query: unknown }).query = (...args: unknown[]) => {
    if (typeof args[args.length - 1] === 'function') return query(...args); // callback style: untouched
    return query(...args).then(retype);
  };
}

/** Creates the target schema when it is missing (Prisma's engines do the same). */
async function ensureSchemaExists(target: ParsedDatabaseUrl): Promise<void> {
  const client = new pg.Client(target.pgConfig);
  try {
    await client.connect();
    const found = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [target.schema]);
    if (found.rowCount === 0) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(target.schema)}`);
  } catch (error) {
    throw new Error(`Cannot prepare the database for migrations: ${oneLine(errorMessage(error))}`);
  } finally {
    await client.end().catch(() => {});
  }
}

type SchemaEngineStatic = typeof SchemaEngine;

/** The bits of the WebAssembly global used here (the project's `lib` has no DOM typings). */
const wasmApi = (
  globalThis as unknown as {
    WebAssembly: {
      compile(bytes: Uint8Array): Promise<object>;
      instantiate(
        module: object,
        imports: Record<string, Record<string, unknown>>,
      ): Promise<{ exports: Record<string, unknown> }>;
      RuntimeError: new (message?: string) => Error;
    };
  }
).WebAssembly;
let engineClass: Promise<SchemaEngineStatic> | undefined;

/**
 * Instantiates the engine's WebAssembly module once per process (wasm-bindgen keeps global state;
 * loading it twice crashes), the way the prisma CLI's wasmSchemaEngineLoader does. The package's
 * own entry point imports the .wasm file as an ES module, which Node does not support, hence the
 * manual instantiation through `schema_engine_bg`.
 */
function loadSchemaEngine(): Promise<SchemaEngineStatic> {
  engineClass ??= (async () => {
    panicRegistry();
    const runtime = await import('@prisma/schema-engine-wasm/schema_engine_bg');
    const require = createRequire(import.meta.url);
    const wasmPath = path.join(
      path.dirname(require.resolve('@prisma/schema-engine-wasm/schema_engine_bg')),
      'schema_engine_bg.wasm',
    );
    const imports: Record<string, unknown> = { ...runtime };
    for (const [name, fn] of Object.entries(runtime)) {
      // The engine arms 10 s timers it never clears (e.g. around its advisory lock); left as is they
      // keep a finished CLI alive for 10 s. Open connections keep the process alive while it works.
      if (name.startsWith('__wbg_setTimeout_') && typeof fn === 'function') {
        imports[name] = (...args: unknown[]) => {
          const timer = (fn as (...a: unknown[]) => { unref?(): void } | undefined)(...args);
          timer?.unref?.();
          return timer;
        };
      }
    }
    const module = await wasmApi.compile(await readFile(wasmPath));
    const instance = await wasmApi.instantiate(module, { './schema_engine_bg.js': imports });
    runtime.__wbg_set_wasm(instance.exports);
    (instance.exports.__wbindgen_start as () => void)();
    return runtime.SchemaEngine;
  })().catch((error: unknown) => {
    engineClass = undefined;
    throw new Error(`Cannot load the Prisma schema engine (WebAssembly): ${oneLine(errorMessage(error))}`);
  });
  return engineClass;
}

/** The wasm engine reports panic messages to this global before trapping. */
function panicRegistry(): { message: string } {
  const g = globalThis as { PRISMA_WASM_PANIC_REGISTRY?: { message: string; set_message(m: string): void } };
  g.PRISMA_WASM_PANIC_REGISTRY ??= {
    message: '',
    set_message(message: string) {
      this.message = message;
    },
  };
  return g.PRISMA_WASM_PANIC_REGISTRY;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  return String(error);
}

export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
