import jwt from '@fastify/jwt';
import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { ForbiddenError, UnauthorizedError } from '../lib/errors.js';
import type { TokenRateLimit } from '../lib/token-rate-limit.js';
import type { KeyGrant, TokenClaims } from '../services/api-key.service.js';
import type { Principal } from '../services/principal.js';
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
  /**
   * What the API key behind a token may do now (null: revoked, expired or gone). A token never
   * carries more than its key holds today: revocation, narrowed scopes or another tenant apply to
   * tokens already issued.
   */
  keyGrant: (keyId: string) => Promise<KeyGrant | null>;
  /** How long a key's grant is trusted, per process. */
  keyStatusCacheMs?: number | undefined;
  /** Limits of POST /v1/auth/token (defaults: lib/token-rate-limit.ts). */
  tokenRateLimit?: Partial<TokenRateLimit> | undefined;
}

const ISSUER = 'relayplane';

/** Our own tokens always have this shape; anything else was not issued by this service as it is. */
function isTokenClaims(claims: unknown): claims is TokenClaims {
  const { sub, scope, tid } = (claims ?? {}) as Record<string, unknown>;
  return typeof sub === 'string' && typeof scope === 'string' && (tid === undefined || typeof tid === 'string');
}

/**
 * The intersection of what the token claims and what its key holds now: the scopes both have, and
 * the tenant either is bound to. Null when they are bound to different tenants.
 */
function toPrincipal(claims: TokenClaims, grant: KeyGrant): Principal | null {
  const tokenTenant = claims.tid ?? null;
  if (tokenTenant !== null && grant.tenantId !== null && tokenTenant !== grant.tenantId) return null;
  const claimed = new Set(claims.scope.split(' '));
  return {
    keyId: claims.sub,
    scopes: grant.scopes.filter((scope) => claimed.has(scope)),
    tenantId: tokenTenant ?? grant.tenantId,
  };
}

async function authPlugin(app: FastifyInstance, options: AuthOptions) {
  await app.register(jwt, {
    secret: options.secret,
    sign: { algorithm: 'HS256', iss: ISSUER },
    // Verified tokens are cached (LRU, never past their exp): a panel reuses one token for many calls.
    // A token without an expiry would outlive every TTL; without an issuer, it is not ours.
    verify: { algorithms: ['HS256'], allowedIss: ISSUER, requiredClaims: ['exp', 'iss', 'sub'], cache: 10_000 },
  });
  await app.register(tokenRateLimit, options.tokenRateLimit ?? {});

  const cacheMs = options.keyStatusCacheMs ?? 5_000;
  const keyStatus = new Map<string, { grant: KeyGrant | null; until: number }>();

  async function currentGrant(keyId: string): Promise<KeyGrant | null> {
    const cached = keyStatus.get(keyId);
    if (cached !== undefined && cached.until > Date.now()) return cached.grant;
    const grant = await options.keyGrant(keyId);
    if (keyStatus.size > 10_000) keyStatus.clear();
    keyStatus.set(keyId, { grant, until: Date.now() + cacheMs });
    return grant;
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
    // The API key itself in place of the token it is exchanged for: the likeliest first mistake.
    if (/^Bearer\s+rpk_/i.test(header)) {
      throw new UnauthorizedError(
        'this is an API key, not a bearer token: exchange it at POST /v1/auth/token and send the access_token it returns',
      );
    }
    let claims: unknown;
    try {
      claims = await request.jwtVerify<TokenClaims>();
    } catch {
      throw new UnauthorizedError('the bearer token is invalid or expired');
    }
    if (!isTokenClaims(claims)) throw new UnauthorizedError('the bearer token is invalid or expired');
    const grant = await currentGrant(claims.sub);
    if (grant === null) {
      throw new UnauthorizedError('the API key behind this token was revoked or has expired');
    }
    const principal = toPrincipal(claims, grant);
    if (principal === null) {
      throw new UnauthorizedError('the API key behind this token is now bound to another tenant: exchange it again');
    }
    return principal;
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
