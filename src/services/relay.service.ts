import { Prisma, type PrismaClient } from '../db/prisma.js';
import type { Relay } from '../generated/prisma/client.js';
import { changedFields } from '../lib/changes.js';
import {
  ConflictError,
  ForbiddenError,
  NotFoundError,
  PreconditionFailedError,
  UnprocessableError,
} from '../lib/errors.js';
import { assertVersion } from '../lib/etag.js';
import { normalizeHost } from '../lib/names.js';
import { idCursor, type PageRequest, toPage } from '../lib/pagination.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import { auditEntry } from './audit.service.js';
import type { RelayRepository } from '../repositories/relay.repository.js';
import type { TenantRepository } from '../repositories/tenant.repository.js';
import { assertHonourable, type RelayLimits } from './limits.js';
import { isAdmin, type RequestContext } from './principal.js';
import { ROUTE_CHECK_TRANSACTION, type RouteCheck } from './route-check.js';
import type { AuthTemplate } from '../dns/index.js';
import {
  normalizeAuthTemplate,
  normalizeDkim,
  normalizeReturnPath,
  normalizeSpfInclude,
  relayAuthTemplate,
  relayDkim,
  relayReturnPath,
  type RelayDkim,
  type RelayReturnPath,
} from './relay-records.js';

const listCursor = idCursor('relays');

type RelayTls = 'starttls' | 'implicit' | 'opportunistic';

export interface RelayInput {
  name: string;
  host: string;
  port: number;
  tls: RelayTls;
  verify?: boolean;
  tenantId?: string;
  spfInclude?: string | null;
  dkim?: RelayDkim[];
  returnPath?: RelayReturnPath | null;
  authTemplate?: AuthTemplate | null;
  notes?: string | null;
  limits?: Partial<RelayLimits>;
}

export function relayLimits(relay: Relay): RelayLimits {
  return {
    concurrency: relay.concurrency,
    rateDelaySeconds: relay.rateDelaySeconds,
    recipientsPerMessage: relay.recipientsPerMessage,
    connectionReuseSeconds: relay.connectionReuseSeconds,
  };
}

export function presentRelay(relay: Relay) {
  return {
    id: relay.id,
    tenantId: relay.tenantId,
    shared: relay.tenantId === null,
    name: relay.name,
    host: relay.host,
    port: relay.port,
    tls: relay.tls,
    verify: relay.verify,
    spfInclude: relay.spfInclude,
    dkim: relayDkim(relay),
    returnPath: relayReturnPath(relay),
    authTemplate: relayAuthTemplate(relay),
    notes: relay.notes,
    limits: relayLimits(relay),
    createdAt: relay.createdAt.toISOString(),
    updatedAt: relay.updatedAt.toISOString(),
    version: relay.version,
  };
}

const AUDITED = [
  'name',
  'host',
  'port',
  'tls',
  'verify',
  'tenantId',
  'spfInclude',
  'dkim',
  'returnPath',
  'authTemplate',
  'notes',
  'concurrency',
  'rateDelaySeconds',
  'recipientsPerMessage',
  'connectionReuseSeconds',
] as const;

function fullLimits(input: Partial<RelayLimits> | null | undefined): RelayLimits {
  return {
    concurrency: input?.concurrency ?? null,
    rateDelaySeconds: input?.rateDelaySeconds ?? null,
    recipientsPerMessage: input?.recipientsPerMessage ?? null,
    connectionReuseSeconds: input?.connectionReuseSeconds ?? null,
  };
}

interface Deps {
  prisma: PrismaClient;
  relays: RelayRepository;
  tenants: TenantRepository;
  audit: AuditRepository;
  /** The compiler's checks of the routes a write leaves, in the writing transaction. */
  routes: RouteCheck;
}

