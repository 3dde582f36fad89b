import { isUniqueViolation, type PrismaClient } from '../db/prisma.js';
import type { DestinationPolicy, Settings } from '../generated/prisma/client.js';
import { changedFields } from '../lib/changes.js';
import { ConflictError, NotFoundError, PreconditionFailedError, UnprocessableError } from '../lib/errors.js';
import { assertVersion } from '../lib/etag.js';
import { normalizeDestinationPattern } from '../lib/names.js';
import { idCursor, type PageRequest, toPage } from '../lib/pagination.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import { auditEntry } from './audit.service.js';
import type { PolicyRepository, SettingsRepository } from '../repositories/policy.repository.js';
import { assertHonourable } from './limits.js';
import { requireAdmin, type RequestContext } from './principal.js';
import { ROUTE_CHECK_TRANSACTION, type RouteCheck } from './route-check.js';

const ADMIN_ONLY = 'destination policies and settings are node-wide: admin only';

const listCursor = idCursor('destination-policies');

type TlsRequirement = 'may' | 'encrypt' | 'verify' | 'secure';

export interface PolicyInput {
  pattern: string;
  concurrency?: number | null;
  rateDelaySeconds?: number | null;
  tls?: TlsRequirement | null;
}

export type SettingsInput = Omit<Settings, 'id' | 'version' | 'updatedAt'>;

export function presentPolicy(policy: DestinationPolicy) {
  return {
    id: policy.id,
    pattern: policy.pattern,
    concurrency: policy.concurrency,
    rateDelaySeconds: policy.rateDelaySeconds,
    tls: policy.tls,
    createdAt: policy.createdAt.toISOString(),
    updatedAt: policy.updatedAt.toISOString(),
    version: policy.version,
  };
}

export function presentSettings(settings: Settings) {
  const { id: _id, updatedAt, ...rest } = settings;
  return { ...rest, updatedAt: updatedAt.toISOString() };
}

const POLICY_FIELDS = ['pattern', 'concurrency', 'rateDelaySeconds', 'tls'] as const;
const SETTINGS_FIELDS = [
  'defaultConcurrency',
  'defaultRateDelaySeconds',
  'inetProtocols',
  'addressPreference',
  'maximalQueueLifetimeSeconds',
  'bounceQueueLifetimeSeconds',
  'minimalBackoffSeconds',
  'maximalBackoffSeconds',
] as const;

interface Deps {
  prisma: PrismaClient;
  policies: PolicyRepository;
  settings: SettingsRepository;
  audit: AuditRepository;
  /** The compiler's checks of the routes a write leaves, in the writing transaction. */
  routes: RouteCheck;
}

