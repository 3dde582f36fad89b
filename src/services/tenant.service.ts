import { isUniqueViolation, type PrismaClient } from '../db/prisma.js';
import type { Tenant } from '../generated/prisma/client.js';
import { changedFields } from '../lib/changes.js';
import { ConflictError, NotFoundError, PreconditionFailedError } from '../lib/errors.js';
import { assertVersion } from '../lib/etag.js';
import { idCursor, type PageRequest, toPage } from '../lib/pagination.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import { auditEntry } from './audit.service.js';
import type { TenantRepository } from '../repositories/tenant.repository.js';
import { assertHonourable, type SenderLimits, senderLimits } from './limits.js';
import { assertVisible, requireAdmin, type RequestContext } from './principal.js';
import type { RouteCheck } from './route-check.js';

const listCursor = idCursor('tenants');

export interface TenantInput {
  name: string;
  slug: string;
  status?: 'active' | 'suspended';
  externalRef?: string | null;
  allowDirectDelivery?: boolean;
  defaultLimits?: Partial<SenderLimits>;
}

export function presentTenant(tenant: Tenant) {
  return {
    id: tenant.id,
    name: tenant.name,
    slug: tenant.slug,
    status: tenant.status,
    externalRef: tenant.externalRef,
    allowDirectDelivery: tenant.allowDirectDelivery,
    defaultLimits: {
      concurrency: tenant.defaultConcurrency,
      rateDelaySeconds: tenant.defaultRateDelaySeconds,
      recipientsPerMessage: tenant.defaultRecipientsPerMessage,
    },
    createdAt: tenant.createdAt.toISOString(),
    updatedAt: tenant.updatedAt.toISOString(),
    /** Not part of the body (the serializer drops it): the route turns it into the ETag. */
    version: tenant.version,
  };
}

const AUDITED = [
  'name',
  'slug',
  'status',
  'externalRef',
  'allowDirectDelivery',
  'defaultConcurrency',
  'defaultRateDelaySeconds',
  'defaultRecipientsPerMessage',
] as const;

function limitColumns(limits: Partial<SenderLimits> | undefined) {
  if (limits === undefined) return {};
  const full = senderLimits(limits);
  assertHonourable(full, 'defaultLimits');
  return {
    defaultConcurrency: full.concurrency,
    defaultRateDelaySeconds: full.rateDelaySeconds,
    defaultRecipientsPerMessage: full.recipientsPerMessage,
  };
}

function uniqueConflict(error: unknown): never {
  if (isUniqueViolation(error, 'slug'))
    throw new ConflictError('a tenant with this slug already exists', 'tenant-slug-taken');
  if (isUniqueViolation(error, 'external_ref'))
    throw new ConflictError('a tenant with this externalRef already exists', 'tenant-external-ref-taken');
  throw error;
}

export function createTenantService(deps: {
  prisma: PrismaClient;
  tenants: TenantRepository;
  audit: AuditRepository;
  routes: RouteCheck;
}) {
  async function load(ctx: RequestContext, id: string) {
    const tenant = await deps.tenants.findById(deps.prisma, id);
    if (tenant === null) throw new NotFoundError('tenant', id);
    assertVisible(ctx.actor, tenant.id, 'tenant', id);
    return tenant;
  }

  return {
    async create(ctx: RequestContext, input: TenantInput) {
      requireAdmin(ctx, 'only an admin can create tenants');
      const data = {
        name: input.name,
        slug: input.slug,
        status: input.status ?? 'active',
        externalRef: input.externalRef ?? null,
        allowDirectDelivery: input.allowDirectDelivery ?? false,
        ...limitColumns(input.defaultLimits),
      };
      try {
        const tenant = await deps.prisma.$transaction(async (tx) => {
          const created = await deps.tenants.create(tx, data);
          await deps.audit.record(
            tx,
            auditEntry(ctx, {
              tenantId: created.id,
              action: 'tenant.created',
              resourceId: created.id,
              changes: changedFields(null, created, [...AUDITED]),
            }),
          );
          return created;
        });
        return presentTenant(tenant);
      } catch (error) {
        uniqueConflict(error);
      }
    },

    async list(ctx: RequestContext, query: PageRequest & { status?: 'active' | 'suspended'; externalRef?: string }) {
      const rows = await deps.tenants.list(deps.prisma, {
        id: ctx.actor.tenantId ?? undefined,
        status: query.status,
        externalRef: query.externalRef,
        afterId: listCursor.decode(query.cursor),
        take: query.limit + 1,
      });
      const page = toPage(rows, query.limit, (row) => listCursor.encode(row.id));
      return { items: page.items.map(presentTenant), next_cursor: page.next_cursor };
    },

    async get(ctx: RequestContext, id: string) {
      return presentTenant(await load(ctx, id));
    },

    async update(ctx: RequestContext, id: string, input: Partial<TenantInput>, expected: number | undefined) {
      const current = await load(ctx, id);
      requireAdmin(ctx, 'only an admin can change tenants');
      assertVersion(current.version, expected, 'tenant');
      const data = {
        ...(input.name === undefined ? {} : { name: input.name }),
        ...(input.slug === undefined ? {} : { slug: input.slug }),
        ...(input.status === undefined ? {} : { status: input.status }),
        ...(input.externalRef === undefined ? {} : { externalRef: input.externalRef }),
        ...(input.allowDirectDelivery === undefined ? {} : { allowDirectDelivery: input.allowDirectDelivery }),
        ...limitColumns(input.defaultLimits),
      };
      try {
        const updated = await deps.prisma.$transaction(async (tx) => {
          const row = await deps.tenants.update(tx, id, current.version, data);
          if (row === null)
            throw new PreconditionFailedError(
              'tenant changed while this request was processed: read it again and retry',
            );
          await deps.routes.assertExpressible(tx, { tenantId: id });
          await deps.audit.record(
            tx,
            auditEntry(ctx, {
              tenantId: id,
              action: 'tenant.updated',
              resourceId: id,
              changes: changedFields(current, row, [...AUDITED]),
            }),
          );
          return row;
        });
        return presentTenant(updated);
      } catch (error) {
        uniqueConflict(error);
      }
    },

    /** Refused while the tenant has domains, unless `cascade`: then its domains, private relays and credentials go too, and its keys are revoked. */
    async delete(ctx: RequestContext, id: string, options: { cascade: boolean; expected: number | undefined }) {
      const current = await load(ctx, id);
      requireAdmin(ctx, 'only an admin can delete tenants');
      assertVersion(current.version, options.expected, 'tenant');
      await deps.prisma.$transaction(async (tx) => {
        const domains = await deps.tenants.countDomains(tx, id);
        if (domains > 0 && !options.cascade) {
          throw new ConflictError(
            `tenant has ${domains} sender domain(s): delete them first or pass cascade=true`,
            'tenant-has-domains',
            { domains },
          );
        }
        const inUse = await deps.tenants.countForeignDomainsOnRelays(tx, id);
        if (inUse > 0)
          throw new ConflictError("another tenant's domains route through this tenant's relays", 'relay-in-use');
        await deps.tenants.deleteDependents(tx, id, new Date());
        await deps.tenants.delete(tx, id);
        await deps.audit.record(
          tx,
          auditEntry(ctx, {
            tenantId: id,
            action: 'tenant.deleted',
            resourceId: id,
            changes: { cascade: options.cascade, domains },
          }),
        );
      });
    },

    async exists(id: string) {
      return (await deps.tenants.findById(deps.prisma, id)) !== null;
    },
  };
}

export type TenantService = ReturnType<typeof createTenantService>;
