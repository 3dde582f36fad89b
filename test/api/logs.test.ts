import { afterAll, beforeAll, expect, it } from 'vitest';
import pino from 'pino';
import { lazyChildLogger, loggerOptions } from '../../src/lib/logger.js';
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
  const created = await t.app.inject({
    method: 'POST',
    url: '/v1/api-keys',
    headers,
    payload: { name: 'panel', scopes: ['usage:read'] },
  });
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

it('creates a request logger only for lines at or above the level, and every line carries the request id', async () => {
  const quiet = await createTestApp({ logLevel: 'warn' });
  try {
    const log = quiet.app.log as unknown as { child: (...args: unknown[]) => unknown };
    const realChild = log.child.bind(log);
    let children = 0;
    log.child = (...args: unknown[]) => {
      children++;
      return realChild(...args);
    };
    const before = quiet.logs.length;
    // A request that logs nothing at warn (incoming/completed are info lines): no child logger.
    const ok = await quiet.app.inject({ method: 'GET', url: '/healthz' });
    expect(ok.statusCode).toBe(200);
    expect(children).toBe(0);
    expect(quiet.logs.slice(before).join('')).toBe('');

    // A line at the level goes through a child logger that carries the request id.
    const lines: string[] = [];
    const logger = pino(loggerOptions('warn'), { write: (line: string) => lines.push(line) });
    const child = lazyChildLogger(logger, { reqId: 'req-lazy-1' }, {});
    child.info('dropped');
    expect(lines).toEqual([]);
    child.error({ authorization: 'Bearer abc' }, 'kept');
    expect(lines.map((line) => JSON.parse(line) as Record<string, unknown>)).toEqual([
      expect.objectContaining({ reqId: 'req-lazy-1', msg: 'kept', authorization: '[redacted]' }),
    ]);
    // A route's own logLevel (Fastify passes it as the child's level) is honoured.
    const verbose = lazyChildLogger(logger, { reqId: 'req-lazy-2' }, { level: 'info' });
    verbose.info('route level');
    expect(JSON.parse(lines[1] ?? '{}')).toEqual(expect.objectContaining({ reqId: 'req-lazy-2', msg: 'route level' }));
  } finally {
    await quiet.close();
  }
});
