/**
 * Domain onboarding: the DNS records a domain must publish (ownership token, SPF with its relays'
 * includes, DKIM and return-path as the relays declare them, DMARC: domain-records.ts), their
 * checks, and the status they drive:
 *
 *   pending  → verified   every required record checks out
 *   pending  → failed     still not verified `pendingTimeoutSeconds` after it became pending
 *   verified → degraded   a required record is definitively wrong or gone (a DNS timeout or
 *                         SERVFAIL says nothing about the record and changes nothing, until
 *                         records stayed uncheckable `uncheckableLimitSeconds`: then they count
 *                         as wrong, see boundUnknown)
 *   degraded → verified   the records check out again
 *   degraded → failed     still wrong when the grace period ends (the domain then leaves the
 *                         compiled config: only verified and degraded domains get a route)
 *   failed   → verified   the records check out (POST /verify or the periodic re-check)
 * A claim that would become verified while another tenant holds its name (or a name above it)
 * fails instead, and a claim that wins fails the other tenants' pending claims (domain-claims.ts).
 * A tenant holding a name above a domain's covers that domain's ownership: its ownership record is
 * then optional.
 * `disabled` is an administrator's decision: verification never changes it. Every status change
 * is audited and, through the domains table's trigger, makes the sync worker recompile and deploy.
 */
import { isUniqueViolation, type PrismaClient } from '../db/prisma.js';
import type { Prisma } from '../db/prisma.js';
import {
  checkRecords,
  toBindZone,
  toCsv,
  valueError,
  type AuthValues,
  type DnsResolver,
  type ExpectedRecord,
  type RecordCheck,
} from '../dns/index.js';
import type { Domain } from '../generated/prisma/client.js';
import { ConflictError, NotFoundError, RateLimitedError, ValidationError } from '../lib/errors.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import type { DomainRepository } from '../repositories/domain.repository.js';
import type { RelayRepository } from '../repositories/relay.repository.js';
import { assertVisible, type RequestContext } from './principal.js';
import type { DeployMetrics } from './deploy-metrics.js';
import { heldElsewhereReason, holds, type DomainClaims } from './domain-claims.js';
import { authValuesOf, createDomainRecords, presentRecords, type PresentedRecord } from './domain-records.js';
import { boundUnknown, nextStatus, type VerificationSettings } from './verification-rules.js';

interface Deps {
  prisma: PrismaClient;
  domains: DomainRepository;
  relays: RelayRepository;
  audit: AuditRepository;
  claims: DomainClaims;
  resolver: () => DnsResolver;
  settings: VerificationSettings;
  metrics: Pick<DeployMetrics, 'domainChecked'>;
  log: { warn(obj: object, msg: string): void };
  now?: () => Date;
}

