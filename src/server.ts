import closeWithGrace from 'close-with-grace';
import type { FastifyInstance } from 'fastify';
import { pino, type DestinationStream } from 'pino';
import { buildApp } from './app.js';
import type { Config } from './config.js';
import { openDatabase } from './db/database.js';
import { applyMigrations } from './db/migrate.js';
import { createPrismaClient } from './db/prisma.js';
import { loggerOptions } from './lib/logger.js';

export interface ServeOptions {
  migrate: boolean;
}

/**
 * On a terminal, logs are pino-pretty's lines (a dev dependency: installed by `npm ci`, absent
 * from the production image); anywhere else, and without it, JSON lines.
 */
async function terminalStream(): Promise<DestinationStream | undefined> {
  if (process.stdout.isTTY !== true) return undefined;
  try {
    const { default: pretty } = await import('pino-pretty');
    return pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' });
  } catch {
    return undefined;
  }
}

/** The one line a person starting Relayplane needs: where it is and, with no admin key yet, what to do next. */
async function readyLine(
  app: FastifyInstance,
  host: string,
  port: number,
): Promise<{ url: string; docs: string; next: string | null; line: string }> {
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = `http://${shown}:${port}`;
  const docs = `${url}/docs`;
  const keys = await app.services.apiKeys.listAll();
  const hasAdmin = keys.some((k) => k.status === 'active' && k.scopes.includes('admin'));
  const next = hasAdmin ? null : 'npx relayplane keys create --admin';
  const line = `Relayplane is ready on ${url} (API docs: ${docs})${next === null ? '' : `; next, create the first admin key: ${next}`}`;
  return { url, docs, next, line };
}

/** `relayplane serve`: open the database (embedded by default), migrate, listen, and close with grace. */
export async function serve(config: Config, options: ServeOptions) {
  const logStream = await terminalStream();
  const logger =
    logStream === undefined ? pino(loggerOptions(config.logLevel)) : pino(loggerOptions(config.logLevel), logStream);
  const database = await openDatabase(config, logger);
  const runtime = database.config;
  let prisma: ReturnType<typeof createPrismaClient> | undefined;
  try {
    if (options.migrate) {
      const { applied } = await applyMigrations({ databaseUrl: runtime.databaseUrl, logger });
      logger.info({ applied }, applied.length === 0 ? 'database schema is up to date' : 'migrations applied');
    }
    prisma = createPrismaClient(runtime.databaseUrl);
    const app = await buildApp({
      config: runtime,
      prisma,
      configEngine: { execution: 'worker-thread', databaseUrl: runtime.databaseUrl },
      ...(logStream !== undefined ? { logStream } : {}),
      ssh: {
        privateKeyPath: runtime.sshPrivateKeyPath,
        concurrency: runtime.deployConcurrency,
        idleMs: runtime.sshIdleSeconds * 1000,
        remotePath: runtime.nodePath,
      },
      usage: {
        finalDelaySeconds: runtime.usageFinalDelaySeconds,
        messageRetentionSeconds: runtime.usageMessageRetentionDays * 86_400,
      },
      dnsServers: runtime.dnsServers,
      tlsCaFile: runtime.tlsCaFile,
      tokenRateLimit: runtime.tokenRateLimit,
      trustProxy: runtime.trustProxy,
      configBundleRetentionSeconds: runtime.configBundleRetentionDays * 86_400,
      verification: {
        recheckIntervalSeconds: runtime.dnsCheckIntervalSeconds,
        pendingTimeoutSeconds: runtime.dnsPendingTimeoutSeconds,
        degradedGraceSeconds: runtime.dnsDegradedGraceSeconds,
        uncheckableLimitSeconds: runtime.dnsUncheckableLimitSeconds,
        verifyCooldownSeconds: runtime.dnsVerifyCooldownSeconds,
        dmarcReportAddress: runtime.dmarcReportAddress,
      },
      sync: {
        databaseUrl: runtime.databaseUrl,
        reconcileIntervalMs: runtime.syncIntervalSeconds * 1000,
        debounceMs: runtime.syncDebounceMs,
        usageIntervalMs: runtime.usageIntervalSeconds * 1000,
        // Looks for domains due a re-check (each is re-checked every RELAYPLANE_DNS_CHECK_INTERVAL_SECONDS).
        dnsIntervalMs: 60_000,
      },
    });
    closeWithGrace({ delay: 10_000, logger }, async ({ err, signal }) => {
      if (err !== undefined) logger.error({ err }, 'shutting down after an error');
      else logger.info({ signal }, 'shutting down');
      // The sync worker first: a Ctrl-C also reaches the embedded PostgreSQL (same process group),
      // and the worker must not take the database going away for a lost leadership.
      app.jobs.sync.stopping();
      await app.syncWorker?.stop();
      await app.close();
      await prisma?.$disconnect();
      await database.close();
    });
    await app.listen({ host: runtime.host, port: runtime.port });
    const ready = await readyLine(app, runtime.host, runtime.port);
    logger.info({ url: ready.url, docs: ready.docs, next: ready.next }, ready.line);
    return app;
  } catch (error) {
    await prisma?.$disconnect();
    await database.close();
    throw error;
  }
}
