import { expectedVersion } from '../../lib/etag.js';
import type { AppServices } from '../../services/index.js';
import { contextOf, sendVersioned } from '../context.js';
import type { OperationHandlers } from '../types.js';

/** The records as a BIND zone fragment (`Accept: text/dns`), CSV (`text/csv`), or JSON (anything else). */
function recordsFormat(accept: string | undefined): 'dns' | 'csv' | 'json' {
  if (accept === undefined) return 'json';
  if (/(^|,)\s*text\/dns\b/i.test(accept)) return 'dns';
  if (/(^|,)\s*text\/csv\b/i.test(accept)) return 'csv';
  return 'json';
}

export function domainRoutes(services: AppServices) {
  return {
    createDomain: async (request, reply) =>
      sendVersioned(
        reply,
        await services.domains.create(contextOf(request), request.params.tenantId, request.body),
        201,
      ),
    listTenantDomains: async (request) =>
      services.domains.listForTenant(contextOf(request), request.params.tenantId, {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
        status: request.query.status,
      }),
    listDomains: async (request) =>
      services.domains.list(contextOf(request), {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
        tenantId: request.query.tenantId,
        status: request.query.status,
        relayId: request.query.relayId,
      }),
    getDomain: async (request, reply) =>
      sendVersioned(reply, await services.domains.get(contextOf(request), request.params.domainId)),
    updateDomain: async (request, reply) =>
      sendVersioned(
        reply,
        await services.domains.update(
          contextOf(request),
          request.params.domainId,
          request.body,
          expectedVersion(request.headers['if-match']),
        ),
      ),
    deleteDomain: async (request, reply) => {
      await services.domains.delete(
        contextOf(request),
        request.params.domainId,
        expectedVersion(request.headers['if-match']),
      );
      return reply.status(204).send();
    },
    transferDomain: async (request, reply) =>
      sendVersioned(
        reply,
        await services.domains.transfer(
          contextOf(request),
          request.params.domainId,
          request.body.tenantId,
          expectedVersion(request.headers['if-match']),
        ),
      ),
    getDomainLimits: async (request, reply) =>
      sendVersioned(reply, await services.domains.getLimits(contextOf(request), request.params.domainId)),
    putDomainLimits: async (request, reply) =>
      sendVersioned(
        reply,
        await services.domains.putLimits(
          contextOf(request),
          request.params.domainId,
          request.body,
          expectedVersion(request.headers['if-match']),
        ),
      ),
    deleteDomainLimits: async (request, reply) => {
      await services.domains.putLimits(
        contextOf(request),
        request.params.domainId,
        null,
        expectedVersion(request.headers['if-match']),
      );
      return reply.status(204).send();
    },
    getDomainDnsRecords: async (request, reply) => {
      const format = recordsFormat(request.headers.accept);
      if (format === 'json') return services.domainVerification.records(contextOf(request), request.params.domainId);
      const text = await services.domainVerification.recordsAs(contextOf(request), request.params.domainId, format);
      return reply.type(format === 'dns' ? 'text/dns; charset=utf-8' : 'text/csv; charset=utf-8').send(text);
    },
    getDomainAuthentication: async (request) =>
      services.domainVerification.authentication(contextOf(request), request.params.domainId),
    putDomainAuthentication: async (request) =>
      services.domainVerification.putAuthentication(contextOf(request), request.params.domainId, request.body.values),
    verifyDomain: async (request) => services.domainVerification.verify(contextOf(request), request.params.domainId),
  } satisfies OperationHandlers;
}