/** Destination policies and node-wide settings: both admin-only, node-wide Postfix behaviour. */
export function createPolicyService(deps: Deps) {
  async function load(ctx: RequestContext, id: string) {
    requireAdmin(ctx, ADMIN_ONLY);
    const policy = await deps.policies.findById(deps.prisma, id);
    if (policy === null) throw new NotFoundError('destination policy', id);
    return policy;
  }

  function check(input: { concurrency?: number | null; rateDelaySeconds?: number | null }) {
    assertHonourable(
      {
        concurrency: input.concurrency ?? null,
        rateDelaySeconds: input.rateDelaySeconds ?? null,
        recipientsPerMessage: null,
      },
      'destination policy',
    );
  }

  async function audit(
    ctx: RequestContext,
    tx: PrismaClient | Parameters<Parameters<PrismaClient['$transaction']>[0]>[0],
    action: string,
    id: string,
    changes: Record<string, unknown>,
  ) {
    await deps.audit.record(tx, auditEntry(ctx, { tenantId: null, action, resourceId: id, changes }));
  }

  return {
    async create(ctx: RequestContext, input: PolicyInput) {
      requireAdmin(ctx, ADMIN_ONLY);
      const pattern = normalizeDestinationPattern('body/pattern', input.pattern);
      check(input);
      try {
        const policy = await deps.prisma.$transaction(async (tx) => {
          const created = await deps.policies.create(tx, {
            pattern,
            concurrency: input.concurrency ?? null,
            rateDelaySeconds: input.rateDelaySeconds ?? null,
            tls: input.tls ?? null,
          });
          await audit(
            ctx,
            tx,
            'destination_policy.created',
            created.id,
            changedFields(null, created, [...POLICY_FIELDS]),
          );
          return created;
        });
        return presentPolicy(policy);
      } catch (error) {
        if (isUniqueViolation(error, 'pattern'))
          throw new ConflictError(`a policy for ${pattern} already exists`, 'policy-exists');
        throw error;
      }
    },

    async list(ctx: RequestContext, query: PageRequest) {
      requireAdmin(ctx, ADMIN_ONLY);
      const rows = await deps.policies.list(deps.prisma, {
        afterId: listCursor.decode(query.cursor),
        take: query.limit + 1,
      });
      const page = toPage(rows, query.limit, (row) => listCursor.encode(row.id));
      return { items: page.items.map(presentPolicy), next_cursor: page.next_cursor };
    },

    async get(ctx: RequestContext, id: string) {
      return presentPolicy(await load(ctx, id));
    },

    async update(
      ctx: RequestContext,
      id: string,
      input: Omit<Partial<PolicyInput>, 'pattern'>,
      expected: number | undefined,
    ) {
      const current = await load(ctx, id);
      assertVersion(current.version, expected, 'destination policy');
      const merged = {
        concurrency: input.concurrency === undefined ? current.concurrency : input.concurrency,
        rateDelaySeconds: input.rateDelaySeconds === undefined ? current.rateDelaySeconds : input.rateDelaySeconds,
        tls: input.tls === undefined ? current.tls : input.tls,
      };
      check(merged);
      const updated = await deps.prisma.$transaction(async (tx) => {
        const row = await deps.policies.update(tx, id, current.version, merged);
        if (row === null)
          throw new PreconditionFailedError('destination policy changed while this request was processed');
        await audit(ctx, tx, 'destination_policy.updated', id, changedFields(current, row, [...POLICY_FIELDS]));
        return row;
      });
      return presentPolicy(updated);
    },

    async delete(ctx: RequestContext, id: string, expected: number | undefined) {
      const current = await load(ctx, id);
      assertVersion(current.version, expected, 'destination policy');
      await deps.prisma.$transaction(async (tx) => {
        await deps.policies.delete(tx, id);
        await audit(ctx, tx, 'destination_policy.deleted', id, { pattern: { from: current.pattern, to: null } });
      });
    },

    async getSettings(ctx: RequestContext) {
      requireAdmin(ctx, ADMIN_ONLY);
      return presentSettings(await deps.settings.get(deps.prisma));
    },

    async putSettings(ctx: RequestContext, input: SettingsInput, expected: number | undefined) {
      requireAdmin(ctx, ADMIN_ONLY);
      if (input.minimalBackoffSeconds > input.maximalBackoffSeconds) {
        throw new UnprocessableError('minimalBackoffSeconds must not exceed maximalBackoffSeconds', 'invalid-settings');
      }
      if (input.bounceQueueLifetimeSeconds > input.maximalQueueLifetimeSeconds) {
        throw new UnprocessableError(
          'bounceQueueLifetimeSeconds must not exceed maximalQueueLifetimeSeconds (Postfix would cap it)',
          'invalid-settings',
        );
      }
      assertHonourable(
        {
          concurrency: input.defaultConcurrency,
          rateDelaySeconds: input.defaultRateDelaySeconds === 0 ? null : input.defaultRateDelaySeconds,
          recipientsPerMessage: null,
        },
        'settings',
      );
      // The row is created on first read: inside the transaction, so a refused write leaves none.
      const updated = await deps.prisma.$transaction(async (tx) => {
        const current = await deps.settings.get(tx);
        assertVersion(current.version, expected, 'settings');
        const row = await deps.settings.update(tx, current.version, input);
        if (row === null) throw new PreconditionFailedError('settings changed while this request was processed');
        await deps.routes.assertExpressible(tx, { all: true });
        await audit(ctx, tx, 'settings.updated', '1', changedFields(current, row, [...SETTINGS_FIELDS]));
        return row;
      }, ROUTE_CHECK_TRANSACTION);
      return presentSettings(updated);
    },
  };
}

export type PolicyService = ReturnType<typeof createPolicyService>;