export function createRelayService(deps: Deps) {
  /** Shared relays are visible to every tenant; a private one only to its owner. */
  async function loadVisible(ctx: RequestContext, id: string) {
    const relay = await deps.relays.findById(deps.prisma, id);
    if (relay === null) throw new NotFoundError('relay', id);
    if (ctx.actor.tenantId !== null && relay.tenantId !== null && relay.tenantId !== ctx.actor.tenantId)
      throw new NotFoundError('relay', id);
    return relay;
  }

  /** Visible, and the caller may change it: shared relays belong to admins. */
  async function loadWritable(ctx: RequestContext, id: string) {
    const relay = await loadVisible(ctx, id);
    if (!isAdmin(ctx.actor) && relay.tenantId === null) throw new ForbiddenError('shared relays are managed by admins');
    return relay;
  }

  async function checkLimits(relayId: string | null, limits: RelayLimits) {
    assertHonourable(limits, 'limits');
    if (limits.connectionReuseSeconds !== null && relayId !== null) {
      const scoped = await deps.relays.countDomainScopedCredentials(deps.prisma, relayId);
      if (scoped > 0) {
        throw new UnprocessableError(
          'connectionReuseSeconds means nothing on this relay: it has domain-scoped credentials, and per-sender SASL authentication turns Postfix connection caching off',
          'limits-not-honourable',
        );
      }
    }
  }

  function normalized(input: Partial<RelayInput>) {
    return {
      ...(input.name === undefined ? {} : { name: input.name }),
      ...(input.host === undefined ? {} : { host: normalizeHost('body/host', input.host) }),
      ...(input.port === undefined ? {} : { port: input.port }),
      ...(input.tls === undefined ? {} : { tls: input.tls }),
      ...(input.verify === undefined ? {} : { verify: input.verify }),
      ...(input.spfInclude === undefined
        ? {}
        : { spfInclude: input.spfInclude === null ? null : normalizeSpfInclude(input.spfInclude) }),
      ...(input.dkim === undefined ? {} : { dkim: normalizeDkim(input.dkim) as unknown as Prisma.InputJsonValue }),
      ...(input.returnPath === undefined
        ? {}
        : {
            returnPath:
              input.returnPath === null
                ? Prisma.DbNull
                : (normalizeReturnPath(input.returnPath) as unknown as Prisma.InputJsonValue),
          }),
      ...(input.authTemplate === undefined
        ? {}
        : {
            authTemplate:
              input.authTemplate === null
                ? Prisma.DbNull
                : (normalizeAuthTemplate(input.authTemplate) as unknown as Prisma.InputJsonValue),
          }),
      ...(input.notes === undefined ? {} : { notes: input.notes }),
    };
  }

  /** Postfix's `secure` level (certificate verification) needs TLS; with opportunistic TLS there may be none. */
  function checkTls(tls: RelayTls, verify: boolean) {
    if (tls === 'opportunistic' && verify) {
      throw new UnprocessableError(
        'verify needs TLS, which opportunistic mode does not require: choose starttls or implicit, or drop verify',
        'tls-not-honourable',
      );
    }
  }

  async function save(
    ctx: RequestContext,
    current: Relay,
    data: Prisma.RelayUncheckedUpdateInput,
    expected: number | undefined,
    action: string,
  ) {
    assertVersion(current.version, expected, 'relay');
    // A shared relay can carry every domain: its route check costs as much as a settings write's.
    return deps.prisma.$transaction(async (tx) => {
      const row = await deps.relays.update(tx, current.id, current.version, data);
      if (row === null)
        throw new PreconditionFailedError('relay changed while this request was processed: read it again and retry');
      await deps.routes.assertExpressible(tx, { relayId: current.id });
      await deps.audit.record(
        tx,
        auditEntry(ctx, {
          tenantId: current.tenantId,
          action,
          resourceType: 'relay',
          resourceId: current.id,
          changes: changedFields(current, row, [...AUDITED]),
        }),
      );
      return row;
    }, ROUTE_CHECK_TRANSACTION);
  }

  return {
    loadVisible,

    async create(ctx: RequestContext, input: RelayInput) {
      let tenantId = input.tenantId ?? null;
      if (!isAdmin(ctx.actor)) {
        if (tenantId !== null && tenantId !== ctx.actor.tenantId) throw new NotFoundError('tenant', tenantId);
        tenantId = ctx.actor.tenantId;
      }
      if (tenantId !== null && (await deps.tenants.findById(deps.prisma, tenantId)) === null)
        throw new NotFoundError('tenant', tenantId);
      checkTls(input.tls, input.verify ?? false);
      const limits = fullLimits(input.limits);
      await checkLimits(null, limits);
      const data = {
        ...normalized(input),
        name: input.name,
        host: normalizeHost('body/host', input.host),
        port: input.port,
        tls: input.tls,
        tenantId,
        ...limits,
      };
      const relay = await deps.prisma.$transaction(async (tx) => {
        const created = await deps.relays.create(tx, data);
        await deps.audit.record(
          tx,
          auditEntry(ctx, {
            tenantId,
            action: 'relay.created',
            resourceId: created.id,
            changes: changedFields(null, created, [...AUDITED]),
          }),
        );
        return created;
      });
      return presentRelay(relay);
    },

    async list(ctx: RequestContext, query: PageRequest & { tenantId?: string; shared?: boolean }) {
      const rows = await deps.relays.list(deps.prisma, {
        visibleTo: ctx.actor.tenantId ?? undefined,
        tenantId: query.tenantId,
        shared: query.shared,
        afterId: listCursor.decode(query.cursor),
        take: query.limit + 1,
      });
      const page = toPage(rows, query.limit, (row) => listCursor.encode(row.id));
      return { items: page.items.map(presentRelay), next_cursor: page.next_cursor };
    },

    async get(ctx: RequestContext, id: string) {
      return presentRelay(await loadVisible(ctx, id));
    },

    async update(
      ctx: RequestContext,
      id: string,
      input: Partial<Omit<RelayInput, 'tenantId'>>,
      expected: number | undefined,
    ) {
      const current = await loadWritable(ctx, id);
      checkTls(input.tls ?? current.tls, input.verify ?? current.verify);
      const data: Prisma.RelayUncheckedUpdateInput = normalized(input);
      if (input.limits !== undefined) {
        const limits = fullLimits({ ...relayLimits(current), ...input.limits });
        await checkLimits(id, limits);
        Object.assign(data, limits);
      }
      return presentRelay(await save(ctx, current, data, expected, 'relay.updated'));
    },

    async delete(ctx: RequestContext, id: string, expected: number | undefined) {
      const current = await loadWritable(ctx, id);
      assertVersion(current.version, expected, 'relay');
      await deps.prisma.$transaction(async (tx) => {
        const routed = await deps.relays.countRoutedDomains(tx, id);
        if (routed > 0)
          throw new ConflictError(`${routed} domain(s) route through this relay: move them first`, 'relay-in-use', {
            domains: routed,
          });
        await deps.relays.delete(tx, id);
        await deps.audit.record(
          tx,
          auditEntry(ctx, {
            tenantId: current.tenantId,
            action: 'relay.deleted',
            resourceId: id,
            changes: { name: { from: current.name, to: null } },
          }),
        );
      });
    },

    async getLimits(ctx: RequestContext, id: string) {
      const relay = await loadVisible(ctx, id);
      return { ...relayLimits(relay), version: relay.version };
    },

    async putLimits(ctx: RequestContext, id: string, input: Partial<RelayLimits> | null, expected: number | undefined) {
      const current = await loadWritable(ctx, id);
      const limits = fullLimits(input);
      await checkLimits(id, limits);
      const updated = await save(ctx, current, limits, expected, 'relay.limits_changed');
      return { ...relayLimits(updated), version: updated.version };
    },
  };
}

export type RelayService = ReturnType<typeof createRelayService>;