export function createDomainVerificationService(deps: Deps) {
  const now = deps.now ?? (() => new Date());
  const { prisma } = deps;
  const { coveredBy, expectedFor, templateVariables, warningsOf } = createDomainRecords({
    prisma,
    domains: deps.domains,
    relays: deps.relays,
    dmarcReportAddress: deps.settings.dmarcReportAddress,
  });

  async function load(ctx: RequestContext | null, id: string) {
    const domain = await deps.domains.findById(prisma, id);
    if (domain === null) throw new NotFoundError('domain', id);
    if (ctx !== null) assertVisible(ctx.actor, domain.tenantId, 'domain', id);
    return domain;
  }

  async function lastCheck(
    domainId: string,
  ): Promise<{ records: RecordCheck[]; checkedAt: Date; uncheckableSince: Date | null } | null> {
    const row = await deps.domains.findDnsCheck(prisma, domainId);
    return row === null
      ? null
      : {
          records: row.records as unknown as RecordCheck[],
          checkedAt: row.checkedAt,
          uncheckableSince: row.uncheckableSince,
        };
  }

  /** Checks one domain now, stores the observation, applies the status transition. */
  async function check(domain: Domain, actorKeyId: string | null, requestId: string | null) {
    const parent = await coveredBy(domain);
    const expected = await expectedFor(domain, parent);
    const observed = await checkRecords(expected, deps.resolver(), {
      dmarcReportAddress: deps.settings.dmarcReportAddress,
    });
    const at = now();
    const { checks, uncheckableSince } = boundUnknown(
      observed,
      (await lastCheck(domain.id))?.uncheckableSince ?? null,
      at,
      deps.settings.uncheckableLimitSeconds,
    );
    const proposed = nextStatus(
      domain.status,
      checks,
      { statusChangedAt: domain.statusChangedAt, now: at },
      deps.settings,
    );
    // `lost`: the name was won by a claim that committed while this one was deciding (unique index).
    const apply = (lost: boolean) =>
      prisma.$transaction(async (tx) => {
        await deps.domains.saveDnsCheck(tx, domain.id, {
          records: checks as unknown as Prisma.InputJsonValue,
          checkedAt: at,
          uncheckableSince,
        });
        let status = proposed;
        let statusReason = status === domain.status ? domain.statusReason : null;
        const winning = !holds(domain) && (status === 'verified' || status === 'degraded');
        if (winning) {
          const held = lost ? domain.name : await deps.claims.heldElsewhere(tx, domain);
          if (held !== null) {
            status = 'failed';
            statusReason = heldElsewhereReason(domain.name, held);
          }
        }
        if (status === domain.status && statusReason === domain.statusReason) return domain;
        const row = await deps.domains.update(tx, domain.id, domain.version, {
          status,
          statusReason,
          ...(status === domain.status ? {} : { statusChangedAt: at }),
          ...(status === 'verified' && domain.status !== 'verified' ? { verifiedAt: at } : {}),
        });
        // Changed meanwhile (an admin edit, a competing claim that won): the next check decides on
        // the new state; the answer shows it.
        if (row === null) return (await deps.domains.findById(tx, domain.id)) ?? domain;
        await deps.audit.record(tx, {
          actorKeyId,
          tenantId: domain.tenantId,
          action: 'domain.verification_changed',
          resourceType: 'domain',
          resourceId: domain.id,
          changes: {
            status: { from: domain.status, to: status },
            failing: {
              from: null,
              to: checks
                .filter((c) => c.required && c.valid !== true)
                .map((c) => `${c.purpose}: ${c.reason ?? 'unknown'}`),
            },
            ...(statusReason === domain.statusReason
              ? {}
              : { statusReason: { from: domain.statusReason, to: statusReason } }),
          },
          requestId,
        });
        if (winning && status === 'verified') await deps.claims.settleCompetitors(tx, row, at);
        return row;
      });
    let updated: Domain;
    try {
      updated = await apply(false);
    } catch (error) {
      if (!isUniqueViolation(error, 'domains_name_held_key')) throw error;
      updated = await apply(true);
    }
    deps.metrics.domainChecked(updated.status);
    return {
      domain: updated,
      records: presentRecords(domain.name, expected, checks),
      checkedAt: at,
      coveredBy: parent,
    };
  }

  async function view(domain: Domain, records: PresentedRecord[], checkedAt: Date | null, parent: string | null) {
    return {
      domainId: domain.id,
      domain: domain.name,
      status: domain.status,
      statusReason: domain.statusReason,
      ownershipCoveredBy: parent,
      verifiedAt: domain.verifiedAt?.toISOString() ?? null,
      statusChangedAt: domain.statusChangedAt.toISOString(),
      checkedAt: checkedAt?.toISOString() ?? null,
      records,
      warnings: await warningsOf(domain),
    };
  }

  return {
    /** The records to publish and their last observed state (GET /v1/domains/{id}/dns-records). */
    async records(ctx: RequestContext, domainId: string) {
      const domain = await load(ctx, domainId);
      const last = await lastCheck(domain.id);
      const parent = await coveredBy(domain);
      return view(
        domain,
        presentRecords(domain.name, await expectedFor(domain, parent), last?.records ?? null),
        last?.checkedAt ?? null,
        parent,
      );
    },

    /** The same records as a BIND zone fragment (`dns`) or CSV, the values as last advised. */
    async recordsAs(ctx: RequestContext, domainId: string, format: 'dns' | 'csv'): Promise<string> {
      const domain = await load(ctx, domainId);
      const last = await lastCheck(domain.id);
      const records = presentRecords(
        domain.name,
        await expectedFor(domain, await coveredBy(domain)),
        last?.records ?? null,
      );
      return format === 'dns' ? toBindZone(domain.name, records) : toCsv(domain.name, records);
    },

    /** GET /v1/domains/{id}/authentication: its relays' template variables and its values. */
    async authentication(ctx: RequestContext, domainId: string) {
      const domain = await load(ctx, domainId);
      return { domainId: domain.id, variables: await templateVariables(domain), values: authValuesOf(domain) };
    },

    /** PUT /v1/domains/{id}/authentication: replaces the values, each checked against its variable's kind. */
    async putAuthentication(ctx: RequestContext, domainId: string, values: Record<string, string>) {
      const domain = await load(ctx, domainId);
      const variables = await templateVariables(domain);
      const clean: AuthValues = {};
      for (const [name, value] of Object.entries(values)) {
        const field = `body/values/${name}`;
        const variable = variables.find((v) => v.name === name);
        if (variable === undefined) {
          const known =
            variables.length === 0
              ? "the domain's relays declare no authTemplate"
              : `known: ${variables.map((v) => v.name).join(', ')}`;
          throw new ValidationError(`${field} is not a variable of the domain's relays' templates (${known})`, [
            { field, message: 'is not a template variable' },
          ]);
        }
        const problem = valueError(variable.kind, value);
        if (problem !== null) throw new ValidationError(`${field} ${problem}`, [{ field, message: problem }]);
        clean[name] = variable.kind === 'dkimKey' ? value : value.toLowerCase().replace(/\.$/, '');
      }
      const updated = await prisma.$transaction(async (tx) => {
        const row = await deps.domains.update(tx, domain.id, domain.version, {
          authValues: clean as Prisma.InputJsonValue,
        });
        if (row === null)
          throw new ConflictError('the domain changed meanwhile: read it and try again', 'concurrent-write');
        await deps.audit.record(tx, {
          actorKeyId: ctx.actor.keyId,
          tenantId: domain.tenantId,
          action: 'domain.authentication_changed',
          resourceType: 'domain',
          resourceId: domain.id,
          changes: { authValues: { from: authValuesOf(domain), to: clean } },
          requestId: ctx.requestId,
        });
        return row;
      });
      return { domainId: updated.id, variables, values: authValuesOf(updated) };
    },

    /** For a domain just created (no check yet). */
    async recordsOf(domain: Domain): Promise<PresentedRecord[]> {
      return presentRecords(domain.name, await expectedFor(domain, await coveredBy(domain)), null);
    },

    /**
     * The required records a domain would need for another route, besides those its current route
     * needs already (ownership, DMARC, an unchanged DKIM), that DNS does not show now (wrong,
     * absent, or not checkable). Empty: the new route's records verify.
     */
    async missingForRoute(domain: Domain, route: Pick<Domain, 'route' | 'relayId' | 'fallbackRelayId'>) {
      const parent = await coveredBy(domain);
      const same = (a: ExpectedRecord, b: ExpectedRecord) =>
        a.purpose === b.purpose && a.type === b.type && a.host === b.host && a.value === b.value;
      const current = await expectedFor(domain, parent);
      const expected = (await expectedFor({ ...domain, ...route }, parent)).filter(
        (r) => r.required && !current.some((c) => same(c, r)),
      );
      const checks = await checkRecords(expected, deps.resolver());
      return checks
        .filter((c) => c.valid !== true)
        .map(({ purpose, type, host, value, reason }) => ({ purpose, type, host, value, reason: reason ?? 'unknown' }));
    },

    /** POST /v1/domains/{id}/verify: checks now. */
    async verify(ctx: RequestContext, domainId: string) {
      const domain = await load(ctx, domainId);
      // Each check costs several DNS queries (more with SPF includes): a panel polling in a loop
      // must not turn the control plane into a query amplifier against the customer's servers.
      if (deps.settings.verifyCooldownSeconds > 0) {
        const wait = await deps.domains.takeVerifySlot(prisma, domain.id, deps.settings.verifyCooldownSeconds);
        if (wait > 0) {
          throw new RateLimitedError(
            `this domain was checked less than ${deps.settings.verifyCooldownSeconds} s ago: retry after the seconds in Retry-After`,
            {},
            wait,
          );
        }
      }
      const r = await check(domain, ctx.actor.keyId, ctx.requestId);
      return view(r.domain, r.records, r.checkedAt, r.coveredBy);
    },

    /** Periodic: domains whose last check is older than the re-check interval (or never checked). */
    async checkDue(): Promise<void> {
      const dueBefore = new Date(now().getTime() - deps.settings.recheckIntervalSeconds * 1000);
      const due = await deps.domains.dueForDnsCheck(prisma, dueBefore, deps.settings.batchSize);
      for (const domain of due) {
        try {
          await check(domain, null, null);
        } catch (error) {
          deps.log.warn(
            { domainId: domain.id, error: error instanceof Error ? error.message : String(error) },
            'DNS check failed',
          );
        }
      }
    },
  };
}

export type DomainVerificationService = ReturnType<typeof createDomainVerificationService>;
