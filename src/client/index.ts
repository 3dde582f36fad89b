import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from '../generated/api.js';

export type { components, operations, paths } from '../generated/api.js';

export interface RelayplaneClientOptions {
  /** e.g. `https://relayplane.example.net` */
  baseUrl: string;
  /** An API key as printed (`rpk_…`): exchanged for bearer tokens, renewed before they expire. */
  apiKey: string;
  fetch?: typeof fetch;
}

/**
 * A typed client for hosting panels and billing systems, generated from openapi.yaml
 * (openapi-fetch + openapi-typescript): every path, body and response is checked at compile time.
 */
export function createRelayplaneClient(options: RelayplaneClientOptions) {
  const client = createClient<paths>({ baseUrl: options.baseUrl, ...(options.fetch === undefined ? {} : { fetch: options.fetch }) });
  let token: { value: string; renewAt: number } | null = null;

  async function bearer(): Promise<string> {
    if (token !== null && Date.now() < token.renewAt) return token.value;
    const { data, error } = await client.POST('/v1/auth/token', { body: { key: options.apiKey } });
    if (data === undefined) throw new Error(`Relayplane refused the API key: ${JSON.stringify(error)}`);
    // Renew a little before expiry so a request never races the token's end.
    token = { value: data.access_token, renewAt: Date.now() + Math.max(1, data.expires_in - 30) * 1000 };
    return token.value;
  }

  const auth: Middleware = {
    async onRequest({ request }) {
      if (new URL(request.url).pathname === '/v1/auth/token') return request;
      request.headers.set('authorization', `Bearer ${await bearer()}`);
      return request;
    },
  };
  client.use(auth);
  return client;
}
