/**
 * A write's route check reads one domain per kind of route in its scope (loadRouteRows), so a relay
 * shared by thousands of tenants' domains is checked once per kind, not once per tenant. What the
 * compiler reads of a tenant (its default limits, whether the domain may use its relays) decides the
 * kind; a domain on another tenant's relay is its own kind and is still refused.
 */
import { describe, expect, it } from 'vitest';
import { UnprocessableError } from '../../src/lib/errors.js';
import { createSnapshotRepository } from '../../src/repositories/snapshot.repository.js';
import { createRouteCheck } from '../../src/services/route-check.js';
import { usePrismaDatabase } from '../helpers/database.js';

const db = usePrismaDatabase();
const snapshots = createSnapshotRepository();
const routes = createRouteCheck({ snapshots });

async function tenant(slug: string, defaults: { defaultConcurrency?: number } = {}) {
  return db.prisma.tenant.create({ data: { name: slug, slug, ...defaults } });
}

async function domain(tenantId: string, name: string, relayId: string) {
  return db.prisma.domain.create({ data: { tenantId, name, relayId, route: 'relay', status: 'verified' } });
}

describe('route rows of a write', () => {
  it('reads one domain per kind of route, and a domain on another tenant’s relay is its own kind', async () => {
    const shared = await db.prisma.relay.create({
      data: { name: 'shared', host: 'smtp.shared.example', port: 587, tls: 'starttls' },
    });
    for (let i = 0; i < 5; i++) {
      const t = await tenant(`plain-${i}`);
      await domain(t.id, `a${i}.plain.example`, shared.id);
      await domain(t.id, `b${i}.plain.example`, shared.id);
    }
    const limited = await tenant('limited', { defaultConcurrency: 3 });
    await domain(limited.id, 'limited.example', shared.id);

    const rows = await snapshots.loadRouteRows(db.prisma, { relayId: shared.id });
    expect(rows.domains.map((d) => d.name).sort()).toEqual(['a0.plain.example', 'limited.example']);
    expect(rows.tenants).toHaveLength(2);
    await routes.assertExpressible(db.prisma, { relayId: shared.id });

    // A tenant's own relay, and (written around the API's own check, as a race could leave it)
    // another tenant's domain on it, after the owner's by name: alike but for the relay's owner.
    const owner = await tenant('owner');
    const own = await db.prisma.relay.create({
      data: { name: 'own', host: 'smtp.own.example', port: 587, tls: 'starttls', tenantId: owner.id },
    });
    await domain(owner.id, 'a.owner.example', own.id);
    const intruder = await domain((await tenant('intruder')).id, 'z.intruder.example', own.id);

    const ownRows = await snapshots.loadRouteRows(db.prisma, { relayId: own.id });
    expect(ownRows.domains.map((d) => d.name).sort()).toEqual(['a.owner.example', 'z.intruder.example']);
    const refusal = await routes.assertExpressible(db.prisma, { relayId: own.id }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(UnprocessableError);
    const problems = (refusal as UnprocessableError).extra?.problems as Array<{ code: string; resourceId: string }>;
    expect(problems).toEqual([expect.objectContaining({ code: 'relay_not_allowed', resourceId: intruder.id })]);
  });
});
