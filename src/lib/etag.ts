import { PreconditionFailedError, ValidationError } from './errors.js';

/** Resources carry an integer `version`; the ETag is that version, quoted. */
export function etagOf(version: number): string {
  return `"${version}"`;
}

/** The version an If-Match header demands, or undefined when the client sent none. */
export function expectedVersion(ifMatch: string | undefined): number | undefined {
  if (ifMatch === undefined || ifMatch.trim() === '*') return undefined;
  const match = /^\s*(?:W\/)?"(\d{1,9})"\s*$/.exec(ifMatch);
  if (match === null) {
    throw new ValidationError('If-Match must be an ETag this API returned, e.g. "3"', [
      { field: 'headers/if-match', message: 'is not an ETag this API returned' },
    ]);
  }
  return Number(match[1]);
}

export function assertVersion(actual: number, expected: number | undefined, resource: string): void {
  if (expected !== undefined && actual !== expected) {
    throw new PreconditionFailedError(
      `${resource} changed since you read it (now at ETag "${actual}"): read it again and retry`,
    );
  }
}
