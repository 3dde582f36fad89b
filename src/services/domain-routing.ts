/**
 * The route a domain may have: through relays its tenant may use (shared ones, or the tenant's
 * own), or direct when the tenant is allowed direct delivery; and a verified domain's mail moves to
 * a relay it does not use now only once that relay's DNS records verify.
 */
import type { PrismaClient } from '../db/prisma.js';
import type { Domain, Relay, Tenant } from '../generated/prisma/client.js';
import { UnprocessableError } from '../lib/errors.js';
import type { RelayRepository } from '../repositories/relay.repository.js';

export type DomainRoute = Pick<Domain, 'route' | 'relayId' | 'fallbackRelayId'>;

/** The required records a new route's relays need that DNS does not show now (domain verification). */
export type MissingForRoute = (
  domain: Domain,
  route: DomainRoute,
) => Promise<{ purpose: string; type: string; host: string; value: string; reason: string }[]>;

/**
 * The route an update leaves. Switching to a direct route drops the relays unless the request names
 * them (then it is refused).
 */
export function nextRoute(current: DomainRoute, input: Partial<DomainRoute>): DomainRoute {
  const route = input.route ?? current.route;
  const relayId =
    input.relayId !== undefined
      ? input.relayId
      : route === 'direct' && input.route !== undefined
        ? null
        : current.relayId;
  const fallbackRelayId =
    input.fallbackRelayId !== undefined
      ? input.fallbackRelayId
      : route === 'direct' && input.route !== undefined
        ? null
        : current.fallbackRelayId;
  return { route, relayId, fallbackRelayId };
}

/**
 * A verified domain's mail must not move to relays whose SPF include and DKIM are not published
 * yet: switching to a relay (or a fallback relay) it does not use now is refused until the new
 * route's records verify. Leaving a relay (a fallback removed, a direct route) needs nothing new.
 */
function addsRelay(current: Domain, next: DomainRoute): boolean {
  if (next.route !== 'relay') return false;
  const now = current.route === 'relay' ? [current.relayId, current.fallbackRelayId] : [];
  return [next.relayId, next.fallbackRelayId].some((id) => id !== null && !now.includes(id));
}

interface Deps {
  prisma: PrismaClient;
  relays: RelayRepository;
  missingForRoute: MissingForRoute;
}

export function createDomainRouting(deps: Deps) {
  /** A relay a tenant's domain may route through: shared, or private to that same tenant. */
  async function usableRelay(field: string, relayId: string, tenantId: string): Promise<Relay> {
    const relay = await deps.relays.findById(deps.prisma, relayId);
    if (relay === null || (relay.tenantId !== null && relay.tenantId !== tenantId)) {
      throw new UnprocessableError(`${field} does not name a relay this tenant can use`, 'relay-not-usable', { field });
    }
    return relay;
  }

  return {
    /** Checks the route a domain would have after a create or update, as one whole. */
    async checkRoute(
      tenant: Tenant,
      route: 'relay' | 'direct',
      relayId: string | null,
      fallbackRelayId: string | null,
    ) {
      if (route === 'direct') {
        if (!tenant.allowDirectDelivery) {
          throw new UnprocessableError(
            'direct delivery is not allowed for this tenant (an admin can set allowDirectDelivery)',
            'direct-delivery-not-allowed',
          );
        }
        if (relayId !== null || fallbackRelayId !== null) {
          throw new UnprocessableError('a direct route takes no relayId or fallbackRelayId', 'invalid-route');
        }
        return;
      }
      if (relayId === null) throw new UnprocessableError('a relay route needs relayId', 'invalid-route');
      await usableRelay('relayId', relayId, tenant.id);
      if (fallbackRelayId !== null) {
        if (fallbackRelayId === relayId)
          throw new UnprocessableError('fallbackRelayId must differ from relayId', 'invalid-route');
        await usableRelay('fallbackRelayId', fallbackRelayId, tenant.id);
      }
    },

    /** Refuses to move a verified (or degraded) domain's mail to a relay whose records do not verify yet. */
    async assertRecordsReady(current: Domain, next: DomainRoute) {
      if ((current.status === 'verified' || current.status === 'degraded') && addsRelay(current, next)) {
        const missing = await deps.missingForRoute(current, next);
        if (missing.length > 0) {
          const first = missing[0]!;
          throw new UnprocessableError(
            `the new relay's DNS records must verify before this verified domain's mail moves to it: ${first.purpose} at ${first.host}: ${first.reason}${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''}`,
            'relay-records-missing',
            { missingRecords: missing },
          );
        }
      }
    },
  };
}
