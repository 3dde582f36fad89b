import { expect } from 'vitest';
import type { Explanation } from '../../src/postfix/index.js';
import type { TestApp } from '../helpers/app.js';
import { tokenFor } from '../helpers/app.js';

/** Small helpers for end-to-end tests that configure Relayplane through its API. */
export async function adminClient(t: TestApp) {
  const admin = await tokenFor(t.app, ['admin']);
  const call = async (
    method: 'POST' | 'PATCH' | 'PUT',
    url: string,
    payload: object,
    expected = method === 'POST' ? 201 : 200,
  ) => {
    const response = await t.app.inject({ method, url, headers: admin.headers, payload });
    expect(response.statusCode, `${method} ${url}: ${response.body}`).toBe(expected);
    return response.json<{ id: string; [key: string]: unknown }>();
  };
  return {
    admin,
    post: (url: string, payload: object) => call('POST', url, payload),
    put: (url: string, payload: object) => call('PUT', url, payload),
    call,
  };
}

/** GET /v1/routes/explain for one sender and recipient, as given (the query is encoded here). */
export async function explainRoute(
  t: TestApp,
  headers: Record<string, string>,
  sender: string,
  recipient: string,
): Promise<Explanation> {
  const response = await t.app.inject({
    method: 'GET',
    url: `/v1/routes/explain?sender=${encodeURIComponent(sender)}&recipient=${encodeURIComponent(recipient)}`,
    headers,
  });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<Explanation>();
}
