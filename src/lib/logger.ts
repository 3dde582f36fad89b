import type { DestinationStream, LoggerOptions } from 'pino';

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

export function loggerOptions(level: string, stream?: DestinationStream): LoggerOptions & { stream?: DestinationStream } {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    ...(stream === undefined ? {} : { stream }),
  };
}
