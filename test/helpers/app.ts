import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApp, type SyncOptions } from '../../src/app.js';
import { createPrismaClient, type PrismaClient, type PrismaClientOptions } from '../../src/db/prisma.js';
import type { SshSettings } from '../../src/ssh/index.js';
import type { TokenRateLimit } from '../../src/lib/token-rate-limit.js';
import type { Scope } from '../../src/services/principal.js';
import type { UsageSettings } from '../../src/jobs/index.js';
import type { VerificationSettings } from '../../src/services/verification-rules.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { recordResponse } from './spec-responses.js';

export interface TestApp {
  app: FastifyInstance;
  prisma: PrismaClient;
  database: TestDatabase;
  masterKey: Buffer;
  jwtSecret: string;
  /** Every log line the app wrote, as raw text. */
  logs: string[];
  /** Calls `listener` with each log line written from now on; returns an unsubscribe. */
  onLog(listener: (line: string) => void): () => void;
  close(): Promise<void>;
}

export interface TestAppOptions {
  logLevel?: string;
  /** How nodes are reached (key file, timeouts, retries). */
  ssh?: Partial<SshSettings>;
  /** Runs the sync worker (off unless asked); databaseUrl defaults to the test database. */
  sync?: Partial<SyncOptions>;
  /** Usage collection settings (e.g. finalDelaySeconds: 0). */
  usage?: Partial<UsageSettings>;
  /** DNS servers for domain verification (tests: a dnsmasq on loopback). */
  dnsServers?: string[];
  /** RELAYPLANE_TLS_CA_FILE: the CA file credential tests judge relay certificates with. */
  tlsCaFile?: string;
  verification?: Partial<VerificationSettings>;
  /**
   * Limits of POST /v1/auth/token. Suites exchange many keys from one injected address, so the
   * helper raises both limits unless a test names its own.
   */
  tokenRateLimit?: Partial<TokenRateLimit>;
  /** How long the app trusts an API key's status, scopes and tenant (0: read on every request). */
  keyStatusCacheMs?: number;
  /** Proxies whose X-Forwarded-For is believed (Fastify's trustProxy). */
  trustProxy?: string[];
  /** Another app's database (and keys), for several "API processes" on one database; not dropped by close(). */
  shareWith?: TestApp;
  /** The app's Prisma client: pool size (default 4), transaction maxWait and retries. */
  database?: PrismaClientOptions;
}

/** Builds the real app on a fresh real database. */
export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const shared = options.shareWith;
  const database = shared?.database ?? (await createTestDatabase());
  const prisma = createPrismaClient(database.url, { poolSize: 4, ...options.database });
  const logs: string[] = [];
  const logListeners = new Set<(line: string) => void>();
  const logStream = new Writable({
    write(chunk, _encoding, done) {
      const line = String(chunk);
      logs.push(line);
      for (const listener of logListeners) listener(line);
      done();
    },
  });
  const masterKey = shared?.masterKey ?? randomBytes(32);
  const jwtSecret = shared?.jwtSecret ?? randomBytes(32).toString('hex');
  const app = await buildApp({
    config: { jwtSecret, masterKey, tokenTtlSeconds: 900, logLevel: (options.logLevel ?? 'warn') as 'warn' },
    prisma,
    configEngine: { execution: 'worker-thread', databaseUrl: database.url },
    logStream,
    ...(options.ssh !== undefined ? { ssh: options.ssh } : {}),
    ...(options.usage !== undefined ? { usage: options.usage } : {}),
    // Never the machine's resolvers: no DNS query may leave the machine. Unless a test names its
    // server, lookups go to a loopback port where nothing answers (a temporary failure).
    dnsServers: options.dnsServers ?? ['127.0.0.1:9'],
    ...(options.tlsCaFile !== undefined ? { tlsCaFile: options.tlsCaFile } : {}),
    // Tests drive checks explicitly and often: no on-demand cooldown unless a test asks for one.
    verification: { verifyCooldownSeconds: 0, ...options.verification },
    tokenRateLimit: { perAddress: 1_000_000, perKeyId: 1_000_000, ...options.tokenRateLimit },
    ...(options.trustProxy !== undefined ? { trustProxy: options.trustProxy } : {}),
    ...(options.keyStatusCacheMs !== undefined ? { keyStatusCacheMs: options.keyStatusCacheMs } : {}),
    ...(options.sync !== undefined
      ? {
          sync: {
            databaseUrl: database.url,
            reconcileIntervalMs: 60_000,
            debounceMs: 200,
            leaderPollMs: 500,
            ...options.sync,
          },
        }
      : {}),
  });
  // Every response any test receives is checked against openapi.yaml (see spec-responses.ts).
  app.addHook('onSend', async (request, reply, payload) => {
    // The docs UI's assets are outside the spec by design.
    const checked = request.method !== 'HEAD' && !request.url.startsWith('/docs');
    if (checked && (typeof payload === 'string' || payload == null || Buffer.isBuffer(payload))) {
      const contentType = reply.getHeader('content-type');
      recordResponse({
        method: request.method,
        route: request.routeOptions.url,
        url: request.url,
        status: reply.statusCode,
        contentType: contentType === undefined ? undefined : String(contentType),
        headers: reply.getHeaders(),
        body: payload == null ? '' : String(payload),
      });
    }
    return payload;
  });
  await app.ready();
  return {
    app,
    prisma,
    database,
    masterKey,
    jwtSecret,
    logs,
    onLog: (listener) => {
      logListeners.add(listener);
      return () => void logListeners.delete(listener);
    },
    close: async () => {
      await app.close();
      await prisma.$disconnect();
      if (shared === undefined) await database.drop();
    },
  };
}

/** Mints a key through the service (as the CLI does) and exchanges it over HTTP for a token. */
export async function tokenFor(app: FastifyInstance, scopes: Scope[], tenantId?: string) {
  const key = await app.services.apiKeys.create(null, { name: `test-${scopes.join('-')}`, scopes, tenantId });
  const response = await app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: key.key } });
  if (response.statusCode !== 200) throw new Error(`token exchange failed: ${response.body}`);
  const token = response.json<{ access_token: string }>().access_token;
  return { key, token, headers: { authorization: `Bearer ${token}` } };
}
