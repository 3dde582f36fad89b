import { isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_CONFIG_BUNDLE_RETENTION_DAYS, DEFAULT_USAGE_MESSAGE_RETENTION_DAYS } from './lib/retention.js';
import { DEFAULT_TOKEN_RATE_LIMIT, type TokenRateLimit } from './lib/token-rate-limit.js';
import { DEFAULT_REMOTE_PATH } from './ssh/remote-shell.js';

/**
 * Every environment variable Relayplane reads, validated once at start.
 * A bad value stops start-up with one line naming the variable (see ConfigError).
 */
/** `1.2.3.4`, `1.2.3.4:53`, `::1`, `[::1]:53`. */
function isDnsServer(value: string): boolean {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(value) ?? /^([^:]+):(\d{1,5})$/.exec(value);
  const host = m === null ? value : m[1]!;
  const port = m === null ? 53 : Number(m[2]);
  return isIP(host) !== 0 && port >= 1 && port <= 65535;
}

const PROXY_KEYWORDS = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An address, a CIDR range, or one of proxy-addr's names for reserved ranges. */
function isProxyAddress(value: string): boolean {
  if (PROXY_KEYWORDS.has(value)) return true;
  const [address = '', prefix, ...rest] = value.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/**
 * The proxies whose X-Forwarded-For is believed, by address (never "every hop", nor a hop count:
 * a client reaching the API directly could then name any address and slip past per-address limits).
 */
const trustProxy = z
  .string()
  .transform((value) =>
    value
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== ''),
  )
  .refine(
    (proxies) => proxies.length > 0 && proxies.every(isProxyAddress),
    'must be a comma-separated list of proxy addresses or CIDR ranges (or loopback, linklocal, uniquelocal)',
  );

const rateLimit = (fallback: number) =>
  z.coerce
    .number({ message: 'must be a whole number between 1 and 1000000' })
    .int('must be a whole number between 1 and 1000000')
    .min(1, 'must be a whole number between 1 and 1000000')
    .max(1_000_000, 'must be a whole number between 1 and 1000000')
    .default(fallback);

const booleanFlag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const base64Key = z
  .string()
  .refine((value) => /^[A-Za-z0-9+/]+={0,2}$/.test(value) && Buffer.from(value, 'base64').length === 32, {
    message: 'must be 32 random bytes encoded as base64 (generate one with: openssl rand -base64 32)',
  });

const envSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
    .optional(),
  RELAYPLANE_DATA_DIR: z.string().min(1).default('./.relayplane'),
  RELAYPLANE_HOST: z.string().min(1).default('127.0.0.1'),
  RELAYPLANE_PORT: z.coerce
    .number({ message: 'must be an integer between 0 and 65535' })
    .int('must be an integer between 0 and 65535')
    .min(0, 'must be an integer between 0 and 65535')
    .max(65535, 'must be an integer between 0 and 65535')
    .default(8080),
  RELAYPLANE_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  RELAYPLANE_MASTER_KEY: base64Key.optional(),
  RELAYPLANE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  RELAYPLANE_TOKEN_TTL_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(60, 'must be at least 60')
    .max(86_400, 'must be at most 86400')
    .default(900),
  RELAYPLANE_TOKEN_RATE_LIMIT_PER_ADDRESS: rateLimit(DEFAULT_TOKEN_RATE_LIMIT.perAddress),
  RELAYPLANE_TOKEN_RATE_LIMIT_PER_KEY: rateLimit(DEFAULT_TOKEN_RATE_LIMIT.perKeyId),
  RELAYPLANE_TOKEN_RATE_LIMIT_WINDOW_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds between 1 and 86400' })
    .int('must be a whole number of seconds between 1 and 86400')
    .min(1, 'must be a whole number of seconds between 1 and 86400')
    .max(86_400, 'must be a whole number of seconds between 1 and 86400')
    .default(DEFAULT_TOKEN_RATE_LIMIT.windowSeconds),
  RELAYPLANE_TRUST_PROXY: trustProxy.optional(),
  RELAYPLANE_MIGRATE_ON_START: booleanFlag.default(true),
  RELAYPLANE_SSH_PRIVATE_KEY_PATH: z.string().min(1).optional(),
  RELAYPLANE_SYNC_INTERVAL_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(5, 'must be at least 5')
    .max(86_400, 'must be at most 86400')
    .default(60),
  RELAYPLANE_SYNC_DEBOUNCE_MS: z.coerce
    .number({ message: 'must be a whole number of milliseconds' })
    .int('must be a whole number of milliseconds')
    .min(0, 'must be at least 0')
    .max(60_000, 'must be at most 60000')
    .default(500),
  RELAYPLANE_USAGE_INTERVAL_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds (0 turns collection off)' })
    .int('must be a whole number of seconds (0 turns collection off)')
    .min(0, 'must be at least 0')
    .max(86_400, 'must be at most 86400')
    .default(60),
  RELAYPLANE_USAGE_FINAL_DELAY_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(0, 'must be at least 0')
    .max(30 * 86_400, 'must be at most 2592000')
    .default(7200),
  RELAYPLANE_USAGE_MESSAGE_RETENTION_DAYS: z.coerce
    .number({ message: 'must be a whole number of days' })
    .int('must be a whole number of days')
    .min(1, 'must be at least 1')
    .max(3660, 'must be at most 3660')
    .default(DEFAULT_USAGE_MESSAGE_RETENTION_DAYS),
  RELAYPLANE_CONFIG_BUNDLE_RETENTION_DAYS: z.coerce
    .number({ message: 'must be a whole number of days' })
    .int('must be a whole number of days')
    .min(1, 'must be at least 1')
    .max(3660, 'must be at most 3660')
    .default(DEFAULT_CONFIG_BUNDLE_RETENTION_DAYS),
  RELAYPLANE_TLS_CA_FILE: z
    .string()
    .refine((value) => !/[\p{Cc}]/u.test(value), 'must be a file path')
    .optional(),
  RELAYPLANE_DNS_SERVERS: z
    .string()
    .transform((value) =>
      value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    )
    .refine(
      (servers) => servers.length > 0 && servers.every(isDnsServer),
      'must be a comma-separated list of IP addresses, each optionally with :port (IPv6 with a port in brackets)',
    )
    .optional(),
  RELAYPLANE_DNS_CHECK_INTERVAL_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(60, 'must be at least 60')
    .max(7 * 86_400, 'must be at most 604800')
    .default(3600),
  RELAYPLANE_DNS_PENDING_TIMEOUT_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(60, 'must be at least 60')
    .default(72 * 3600),
  RELAYPLANE_DNS_DEGRADED_GRACE_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(0, 'must be at least 0')
    .default(48 * 3600),
  RELAYPLANE_DNS_UNCHECKABLE_LIMIT_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(60, 'must be at least 60')
    .max(30 * 86_400, 'must be at most 2592000')
    .default(72 * 3600),
  RELAYPLANE_DNS_VERIFY_COOLDOWN_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(0, 'must be at least 0')
    .max(3600, 'must be at most 3600')
    .default(30),
  RELAYPLANE_DMARC_REPORT_ADDRESS: z
    .string()
    .trim()
    .transform((value) => value.replace(/^mailto:/i, ''))
    .refine(
      (value) =>
        /^[^\s@,;!<>"]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/i.test(
          value,
        ),
      'must be an email address (without ",", ";" or "!": it goes into a DMARC rua=mailto: tag)',
    )
    .optional(),
  RELAYPLANE_SSH_IDLE_SECONDS: z.coerce
    .number({ message: 'must be a whole number of seconds between 0 and 3600' })
    .int('must be a whole number of seconds between 0 and 3600')
    .min(0, 'must be a whole number of seconds between 0 and 3600')
    .max(3600, 'must be a whole number of seconds between 0 and 3600')
    .default(30),
  RELAYPLANE_NODE_PATH: z
    .string()
    .regex(
      /^\/[A-Za-z0-9._/+-]*(:\/[A-Za-z0-9._/+-]*)*$/,
      "must be absolute directories separated by ':' (the PATH of commands run on nodes)",
    )
    .default(DEFAULT_REMOTE_PATH),
  RELAYPLANE_DEPLOY_CONCURRENCY: z.coerce
    .number({ message: 'must be an integer between 1 and 64' })
    .int('must be an integer between 1 and 64')
    .min(1, 'must be an integer between 1 and 64')
    .max(64, 'must be an integer between 1 and 64')
    .default(4),
});

export type Env = z.input<typeof envSchema>;

const decodeKey = (base64: string): Buffer => Buffer.from(base64, 'base64');

