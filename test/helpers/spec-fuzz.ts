/**
 * Requests for every operation of openapi.yaml, built from its schemas with hostile mutations:
 * generated as plain data by fast-check (seeded), resolved against the ids known at send time.
 */
import fc from 'fast-check';
import { loadSpec } from '../../src/plugins/openapi.js';
import { mutate, mutationArbitrary, PoolRef, type Schema, type SchemaContext, valueFor } from './schema-arbitrary.js';

export type Principal = 'admin' | 'tenant' | 'usage' | 'none' | 'garbage';

export interface SpecOperation {
  operationId: string;
  method: string;
  path: string;
  pathParams: Array<{ name: string; schema: Schema }>;
  queryParams: Array<{ name: string; schema: Schema; required: boolean }>;
  headerParams: string[];
  bodySchema: Schema | undefined;
}

export interface FuzzRequest {
  operation: SpecOperation;
  principal: Principal;
  path: Record<string, PoolRef | string>;
  query: Array<[string, unknown]>;
  headers: Record<string, string>;
  body: { value: unknown; label: string; raw?: string } | undefined;
  contentType: string | undefined;
}

/** Which pool of created ids a parameter or body field named so draws from. */
export const POOL_OF: Record<string, string> = {
  tenantId: 'tenants',
  domainId: 'domains',
  relayId: 'relays',
  fallbackRelayId: 'relays',
  credentialId: 'credentials',
  policyId: 'policies',
  nodeId: 'nodes',
  deploymentId: 'deployments',
  keyId: 'apiKeys',
};

const HOSTILE_PATH_SEGMENTS = [
  'not-a-uuid',
  '00000000-0000-0000-0000-000000000000',
  'FFFFFFFF-FFFF-4FFF-8FFF-FFFFFFFFFFFF',
  '%00',
  '..',
  '%2e%2e%2fsettings',
  'a'.repeat(3000),
  '%E2%80%A8',
  '1%20OR%201%3D1',
  '%23',
  '%5C',
  'null',
  '-1',
];
export const FORGED_CURSORS = [
  'AAAA',
  '!!!',
  Buffer.from('garbage').toString('base64url'),
  Buffer.from('2020-01-01T00:00:00.000Z|not-a-uuid').toString('base64url'),
  Buffer.from('\u0000').toString('base64url'),
  Buffer.from('|').toString('base64url'),
  Buffer.from('x'.repeat(140)).toString('base64url'),
  'eyJpZCI6MX0',
  Buffer.from("' OR 1=1 --").toString('base64url'),
  Buffer.from('9999-99-99T99:99:99Z|00000000-0000-0000-0000-000000000000').toString('base64url'),
];
const RAW_BODIES = [
  '',
  '{',
  '{"a":',
  'null',
  '[]',
  '"x"',
  '1e400',
  '{"a":1,"a":2}',
  '\ufeff{}',
  'not json',
  '['.repeat(100_000),
  '{"__proto__":{"admin":true}}',
];
const OTHER_CONTENT_TYPES = [
  'application/problem+json',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/json; charset=utf-8',
  'Application/JSON',
  undefined,
  'application/merge-patch+json',
  'application/xml',
  'application/jsonx',
];

const word = fc.constantFrom(
  'acme',
  'globex',
  'initech',
  'umbrella',
  'hooli',
  'wayne',
  'stark',
  'tyrell',
  'cyberdyne',
  'soylent',
);
const suffix = fc.nat({ max: 99_999 });
const labelled = (build: (w: string, n: number) => string) => fc.tuple(word, suffix).map(([w, n]) => build(w, n));

