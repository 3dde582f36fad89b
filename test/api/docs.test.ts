import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createTestApp, type TestApp } from '../helpers/app.js';

interface Served {
  servers?: Array<{ url: string }>;
}

async function servedSpec(url: string, headers: Record<string, string> = {}): Promise<Served> {
  const response = await fetch(url, { headers });
  expect(response.status).toBe(200);
  return url.endsWith('/yaml') || url.endsWith('.yaml')
    ? (parse(await response.text()) as Served)
    : ((await response.json()) as Served);
}

describe('the spec served at /docs on a random port', () => {
  let t: TestApp;
  let origin: string;
  beforeAll(async () => {
    t = await createTestApp();
    origin = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => t?.close());

  it('names the origin the request reached as its server, so "Try it out" calls this API', async () => {
    expect(origin).not.toMatch(/:8080$/);
    expect((await servedSpec(`${origin}/docs/json`)).servers).toEqual([expect.objectContaining({ url: origin })]);
    expect((await servedSpec(`${origin}/docs/yaml`)).servers).toEqual([expect.objectContaining({ url: origin })]);
  });

  it('serves /openapi.yaml with a relative server, resolved against where it was fetched', async () => {
    expect((await servedSpec(`${origin}/openapi.yaml`)).servers).toEqual([expect.objectContaining({ url: '/' })]);
  });

  it('ignores X-Forwarded-Proto and X-Forwarded-Host unless the peer is a trusted proxy', async () => {
    const spec = await servedSpec(`${origin}/docs/json`, {
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'evil.example',
    });
    expect(spec.servers).toEqual([expect.objectContaining({ url: origin })]);
  });
});

describe('the spec served at /docs behind a trusted proxy', () => {
  let t: TestApp;
  let origin: string;
  beforeAll(async () => {
    t = await createTestApp({ trustProxy: ['127.0.0.1'] });
    origin = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => t?.close());

  it("names the proxy's public origin from X-Forwarded-Proto and X-Forwarded-Host", async () => {
    const spec = await servedSpec(`${origin}/docs/json`, {
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'relay.example.net',
    });
    expect(spec.servers).toEqual([expect.objectContaining({ url: 'https://relay.example.net' })]);
  });

  it('falls back to the relative server for a Host it would not echo', async () => {
    const spec = await servedSpec(`${origin}/docs/json`, { 'x-forwarded-host': 'a b<script>' });
    expect(spec.servers).toEqual([expect.objectContaining({ url: '/' })]);
  });
});
