import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import metricsModule, { type IMetricsPluginOptions } from 'fastify-metrics';
import type { DestinationStream, Logger } from 'pino';
import type { RuntimeConfig } from './config.js';
import type { PrismaClient } from './db/prisma.js';
import { onTransactionRetry } from './db/transaction-retry.js';
import { lazyChildLogger, loggerOptions } from './lib/logger.js';
import auth from './plugins/auth.js';
import errors, { clientErrorHandler, frameworkErrors } from './plugins/errors.js';
import idempotency from './plugins/idempotency.js';
import jobs, { type SyncOptions } from './plugins/jobs.js';
import openapi from './plugins/openapi.js';
import strictRequests, { partValidators } from './plugins/strict-requests.js';
import { operationHandlers } from './routes/index.js';
import { type ConfigEngineExecution, DEFAULT_ENGINE_IDLE_STOP_MS } from './config-engine/index.js';
import { createDeployMetrics } from './services/deploy-metrics.js';
import type { SshSettings } from './ssh/index.js';
import { createServices } from './services/index.js';
import type { UsageSettings } from './jobs/index.js';
import type { DnsResolver } from './dns/index.js';
import type { VerificationSettings } from './services/verification-rules.js';
import type { TokenRateLimit } from './lib/token-rate-limit.js';

export interface AppDeps {
  config: Pick<RuntimeConfig, 'jwtSecret' | 'masterKey' | 'tokenTtlSeconds' | 'logLevel'>;
  prisma: PrismaClient;
  /** Where the config engine runs: `relayplane serve` and the tests give it a worker thread of its own. */
  configEngine: ConfigEngineExecution;
  /** Where logs go; tests capture them here. */
  logStream?: DestinationStream;
  now?: () => Date;
  /** How nodes are reached: the private key file (read at use), timeouts, parallelism, retries. */
  ssh?: Partial<SshSettings>;
  /** Usage collection settings (final delay, read sizes). */
  usage?: Partial<UsageSettings>;
  /** DNS servers for domain verification and node checks (undefined: the system's resolvers). */
  dnsServers?: string[] | undefined;
  /** The CA file the nodes trust (RELAYPLANE_TLS_CA_FILE): credential tests judge certificates with it; undefined: the system store. */
  tlsCaFile?: string | undefined;
  /** How long stored config bundles are kept (default 30 days). */
  configBundleRetentionSeconds?: number;
  /** Replaces the resolver built from dnsServers. */
  dnsResolver?: DnsResolver;
  /** Domain verification timing (pending timeout, grace period, re-check interval). */
  verification?: Partial<VerificationSettings>;
  /** How long each process trusts an API key's status, scopes and tenant (default 5 s; revocation through this process: at once). */
  keyStatusCacheMs?: number;
  /** Limits of POST /v1/auth/token per client address and per key id (defaults: lib/token-rate-limit.ts). */
  tokenRateLimit?: Partial<TokenRateLimit>;
  /** Which X-Forwarded-For entries give the client's address (Fastify's trustProxy, proxy addresses or CIDR ranges); absent: the socket's peer. */
  trustProxy?: string[] | undefined;
  /**
   * Starts the sync worker with the app and stops it on close. Absent: no worker (tests ask for
   * one explicitly; `relayplane serve` always runs it).
   */
  sync?: SyncOptions;
}

export type { SyncOptions } from './plugins/jobs.js';

// fastify-metrics is CommonJS with an ES default export: unwrap it for Node's ESM loader.
const metrics = (metricsModule as unknown as { default: FastifyPluginAsync<Partial<IMetricsPluginOptions>> }).default;

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,100}$/;

declare module 'fastify' {
  interface FastifyInstance {
    services: ReturnType<typeof createServices>;
  }
}

/** The engine's execution as given; the leader compiles at least every reconcile: its engine thread must never idle out. */
function engineExecution(deps: AppDeps): ConfigEngineExecution {
  const given = deps.configEngine;
  if (given.execution === 'in-process' || given.idleStopMs !== undefined || deps.sync === undefined) return given;
  return { ...given, idleStopMs: Math.max(DEFAULT_ENGINE_IDLE_STOP_MS, 2 * deps.sync.reconcileIntervalMs) };
}

