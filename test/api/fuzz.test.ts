/**
 * A fuzz suite generated from openapi.yaml: every operation, with valid requests and hostile ones
 * (control characters, delimiters, 1 MB strings, wrong JSON types, missing and extra fields, wrong
 * content types, malformed JSON, forged cursors, bad path ids), as admin, tenant, billing and
 * anonymous callers, against the real app and PostgreSQL. Properties: no 5xx; every 4xx is
 * problem+json; every response matches the spec; nothing is stored on a 4xx; nothing the spec
 * refuses is accepted; afterwards the configuration compiles and its maps parse (real postmap).
 *
 * Seeded: the seed is printed; FUZZ_SEED=<seed> replays a run, FUZZ_RUNS=<n> changes its length.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createCredential, createDomain, createRelay, createTenant } from '../helpers/fixtures.js';
import { PoolRef } from '../helpers/schema-arbitrary.js';
import { type FuzzRequest, loadOperations, type Principal, requestArbitrary } from '../helpers/spec-fuzz.js';
import { specChecker, takeViolations } from '../helpers/spec-responses.js';
import { POSTMAP, run } from '../postfix/postfix-harness.js';
import { toolGate } from '../lab/requirements.js';

/** Without postmap the maps are only checked for their line form (CI requires it). */
const postmapOk = toolGate('fuzz: the compiled maps through a real postmap', ['postmap']);

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);

/**
 * The tables a 4xx must leave as they were. Not compared: idempotency records (a 4xx answer is
 * stored to be replayed for its key), stored config bundles and their chunks (GET /v1/config keeps
 * what it compiled), the config change log (bookkeeping of the incremental compiler), usage data
 * and log cursors (written by collection only). Audit events are compared: a refused request must
 * not leave an event claiming a change.
 */
const COMPARED_TABLES = [
  'tenants',
  'domains',
  'relays',
  'relay_credentials',
  'destination_policies',
  'settings',
  'nodes',
  'api_keys',
  'audit_events',
  'deployments',
  'node_deployments',
  'domain_ownership',
  'domain_dns_checks',
  'credential_tests',
];
// An order-independent sum of row hashes per table: no sort, one round trip.
const DIGEST_SQL = COMPARED_TABLES.map(
  (table) =>
    `SELECT '${table}' AS t, count(*)::int AS n, coalesce(sum(hashtextextended(x::text, 0)), 0)::text AS h FROM ${table} x`,
).join(' UNION ALL ');
/** Operations that remove the resource of their path: fixtures are spared, removed ids leave their pool. */
const DELETES: Record<string, string> = {
  deleteTenant: 'tenantId',
  revokeApiKey: 'keyId',
  deleteDomain: 'domainId',
  deleteRelay: 'relayId',
  deleteCredential: 'credentialId',
  deleteDestinationPolicy: 'policyId',
  deleteNode: 'nodeId',
};
const CREATED_POOL: Record<string, string> = {
  createTenant: 'tenants',
  createDomain: 'domains',
  createRelay: 'relays',
  createCredential: 'credentials',
  createDestinationPolicy: 'policies',
  createNode: 'nodes',
  createDeployment: 'deployments',
  createApiKey: 'apiKeys',
};
/** Characters no stored string may hold (the strict-request contract). */
const FORBIDDEN_CHARACTER = /[\p{Cc}\u2028\u2029]|\p{Cs}/u;

let t: TestApp;
let db: pg.Client;
const tokens = new Map<Principal, Record<string, string>>();
const pools = new Map<string, string[]>();
/** Fixture resources a request must not delete or suspend (the run would lose its callers). */
const kept = new Set<string>();

