import { Readable } from 'node:stream';
import type { AppServices } from '../../services/index.js';
import { contextOf } from '../context.js';
import type { OperationHandlers } from '../types.js';

/** CSV when asked for by `format=csv` or an Accept header naming text/csv (billing imports). */
function wantsCsv(accept: string | undefined, format: string | undefined): boolean {
  if (format !== undefined) return format === 'csv';
  return accept !== undefined && /(^|,)\s*text\/csv\b/i.test(accept);
}

export function usageRoutes(services: AppServices) {
  return {
    getUsage: async (request, reply) => {
      const q = request.query;
      const query = { tenantId: q.tenantId, from: q.from, to: q.to, granularity: q.granularity, groupBy: q.groupBy };
      if (wantsCsv(request.headers.accept, q.format)) {
        const ctx = contextOf(request);
        const lines = services.usage.csv(ctx, query);
        // Validation errors surface before the first byte: the header row is only yielded after them.
        const first = await lines.next();
        const stream = Readable.from(
          (async function* () {
            if (first.done !== true) yield first.value;
            yield* lines;
          })(),
        );
        return reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', 'attachment; filename="relayplane-usage.csv"')
          .send(stream);
      }
      return services.usage.list(contextOf(request), { ...query, limit: q.limit ?? 50, cursor: q.cursor });
    },
    listUsageMessages: async (request) => {
      const q = request.query;
      return services.usage.messages(contextOf(request), {
        tenantId: q.tenantId,
        senderDomain: q.senderDomain,
        from: q.from,
        to: q.to,
        limit: q.limit ?? 50,
        cursor: q.cursor,
      });
    },
    getUsageSummary: async (request) =>
      services.usage.summary(contextOf(request), request.params.tenantId, request.query.month),
  } satisfies OperationHandlers;
}
