import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { buildApp } from './app.js';
import type { Config } from './config.js';
import { openDatabase } from './db/database.js';
import { applyMigrations } from './db/migrate.js';
import { createPrismaClient } from './db/prisma.js';
import { loggerOptions } from './lib/logger.js';

export interface ServeOptions {
  migrate: boolean;
}

/** `relayplane serve`: open the database (embedded by default), migrate, listen, and close with grace. */
export async function serve(config: Config, options: ServeOptions) {
  const logger = pino(loggerOptions(config.logLevel));
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
      ssh: { privateKeyPath: runtime.sshPrivateKeyPath, concurrency: runtime.deployConcurrency, idleMs: runtime.sshIdleSeconds * 1000 },
      usage: { finalDelaySeconds: runtime.usageFinalDelaySeconds, messageRetentionSeconds: runtime.usageMessageRetentionDays * 86_400 },
      dnsServers: runtime.dnsServers,
      tokenRateLimit: runtime.tokenRateLimit,
      trustProxy: runtime.trustProxy,
      configBundleRetentionSeconds: runtime.configBundleRetentionDays * 86_400,
      verification: {
        recheckIntervalSeconds: runtime.dnsCheckIntervalSeconds,
        pendingTimeoutSeconds: runtime.dnsPendingTimeoutSeconds,
        degradedGraceSeconds: runtime.dnsDegradedGraceSeconds,
        uncheckableLimitSeconds: runtime.dnsUncheckableLimitSeconds,
        verifyCooldownSeconds: runtime.dnsVerifyCooldownSeconds,
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
      await app.close();
      await prisma?.$disconnect();
      await database.close();
    });
    await app.listen({ host: runtime.host, port: runtime.port });
    return app;
  } catch (error) {
    await prisma?.$disconnect();
    await database.close();
    throw error;
  }
}