function ed25519KeyLine(): string {
  const raw = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const field = (data: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, data.length]), data]);
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from('ssh-ed25519')), field(raw)]).toString('base64')}`;
}

function forget(id: string) {
  for (const [pool, ids] of pools)
    pools.set(
      pool,
      ids.filter((known) => known !== id),
    );
}

function remember(pool: string, id: string) {
  const ids = pools.get(pool) ?? [];
  if (!ids.includes(id)) ids.push(id);
  pools.set(pool, ids.slice(-60));
}

beforeAll(async () => {
  t = await createTestApp();
  // Its own connection (a prepared statement): through Prisma each digest cost ≈ 15 ms.
  db = new pg.Client({ connectionString: t.database.url });
  await db.connect();
  const admin = await tokenFor(t.app, ['admin']);
  const tenantA = await createTenant(t.app, admin.headers);
  const tenantB = await createTenant(t.app, admin.headers);
  const tenant = await tokenFor(t.app, ['tenant'], tenantA.id);
  const usage = await tokenFor(t.app, ['usage:read']);
  tokens.set('admin', admin.headers).set('tenant', tenant.headers).set('usage', usage.headers).set('none', {});
  tokens.set('garbage', { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' });
  for (const key of [admin.key.id, tenant.key.id, usage.key.id, tenantA.id, tenantB.id]) kept.add(key);
  remember('tenants', tenantA.id);
  remember('tenants', tenantB.id);
  const shared = await createRelay(t.app, admin.headers, { host: '127.0.0.1', port: 40_001 });
  const own = await createRelay(t.app, tenant.headers, { host: '127.0.0.2', port: 40_002 });
  const foreign = await createRelay(t.app, admin.headers, { host: '127.0.0.3', port: 40_003, tenantId: tenantB.id });
  for (const relay of [shared, own, foreign]) remember('relays', relay.id);
  const domainA = await createDomain(t.app, tenant.headers, tenantA.id, { relayId: shared.id });
  const domainB = await createDomain(t.app, admin.headers, tenantB.id, { relayId: foreign.id });
  for (const domain of [domainA, domainB]) remember('domains', domain.id);
  remember('credentials', (await createCredential(t.app, tenant.headers, shared.id, { domainId: domainA.id })).id);
  remember('credentials', (await createCredential(t.app, admin.headers, foreign.id)).id);
  const created = async (url: string, payload: object) =>
    (await t.app.inject({ method: 'POST', url, headers: admin.headers, payload })).json<{ id: string; key?: string }>();
  const spare = await created('/v1/api-keys', { name: 'spare', scopes: ['tenant'], tenantId: tenantB.id });
  remember('apiKeys', spare.id);
  remember('keySecrets', spare.key!);
  remember('policies', (await created('/v1/destination-policies', { pattern: '.fixture.test', tls: 'encrypt' })).id);
  remember(
    'nodes',
    (
      await created('/v1/nodes', {
        name: 'fixture-node',
        sshHost: '127.0.0.1',
        sshPort: 40_099,
        hostKey: ed25519KeyLine(),
      })
    ).id,
  );
  for (const ids of pools.values()) for (const id of ids) kept.add(id);
  takeViolations();
});
afterAll(async () => {
  await db?.end();
  await t?.close();
});

/** A value with its PoolRefs replaced by ids known now (past the end of a pool: an id nobody has). */
function resolve(value: unknown, operationId?: string): unknown {
  if (value instanceof PoolRef) {
    const ids = pools.get(value.pool) ?? [];
    const pick = value.pick % (ids.length + 1);
    const id = pick < ids.length ? ids[pick]! : '9b2f0c4e-1d3a-4e5f-8a6b-7c8d9e0f1a2b';
    // A fixture tenant is neither deleted nor suspended: the run would lose its callers.
    const destructive =
      operationId !== undefined && (DELETES[operationId] !== undefined || operationId === 'updateTenant');
    return destructive && kept.has(id) ? '0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6' : id;
  }
  if (Array.isArray(value)) return value.map((item) => resolve(item));
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v)]));
  return value;
}

function toInject(request: FuzzRequest) {
  const op = request.operation;
  const url = op.path.replace(/\{([^}]+)\}/g, (_match, name: string) => {
    const given = request.path[name]!;
    return given instanceof PoolRef ? encodeURIComponent(String(resolve(given, op.operationId))) : given;
  });
  const query = new URLSearchParams();
  for (const [name, value] of request.query) {
    const resolved = resolve(value);
    query.append(name, typeof resolved === 'string' ? resolved : JSON.stringify(resolved));
  }
  const body =
    request.body === undefined
      ? undefined
      : request.body.raw !== undefined
        ? { text: request.body.raw, parsed: undefined }
        : (() => {
            const parsed = resolve(request.body.value);
            return { text: JSON.stringify(parsed) ?? '', parsed };
          })();
  const headers: Record<string, string> = { ...tokens.get(request.principal)!, ...request.headers };
  if (body !== undefined && request.contentType !== undefined) headers['content-type'] = request.contentType;
  return {
    method: op.method as 'GET',
    url: query.size > 0 ? `${url}?${query.toString()}` : url,
    headers,
    payload: body?.text,
    parsed: body?.parsed,
  };
}

async function digest(): Promise<Map<string, string>> {
  const { rows } = await db.query<{ t: string; n: number; h: string }>({ name: 'fuzz-digest', text: DIGEST_SQL });
  return new Map(rows.map((row) => [row.t, `${row.n}:${row.h}`]));
}

/** What a spec violation is about, for grouping (see spec-responses.ts for the messages). */
function violationKind(violation: string): string {
  if (violation.includes('does not declare') || violation.includes('has no operation')) return 'undeclared status';
  if (violation.includes('content type')) return 'content type';
  if (violation.includes('header')) return 'headers';
  if (violation.includes('problem type')) return 'type is not its code';
  return 'body';
}

function hasForbiddenCharacter(value: unknown): boolean {
  if (typeof value === 'string') return FORBIDDEN_CHARACTER.test(value);
  if (Array.isArray(value)) return value.some(hasForbiddenCharacter);
  if (value !== null && typeof value === 'object')
    return Object.entries(value).some(([k, v]) => FORBIDDEN_CHARACTER.test(k) || hasForbiddenCharacter(v));
  return false;
}

/** Every map line is `key<whitespace>value` without control characters; real postmap builds each hash map without a warning. */
async function mapProblems(files: Record<string, { content: string; mapType: string | null }>): Promise<string[]> {
  const problems: string[] = [];
  for (const [name, file] of Object.entries(files)) {
    file.content.split('\n').forEach((line, index) => {
      if (line === '' || line.startsWith('#')) return;
      const match = /^(\S+)[ \t]+(\S.*)$/u.exec(line);
      if (match === null || FORBIDDEN_CHARACTER.test(match[2]!.replaceAll('\t', ' ')))
        problems.push(`${name}:${index + 1} is not "key value": ${JSON.stringify(line.slice(0, 120))}`);
    });
  }
  if (POSTMAP === undefined || !postmapOk) return problems;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-fuzz-'));
  try {
    await writeFile(path.join(dir, 'main.cf'), 'compatibility_level = 3.6\n');
    for (const [name, file] of Object.entries(files)) {
      if (file.mapType !== 'hash') continue;
      await writeFile(path.join(dir, name), file.content);
      const built = await run(POSTMAP, ['-c', dir, `hash:${path.join(dir, name)}`]);
      if (built.code !== 0 || built.stderr !== '')
        problems.push(`postmap ${name}: ${built.stderr.trim() || `exit ${built.code}`}`);
      const dumped = await run(POSTMAP, ['-c', dir, '-s', `hash:${path.join(dir, name)}`]);
      const entries = file.content.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length;
      const found = dumped.stdout.split('\n').filter((line) => line !== '').length;
      if (found !== entries) problems.push(`postmap ${name}: ${entries} lines but ${found} entries`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return problems;
}

it(
  'survives every operation of the spec with hostile input: no 5xx, problems for every refusal, nothing stored on a 4xx',
  { timeout: 600_000 },
  async () => {
    console.log(`fuzz: seed ${SEED}, ${RUNS} requests (replay with FUZZ_SEED=${SEED})`);
    const { operations, ctx } = loadOperations(ed25519KeyLine());
    const requests = fc.sample(requestArbitrary(operations, ctx), { seed: SEED, numRuns: RUNS });
    // Failures by class, with the operations they happened on and the first request of each.
    const failures = new Map<string, { count: number; operations: Set<string>; example: string }>();
    const fail = (kind: string, operation: string, example: string) => {
      const entry = failures.get(kind) ?? { count: 0, operations: new Set<string>(), example };
      entry.count += 1;
      entry.operations.add(operation);
      failures.set(kind, entry);
    };
    const statuses = new Map<number, number>();
    const succeeded = new Set<string>();
    // A GET may write too (the settings' default row): the state is read again before a write that follows one.
    let state: Map<string, string> | undefined;
    const started = Date.now();
    let requestMs = 0;
    let digestMs = 0;

    for (const [index, request] of requests.entries()) {
      const op = request.operation;
      const sent = toInject(request);
      let clock = performance.now();
      if (sent.method !== 'GET') state ??= await digest();
      digestMs += performance.now() - clock;
      clock = performance.now();
      const response = await t.app.inject(sent);
      requestMs += performance.now() - clock;
      const status = response.statusCode;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status < 300) succeeded.add(op.operationId);
      const label = request.body?.label ?? 'no body';
      const contentType = response.headers['content-type']?.toString() ?? '';
      const json =
        /^application\/(problem\+)?json/.test(contentType) && response.body !== ''
          ? response.json<Record<string, unknown>>()
          : undefined;
      const problem = contentType.startsWith('application/problem+json') ? (json as { code?: string }) : undefined;
      const example = `#${index} [${label}] ${request.principal} ${sent.method} ${sent.url.slice(0, 160)} content-type=${sent.headers['content-type'] ?? '-'} body=${(sent.payload ?? '').slice(0, 160)} → ${status} ${response.body.slice(0, 240)}`;

      const where = op.operationId;
      if (status >= 500) fail(`${status} ${problem?.code ?? ''} (5xx)`, where, example);
      if (status >= 400 && problem === undefined) fail(`${status} not problem+json`, where, example);
      for (const violation of takeViolations())
        fail(
          `${status} ${problem?.code ?? ''} does not match the spec: ${violationKind(violation)}`,
          where,
          `${example}\n    ${violation.slice(0, 400)}`,
        );
      if (status < 300 && op.bodySchema !== undefined && sent.payload !== undefined) {
        const mediaType = sent.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
        if (mediaType !== 'application/json')
          fail(`${status} for a body sent as ${String(sent.headers['content-type'])}`, where, example);
        let parsed: unknown;
        try {
          // RFC 8259 §8.1: a parser may ignore a leading byte order mark, and Fastify's does.
          parsed = JSON.parse(sent.payload.replace(/^\uFEFF/, ''));
        } catch {
          fail(`${status} for malformed JSON`, where, example);
        }
        if (parsed !== undefined && !specChecker().requestBodyValid(op.path, op.method, parsed))
          fail(`${status} for a body the spec refuses (${label.split(' ')[0]})`, where, example);
        if (hasForbiddenCharacter(parsed)) fail(`${status} for a body with a control character`, where, example);
      }
      if (status < 300 && json !== undefined) {
        const created = CREATED_POOL[op.operationId];
        if (created !== undefined && typeof json.id === 'string') remember(created, json.id);
        if (typeof json.key === 'string') remember('keySecrets', json.key);
        if (typeof json.version === 'string') remember('versions', json.version);
        if (typeof json.next_cursor === 'string') remember('cursors', json.next_cursor);
      }
      const removed = DELETES[op.operationId];
      if (status < 300 && removed !== undefined) forget(decodeURIComponent(sent.url.split('?')[0]!.split('/').at(-1)!));
      if (sent.method === 'GET') state = undefined;
      else {
        clock = performance.now();
        const after = await digest();
        digestMs += performance.now() - clock;
        const changed = COMPARED_TABLES.filter((table) => after.get(table) !== state?.get(table));
        if (status >= 400 && changed.length > 0) fail(`${status}, yet ${changed.join(', ')} changed`, where, example);
        state = after;
      }
    }

    const seconds = (Date.now() - started) / 1000;
    console.log(
      `fuzz: ${RUNS} requests in ${seconds.toFixed(1)} s (requests ${(requestMs / 1000).toFixed(1)} s, table digests ${(digestMs / 1000).toFixed(1)} s); statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`,
    );

    const neverSucceeded = operations
      .filter((operation) => !succeeded.has(operation.operationId))
      .map((operation) => operation.operationId);
    console.log(
      `fuzz: ${succeeded.size} of ${operations.length} operations answered 2xx at least once; never: ${neverSucceeded.join(', ') || 'none'}`,
    );

    // Whatever was accepted, the configuration still compiles and every map parses line by line.
    const config = await t.app.inject({ method: 'GET', url: '/v1/config', headers: tokens.get('admin')! });
    takeViolations();
    if (config.statusCode !== 200)
      fail(
        `the configuration no longer compiles (GET /v1/config ${config.statusCode})`,
        'getConfig',
        config.body.slice(0, 1000),
      );
    else
      for (const problem of await mapProblems(
        config.json<{ files: Record<string, { content: string; mapType: string | null }> }>().files,
      ))
        fail(`map ${problem.split(/[: ]/)[0]} does not parse`, 'getConfig', problem);

    const report = [...failures]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(
        ([kind, { count, operations, example }]) =>
          `${count} × ${kind}: ${[...operations].join(', ')}\n    e.g. ${example}`,
      )
      .join('\n');
    expect(failures.size, `fuzz seed ${SEED} (replay with FUZZ_SEED=${SEED}):\n${report}`).toBe(0);
  },
);
