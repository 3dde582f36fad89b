import { createHmac, hkdfSync } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { ConflictError, UnprocessableError } from '../lib/errors.js';
import type { IdempotencyService } from '../services/idempotency.service.js';

declare module 'fastify' {
  interface FastifyRequest {
    idempotency: { actorKeyId: string; key: string } | null;
  }
}

const RETENTION_MS = 24 * 60 * 60 * 1000;
/** Response headers worth replaying with the body. */
const REPLAYED_HEADERS = ['etag', 'location'];

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Idempotency-Key on creating POSTs: the first response (anything but a 5xx) is stored per API key
 * and replayed for a retry with the same body; the same key with a different body is a 422.
 */
async function idempotencyPlugin(app: FastifyInstance, options: { records: IdempotencyService; masterKey: Buffer }) {
  const { records } = options;
  // Keyed: a request body can hold a credential's secret, and a plain digest of it, stored next to
  // the username it goes with, would let whoever reads the table test guesses offline.
  const hashKey = Buffer.from(
    hkdfSync('sha256', options.masterKey, Buffer.alloc(0), 'relayplane/idempotency-request/v1', 32),
  );
  app.decorateRequest('idempotency', null);

  app.addHook('preHandler', async (request, reply) => {
    const key = request.headers['idempotency-key'];
    if (request.method !== 'POST' || typeof key !== 'string' || request.principal == null) return;
    const actorKeyId = request.principal.keyId;
    const requestHash = createHmac('sha256', hashKey)
      .update(`${request.method} ${request.url}\n${canonicalJson(request.body ?? null)}`)
      .digest('hex');
    await records.purgeOlderThan(new Date(Date.now() - RETENTION_MS));
    if (await records.claim(actorKeyId, key, requestHash)) {
      request.idempotency = { actorKeyId, key };
      return;
    }
    const existing = await records.find(actorKeyId, key);
    if (existing === null)
      throw new ConflictError(
        'a request with this Idempotency-Key is still in progress; retry shortly',
        'idempotency-in-progress',
      );
    if (existing.requestHash !== requestHash) {
      throw new UnprocessableError(
        'this Idempotency-Key was already used with a different request',
        'idempotency-key-reused',
      );
    }
    if (existing.responseStatus === null) {
      throw new ConflictError(
        'a request with this Idempotency-Key is still in progress; retry shortly',
        'idempotency-in-progress',
      );
    }
    const headers = (existing.responseHeaders ?? {}) as Record<string, string>;
    for (const [name, value] of Object.entries(headers)) reply.header(name, value);
    reply.header('idempotent-replayed', 'true');
    return reply
      .status(existing.responseStatus)
      .type(headers['content-type'] ?? 'application/json')
      .send(existing.responseBody);
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const claim = request.idempotency;
    if (claim === null) return payload;
    request.idempotency = null;
    if (reply.statusCode >= 500 || typeof payload !== 'string') {
      // A failure the client may retry: free the key.
      await records.release(claim.actorKeyId, claim.key);
      return payload;
    }
    const headers: Record<string, string> = {};
    for (const name of [...REPLAYED_HEADERS, 'content-type']) {
      const value = reply.getHeader(name);
      if (typeof value === 'string') headers[name] = value;
    }
    let body: unknown = payload;
    try {
      body = JSON.parse(payload);
    } catch {
      // keep the raw text
    }
    await records.complete(claim.actorKeyId, claim.key, reply.statusCode, body, headers);
    return payload;
  });
}

export default fp(idempotencyPlugin, { name: 'idempotency', fastify: '5.x', dependencies: ['auth'] });
