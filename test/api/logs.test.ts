import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  // trace: the most verbose run possible, so anything that could leak is written.
  t = await createTestApp({ logLevel: 'trace' });
});
afterAll(async () => t?.close());

it('writes no key, secret or token value to the logs of a run that creates keys and tokens', async () => {
  const secrets: string[] = [t.jwtSecret, t.masterKey.toString('base64')];
  const admin = await t.app.services.apiKeys.create(null, { name: 'root', scopes: ['admin'] });
  secrets.push(admin.key, admin.key.slice(-43));
  const exchanged = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: admin.key } });
  const token = exchanged.json().access_token as string;
  secrets.push(token);
  const headers = { authorization: `Bearer ${token}` };
  const created = await t.app.inject({ method: 'POST', url: '/v1/api-keys', headers, payload: { name: 'panel', scopes: ['usage:read'] } });
  const panelKey = created.json().key as string;
  secrets.push(panelKey, panelKey.slice(-43));
  const second = await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: panelKey } });
  secrets.push(second.json().access_token);
  // Failures are logged too: a wrong key and a bad token.
  await t.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { key: `${panelKey}x` } });
  await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: { authorization: `Bearer ${token}x` } });
  await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers });

  const output = t.logs.join('');
  expect(output.length).toBeGreaterThan(1000);
  expect(output).toContain('incoming request');
  for (const secret of secrets) {
    expect(output.includes(secret), `a secret of length ${secret.length} leaked into the logs`).toBe(false);
  }
});