/** Realistic values for names the server checks beyond the schema, so that valid requests mostly succeed. */
function hints(hostKey: string): SchemaContext['hint'] {
  const byRef: Record<string, fc.Arbitrary<unknown>> = {
    DomainName: labelled((w, n) => `${w}${n}.fuzz.test`),
    // Loopback only: a credential test or host-key scan must never leave the machine (nor ask DNS).
    RelayHost: fc
      .tuple(fc.nat({ max: 255 }), fc.nat({ max: 255 }), fc.integer({ min: 1, max: 254 }))
      .map(([a, b, c]) => `127.${a}.${b}.${c}`),
    SpfInclude: labelled((w) => `_spf.${w}.test`),
    DestinationPattern: fc
      .tuple(fc.boolean(), word, suffix)
      .map(([dot, w, n]) => `${dot ? '.' : ''}${w}${n}.dest.test`),
    NodeHostKey: fc.constant(hostKey),
    NodeConfigDir: labelled((w, n) => `/etc/postfix-${w}${n}`),
    NodeLogPath: fc.oneof(
      fc.constant(null),
      labelled((w) => `/var/log/${w}.log`),
    ),
    // A version GET /v1/config or a deployment answered earlier (else one never stored).
    ConfigVersion: fc.nat().map((pick) => new PoolRef('versions', pick)),
    Slug: labelled((w, n) => `${w}-${n}`),
    ExternalRef: labelled((w, n) => `${w}:${n}`),
  };
  const byName: Record<string, fc.Arbitrary<unknown>> = {
    port: fc.integer({ min: 40_000, max: 40_100 }),
    // Mostly no delay: a delay with a concurrency above 1 is refused (Postfix could not honour both).
    rateDelaySeconds: fc.oneof(
      { weight: 3, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 3600 }) },
    ),
    route: fc.constantFrom('relay', 'relay', 'relay', 'direct'),
    key: fc.nat().map((pick) => new PoolRef('keySecrets', pick)),
    defaultRateDelaySeconds: fc.oneof(
      { weight: 3, arbitrary: fc.constant(0) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 3600 }) },
    ),
    minimalBackoffSeconds: fc.integer({ min: 1, max: 300 }),
    maximalBackoffSeconds: fc.integer({ min: 300, max: 86_400 }),
    bounceQueueLifetimeSeconds: fc.integer({ min: 0, max: 432_000 }),
    maximalQueueLifetimeSeconds: fc.integer({ min: 432_000, max: 8_640_000 }),
    sshPort: fc.integer({ min: 40_000, max: 40_100 }),
    username: labelled((w, n) => `${w}${n}@fuzz.test`),
    secret: fc
      .string({ unit: 'grapheme', minLength: 1, maxLength: 30 })
      .filter((s) => /^[^\s\p{Cc}\p{Cs}](?:[^\p{Cc}\p{Cs}\u2028\u2029]*[^\s\p{Cc}\p{Cs}])?$/u.test(s)),
    sshUser: fc.constantFrom('root', 'postfix', 'relay_ops'),
    selector: labelled((w, n) => `s${n}.${w}`),
    expiresAt: fc
      .date({ min: new Date('2031-01-01'), max: new Date('2040-01-01'), noInvalidDate: true })
      .map((d) => d.toISOString()),
    month: fc.constantFrom('2026-01', '2026-12', '2030-02'),
    from: fc.constantFrom('2026-01-01T00:00:00Z', '2026-06-01T00:00:00.000Z'),
    to: fc.constantFrom('2026-02-01T00:00:00Z', '2026-07-01T00:00:00.000Z'),
  };
  return (name, schema) => {
    if (name !== undefined && POOL_OF[name] !== undefined && schema.format === 'uuid')
      return fc.nat().map((pick) => new PoolRef(POOL_OF[name]!, pick));
    if (typeof schema.$refName === 'string' && byRef[schema.$refName] !== undefined) return byRef[schema.$refName];
    if (name === 'value' && schema.maxLength === 4096)
      return fc.constantFrom('v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQ', 'dkim.fuzz.test');
    if (name === 'host' && schema.maxLength === 63) return fc.constantFrom('bounce', 'em.mail');
    if (name === 'value' && schema.maxLength === 253) return fc.constantFrom('mailgun.org', 'bounces.fuzz.test.');
    return name === undefined ? undefined : byName[name];
  };
}

/** The spec's operations with their parameters and JSON body schema. */
export function loadOperations(hostKey: string): { operations: SpecOperation[]; ctx: SchemaContext } {
  const { spec } = loadSpec();
  const doc = spec as unknown as { paths: Record<string, Record<string, Schema>>; components: Schema };
  const resolve = (ref: string): Schema => {
    let node: unknown = doc;
    for (const part of ref.replace(/^#\//, '').split('/'))
      node = (node as Schema)[part.replaceAll('~1', '/').replaceAll('~0', '~')];
    // Keep the component's name: hints know some schemas by it.
    return { ...(node as Schema), $refName: ref.split('/').at(-1) };
  };
  const ctx: SchemaContext = { resolve, hint: hints(hostKey) };
  const operations: SpecOperation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    const shared = ((item.parameters as Schema[] | undefined) ?? []).map((p) =>
      p.$ref ? resolve(p.$ref as string) : p,
    );
    for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
      const operation = item[method];
      if (operation === undefined) continue;
      const params = [
        ...shared,
        ...((operation.parameters as Schema[] | undefined) ?? []).map((p) => (p.$ref ? resolve(p.$ref as string) : p)),
      ];
      const body = (operation.requestBody as { content?: Record<string, { schema: Schema }> } | undefined)?.content?.[
        'application/json'
      ]?.schema;
      operations.push({
        operationId: operation.operationId as string,
        method: method.toUpperCase(),
        path,
        pathParams: params
          .filter((p) => p.in === 'path')
          .map((p) => ({ name: p.name as string, schema: p.schema as Schema })),
        queryParams: params
          .filter((p) => p.in === 'query')
          .map((p) => ({ name: p.name as string, schema: p.schema as Schema, required: p.required === true })),
        headerParams: params.filter((p) => p.in === 'header').map((p) => p.name as string),
        bodySchema: body,
      });
    }
  }
  return { operations, ctx };
}

const principal = fc.constantFrom<Principal>(
  'admin',
  'admin',
  'admin',
  'admin',
  'tenant',
  'tenant',
  'tenant',
  'tenant',
  'usage',
  'none',
  'garbage',
);

