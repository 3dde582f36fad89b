/**
 * fast-check arbitraries from the JSON Schemas of openapi.yaml: values a schema admits (with
 * realistic hints for names the server checks beyond the schema), and hostile mutations of them.
 */
import fc from 'fast-check';

export type Schema = Record<string, unknown>;

/** A reference to an id known at run time (a resource created earlier), resolved when sending. */
export class PoolRef {
  constructor(
    readonly pool: string,
    readonly pick: number,
  ) {}
}

export interface SchemaContext {
  /** The schema a local `$ref` (`#/components/...`) points to. */
  resolve(ref: string): Schema;
  /** A realistic value for a property the generator knows by name, or undefined. */
  hint(name: string | undefined, schema: Schema): fc.Arbitrary<unknown> | undefined;
}

/** Follows `$ref`s and merges `allOf` parts (properties and required lists). */
export function deref(schema: Schema, ctx: SchemaContext): Schema {
  let current = schema;
  while (typeof current.$ref === 'string')
    current = {
      ...ctx.resolve(current.$ref),
      ...Object.fromEntries(Object.entries(current).filter(([k]) => k !== '$ref')),
    };
  if (!Array.isArray(current.allOf)) return current;
  const parts = (current.allOf as Schema[]).map((part) => deref(part, ctx));
  const merged: Schema = { ...current, allOf: undefined };
  for (const part of parts) {
    merged.type ??= part.type;
    merged.properties = { ...(merged.properties as Schema | undefined), ...(part.properties as Schema | undefined) };
    merged.required = [
      ...((merged.required as string[] | undefined) ?? []),
      ...((part.required as string[] | undefined) ?? []),
    ];
  }
  return merged;
}

const SAFE_TEXT = /^[^\p{Cc}\p{Cs}\u2028\u2029]*$/u;

function stringFor(schema: Schema): fc.Arbitrary<string> {
  const minLength = (schema.minLength as number | undefined) ?? 0;
  const maxLength = Math.max(minLength, Math.min((schema.maxLength as number | undefined) ?? 24, 24));
  if (schema.format === 'uuid') return fc.uuid();
  if (schema.format === 'date-time')
    return fc
      .date({ min: new Date('2020-01-01'), max: new Date('2030-01-01'), noInvalidDate: true })
      .map((d) => d.toISOString());
  if (typeof schema.pattern === 'string') {
    try {
      return fc
        .stringMatching(new RegExp(schema.pattern))
        .filter((s) => s.length >= minLength && s.length <= ((schema.maxLength as number | undefined) ?? Infinity));
    } catch {
      return fc.constant('x'.repeat(Math.max(1, minLength)));
    }
  }
  return fc.string({ minLength, maxLength, unit: 'grapheme' }).filter((s) => SAFE_TEXT.test(s));
}

/** Values the schema admits (modulo the hints, which stand for what the server accepts beyond it). */
export function valueFor(schema: Schema, ctx: SchemaContext, name?: string, depth = 0): fc.Arbitrary<unknown> {
  const s = deref(schema, ctx);
  const hinted = ctx.hint(name, s);
  if (hinted !== undefined) return hinted;
  if (Array.isArray(s.enum)) return fc.constantFrom(...(s.enum as unknown[]));
  if (s.const !== undefined) return fc.constant(s.const);
  const branches = (s.oneOf ?? s.anyOf) as Schema[] | undefined;
  if (branches !== undefined) return fc.oneof(...branches.map((branch) => valueFor(branch, ctx, name, depth)));
  const types = Array.isArray(s.type)
    ? (s.type as string[])
    : typeof s.type === 'string'
      ? [s.type]
      : s.properties !== undefined
        ? ['object']
        : ['string'];
  const byType = (type: string): fc.Arbitrary<unknown> => {
    switch (type) {
      case 'null':
        return fc.constant(null);
      case 'boolean':
        return fc.boolean();
      case 'integer':
        return fc.integer({
          min: (s.minimum as number | undefined) ?? -1000,
          max: (s.maximum as number | undefined) ?? 1_000_000,
        });
      case 'number':
        return fc.double({ noNaN: true, noDefaultInfinity: true });
      case 'array': {
        const items = valueFor((s.items as Schema | undefined) ?? {}, ctx, name, depth + 1);
        const constraints = {
          minLength: (s.minItems as number | undefined) ?? 0,
          maxLength: Math.min((s.maxItems as number | undefined) ?? 3, 3),
        };
        return s.uniqueItems === true
          ? fc.uniqueArray(items, { ...constraints, selector: (v) => JSON.stringify(v) })
          : fc.array(items, constraints);
      }
      case 'object': {
        const properties = (s.properties as Record<string, Schema> | undefined) ?? {};
        if (depth > 3) return fc.constant({});
        const record = Object.fromEntries(
          Object.entries(properties).map(([key, sub]) => [key, valueFor(sub, ctx, key, depth + 1)]),
        );
        return fc.record(record, {
          requiredKeys: ((s.required as string[] | undefined) ?? []).filter((key) => key in properties),
        });
      }
      default:
        return stringFor(s);
    }
  };
  return types.length === 1 ? byType(types[0]!) : fc.oneof(...types.map(byType));
}

