import type { Prisma, PrismaClient } from '../db/prisma.js';
import type { Domain, DomainStatus, Tenant } from '../generated/prisma/client.js';
import { changedFields } from '../lib/changes.js';
import { ForbiddenError, NotFoundError, PreconditionFailedError, UnprocessableError } from '../lib/errors.js';
import { assertVersion } from '../lib/etag.js';
import { normalizeDomainName } from '../lib/names.js';
import { idCursor, type PageRequest, toPage } from '../lib/pagination.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import type { DomainRepository } from '../repositories/domain.repository.js';
import type { RelayRepository } from '../repositories/relay.repository.js';
import type { TenantRepository } from '../repositories/tenant.repository.js';
import { assertHonourable, effectiveLimits, type SenderLimits, senderLimits } from './limits.js';
import { assertVisible, isAdmin, type RequestContext, visibleTenant } from './principal.js';
import type { QuarantineService } from './quarantine.service.js';
import type { RouteCheck } from './route-check.js';
import { domainConflict, heldConflict, type DomainClaims } from './domain-claims.js';
import { createDomainRouting, nextRoute, type MissingForRoute } from './domain-routing.js';

const listCursor = idCursor('domains');

export interface DomainInput {
  name: string;
  route?: 'relay' | 'direct';
  relayId?: string | null;
  fallbackRelayId?: string | null;
  limits?: Partial<SenderLimits>;
  status?: DomainStatus;
  compileOverride?: boolean;
}

type DomainWithTenant = Domain & { tenant: Tenant };

export function ownLimits(domain: Domain): SenderLimits {
  return {
    concurrency: domain.concurrency,
    rateDelaySeconds: domain.rateDelaySeconds,
    recipientsPerMessage: domain.recipientsPerMessage,
  };
}

function tenantDefaults(tenant: Tenant): SenderLimits {
  return {
    concurrency: tenant.defaultConcurrency,
    rateDelaySeconds: tenant.defaultRateDelaySeconds,
    recipientsPerMessage: tenant.defaultRecipientsPerMessage,
  };
}

export function presentDomain(domain: Domain) {
  return {
    id: domain.id,
    tenantId: domain.tenantId,
    name: domain.name,
    unicodeName: normalizeDomainName('name', domain.name).unicode,
    status: domain.status,
    statusReason: domain.statusReason,
    compileOverride: domain.compileOverride,
    route: domain.route,
    relayId: domain.relayId,
    fallbackRelayId: domain.fallbackRelayId,
    limits: ownLimits(domain),
    createdAt: domain.createdAt.toISOString(),
    updatedAt: domain.updatedAt.toISOString(),
    version: domain.version,
  };
}

const AUDITED = [
  'name',
  'status',
  'compileOverride',
  'route',
  'relayId',
  'fallbackRelayId',
  'concurrency',
  'rateDelaySeconds',
  'recipientsPerMessage',
] as const;

interface Deps {
  prisma: PrismaClient;
  domains: DomainRepository;
  tenants: TenantRepository;
  relays: RelayRepository;
  audit: AuditRepository;
  /** The DNS records a new domain must publish (domain verification). */
  dnsRecordsOf: (domain: Domain) => Promise<unknown[]>;
  /** What the compiler quarantined that reaches a domain. */
  quarantine: Pick<QuarantineService, 'ofDomain'>;
  /** The compiler's checks of the routes a write leaves, in the writing transaction. */
  routes: RouteCheck;
  claims: Pick<DomainClaims, 'heldElsewhere'>;
  /** The required records a new route's relays need that DNS does not show now (domain verification). */
  missingForRoute: MissingForRoute;
  now?: () => Date;
}

