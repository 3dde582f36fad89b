import { randomBytes } from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import type { PrismaClient } from '../db/prisma.js';
import type { ApiKey } from '../generated/prisma/client.js';
import { ForbiddenError, NotFoundError, UnauthorizedError, UnprocessableError } from '../lib/errors.js';
import { idCursor, type PageRequest, toPage } from '../lib/pagination.js';
import type { ApiKeyRepository } from '../repositories/api-key.repository.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import { auditEntry } from './audit.service.js';
import { assertVisible, isAdmin, type Principal, SCOPES, type Scope, visibleTenant } from './principal.js';

const listCursor = idCursor('api-keys');

const KEY_PREFIX = 'rpk_';
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const KEY_PATTERN = /^rpk_([a-z0-9]{20})_([A-Za-z0-9_-]{43})$/;

export type ApiKeyStatus = 'active' | 'revoked' | 'expired';

export interface CreateApiKeyInput {
  name: string;
  scopes: Scope[];
  tenantId?: string | undefined;
  expiresAt?: string | undefined;
}

export interface TokenClaims {
  sub: string;
  scope: string;
  tid?: string;
}

/** What an active key may do now; a token's claims are narrowed to it on every request. */
export interface KeyGrant {
  scopes: Scope[];
  tenantId: string | null;
}

export interface ApiKeyServiceDeps {
  prisma: PrismaClient;
  apiKeys: ApiKeyRepository;
  audit: AuditRepository;
  signToken: (claims: TokenClaims, expiresInSeconds: number) => string;
  tokenTtlSeconds: number;
  /** Resolves whether a tenant exists; lets keys be bound only to real tenants. */
  tenantExists: (tenantId: string) => Promise<boolean>;
  now?: () => Date;
}

/** The key id of a printed key (`rpk_<id>_<secret>`), or null when it is not one. */
export function keyIdOf(printedKey: unknown): string | null {
  return typeof printedKey === 'string' ? (KEY_PATTERN.exec(printedKey.trim())?.[1] ?? null) : null;
}

/** Every key secret is hashed here, so the dummy below has exactly the parameters real keys have. */
const hashSecret = (secret: string) => hash(secret);

let dummyHash: Promise<string> | undefined;
/**
 * The hash of a secret nobody holds, made once per process: an unknown, expired or revoked key id
 * is verified against it, so it costs what a known one costs and its answer time reveals nothing.
 */
const dummySecretHash = () =>
  (dummyHash ??= hashSecret(randomBytes(32).toString('base64url')).catch((error: unknown) => {
    dummyHash = undefined;
    throw error;
  }));

function newKeyId(): string {
  return Array.from(randomBytes(20), (byte) => ID_ALPHABET[byte % ID_ALPHABET.length]).join('');
}

export function apiKeyStatus(key: Pick<ApiKey, 'revokedAt' | 'expiresAt'>, now: Date): ApiKeyStatus {
  if (key.revokedAt !== null) return 'revoked';
  if (key.expiresAt !== null && key.expiresAt <= now) return 'expired';
  return 'active';
}

