import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { RateLimitedError } from '../lib/errors.js';
import { DEFAULT_TOKEN_RATE_LIMIT, type TokenRateLimit } from '../lib/token-rate-limit.js';
import { keyIdOf } from '../services/api-key.service.js';

/** The one operation limited: the public exchange that runs an argon2id verification per request. */
const TOKEN_OPERATION = 'createToken';

type Limiter = ReturnType<FastifyInstance['createRateLimit']>;

const asArray = <T>(hooks: T | T[] | undefined): T[] =>
  hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks];

async function enforce(limiter: Limiter, request: FastifyRequest, reply: FastifyReply, what: string) {
  const limit = await limiter(request);
  if (limit.isAllowed || !limit.isExceeded) return;
  const seconds = Math.max(1, limit.ttlInSeconds);
  reply.header('retry-after', String(seconds));
  throw new RateLimitedError(`too many token requests ${what}: retry after the seconds in Retry-After`);
}

/**
 * Rate limits of `POST /v1/auth/token` (@fastify/rate-limit, in-memory per process): per client
 * address before the body is read, and per key id once the body is parsed. No other route is
 * limited.
 */
async function tokenRateLimitPlugin(app: FastifyInstance, options: Partial<TokenRateLimit>) {
  const limits = { ...DEFAULT_TOKEN_RATE_LIMIT, ...options };
  const timeWindow = limits.windowSeconds * 1000;
  await app.register(rateLimit, { global: false });

  // The default key is request.ip, normalized (an IPv6 client counts by its /64); which address
  // that is behind a proxy is Fastify's trustProxy's call.
  const byAddress = app.createRateLimit({ max: limits.perAddress, timeWindow });
  // Unknown ids count like known ones, so a 429 says nothing about which ids exist. A body
  // without a well-formed key id is refused without a verification and counted per address only.
  const byKeyId = app.createRateLimit({
    max: limits.perKeyId,
    timeWindow,
    keyGenerator: (request) => keyIdOf((request.body as { key?: unknown } | undefined)?.key) ?? '',
    allowList: (_request, keyId) => keyId === '',
  });

  const limitAddress = (request: FastifyRequest, reply: FastifyReply) =>
    enforce(byAddress, request, reply, 'from this address');
  const limitKeyId = (request: FastifyRequest, reply: FastifyReply) => enforce(byKeyId, request, reply, 'for this key');

  // Routes come from openapi.yaml (plugins/openapi.ts); the operation is found by its operationId.
  app.addHook('onRoute', (route: RouteOptions) => {
    if ((route.schema as { operationId?: string } | undefined)?.operationId !== TOKEN_OPERATION) return;
    route.onRequest = [limitAddress, ...asArray(route.onRequest)];
    route.preHandler = [...asArray(route.preHandler), limitKeyId];
  });
}

export default fp(tokenRateLimitPlugin, { name: 'token-rate-limit', fastify: '5.x' });