// ---------------------------------------------------------------------------------------------
// Hostile mutations

/** Strings no field should accept as they are (or that must be stored exactly, never cut short). */
export const HOSTILE_STRINGS = [
  '\u0000',
  'a\u0000b',
  'line\r\nbreak',
  'x\ny',
  '\r',
  '\u2028',
  'a\u2029b',
  '\t',
  '#',
  'a#b',
  '/',
  'a/b',
  '\\',
  'a\\b',
  '?',
  '@',
  ' ',
  '',
  '..',
  '\ud800',
  'x\udfffy',
  '\u202e',
  '\u00ad',
  'ｅｘａｍｐｌｅ',
  '😀',
  '%00',
  "'; DROP TABLE tenants; --",
  '${jndi:ldap://x}',
  '<b>',
];
/** Appended to a valid value: the truncation and splicing cases (`smtp.example.com#x`). */
export const HOSTILE_SUFFIXES = ['#x', '/x', '?x', '\\x', '@x', ' x', '\nx', '\r\n', '\u2028', '\u0000', ':x', '.'];
const WRONG_TYPES: unknown[] = [true, false, 0, 1, -1, 1.5, null, [], {}, '1', 'true', [1], { a: 1 }];
const EDGE_NUMBERS = [-7, -1, 0, 2 ** 31, 2 ** 53 + 2, 1e308, 0.5, 65536, 70000];
export const ONE_MB = 'a'.repeat(1_000_000);
export const OVER_LIMIT = 'a'.repeat(1_100_000);

export interface Slot {
  path: Array<string | number>;
  schema: Schema;
  required: boolean;
}

/** Every property the body schema declares, nested objects and first array items included. */
export function slotsOf(schema: Schema, ctx: SchemaContext, path: Array<string | number> = [], depth = 0): Slot[] {
  const s = deref(schema, ctx);
  const properties = (s.properties as Record<string, Schema> | undefined) ?? {};
  const required = new Set((s.required as string[] | undefined) ?? []);
  const slots: Slot[] = [];
  for (const [key, sub] of Object.entries(properties)) {
    const here = [...path, key];
    const resolved = deref(sub, ctx);
    slots.push({ path: here, schema: resolved, required: required.has(key) });
    if (depth < 2 && resolved.properties !== undefined) slots.push(...slotsOf(resolved, ctx, here, depth + 1));
    if (depth < 2 && resolved.items !== undefined)
      slots.push(...slotsOf(resolved.items as Schema, ctx, [...here, 0], depth + 1));
  }
  return slots;
}

/** JSON types a schema admits (through oneOf/anyOf branches). */
export function jsonTypesOf(schema: Schema, ctx: SchemaContext): Set<string> {
  const s = deref(schema, ctx);
  const branches = (s.oneOf ?? s.anyOf) as Schema[] | undefined;
  if (branches !== undefined) return new Set(branches.flatMap((branch) => [...jsonTypesOf(branch, ctx)]));
  if (Array.isArray(s.type)) return new Set(s.type as string[]);
  if (typeof s.type === 'string') return new Set(s.type === 'integer' ? ['integer', 'number'] : [s.type]);
  if (Array.isArray(s.enum)) return new Set((s.enum as unknown[]).map(jsonType));
  return new Set(['string', 'number', 'integer', 'boolean', 'null', 'array', 'object']);
}

export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/** Copies plain JSON data, keeping PoolRefs as they are. */
function copy<T>(value: T): T {
  if (value instanceof PoolRef || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(copy) as T;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copy(v)])) as T;
}

function getAt(value: unknown, path: Array<string | number>): unknown {
  let node = value;
  for (const key of path)
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  return node;
}