function pathArbitrary(operation: SpecOperation): fc.Arbitrary<Record<string, PoolRef | string>> {
  const entries = operation.pathParams.map(({ name }) => {
    const pool = POOL_OF[name];
    const known =
      pool === undefined ? fc.constant('x') : fc.nat().map((pick): PoolRef | string => new PoolRef(pool, pick));
    return [
      name,
      fc.oneof({ weight: 5, arbitrary: known }, { weight: 1, arbitrary: fc.constantFrom(...HOSTILE_PATH_SEGMENTS) }),
    ] as const;
  });
  return fc.record(Object.fromEntries(entries)) as fc.Arbitrary<Record<string, PoolRef | string>>;
}

function queryArbitrary(operation: SpecOperation, ctx: SchemaContext): fc.Arbitrary<Array<[string, unknown]>> {
  const params = operation.queryParams.map((param) => {
    const valid =
      param.name === 'cursor'
        ? fc.oneof(
            fc.nat().map((pick) => new PoolRef('cursors', pick)),
            fc.constantFrom(...FORGED_CURSORS),
          )
        : valueFor(param.schema, ctx, param.name);
    const value = fc.oneof(
      { weight: 4, arbitrary: valid },
      { weight: 1, arbitrary: fc.constantFrom('\u0000', '-1', '0', 'abc', '1e9', '%', 'a'.repeat(5000), '\u2028', '') },
    );
    const present = value.map((v) => [[param.name, v]] as Array<[string, unknown]>);
    return param.required
      ? present
      : fc.oneof(
          { weight: 2, arbitrary: fc.constant([] as Array<[string, unknown]>) },
          { weight: 1, arbitrary: present },
        );
  });
  const extra = fc.oneof(
    { weight: 5, arbitrary: fc.constant([] as Array<[string, unknown]>) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom<[string, unknown]>(['unknown', 'x'], ['limit', '2'], ['tenantId', 'not-a-uuid'])
        .map((v) => [v]),
    },
  );
  return fc.tuple(...params, extra).map((parts) => parts.flat());
}

function bodyArbitrary(
  operation: SpecOperation,
  ctx: SchemaContext,
): fc.Arbitrary<Pick<FuzzRequest, 'body' | 'contentType'>> {
  const contentType = fc.oneof(
    { weight: 6, arbitrary: fc.constant<string | undefined>('application/json') },
    { weight: 1, arbitrary: fc.constantFrom(...OTHER_CONTENT_TYPES) },
  );
  const raw = fc.constantFrom(...RAW_BODIES).map((text) => ({
    value: undefined,
    raw: text,
    label: `raw ${JSON.stringify(text.slice(0, 12))}${text.length > 12 ? '…' : ''}`,
  }));
  if (operation.bodySchema === undefined) {
    // No body declared: mostly none, sometimes one anyway (it must never be stored or crash).
    const stray = fc.record({
      body: fc.oneof(raw, fc.constant({ value: { unexpected: true }, label: 'stray body' })),
      contentType,
    });
    return fc.oneof(
      { weight: 9, arbitrary: fc.constant({ body: undefined, contentType: undefined }) },
      { weight: 1, arbitrary: stray },
    );
  }
  const schema = operation.bodySchema;
  const json = fc.tuple(valueFor(schema, ctx), mutationArbitrary).map(([value, mutation]) => {
    const mutated = mutate(value, schema, ctx, mutation);
    return { value: mutated.body, label: mutated.label };
  });
  return fc.record({ body: fc.oneof({ weight: 12, arbitrary: json }, { weight: 1, arbitrary: raw }), contentType });
}

/** Absent twice as often as present. */
const sometimes = <T>(value: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: value });

function headersArbitrary(operation: SpecOperation): fc.Arbitrary<Record<string, string>> {
  const idempotency = operation.headerParams.includes('Idempotency-Key')
    ? sometimes(
        fc.oneof(
          { weight: 4, arbitrary: fc.uuid() },
          { weight: 1, arbitrary: fc.constantFrom('same-key', 'k'.repeat(300), ' ') },
        ),
      )
    : fc.constant(null);
  const ifMatch = operation.headerParams.includes('If-Match')
    ? sometimes(fc.constantFrom('"1"', '"2"', 'W/"1"', '*', 'garbage', '"'.repeat(200)))
    : fc.constant(null);
  return fc.tuple(idempotency, ifMatch).map(([key, match]) => ({
    ...(key === null ? {} : { 'idempotency-key': key }),
    ...(match === null ? {} : { 'if-match': match }),
  }));
}

/** One request for any operation of the spec. */
export function requestArbitrary(operations: SpecOperation[], ctx: SchemaContext): fc.Arbitrary<FuzzRequest> {
  return fc.constantFrom(...operations).chain((operation) =>
    fc
      .record({
        principal,
        path: pathArbitrary(operation),
        query: queryArbitrary(operation, ctx),
        headers: headersArbitrary(operation),
        payload: bodyArbitrary(operation, ctx),
      })
      .map(({ payload, ...rest }) => ({ operation, ...rest, ...payload })),
  );
}