export function createApiKeyService(deps: ApiKeyServiceDeps) {
  const now = deps.now ?? (() => new Date());

  const present = (key: ApiKey) => ({
    id: key.id,
    name: key.name,
    scopes: key.scopes as Scope[],
    tenantId: key.tenantId,
    status: apiKeyStatus(key, now()),
    createdAt: key.createdAt.toISOString(),
    expiresAt: key.expiresAt?.toISOString() ?? null,
    revokedAt: key.revokedAt?.toISOString() ?? null,
    lastUsedAt: key.lastUsedAt?.toISOString() ?? null,
  });

  /** Which keys a caller may mint: admins any; a tenant only tenant keys for itself. */
  async function checkCreatable(actor: Principal | null, input: CreateApiKeyInput): Promise<string | null> {
    const scopes = new Set(input.scopes);
    if (scopes.has('admin') && scopes.size > 1) {
      throw new UnprocessableError('an admin key already has every scope: give it only "admin"', 'invalid-scopes');
    }
    if (scopes.has('admin') && input.tenantId !== undefined) {
      throw new UnprocessableError('an admin key cannot be bound to a tenant', 'invalid-scopes');
    }
    if (scopes.has('tenant') && input.tenantId === undefined && actor?.tenantId == null) {
      throw new UnprocessableError('a tenant key needs tenantId', 'invalid-scopes');
    }
    let tenantId = input.tenantId ?? null;
    if (actor !== null && !isAdmin(actor)) {
      if (scopes.has('admin') || scopes.has('usage:read')) {
        throw new ForbiddenError('a tenant can only create tenant-scoped keys');
      }
      tenantId ??= actor.tenantId;
      assertVisible(actor, tenantId, 'tenant', tenantId ?? '');
    }
    if (tenantId !== null && !(await deps.tenantExists(tenantId))) {
      throw new NotFoundError('tenant', tenantId);
    }
    return tenantId;
  }

  return {
    /** `actor` null means the local CLI, which acts with the machine owner's authority. */
    async create(actor: Principal | null, input: CreateApiKeyInput, requestId: string | null = null) {
      const tenantId = await checkCreatable(actor, input);
      const expiresAt = input.expiresAt === undefined ? null : new Date(input.expiresAt);
      if (expiresAt !== null && expiresAt <= now()) {
        throw new UnprocessableError('expiresAt must be in the future', 'invalid-expiry');
      }
      const id = newKeyId();
      const secret = randomBytes(32).toString('base64url');
      const secretHash = await hashSecret(secret);
      const key = await deps.prisma.$transaction(async (tx) => {
        const created = await deps.apiKeys.create(tx, {
          id,
          name: input.name,
          secretHash,
          scopes: [...new Set(input.scopes)],
          tenantId,
          createdBy: actor?.keyId ?? 'cli',
          expiresAt,
        });
        await deps.audit.record(
          tx,
          auditEntry(
            { actorKeyId: actor?.keyId ?? null, requestId },
            {
              tenantId,
              action: 'api_key.created',
              resourceId: id,
              changes: {
                name: input.name,
                scopes: created.scopes,
                tenantId,
                expiresAt: expiresAt?.toISOString() ?? null,
              },
            },
          ),
        );
        return created;
      });
      return { ...present(key), key: `${KEY_PREFIX}${id}_${secret}` };
    },

    async list(actor: Principal, query: PageRequest & { tenantId?: string; status?: ApiKeyStatus }) {
      const rows = await deps.apiKeys.list(deps.prisma, {
        tenantId: visibleTenant(actor, query.tenantId),
        status: query.status,
        afterId: listCursor.decode(query.cursor),
        take: query.limit + 1,
        now: now(),
      });
      const page = toPage(rows, query.limit, (row) => listCursor.encode(row.id));
      return { items: page.items.map(present), next_cursor: page.next_cursor };
    },

    async listAll() {
      const rows = await deps.apiKeys.listAll(deps.prisma);
      return rows.map(present);
    },

    async get(actor: Principal, id: string) {
      const key = await deps.apiKeys.findById(deps.prisma, id);
      if (key === null) throw new NotFoundError('api key', id);
      assertVisible(actor, key.tenantId, 'api key', id);
      return present(key);
    },

    async revoke(actor: Principal | null, id: string, requestId: string | null = null) {
      await deps.prisma.$transaction(async (tx) => {
        const key = await deps.apiKeys.findById(tx, id);
        if (key === null) throw new NotFoundError('api key', id);
        if (actor !== null) assertVisible(actor, key.tenantId, 'api key', id);
        if (key.revokedAt !== null) return;
        await deps.apiKeys.revoke(tx, id, now());
        await deps.audit.record(
          tx,
          auditEntry(
            { actorKeyId: actor?.keyId ?? null, requestId },
            {
              tenantId: key.tenantId,
              action: 'api_key.revoked',
              resourceId: id,
              changes: { revokedAt: now().toISOString() },
            },
          ),
        );
      });
    },

    /** Exchanges a printed API key for a bearer token. Every failure looks the same to the caller. */
    async exchange(printedKey: string) {
      const invalid = new UnauthorizedError('the API key is invalid, revoked or expired');
      const match = KEY_PATTERN.exec(printedKey.trim());
      if (match === null) throw invalid;
      const [, id, secret] = match as unknown as [string, string, string];
      const found = await deps.apiKeys.findById(deps.prisma, id);
      const key = found !== null && apiKeyStatus(found, now()) === 'active' ? found : null;
      const matches = await verify(key?.secretHash ?? (await dummySecretHash()), secret);
      if (key === null || !matches) throw invalid;
      await deps.apiKeys.touch(deps.prisma, id, now());
      const expiresIn =
        key.expiresAt === null
          ? deps.tokenTtlSeconds
          : Math.max(1, Math.min(deps.tokenTtlSeconds, Math.floor((key.expiresAt.getTime() - now().getTime()) / 1000)));
      const claims: TokenClaims = { sub: key.id, scope: key.scopes.join(' ') };
      if (key.tenantId !== null) claims.tid = key.tenantId;
      return {
        access_token: deps.signToken(claims, expiresIn),
        token_type: 'Bearer' as const,
        expires_in: expiresIn,
        scope: claims.scope,
      };
    },

    /** The key's current scopes and tenant, or null when it is gone, revoked or expired. */
    async currentGrant(id: string): Promise<KeyGrant | null> {
      const key = await deps.apiKeys.findGrant(deps.prisma, id);
      if (key === null || apiKeyStatus(key, now()) !== 'active') return null;
      return {
        scopes: key.scopes.filter((scope): scope is Scope => (SCOPES as readonly string[]).includes(scope)),
        tenantId: key.tenantId,
      };
    },
  };
}

export type ApiKeyService = ReturnType<typeof createApiKeyService>;
