import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, DestinationStream, Logger, LoggerOptions } from 'pino';

/**
 * Secrets are removed from logs by configuration, not by hoping nobody logs them: any field
 * with one of these names is censored wherever it appears (two levels deep covers request,
 * response and error objects as Fastify and pino serialize them).
 */
const SECRET_FIELDS = [
  'authorization',
  'cookie',
  'key',
  'secret',
  'password',
  'passwd',
  'token',
  'access_token',
  'secretHash',
  'jwtSecret',
  'masterKey',
  'privateKey',
  'databaseUrl',
  'DATABASE_URL',
];

const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["idempotency-key"]',
  ...SECRET_FIELDS.flatMap((field) => [field, `*.${field}`, `*.*.${field}`]),
];

export function loggerOptions(
  level: string,
  stream?: DestinationStream,
): LoggerOptions & { stream?: DestinationStream } {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...(stream === undefined ? {} : { stream }),
  };
}

const LEVEL_METHODS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/**
 * Fastify's childLoggerFactory: the per-request child logger (it carries the request id) is
 * created on the first line actually written. With the redaction above, pino runs every binding
 * through the redactor when a child is made (~6 µs, measured), and most requests log nothing at
 * the usual `warn`/`error` levels. Lines below the level are dropped without creating it.
 */
export function lazyChildLogger(logger: Logger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  let child: Logger | undefined;
  const real = (): Logger => (child ??= logger.child(bindings, options));
  const threshold = (): number => logger.levels.values[child?.level ?? options.level ?? logger.level] ?? 0;
  const lazy = {
    get level(): string {
      return child?.level ?? options.level ?? logger.level;
    },
    set level(value: string) {
      real().level = value;
    },
    child: (more: Bindings, moreOptions?: ChildLoggerOptions) => real().child(more, moreOptions),
    silent: () => undefined,
  } as Record<string, unknown>;
  for (const method of LEVEL_METHODS) {
    const value = logger.levels.values[method] ?? 0;
    lazy[method] = (...args: unknown[]) => {
      if (value < threshold()) return;
      (real()[method] as (...a: unknown[]) => void)(...args);
    };
  }
  return lazy as unknown as FastifyBaseLogger;
}