/** Builds the HTTP application; opens nothing itself (the caller owns the Prisma client). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerOptions(deps.config.logLevel, deps.logStream),
    childLoggerFactory: (logger, bindings, options) => lazyChildLogger(logger as Logger, bindings, options),
    // A caller-supplied X-Request-Id is kept (so a panel can correlate), if it is a sane token.
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    },
    ajv: { customOptions: { removeAdditional: false, allErrors: true } },
    // Query strings, path parameters and headers are coerced to their schema types; bodies never.
    schemaController: { compilersFactory: { buildValidator: partValidators() } },
    bodyLimit: 1024 * 1024,
    // Registering the spec's routes compiles every schema: over Fastify's default 10 s on a loaded
    // 2-core machine (seen at a load average of 17). A bound against a hung plugin, not a speed test.
    pluginTimeout: 120_000,
    ...(deps.trustProxy !== undefined ? { trustProxy: deps.trustProxy } : {}),
    frameworkErrors,
    clientErrorHandler,
  });

  await app.register(errors);
  await app.register(strictRequests);
  await app.register(metrics, {
    endpoint: '/metrics',
    clearRegisterOnInit: true,
    // Histograms only: prom-client summaries compute quantiles on every observation (costly per
    // request), and Prometheus derives quantiles from histogram buckets anyway.
    routeMetrics: { enabled: { histogram: true, summary: false }, registeredRoutesOnly: true },
  });
  await app.register(auth, {
    secret: deps.config.jwtSecret,
    keyGrant: (keyId) => app.services.apiKeys.currentGrant(keyId),
    keyStatusCacheMs: deps.keyStatusCacheMs,
    tokenRateLimit: deps.tokenRateLimit,
  });

  const deployMetrics = createDeployMetrics();
  deployMetrics.declare();
  const services = createServices({
    prisma: deps.prisma,
    tokenTtlSeconds: deps.config.tokenTtlSeconds,
    masterKey: deps.config.masterKey,
    signToken: (claims, expiresIn) => app.signToken(claims, expiresIn),
    now: deps.now,
    ...(deps.ssh !== undefined ? { ssh: deps.ssh } : {}),
    ...(deps.dnsServers !== undefined ? { dnsServers: deps.dnsServers } : {}),
    ...(deps.tlsCaFile !== undefined ? { tlsCaFile: deps.tlsCaFile } : {}),
    ...(deps.configBundleRetentionSeconds !== undefined
      ? { configBundleRetentionSeconds: deps.configBundleRetentionSeconds }
      : {}),
    ...(deps.dnsResolver !== undefined ? { dnsResolver: deps.dnsResolver } : {}),
    ...(deps.verification !== undefined ? { verification: deps.verification } : {}),
    configEngine: engineExecution(deps),
    metrics: deployMetrics,
    log: app.log,
  });
  app.decorate('services', services);

  // The sync worker and its jobs: closed before the config engine below (its last run may still compile).
  await app.register(jobs, {
    prisma: deps.prisma,
    services,
    ssh: deps.ssh,
    usage: deps.usage,
    metrics: deployMetrics,
    now: deps.now,
    sync: deps.sync,
  });
  const dbLog = app.log.child({ component: 'database' });
  const stopRetryLog = onTransactionRetry(deps.prisma, (retry) =>
    dbLog.warn(retry, 'transaction retried after contention'),
  );
  app.addHook('onClose', async () => stopRetryLog());
  // After the jobs' hook (Fastify runs onClose hooks in the order added): the sync worker's last run may still compile.
  app.addHook('onClose', async () => services.config.close());

  await app.register(idempotency, { records: services.idempotency, masterKey: deps.config.masterKey });
  await app.register(openapi, { handlers: operationHandlers(services) });
  return app;
}
