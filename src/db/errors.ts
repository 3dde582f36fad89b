import { Prisma } from '../generated/prisma/client.js';
import { type AppError, ConflictError, ServiceUnavailableError, ValidationError } from '../lib/errors.js';

/** Seconds a client is told to wait after a 503 caused by database contention. */
export const CONTENTION_RETRY_AFTER_SECONDS = 1;

/**
 * The PostgreSQL SQLSTATE behind an error, whether it came through Prisma's driver adapter
 * (`meta.driverAdapterError.cause.originalCode`) or straight from node-postgres (`code`).
 */
export function sqlStateOf(error: unknown): string | undefined {
  if (error instanceof Prisma.PrismaClientKnownRequestError) {
    const cause = (error.meta?.driverAdapterError as { cause?: { originalCode?: unknown } } | undefined)?.cause;
    if (typeof cause?.originalCode === 'string') return cause.originalCode;
    if (error.code === 'P2002') return '23505';
    if (error.code === 'P2034') return '40001';
    return undefined;
  }
  if (error instanceof Error && 'severity' in error && 'code' in error && typeof error.code === 'string') {
    return /^[0-9A-Z]{5}$/.test(error.code) ? error.code : undefined;
  }
  return undefined;
}

/** Is this a unique-constraint violation, optionally on a given column (or constraint name part)? */
export function isUniqueViolation(error: unknown, column?: string): boolean {
  if (sqlStateOf(error) !== '23505') return false;
  if (column === undefined) return true;
  const described =
    error instanceof Prisma.PrismaClientKnownRequestError ? JSON.stringify(error.meta ?? {}) : JSON.stringify(error);
  return described.includes(column) || (error as Error).message.includes(column);
}

/** Prisma could not get a connection for a transaction within `maxWait`: nothing ran yet. */
function isTransactionStartTimeout(error: unknown): boolean {
  return (
    error instanceof Prisma.PrismaClientKnownRequestError &&
    error.code === 'P2028' &&
    error.message.includes('Unable to start a transaction')
  );
}

/**
 * Failures a whole transaction may simply be run again for: it never started (the pool was
 * exhausted), or PostgreSQL rolled it back for a serialization failure or a deadlock.
 */
export function isRetryableTransactionError(error: unknown): boolean {
  if (isTransactionStartTimeout(error)) return true;
  const state = sqlStateOf(error);
  return state === '40001' || state === '40P01';
}

/**
 * What a database error that reached the HTTP layer means to the client, or undefined for a
 * genuine server fault. Services map the unique violations they expect to specific codes; this is
 * the backstop so that contention and hostile input never answer 500.
 */
export function databaseProblem(error: unknown): AppError | undefined {
  const state = sqlStateOf(error);
  if (state === '23505')
    return new ConflictError('the request conflicts with an existing resource (a unique value is taken)');
  if (
    isRetryableTransactionError(error) ||
    (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2028') ||
    state === '55P03' ||
    state === '57014'
  ) {
    return new ServiceUnavailableError(
      'the database is busy with concurrent changes: retry shortly',
      {},
      CONTENTION_RETRY_AFTER_SECONDS,
    );
  }
  // Input PostgreSQL cannot store or read (NUL, a malformed uuid, an out-of-range number): the
  // edge refuses these first, this only keeps a missed path from answering 500.
  if (state === '22021' || state === '22P02' || state === '22003' || state === '22007' || state === '22008') {
    return new ValidationError(
      'the request holds a value the database cannot store (e.g. a NUL character or a malformed identifier)',
    );
  }
  return undefined;
}
