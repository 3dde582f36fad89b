/**
 * A settings write (every route) or a write to a relay many domains share checks those routes
 * inside its transaction, which at 100,000 domains on a busy machine outlasts Prisma's 5 s
 * interactive-transaction default (P2028, answered 503). These writes give their transaction its
 * own bound. Here the client's default is shrunk to 100 ms and the route check made to take
 * longer, so the test shows the behaviour, not a timing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { PrismaClient } from '../../src/db/prisma.js';
import { UnprocessableError } from '../../src/lib/errors.js';
import { createAuditRepository } from '../../src/repositories/audit.repository.js';
import { createPolicyRepository, createSettingsRepository } from '../../src/repositories/policy.repository.js';
import { createRelayRepository } from '../../src/repositories/relay.repository.js';
import { createTenantRepository } from '../../src/repositories/tenant.repository.js';
import { createPolicyService } from '../../src/services/policy.service.js';
import { createRelayService } from '../../src/services/relay.service.js';
import type { RequestContext } from '../../src/services/principal.js';
import type { RouteCheck } from '../../src/services/route-check.js';
import { usePrismaDatabase } from '../helpers/database.js';

const db = usePrismaDatabase();
const SHORT_DEFAULT_MS = 100;
const SLOW_CHECK_MS = 400;
const ctx: RequestContext = {
  actor: { keyId: '00000000-0000-4000-8000-000000000001', scopes: ['admin'], tenantId: null },
  requestId: 'route-check-transaction-test',
};

/** The test database's client, with a default interactive-transaction timeout far below the check's duration. */
function impatient(prisma: PrismaClient): PrismaClient {
  return new Proxy(prisma, {
    get(target, property, receiver) {
      if (property !== '$transaction') return Reflect.get(target, property, receiver);
      return (run: unknown, options?: object) =>
        target.$transaction(run as never, { timeout: SHORT_DEFAULT_MS, ...options });
    },
  });
}

function service(check: RouteCheck['assertExpressible']) {
  return createPolicyService({
    prisma: impatient(db.prisma),
    policies: createPolicyRepository(),
    settings: createSettingsRepository(),
    audit: createAuditRepository(),
    routes: { assertExpressible: check },
  });
}

function relayService(check: RouteCheck['assertExpressible']) {
  return createRelayService({
    prisma: impatient(db.prisma),
    relays: createRelayRepository(),
    tenants: createTenantRepository(),
    audit: createAuditRepository(),
    routes: { assertExpressible: check },
  });
}

async function currentSettings() {
  const { version, updatedAt: _updatedAt, ...input } = await service(async () => {}).getSettings(ctx);
  return { version, input };
}

describe('route-checking transactions', () => {
  it('outlasts the client default: a slow check under the default times out (P2028)', async () => {
    const error = await impatient(db.prisma)
      .$transaction(async (tx) => {
        await tx.$queryRawUnsafe('SELECT 1');
        await sleep(SLOW_CHECK_MS);
        await tx.$queryRawUnsafe('SELECT 1');
      })
      .then(
        () => undefined,
        (caught: unknown) => caught,
      );
    expect(error).toMatchObject({ code: 'P2028' });
  });

  it('commits a settings write whose route check takes longer than the client default', async () => {
    const { version, input } = await currentSettings();
    const updated = await service(() => sleep(SLOW_CHECK_MS)).putSettings(
      ctx,
      { ...input, defaultConcurrency: input.defaultConcurrency + 1 },
      version,
    );
    expect(updated.defaultConcurrency).toBe(input.defaultConcurrency + 1);
    expect(updated.version).toBe(version + 1);
    expect((await currentSettings()).input.defaultConcurrency).toBe(input.defaultConcurrency + 1);
  });

  it('still refuses, writing nothing, when the slow check finds a route Postfix cannot express', async () => {
    const before = await currentSettings();
    const refused = service(async () => {
      await sleep(SLOW_CHECK_MS);
      throw new UnprocessableError('Postfix cannot express this change', 'config-not-expressible');
    }).putSettings(ctx, { ...before.input, defaultConcurrency: before.input.defaultConcurrency + 5 }, before.version);
    await expect(refused).rejects.toBeInstanceOf(UnprocessableError);
    expect(await currentSettings()).toEqual(before);
  });

  it('commits a shared relay’s limits whose route check takes longer than the client default', async () => {
    const relay = await relayService(async () => {}).create(ctx, {
      name: 'shared',
      host: 'smtp.shared.test',
      port: 587,
      tls: 'starttls',
    });
    const limits = await relayService(() => sleep(SLOW_CHECK_MS)).putLimits(
      ctx,
      relay.id,
      { concurrency: 7 },
      relay.version,
    );
    expect(limits.concurrency).toBe(7);
  });
});
