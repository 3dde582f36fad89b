/**
 * Secrets cannot leak: a property over arbitrary Unicode secrets (fast-check), against the real app
 * on a real PostgreSQL, with a relay (the real `smtp-server` package) that echoes whatever AUTH sent.
 *
 * For every secret the API accepts (one it answers 400 is out of scope), and for secrets written
 * behind the API with SQL (sealed with the master key, as the edge would refuse some of them), none
 * appears in: the responses of create, activate, test, credential get and list, GET /v1/config,
 * /v1/config/diff, /v1/routes/explain and /v1/audit-events; the app's log stream (at trace level);
 * the tables config_bundles, config_chunks, credential_tests and audit_events read with SQL.
 *
 * "Appears" means any of: base64 of the secret and of the AUTH PLAIN argument (`\0user\0secret`),
 * standard, unpadded and URL-safe; any 6 consecutive code points of the secret, so the secret whole
 * when it has 6 or more (shorter runs, and base64 under 8 characters, are as likely to be ordinary
 * text as a leak); and, in the credential test's detail (answered and stored) where the relay
 * echoed it, the secret whole however short, outside the `[redacted]` markers. Responses and
 * stored text are searched as sent and as decoded from JSON (escapes would hide a secret).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { startEchoRelay, type EchoRelay } from '../helpers/echo-relay.js';
import {
  createCredential,
  createDomain,
  createRelay,
  createTenant,
  insertSealedCredential,
} from '../helpers/fixtures.js';

const WINDOW = 6;

// What secrets are made of: the characters that tripped masking and quoting before, and any
// grapheme at all. Arrays of units, not fc.string: that one mixes in words like `toString`.
const unit = fc.oneof(
  fc.constantFrom(':', '#', ' ', '\\', '"', "'", '\u2028', '\u2029', '😀', '𝔘', 'é', '=', '+', '/', '%', '{', '$'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
);
const text = (maxLength: number) => fc.array(unit, { minLength: 1, maxLength }).map((units) => units.join(''));
/** What a client would send: no whitespace at either end (the API refuses that; what else it refuses is its own). */
const submitted = text(40)
  .map((secret) => secret.trim())
  .filter((secret) => secret !== '');
/** Behind the API: separators and spaces at either end, and secrets over the 1024 characters the API takes. */
const written = fc.oneof(
  fc
    .tuple(fc.constantFrom(' ', '\u2028', '\u2029', ':', ''), text(40), fc.constantFrom(' ', '\u2029', '\u2028', ''))
    .map(([a, b, c]) => `${a}${b}${c}`),
  fc
    .tuple(fc.integer({ min: 1000, max: 1100 }), text(8))
    .map(([length, seed]) => [...seed.repeat(length)].slice(0, length).join('')),
);

const b64 = (value: string, url = false) => Buffer.from(value, 'utf8').toString(url ? 'base64url' : 'base64');

/** Every string whose presence would be a leak of `secret` (see the criterion above). */
function needles(secret: string, username: string): Array<{ kind: string; needle: string }> {
  const out: Array<{ kind: string; needle: string }> = [];
  for (const [kind, value] of [
    ['base64 of the secret', secret],
    ['base64 of AUTH PLAIN', `\0${username}\0${secret}`],
  ] as const) {
    const encoded = b64(value);
    for (const needle of [encoded, encoded.replace(/=+$/, ''), b64(value, true)])
      if (needle.length >= 8) out.push({ kind, needle });
  }
  const points = [...secret];
  for (let i = 0; i + WINDOW <= points.length; i += 1)
    out.push({ kind: `code points ${i}..${i + WINDOW - 1}`, needle: points.slice(i, i + WINDOW).join('') });
  return out;
}

/** The credential test's detail, answered and stored: the relay echoed the secret, so it must be gone whole, however short. */
async function expectDetailRedacted(credentialId: string, answered: string, secret: string): Promise<void> {
  const stored = await t.prisma.$queryRawUnsafe<Array<{ detail: string }>>(
    'SELECT detail FROM credential_tests WHERE credential_id = $1::uuid',
    credentialId,
  );
  const details = [JSON.parse(answered).detail as string, ...stored.map((row) => row.detail)];
  expect(details[0]).toContain('[redacted]');
  for (const detail of details) expect(detail.replaceAll('[redacted]', '\0')).not.toContain(secret);
}

/** A text and, when it is JSON, every string (keys too) it holds, decoded. */
function readable(raw: string): string[] {
  const out = [raw];
  const walk = (value: unknown): void => {
    if (typeof value === 'string') out.push(value);
    else if (Array.isArray(value)) value.forEach(walk);
    else if (value !== null && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        out.push(key);
        walk(inner);
      }
    }
  };
  try {
    walk(JSON.parse(raw));
  } catch {
    // Not JSON: the raw text is all there is.
  }
  return out;
}

let t: TestApp;
let headers: Record<string, string>;
let tenantId: string;
const relays: Array<{ id: string; echo: EchoRelay }> = [];
let logsSeen = 0;
let run = 0;

beforeAll(async () => {
  t = await createTestApp({ logLevel: 'trace' });
  headers = (await tokenFor(t.app, ['admin'])).headers;
  tenantId = (await createTenant(t.app, headers)).id;
  for (const method of ['PLAIN', 'LOGIN'] as const) {
    const echo = await startEchoRelay(method);
    const relay = await createRelay(t.app, headers, {
      host: '127.0.0.1',
      port: echo.port,
      tls: 'opportunistic',
      verify: false,
    });
    relays.push({ id: relay.id, echo });
  }
});
afterAll(async () => {
  await t?.close();
  await Promise.allSettled(relays.map((relay) => relay.echo.close()));
});

