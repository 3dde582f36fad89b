import { ValidationError } from './errors.js';

export interface PageRequest {
  limit: number;
  cursor?: string | undefined;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/**
 * Cursors are opaque to clients: base64url of the last item's sort key. Lists are ordered by
 * a unique, immutable key so pages never skip or repeat rows under concurrent inserts.
 */
export function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  if (decoded.length === 0 || encodeCursor(decoded) !== cursor) {
    throw new ValidationError('cursor is not a cursor this API returned', [
      { field: 'querystring/cursor', message: 'is not a valid cursor' },
    ]);
  }
  return decoded;
}

/** Call with `limit + 1` rows fetched: trims the extra row and derives the next cursor from the last kept one. */
export function toPage<T>(rows: T[], limit: number, keyOf: (row: T) => string): Page<T> {
  const hasMore = rows.length > limit;
  const items = hasMore ? rows.slice(0, limit) : rows;
  const last = items.at(-1);
  return { items, next_cursor: hasMore && last !== undefined ? encodeCursor(keyOf(last)) : null };
}
