import { ValidationError } from './errors.js';

export interface PageRequest {
  limit: number;
  cursor?: string | undefined;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** The kinds of value a cursor carries; each is checked so that no forged cursor reaches a query. */
export type CursorPart = 'uuid' | 'int' | 'timestamp' | 'text';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const INT8_MAX = 9223372036854775807n;

const VALID: Record<CursorPart, (value: string) => boolean> = {
  uuid: (value) => UUID.test(value),
  int: (value) => /^(0|[1-9]\d{0,18})$/.test(value) && BigInt(value) <= INT8_MAX,
  timestamp: (value) =>
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(value) &&
    !Number.isNaN(Date.parse(value)) &&
    new Date(value).toISOString() === value,
  text: (value) => value.length <= 500 && !/[\u0000-\u001f\u007f-\u009f\u2028\u2029]|\p{Cs}/u.test(value),
};

function invalidCursor(): never {
  throw new ValidationError('cursor is not a cursor this API returned for this list', [
    { field: 'querystring/cursor', message: 'is not a valid cursor' },
  ]);
}

/**
 * Cursors are opaque to clients: base64url of JSON `[list, ...sort key]`, the key of the last
 * item of a page. Lists are ordered by a unique, immutable key so pages never skip or repeat rows
 * under concurrent inserts. Decoding refuses (400) anything this API would not have returned for
 * the same list: undecodable text, another list's cursor, a key of the wrong shape.
 */
export function cursorCodec<const Shape extends readonly CursorPart[]>(list: string, shape: Shape) {
  type Key = { [I in keyof Shape]: string };
  return {
    encode(...key: Key): string {
      return Buffer.from(JSON.stringify([list, ...key]), 'utf8').toString('base64url');
    },
    decode(cursor: string | undefined): Key | undefined {
      if (cursor === undefined) return undefined;
      if (!/^[A-Za-z0-9_-]{1,1000}$/.test(cursor)) invalidCursor();
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
      } catch {
        invalidCursor();
      }
      if (!Array.isArray(parsed) || parsed.length !== shape.length + 1 || parsed[0] !== list) invalidCursor();
      const key = parsed.slice(1) as unknown[];
      if (!key.every((value, index) => typeof value === 'string' && VALID[shape[index]!](value))) invalidCursor();
      return key as Key;
    },
  };
}

/** The cursor of a list ordered by its uuid primary key. */
export function idCursor(list: string) {
  const codec = cursorCodec(list, ['uuid']);
  return {
    encode: (id: string) => codec.encode(id),
    decode: (cursor: string | undefined) => codec.decode(cursor)?.[0],
  };
}

/** Call with `limit + 1` rows fetched: trims the extra row and derives the next cursor from the last kept one. */
export function toPage<T>(rows: T[], limit: number, cursorOf: (row: T) => string): Page<T> {
  const hasMore = rows.length > limit;
  const items = hasMore ? rows.slice(0, limit) : rows;
  const last = items.at(-1);
  return { items, next_cursor: hasMore && last !== undefined ? cursorOf(last) : null };
}