/** Calls the API and keeps what it answered, whatever the status. */
async function call(said: string[], method: 'GET' | 'POST', url: string, payload?: object) {
  const response = await t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
  said.push(`${method} ${url} → ${response.statusCode}`, ...readable(response.body));
  return response;
}

/** What the app stored that could hold a secret, read with SQL, and the log lines written since the last look. */
async function storedAndLogged(): Promise<string[]> {
  const rows = async (sql: string) =>
    (await t.prisma.$queryRawUnsafe<Array<{ text: string }>>(sql)).flatMap((row) => readable(row.text));
  const newLogs = t.logs.slice(logsSeen).flatMap(readable);
  logsSeen = t.logs.length;
  return [
    ...(await rows('SELECT content AS text FROM config_chunks')),
    ...(await rows('SELECT bundle::text AS text FROM config_bundles')),
    ...(await rows('SELECT detail AS text FROM credential_tests')),
    ...(await rows('SELECT row_to_json(a)::text AS text FROM audit_events a')),
    ...newLogs,
  ];
}

function expectNoLeak(haystack: string[], secret: string, username: string): void {
  for (const { kind, needle } of needles(secret, username)) {
    const found = haystack.find((text) => text.includes(needle));
    expect(found, `${kind} of ${JSON.stringify(secret)} in ${JSON.stringify(found?.slice(0, 300))}`).toBeUndefined();
  }
}

/** A domain of its own for each run, routed through one of the echo relays. */
async function freshDomain() {
  run += 1;
  const relay = relays[run % relays.length]!;
  const domain = await createDomain(t.app, headers, tenantId, {
    name: `p${run}.prop.test`,
    relayId: relay.id,
    status: 'verified',
  });
  return { relay, domain, name: `p${run}.prop.test` };
}

/** Everything an admin can read about a credential and the configuration it is compiled into. */
async function readEverything(
  said: string[],
  credentialId: string,
  relayId: string,
  domain: string,
  before: string,
  secret: string,
) {
  const tested = await call(said, 'POST', `/v1/credentials/${credentialId}/test`);
  expect(tested.statusCode).toBe(200);
  await expectDetailRedacted(credentialId, tested.body, secret);
  await call(said, 'GET', `/v1/credentials/${credentialId}`);
  await call(said, 'GET', `/v1/relays/${relayId}/credentials?limit=100`);
  const config = await call(said, 'GET', '/v1/config');
  await call(said, 'GET', `/v1/config/diff?from=${before}`);
  await call(said, 'GET', `/v1/routes/explain?sender=someone@${domain}&recipient=rcpt@gmail.test`);
  await call(said, 'GET', '/v1/audit-events?limit=200');
  return config;
}

describe('no secret appears in any response, log line, audit event, stored bundle or test detail', () => {
  it(
    'for every secret the API accepts: created, activated (a rotation), tested, compiled',
    { timeout: 180_000 },
    async () => {
      let accepted = 0;
      await fc.assert(
        fc.asyncProperty(submitted, async (secret) => {
          const { relay, domain, name } = await freshDomain();
          await createCredential(t.app, headers, relay.id, {
            domainId: domain.id,
            username: `first-${run}`,
            secret: `first-secret-${run}`,
          });
          const before = (await t.app.inject({ method: 'GET', url: '/v1/config', headers })).json<{ version: string }>()
            .version;
          const said: string[] = [];
          const username = `user-${run}`;
          const created = await call(said, 'POST', `/v1/relays/${relay.id}/credentials`, {
            username,
            secret,
            domainId: domain.id,
          });
          if (created.statusCode === 400) return;
          expect(created.statusCode).toBe(201);
          accepted += 1;
          const id = created.json<{ id: string }>().id;
          expect((await call(said, 'POST', `/v1/credentials/${id}/activate`)).statusCode).toBe(200);
          const config = await readEverything(said, id, relay.id, name, before, secret);
          // The paths ran: the relay got the secret, and the table holds this credential, masked.
          expect(relay.echo.attempts.at(-1)).toMatchObject({ username, password: secret });
          expect(config.json<{ files: Record<string, { content: string }> }>().files.sasl_passwd?.content).toContain(
            `@${name} ${username}:sha:`,
          );
          expectNoLeak([...said, ...(await storedAndLogged())], secret, username);
        }),
        { numRuns: 20, seed: 2020, endOnFailure: true },
      );
      expect(accepted).toBeGreaterThanOrEqual(10);
    },
  );

  it(
    'for secrets written behind the API, which it may refuse: tested and compiled (or refused by the compiler)',
    { timeout: 180_000 },
    async () => {
      const secretBox = createSecretBox(t.masterKey);
      await fc.assert(
        fc.asyncProperty(written, async (secret) => {
          const { relay, domain, name } = await freshDomain();
          const before =
            (await t.app.inject({ method: 'GET', url: '/v1/config', headers })).json<{ version?: string }>().version ??
            '0'.repeat(64);
          const id = await insertSealedCredential(t.prisma, secretBox, {
            relayId: relay.id,
            domainId: domain.id,
            status: 'active',
            secret,
          });
          const said: string[] = [];
          await readEverything(said, id, relay.id, name, before, secret);
          const attempt = relay.echo.attempts.at(-1)!;
          expect(attempt.password).toBe(secret);
          expectNoLeak([...said, ...(await storedAndLogged())], secret, attempt.username);
          // Out of the compiled set again, so that a secret the compiler refuses does not stop the next run.
          await t.prisma.relayCredential.update({ where: { id }, data: { status: 'retired' } });
        }),
        { numRuns: 12, seed: 2021, endOnFailure: true },
      );
    },
  );
});