/** The settings the program reads, mapped once from the variables; the Config type is inferred from it. */
const configSchema = envSchema.transform((values) => ({
  databaseUrl: values.DATABASE_URL,
  /** Derived: no DATABASE_URL means Relayplane runs its own PostgreSQL inside the data dir. */
  isEmbeddedDatabase: values.DATABASE_URL === undefined,
  dataDir: path.resolve(values.RELAYPLANE_DATA_DIR),
  host: values.RELAYPLANE_HOST,
  port: values.RELAYPLANE_PORT,
  jwtSecret: values.RELAYPLANE_JWT_SECRET,
  /** 32 bytes; encrypts relay credential secrets at rest (AES-256-GCM). */
  masterKey: values.RELAYPLANE_MASTER_KEY === undefined ? undefined : decodeKey(values.RELAYPLANE_MASTER_KEY),
  logLevel: values.RELAYPLANE_LOG_LEVEL,
  tokenTtlSeconds: values.RELAYPLANE_TOKEN_TTL_SECONDS,
  /** Limits of POST /v1/auth/token per client address and per key id, per window. */
  tokenRateLimit: {
    perAddress: values.RELAYPLANE_TOKEN_RATE_LIMIT_PER_ADDRESS,
    perKeyId: values.RELAYPLANE_TOKEN_RATE_LIMIT_PER_KEY,
    windowSeconds: values.RELAYPLANE_TOKEN_RATE_LIMIT_WINDOW_SECONDS,
  } satisfies TokenRateLimit,
  /** Proxies (addresses, CIDR ranges) whose X-Forwarded-For gives the client's address; undefined: the socket's peer. */
  trustProxy: values.RELAYPLANE_TRUST_PROXY,
  migrateOnStart: values.RELAYPLANE_MIGRATE_ON_START,
  /** The control plane's SSH private key file (absolute); read when a node is contacted, never stored or logged. */
  sshPrivateKeyPath:
    values.RELAYPLANE_SSH_PRIVATE_KEY_PATH === undefined
      ? undefined
      : path.resolve(values.RELAYPLANE_SSH_PRIVATE_KEY_PATH),
  /** How long the deployer keeps a node's SSH connection open after a deploy, for the next one; 0: a new connection every time. */
  sshIdleSeconds: values.RELAYPLANE_SSH_IDLE_SECONDS,
  /** PATH of the commands run on nodes; the node user's own PATH and dotfiles are not relied on. */
  nodePath: values.RELAYPLANE_NODE_PATH,
  /** Period of the sync worker's reconcile. */
  syncIntervalSeconds: values.RELAYPLANE_SYNC_INTERVAL_SECONDS,
  /** Quiet time after a config change before the sync worker compiles and deploys. */
  syncDebounceMs: values.RELAYPLANE_SYNC_DEBOUNCE_MS,
  /** Period of usage collection from the nodes' logs; 0: off. */
  usageIntervalSeconds: values.RELAYPLANE_USAGE_INTERVAL_SECONDS,
  /** Usage hours become final this long after every node's log was read past them. */
  usageFinalDelaySeconds: values.RELAYPLANE_USAGE_FINAL_DELAY_SECONDS,
  /** Per-message usage records are kept this many days. */
  usageMessageRetentionDays: values.RELAYPLANE_USAGE_MESSAGE_RETENTION_DAYS,
  /** Stored config bundles are kept this many days (the newest and those nodes run, always). */
  configBundleRetentionDays: values.RELAYPLANE_CONFIG_BUNDLE_RETENTION_DAYS,
  /** The CA file the nodes' smtp client trusts (smtp_tls_CAfile), absolute; undefined: the system store. */
  tlsCaFile: values.RELAYPLANE_TLS_CA_FILE === undefined ? undefined : path.resolve(values.RELAYPLANE_TLS_CA_FILE),
  /** DNS servers for domain verification; undefined: the system's resolvers. */
  dnsServers: values.RELAYPLANE_DNS_SERVERS,
  dnsCheckIntervalSeconds: values.RELAYPLANE_DNS_CHECK_INTERVAL_SECONDS,
  dnsPendingTimeoutSeconds: values.RELAYPLANE_DNS_PENDING_TIMEOUT_SECONDS,
  dnsDegradedGraceSeconds: values.RELAYPLANE_DNS_DEGRADED_GRACE_SECONDS,
  /** Records that could not be checked this long count as wrong. */
  dnsUncheckableLimitSeconds: values.RELAYPLANE_DNS_UNCHECKABLE_LIMIT_SECONDS,
  /** POST /v1/domains/{id}/verify at most once per domain this often; 0: no limit. */
  dnsVerifyCooldownSeconds: values.RELAYPLANE_DNS_VERIFY_COOLDOWN_SECONDS,
  /** Suggested as DMARC `rua=mailto:` where a domain's record has none; null: no suggestion. */
  dmarcReportAddress: values.RELAYPLANE_DMARC_REPORT_ADDRESS ?? null,
  /** Nodes deployed in parallel. */
  deployConcurrency: values.RELAYPLANE_DEPLOY_CONCURRENCY,
}));

export type Config = z.output<typeof configSchema>;

/** Thrown for invalid configuration; its message is the one line the CLI prints. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings are treated as unset, the way shells and compose files usually mean them.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0] ?? 'environment');
    const got = present[variable];
    const shown =
      variable === 'RELAYPLANE_JWT_SECRET' || variable === 'RELAYPLANE_MASTER_KEY' || variable === 'DATABASE_URL'
        ? ''
        : ` (got ${JSON.stringify(got)})`;
    throw new ConfigError(`Invalid configuration: ${variable} ${issue.message}${shown}`);
  }
  return parsed.data;
}

/** Config after start-up resolved the database and the keys: nothing optional left. */
export interface RuntimeConfig extends Config {
  databaseUrl: string;
  jwtSecret: string;
  masterKey: Buffer;
}
