/**
 * POST /v1/credentials/{id}/test against a relay (the real `smtp-server` package) that echoes
 * whatever AUTH sent, raw and decoded: the secret leaves in no form, through the answer, the stored
 * test, the audit log or the app's log, for AUTH PLAIN and AUTH LOGIN alike.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { startEchoRelay, type EchoRelay } from '../helpers/echo-relay.js';
import { createRelay, insertSealedCredential } from '../helpers/fixtures.js';

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
const relays: Partial<Record<'PLAIN' | 'LOGIN', EchoRelay>> = {};

beforeAll(async () => {
  t = await createTestApp({ logLevel: 'trace' });
  admin = await tokenFor(t.app, ['admin']);
  relays.PLAIN = await startEchoRelay('PLAIN');
  relays.LOGIN = await startEchoRelay('LOGIN');
});
afterAll(async () => {
  await t?.close();
  await Promise.allSettled(Object.values(relays).map((relay) => relay.close()));
});

/** Everything the secret could have reached: the answer, the stored test, the audit log, the app's log. */
async function everythingSaid(credentialId: string, answer: string): Promise<string> {
  const stored = await t.prisma.credentialTest.findMany({ where: { credentialId } });
  const audit = await t.app.inject({ method: 'GET', url: '/v1/audit-events?limit=100', headers: admin.headers });
  const auditRows = await t.prisma.auditEvent.findMany();
  return [
    answer,
    ...stored.map((row) => row.detail),
    audit.body,
    JSON.stringify(auditRows, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
    ...t.logs,
  ].join('\n');
}

describe.each(['PLAIN', 'LOGIN'] as const)('a credential test through a relay that echoes AUTH %s', (method) => {
  const forms = (username: string, secret: string) => [
    secret,
    b64(`\0${username}\0${secret}`),
    b64(secret),
    b64(secret).replace(/=+$/, ''),
  ];

  it('answers with the relay refusal, every form of the secret redacted (a secret sent through the API)', async () => {
    const relay = relays[method]!;
    const secret = `pa ss:wo#rd "é" \\ 😀 ünï-${method}`;
    const r = await createRelay(t.app, admin.headers, {
      host: '127.0.0.1',
      port: relay.port,
      tls: 'opportunistic',
      verify: false,
    });
    const created = await t.app.inject({
      method: 'POST',
      url: `/v1/relays/${r.id}/credentials`,
      headers: admin.headers,
      payload: { username: `echo-${method}`, secret },
    });
    expect(created.statusCode).toBe(201);
    const id = created.json<{ id: string }>().id;
    const tested = await t.app.inject({ method: 'POST', url: `/v1/credentials/${id}/test`, headers: admin.headers });
    expect(tested.statusCode).toBe(200);
    const body = tested.json<{ ok: boolean; stage: string; detail: string }>();
    expect(body).toMatchObject({ ok: false, stage: 'auth' });
    // The relay really got the secret, and said it back.
    expect(relay.attempts.at(-1)).toEqual({ method, username: `echo-${method}`, password: secret });
    expect(body.detail).toMatch(/^535 5\.7\.8 refused: you sent AUTH /);
    expect(body.detail).toContain('[redacted]');
    const said = await everythingSaid(id, tested.body);
    for (const form of forms(`echo-${method}`, secret)) expect(said).not.toContain(form);
  });

  it('redacts a secret written behind the API (line separators, which the API may refuse)', async () => {
    const relay = relays[method]!;
    const secret = `:line\u2028sep\u2029para ${method} 𝔘`;
    const r = await createRelay(t.app, admin.headers, {
      host: '127.0.0.1',
      port: relay.port,
      tls: 'opportunistic',
      verify: false,
    });
    const id = await insertSealedCredential(t.prisma, createSecretBox(t.masterKey), {
      relayId: r.id,
      domainId: null,
      status: 'staged',
      secret,
    });
    const tested = await t.app.inject({ method: 'POST', url: `/v1/credentials/${id}/test`, headers: admin.headers });
    expect(tested.json()).toMatchObject({ ok: false, stage: 'auth' });
    expect(relay.attempts.at(-1)?.password).toBe(secret);
    const username = relay.attempts.at(-1)!.username;
    const said = await everythingSaid(id, tested.body);
    for (const form of forms(username, secret)) expect(said).not.toContain(form);
    expect(said).not.toContain('\u2028sep');
  });
});
