/**
 * POST /v1/credentials/{id}/test: a real SMTP AUTH from the control plane against loopback smart
 * hosts (STARTTLS and TLS on connect), as the relay's TLS mode says; wrong secrets, certificate
 * checks and dead relays each end at the stage that failed; nothing leaks the secret.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { freePort } from '../lab/util.js';

const labOk = labGate('credential test e2e');
const SECRET = 'S3cret with spaces:and-colons';

describe.skipIf(!labOk)('testing a credential against its relay', () => {
  let t: TestApp;
  let starttls: SmartHost;
  let implicit: SmartHost;
  let headers: Record<string, string>;

  const api = async <T = Record<string, unknown>>(method: 'POST', url: string, payload?: object) => {
    const r = await t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
    if (r.statusCode >= 300) throw new Error(`${method} ${url} → ${r.statusCode}: ${r.body}`);
    return { body: r.json<T>(), raw: r.body };
  };
  const credentialOn = async (port: number, tls: string, verify: boolean, secret: string) => {
    const relay = (
      await api<{ id: string }>('POST', '/v1/relays', {
        name: `r${port}${tls}${verify}`,
        host: '127.0.0.1',
        port,
        tls,
        verify,
      })
    ).body;
    return (await api<{ id: string }>('POST', `/v1/relays/${relay.id}/credentials`, { username: 'panel-user', secret }))
      .body.id;
  };
  const test = (id: string) =>
    api<{ ok: boolean; stage: string; detail: string; tlsProtocol: string | null }>(
      'POST',
      `/v1/credentials/${id}/test`,
    );

  beforeAll(async () => {
    starttls = await startSmartHost({ name: 'ctstart', tls: 'starttls', users: { 'panel-user': SECRET } });
    implicit = await startSmartHost({ name: 'ctimpl', tls: 'implicit', users: { 'panel-user': SECRET } });
    t = await createTestApp();
    headers = (await tokenFor(t.app, ['admin'])).headers;
  });
  afterAll(async () => {
    await t?.close();
    await Promise.allSettled([starttls?.close(), implicit?.close()]);
  });

  it('logs in over STARTTLS and over TLS on connect', async () => {
    const a = await test(await credentialOn(starttls.port, 'starttls', false, SECRET));
    expect(a.body).toMatchObject({ ok: true, stage: 'done' });
    expect(a.body.tlsProtocol).toMatch(/^TLSv1\.[23]$/);
    const b = await test(await credentialOn(implicit.port, 'implicit', false, SECRET));
    expect(b.body).toMatchObject({ ok: true, stage: 'done' });
    expect(starttls.authAttempts.some((x) => x.user === 'panel-user' && x.ok)).toBe(true);
    expect(implicit.authAttempts.some((x) => x.user === 'panel-user' && x.ok)).toBe(true);
  });

  it('a wrong secret fails at auth with the server answer; the secret appears nowhere', async () => {
    const wrong = `${SECRET}-typo`;
    const r = await test(await credentialOn(starttls.port, 'starttls', false, wrong));
    expect(r.body).toMatchObject({ ok: false, stage: 'auth' });
    expect(r.body.detail).toMatch(/535/);
    expect(r.raw).not.toContain(wrong);
    expect(t.logs.join('')).not.toContain(wrong);
    const audit = await t.app.inject({ method: 'GET', url: '/v1/audit-events?limit=100', headers });
    expect(audit.body).toContain('credential.tested');
    expect(audit.body).not.toContain(wrong);
  });

  it('a certificate that does not verify fails at tls; a dead relay at connect', async () => {
    const cert = await test(await credentialOn(starttls.port, 'starttls', true, SECRET));
    expect(cert.body).toMatchObject({ ok: false, stage: 'tls' });
    const dead = await test(await credentialOn(await freePort(), 'starttls', false, SECRET));
    expect(dead.body).toMatchObject({ ok: false, stage: 'connect' });
    expect(dead.body.detail).toMatch(/ECONNREFUSED/);
  });

  it('judges the certificate as the nodes do: their CA file, the compiled level and match', async () => {
    // The CA the nodes trust (smtp_tls_CAfile): here the lab hosts' self-made certificates.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-ca-'));
    const caFile = path.join(dir, 'node-ca.pem');
    await writeFile(caFile, `${starttls.caCertPem}\n${implicit.caCertPem}\n`);
    const trusting = await createTestApp({ tlsCaFile: caFile });
    try {
      const admin = (await tokenFor(trusting.app, ['admin'])).headers;
      const run = async (host: string, tls: string, port: number) => {
        const post = async (url: string, payload: object) =>
          (await trusting.app.inject({ method: 'POST', url, headers: admin, payload })).json<{ id: string }>();
        const relay = await post('/v1/relays', { name: `${host} ${tls}`, host, port, tls, verify: true });
        const credential = await post(`/v1/relays/${relay.id}/credentials`, { username: 'panel-user', secret: SECRET });
        return (
          await trusting.app.inject({ method: 'POST', url: `/v1/credentials/${credential.id}/test`, headers: admin })
        ).json();
      };
      // A DNS-named relay: level secure, the certificate names `localhost`.
      expect(await run('localhost', 'starttls', starttls.port)).toMatchObject({
        ok: true,
        stage: 'done',
        certificateCheck: 'secure',
        trustStore: caFile,
      });
      // An IP literal: level verify, the certificate lists 127.0.0.1 as IP subjectAltName.
      expect(await run('127.0.0.1', 'implicit', implicit.port)).toMatchObject({
        ok: true,
        stage: 'done',
        certificateCheck: 'verify',
        trustStore: caFile,
      });
      // A CA file without the relay's CA: refused, as the nodes would defer its mail.
      await writeFile(caFile, `${starttls.caCertPem}\n`);
      expect(await run('127.0.0.1', 'implicit', implicit.port)).toMatchObject({
        ok: false,
        stage: 'tls',
        certificateCheck: 'verify',
      });
    } finally {
      await trusting.close();
      await rm(dir, { recursive: true, force: true });
    }
    // Without RELAYPLANE_TLS_CA_FILE: the system store, which does not know the lab CA; it says so.
    const system = await test(await credentialOn(starttls.port, 'starttls', true, SECRET));
    expect(system.body).toMatchObject({ ok: false, stage: 'tls', certificateCheck: 'verify', trustStore: 'system' });
    expect(system.body.detail).toMatch(/self[- ]signed/i);
    const unchecked = await test(await credentialOn(starttls.port, 'starttls', false, SECRET));
    expect(unchecked.body).toMatchObject({ ok: true, certificateCheck: 'encrypt' });
  });
});