export function createDomainService(deps: Deps) {
  const now = deps.now ?? (() => new Date());
  const { checkRoute, assertRecordsReady } = createDomainRouting(deps);
  async function loadTenant(ctx: RequestContext, tenantId: string) {
    const tenant = await deps.tenants.findById(deps.prisma, tenantId);
    if (tenant === null) throw new NotFoundError('tenant', tenantId);
    assertVisible(ctx.actor, tenant.id, 'tenant', tenantId);
    return tenant;
  }

  async function load(ctx: RequestContext, id: string): Promise<DomainWithTenant> {
    const domain = await deps.domains.findById(deps.prisma, id);
    if (domain === null) throw new NotFoundError('domain', id);
    assertVisible(ctx.actor, domain.tenantId, 'domain', id);
    return domain;
  }

  function checkAdminFields(ctx: RequestContext, input: Partial<DomainInput>) {
    if (!isAdmin(ctx.actor) && (input.status !== undefined || input.compileOverride !== undefined)) {
      throw new ForbiddenError('only an admin can set status or compileOverride (verification sets the status)');
    }
  }

  function limitColumns(limits: SenderLimits) {
    assertHonourable(limits, 'limits');
    return {
      concurrency: limits.concurrency,
      rateDelaySeconds: limits.rateDelaySeconds,
      recipientsPerMessage: limits.recipientsPerMessage,
    };
  }

  async function save(
    ctx: RequestContext,
    current: DomainWithTenant,
    data: Prisma.DomainUncheckedUpdateInput,
    expected: number | undefined,
    action: string,
  ) {
    assertVersion(current.version, expected, 'domain');
    try {
      return await deps.prisma.$transaction(async (tx) => {
        const row = await deps.domains.update(tx, current.id, current.version, data);
        if (row === null)
          throw new PreconditionFailedError('domain changed while this request was processed: read it again and retry');
        await deps.routes.assertExpressible(tx, { domainIds: [current.id] });
        await deps.audit.record(tx, {
          actorKeyId: ctx.actor.keyId,
          tenantId: current.tenantId,
          action,
          resourceType: 'domain',
          resourceId: current.id,
          changes: changedFields(current, row, [...AUDITED]),
          requestId: ctx.requestId,
        });
        return row;
      });
    } catch (error) {
      throw domainConflict(error, current.name) ?? error;
    }
  }

  return {
    async create(ctx: RequestContext, tenantId: string, input: DomainInput) {
      const tenant = await loadTenant(ctx, tenantId);
      checkAdminFields(ctx, input);
      const { ascii } = normalizeDomainName('body/name', input.name);
      const route = input.route ?? 'relay';
      const relayId = input.relayId ?? null;
      const fallbackRelayId = input.fallbackRelayId ?? null;
      await checkRoute(tenant, route, relayId, fallbackRelayId);
      const held = await deps.claims.heldElsewhere(deps.prisma, { name: ascii, tenantId });
      if (held !== null) throw heldConflict(ascii, held);
      const data = {
        tenantId,
        name: ascii,
        route,
        relayId,
        fallbackRelayId,
        status: input.status ?? 'pending',
        ...(input.status === 'verified' ? { verifiedAt: now() } : {}),
        compileOverride: input.compileOverride ?? false,
        ...limitColumns(senderLimits(input.limits)),
      };
      try {
        const domain = await deps.prisma.$transaction(async (tx) => {
          const created = await deps.domains.create(tx, data);
          await deps.routes.assertExpressible(tx, { domainIds: [created.id] });
          await deps.audit.record(tx, {
            actorKeyId: ctx.actor.keyId,
            tenantId,
            action: 'domain.created',
            resourceType: 'domain',
            resourceId: created.id,
            changes: changedFields(null, created, [...AUDITED]),
            requestId: ctx.requestId,
          });
          return created;
        });
        return { ...presentDomain(domain), dnsRecords: await deps.dnsRecordsOf(domain) };
      } catch (error) {
        throw domainConflict(error, ascii) ?? error;
      }
    },

    async listForTenant(ctx: RequestContext, tenantId: string, query: PageRequest & { status?: DomainStatus }) {
      await loadTenant(ctx, tenantId);
      return this.list(ctx, { ...query, tenantId });
    },

    async list(
      ctx: RequestContext,
      query: PageRequest & { tenantId?: string; status?: DomainStatus; relayId?: string },
    ) {
      const rows = await deps.domains.list(deps.prisma, {
        tenantId: visibleTenant(ctx.actor, query.tenantId),
        status: query.status,
        relayId: query.relayId,
        afterId: listCursor.decode(query.cursor),
        take: query.limit + 1,
      });
      const page = toPage(rows, query.limit, (row) => listCursor.encode(row.id));
      return { items: page.items.map(presentDomain), next_cursor: page.next_cursor };
    },

    async get(ctx: RequestContext, id: string) {
      const domain = await load(ctx, id);
      return { ...presentDomain(domain), quarantine: await deps.quarantine.ofDomain(domain, ctx.actor) };
    },

    async update(
      ctx: RequestContext,
      id: string,
      input: Partial<Omit<DomainInput, 'name'>>,
      expected: number | undefined,
    ) {
      const current = await load(ctx, id);
      checkAdminFields(ctx, input);
      const next = nextRoute(current, input);
      const { route, relayId, fallbackRelayId } = next;
      await checkRoute(current.tenant, route, relayId, fallbackRelayId);
      await assertRecordsReady(current, next);
      const data: Prisma.DomainUncheckedUpdateInput = {
        route,
        relayId,
        fallbackRelayId,
        // An administrator's status decision restarts the pending timeout / grace period.
        ...(input.status === undefined || input.status === current.status
          ? {}
          : {
              status: input.status,
              statusChangedAt: now(),
              ...(input.status === 'verified' ? { verifiedAt: now() } : {}),
            }),
        ...(input.compileOverride === undefined ? {} : { compileOverride: input.compileOverride }),
        ...(input.limits === undefined ? {} : limitColumns(senderLimits({ ...ownLimits(current), ...input.limits }))),
      };
      return presentDomain(await save(ctx, current, data, expected, 'domain.updated'));
    },

    async delete(ctx: RequestContext, id: string, expected: number | undefined) {
      const current = await load(ctx, id);
      assertVersion(current.version, expected, 'domain');
      await deps.prisma.$transaction(async (tx) => {
        await deps.domains.delete(tx, id);
        await deps.audit.record(tx, {
          actorKeyId: ctx.actor.keyId,
          tenantId: current.tenantId,
          action: 'domain.deleted',
          resourceType: 'domain',
          resourceId: id,
          changes: { name: { from: current.name, to: null } },
          requestId: ctx.requestId,
        });
      });
    },

    /**
     * An administrator moves a domain, with its status, records and domain-scoped credentials, to
     * another tenant (a name proven by the wrong customer, a customer's reorganisation). Audited in
     * both tenants' logs, each without the other tenant's id.
     */
    async transfer(ctx: RequestContext, id: string, tenantId: string, expected: number | undefined) {
      if (!isAdmin(ctx.actor)) throw new ForbiddenError('only an admin can transfer a domain');
      const current = await load(ctx, id);
      assertVersion(current.version, expected, 'domain');
      const target = await deps.tenants.findById(deps.prisma, tenantId);
      if (target === null)
        throw new UnprocessableError('tenantId does not name a tenant', 'tenant-not-found', { field: 'tenantId' });
      if (target.id === current.tenantId) return presentDomain(current);
      await checkRoute(target, current.route, current.relayId, current.fallbackRelayId);
      try {
        const moved = await deps.prisma.$transaction(async (tx) => {
          const row = await deps.domains.update(tx, current.id, current.version, { tenantId: target.id });
          if (row === null)
            throw new PreconditionFailedError(
              'domain changed while this request was processed: read it again and retry',
            );
          await deps.routes.assertExpressible(tx, { domainIds: [current.id] });
          for (const [tenant, action] of [
            [current.tenantId, 'domain.transferred_out'],
            [target.id, 'domain.transferred_in'],
          ] as const) {
            await deps.audit.record(tx, {
              actorKeyId: ctx.actor.keyId,
              tenantId: tenant,
              action,
              resourceType: 'domain',
              resourceId: current.id,
              changes: {
                name:
                  action === 'domain.transferred_out'
                    ? { from: current.name, to: null }
                    : { from: null, to: current.name },
              },
              requestId: ctx.requestId,
            });
          }
          return row;
        });
        return presentDomain(moved);
      } catch (error) {
        throw domainConflict(error, current.name) ?? error;
      }
    },

    async getLimits(ctx: RequestContext, id: string) {
      const domain = await load(ctx, id);
      const own = ownLimits(domain);
      const tenantDefault = tenantDefaults(domain.tenant);
      return { own, tenantDefault, effective: effectiveLimits(own, tenantDefault), version: domain.version };
    },

    async putLimits(
      ctx: RequestContext,
      id: string,
      limits: Partial<SenderLimits> | null,
      expected: number | undefined,
    ) {
      const current = await load(ctx, id);
      const updated = await save(ctx, current, limitColumns(senderLimits(limits)), expected, 'domain.limits_changed');
      const own = ownLimits(updated);
      const tenantDefault = tenantDefaults(current.tenant);
      return { own, tenantDefault, effective: effectiveLimits(own, tenantDefault), version: updated.version };
    },
  };
}

export type DomainService = ReturnType<typeof createDomainService>;
