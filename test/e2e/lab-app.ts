import { expect } from 'vitest';
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