function setAt(value: unknown, path: Array<string | number>, replacement: unknown, remove = false): void {
  let node = value as Record<string | number, unknown>;
  for (let i = 0; i < path.length - 1; i += 1) {
    const key = path[i]!;
    const next = node[key];
    if (next === null || typeof next !== 'object') node[key] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[key] as Record<string | number, unknown>;
  }
  const last = path.at(-1)!;
  if (remove) delete node[last];
  else node[last] = replacement;
}

export interface Mutation {
  kind:
    | 'none'
    | 'hostile-string'
    | 'hostile-suffix'
    | 'wrong-type'
    | 'edge-number'
    | 'drop-required'
    | 'extra-field'
    | 'whole-body'
    | 'one-megabyte'
    | 'over-limit';
  slot: number;
  choice: number;
}

export const mutationArbitrary: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom<Mutation['kind']>(
    'none',
    'none',
    'none',
    'none',
    'none',
    'none',
    'hostile-string',
    'hostile-string',
    'hostile-suffix',
    'hostile-suffix',
    'wrong-type',
    'wrong-type',
    'edge-number',
    'drop-required',
    'extra-field',
    'whole-body',
    'one-megabyte',
    'over-limit',
  ),
  slot: fc.nat(),
  choice: fc.nat(),
});

/** Applies a mutation to a valid body; returns the body and a label saying what was done. */
export function mutate(
  body: unknown,
  schema: Schema,
  ctx: SchemaContext,
  mutation: Mutation,
): { body: unknown; label: string } {
  const value = copy(body);
  const slots = slotsOf(schema, ctx);
  const pickFrom = <T>(list: readonly T[]) => list[mutation.choice % list.length]!;
  if (mutation.kind === 'none') return { body: value, label: 'valid' };
  if (mutation.kind === 'whole-body') return { body: pickFrom([[], 'x', 1, null, true, [value]]), label: 'whole-body' };
  const slot = slots.length === 0 ? undefined : slots[mutation.slot % slots.length]!;
  if (slot === undefined || value === null || typeof value !== 'object')
    return { body: value, label: 'valid (nothing to mutate)' };
  const field = slot.path.join('/');
  switch (mutation.kind) {
    case 'hostile-string':
      setAt(value, slot.path, pickFrom(HOSTILE_STRINGS));
      return { body: value, label: `hostile-string ${field}` };
    case 'hostile-suffix': {
      const current = getAt(value, slot.path);
      setAt(
        value,
        slot.path,
        `${typeof current === 'string' ? current : 'smtp.example.test'}${pickFrom(HOSTILE_SUFFIXES)}`,
      );
      return { body: value, label: `hostile-suffix ${field}` };
    }
    case 'wrong-type': {
      const allowed = jsonTypesOf(slot.schema, ctx);
      const wrong = WRONG_TYPES.filter((candidate) => !allowed.has(jsonType(candidate)));
      setAt(value, slot.path, wrong.length === 0 ? pickFrom(WRONG_TYPES) : pickFrom(wrong));
      return { body: value, label: `wrong-type ${field}` };
    }
    case 'edge-number':
      setAt(value, slot.path, pickFrom(EDGE_NUMBERS));
      return { body: value, label: `edge-number ${field}` };
    case 'drop-required': {
      const required = slots.filter((candidate) => candidate.required && candidate.path.length === 1);
      if (required.length === 0) return { body: value, label: 'valid (no required field)' };
      const dropped = required[mutation.slot % required.length]!;
      setAt(value, dropped.path, undefined, true);
      return { body: value, label: `drop-required ${dropped.path.join('/')}` };
    }
    case 'extra-field': {
      // defineProperty: a plain assignment to `__proto__` would set the prototype, not a key.
      const key = pickFrom(['unexpected', 'id', 'tenantId', 'createdAt', '__proto__', 'constructor', 'secret']);
      Object.defineProperty(value, key, {
        value: pickFrom(['x', 1, null, { admin: true }]),
        enumerable: true,
        configurable: true,
        writable: true,
      });
      return { body: value, label: `extra-field ${key}` };
    }
    case 'one-megabyte':
      setAt(value, slot.path, ONE_MB);
      return { body: value, label: `one-megabyte ${field}` };
    case 'over-limit':
      setAt(value, slot.path, OVER_LIMIT);
      return { body: value, label: `over-limit ${field}` };
  }
}
