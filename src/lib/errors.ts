/**
 * The few error classes services throw. One plugin (plugins/errors.ts) turns them into
 * RFC 9457 problem+json; nothing else maps errors to HTTP.
 */
export interface FieldProblem {
  /** JSON pointer-ish location of the bad value, e.g. `body/name`. */
  field: string;
  message: string;
}

export abstract class AppError extends Error {
  abstract readonly status: number;
  /** Stable machine-readable code; becomes the problem `type` suffix. */
  abstract readonly code: string;
  abstract readonly title: string;
  constructor(
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  readonly status = 400;
  readonly code = 'validation-failed';
  readonly title = 'Request validation failed';
  constructor(
    message: string,
    readonly errors: FieldProblem[] = [],
  ) {
    super(message, { errors });
  }
}

export class UnauthorizedError extends AppError {
  readonly status = 401;
  readonly code = 'unauthorized';
  readonly title = 'Authentication required';
}

export class ForbiddenError extends AppError {
  readonly status = 403;
  readonly code = 'forbidden';
  readonly title = 'Not allowed';
}

export class NotFoundError extends AppError {
  readonly status = 404;
  readonly code = 'not-found';
  readonly title = 'Resource not found';
  constructor(resource: string, id?: string) {
    super(id === undefined ? `${resource} not found` : `${resource} ${id} not found`);
  }
}

export class ConflictError extends AppError {
  readonly status = 409;
  readonly code: string;
  readonly title = 'Conflict';
  constructor(message: string, code = 'conflict', extra: Record<string, unknown> = {}) {
    super(message, extra);
    this.code = code;
  }
}

export class PreconditionFailedError extends AppError {
  readonly status = 412;
  readonly code = 'precondition-failed';
  readonly title = 'Precondition failed';
}

export class UnprocessableError extends AppError {
  readonly status = 422;
  readonly code: string;
  readonly title = 'Unprocessable request';
  constructor(message: string, code = 'unprocessable', extra: Record<string, unknown> = {}) {
    super(message, extra);
    this.code = code;
  }
}

export class RateLimitedError extends AppError {
  readonly status = 429;
  readonly code = 'rate-limited';
  readonly title = 'Too many requests';
  constructor(
    message: string,
    extra: Record<string, unknown> = {},
    /** Sent as Retry-After by the error handler (callers that set the header themselves leave it out). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message, extra);
  }
}

export class ServiceUnavailableError extends AppError {
  readonly status = 503;
  readonly code = 'unavailable';
  readonly title = 'Service unavailable';
  constructor(
    message: string,
    extra: Record<string, unknown> = {},
    /** Sent as Retry-After when the condition is known to pass (contention), absent otherwise. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message, extra);
  }
}
