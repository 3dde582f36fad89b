import jwt from '@fastify/jwt';
import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { ForbiddenError, UnauthorizedError } from '../lib/errors.js';
import type { TokenRateLimit } from '../lib/token-rate-limit.js';
import type { TokenClaims } from '../services/api-key.service.js';
import { type Principal, SCOPES, type Scope } from '../services/principal.js';
import tokenRateLimit from './token-rate-limit.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every authenticated route. */
    principal: Principal;
  }
  interface FastifyInstance {
    /** An onRequest hook admitting bearer tokens that carry one of `scopes`. */
    requireScopes(scopes: readonly string[]): onRequestHookHandler;
    signToken(claims: TokenClaims, expiresInSeconds: number): string;
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: TokenClaims;
    user: TokenClaims & { exp: number };
  }
}

export interface AuthOptions {
  secret: string;
  /** Is the API key behind a token still active? Revocation must end existing tokens too. */
  isKeyActive: (keyId: string) => Promise<boolean>;
  /** How long a key's "still active" answer is trusted, per process. */
  keyStatusCacheMs?: number;
  /** Limits of POST /v1/auth/token (defaults: lib/token-rate-limit.ts). */
  tokenRateLimit?: Partial<TokenRateLimit> | undefined;
}

const ISSUER = 'relayplane';

function toPrincipal(claims: TokenClaims): Principal {
  const scopes = claims.scope.split(' ').filter((scope): scope is Scope => (SCOPES as readonly string[]).includes(scope));
  return { keyId: claims.sub, scopes, tenantId: claims.tid ?? null };
}

async function authPlugin(app: FastifyInstance, options: AuthOptions) {
  await app.register(jwt, {
    secret: options.secret,
    sign: { algorithm: 'HS256', iss: ISSUER },
    // Verified tokens are cached (LRU, never past their exp): a panel reuses one token for many calls.
    verify: { algorithms: ['HS256'], allowedIss: ISSUER, cache: 10_000 },
  });
  await app.register(tokenRateLimit, options.tokenRateLimit ?? {});

  const cacheMs = options.keyStatusCacheMs ?? 5_000;
  const keyStatus = new Map<string, { active: boolean; until: number }>();

  async function keyIsActive(keyId: string): Promise<boolean> {
    const cached = keyStatus.get(keyId);
    if (cached !== undefined && cached.until > Date.now()) return cached.active;
    const active = await options.isKeyActive(keyId);
    if (keyStatus.size > 10_000) keyStatus.clear();
    keyStatus.set(keyId, { active, until: Date.now() + cacheMs });
    return active;
  }

  app.decorate('signToken', (claims: TokenClaims, expiresInSeconds: number) =>
    app.jwt.sign(claims, { expiresIn: expiresInSeconds }),
  );
  /** Lets this process forget a revoked key at once instead of after the cache period. */
  app.decorate('forgetKeyStatus', (keyId: string) => keyStatus.delete(keyId));
  app.decorateRequest('principal', null as unknown as Principal);

  async function authenticate(request: FastifyRequest): Promise<Principal> {
    const header = request.headers.authorization;
    if (header === undefined || !/^Bearer\s+\S+$/i.test(header)) {
      throw new UnauthorizedError('send a bearer token from POST /v1/auth/token in the Authorization header');
    }
    let claims: TokenClaims;
    try {
      claims = await request.jwtVerify<TokenClaims>();
    } catch {
      throw new UnauthorizedError('the bearer token is invalid or expired');
    }
    if (!(await keyIsActive(claims.sub))) {
      throw new UnauthorizedError('the API key behind this token was revoked or has expired');
    }
    return toPrincipal(claims);
  }

  app.decorate('requireScopes', (allowed: readonly string[]): onRequestHookHandler => {
    return async (request) => {
      const principal = await authenticate(request);
      if (!principal.scopes.some((scope) => allowed.includes(scope))) {
        throw new ForbiddenError(`this operation needs one of the scopes: ${allowed.join(', ')}`);
      }
      request.principal = principal;
    };
  });
}

declare module 'fastify' {
  interface FastifyInstance {
    forgetKeyStatus(keyId: string): void;
  }
}

export default fp(authPlugin, { name: 'auth', fastify: '5.x' });
