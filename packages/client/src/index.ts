import createClient, { type Client, type Middleware } from 'openapi-fetch';
import type { components, paths } from './generated/api.js';

export type { components, operations, paths } from './generated/api.js';

/** An RFC 9457 problem as the API answers it (`error` of every call that did not succeed). */
export type Problem = components['schemas']['Problem'];
/**
 * The JSON media types the client reads. Some operations also answer other types on request
 * (`text/dns`, `text/csv` for DNS records); those are fetched without the typed client.
 */
type JsonMedia = 'application/json' | 'application/problem+json';
/** Every path, parameter, body and response of the API, checked at compile time. */
export type RelayplaneClient = Client<paths, JsonMedia>;

export interface RelayplaneClientOptions {
  /** Where the API is reached, e.g. `https://relayplane.example.net`. */
  baseUrl: string;
  /** An API key as printed (`rpk_…`): exchanged for bearer tokens, renewed before they expire. */
  apiKey: string;
  /** Another fetch (a proxy agent, a test double); default: the global one. */
  fetch?: typeof fetch;
}

const TOKEN_PATH = '/v1/auth/token';
/** Renew this long before a token's end, so a request never races its expiry. */
const RENEW_MARGIN_SECONDS = 30;

/** A problem made by the client itself (no request id: the API never answered). */
function problem(status: number, code: string, title: string, detail: string): Problem {
  return { type: `urn:relayplane:problem:${code}`, title, status, code, detail, requestId: '' };
}

/** openapi-fetch parses a non-2xx Response into `{ error }`: this is how a problem reaches the caller. */
function problemResponse(body: Problem, retryAfter?: string | null): Response {
  const headers = new Headers({ 'content-type': 'application/problem+json' });
  if (retryAfter) headers.set('retry-after', retryAfter);
  return new Response(JSON.stringify(body), { status: body.status, headers });
}

function isProblem(value: unknown): value is Problem {
  const candidate = value as Partial<Problem> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.status === 'number' &&
    typeof candidate.code === 'string'
  );
}

type Exchange = { token: string } | { refused: Problem; retryAfter: string | null };

/**
 * A typed client for hosting panels and billing systems, generated from the API's openapi.yaml
 * (openapi-fetch + openapi-typescript). Every call resolves to `{ data }` or `{ error }`, an RFC
 * 9457 problem; it does not throw for an HTTP error, a refused API key (every call then answers
 * that 401) or an unreachable server (`503 unreachable`). Only a call aborted through its own
 * `signal` rejects.
 */
export function createRelayplaneClient(options: RelayplaneClientOptions): RelayplaneClient {
  const client = createClient<paths, JsonMedia>({
    baseUrl: options.baseUrl,
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  });
  let token: { value: string; renewAt: number } | null = null;
  let pending: Promise<Exchange> | null = null;

  async function exchange(): Promise<Exchange> {
    const { data, error, response } = await client.POST(TOKEN_PATH, { body: { key: options.apiKey } });
    if (data === undefined) {
      const refused = isProblem(error)
        ? error
        : problem(
            response.status,
            'unexpected-response',
            'Unexpected response',
            `POST ${TOKEN_PATH} answered ${response.status}`,
          );
      return { refused, retryAfter: response.headers.get('retry-after') };
    }
    token = {
      value: data.access_token,
      renewAt: Date.now() + Math.max(1, data.expires_in - RENEW_MARGIN_SECONDS) * 1000,
    };
    return { token: data.access_token };
  }

  /** The current token, exchanging the key once for all the calls that need a new one. */
  function bearer(): Promise<Exchange> {
    if (token !== null && Date.now() < token.renewAt) return Promise.resolve({ token: token.value });
    pending ??= exchange().finally(() => (pending = null));
    return pending;
  }

  const middleware: Middleware = {
    async onRequest({ request, schemaPath }) {
      if (schemaPath === TOKEN_PATH) return request;
      const granted = await bearer();
      if ('refused' in granted) return problemResponse(granted.refused, granted.retryAfter);
      request.headers.set('authorization', `Bearer ${granted.token}`);
      return request;
    },
    async onResponse({ request, response }) {
      // A token the server no longer takes (its key revoked, the server's secret changed): the next call exchanges the key again.
      if (response.status === 401 && token !== null && request.headers.get('authorization') === `Bearer ${token.value}`)
        token = null;
      if (response.ok || /json/i.test(response.headers.get('content-type') ?? '')) return undefined;
      // Not the API's answer (a proxy's HTML page): still a problem object, with the status seen.
      const text = (await response.text()).slice(0, 200);
      return problemResponse(
        problem(response.status, 'unexpected-response', 'Unexpected response', text || `HTTP ${response.status}`),
        response.headers.get('retry-after'),
      );
    },
    onError({ error }) {
      if (error instanceof Error && error.name === 'AbortError') return error;
      const detail =
        error instanceof Error
          ? `${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ''}`
          : String(error);
      return problemResponse(problem(503, 'unreachable', 'Relayplane unreachable', detail));
    },
  };
  client.use(middleware);
  return client;
}
