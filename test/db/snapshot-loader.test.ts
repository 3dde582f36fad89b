/**
 * The snapshot loader reads through node-postgres when the adapter's pool is reachable and through
 * Prisma otherwise; both must give the compiler exactly the same Snapshot.
 */
import { randomBytes } from 'node:crypto';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrismaClient, directPool } from '../../src/db/prisma.js';
import { PrismaClient } from '../../src/generated/prisma/client.js';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { compile } from '../../src/postfix/index.js';
import { createSnapshotRepository } from '../../src/repositories/snapshot.repository.js';
import { createSnapshotService } from '../../src/services/snapshot.service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertSealedCredential, snapshotById as byId } from '../helpers/fixtures.js';

let database: TestDatabase;
let direct: PrismaClient;
let viaPrisma: PrismaClient;
const secretBox = createSecretBox(randomBytes(32));

async function loadBoth() {
  const load = (prisma: PrismaClient) =>
    createSnapshotService({ prisma, snapshots: createSnapshotRepository(), secretBox }).load();
  return { direct: byId(await load(direct)), viaPrisma: byId(await load(viaPrisma)) };
}

async function seed(prisma: PrismaClient) {
  const active = await prisma.tenant.create({
    data: { name: 'Active', slug: 'active', defaultConcurrency: 5, defaultRecipientsPerMessage: 20 },
  });
  const suspended = await prisma.tenant.create({ data: { name: 'Suspended', slug: 'suspended', status: 'suspended' } });
  const shared = await prisma.relay.create({
    data: { name: 'shared', host: 'smtp.shared.example', port: 587, tls: 'starttls', verify: true },
  });
  const implicit = await prisma.relay.create({
    data: {
      name: 'implicit',
      host: 'smtp.implicit.example',
      port: 465,
      tls: 'implicit',
      concurrency: 10,
      rateDelaySeconds: 0,
      connectionReuseSeconds: 60,
    },
  });
  const implicitFallback = await prisma.relay.create({
    data: { name: 'implicit fallback', host: '192.0.2.25', port: 465, tls: 'implicit', recipientsPerMessage: 50 },
  });
  const owned = await prisma.relay.create({
    data: { name: 'owned', host: '2001:db8::25', port: 25, tls: 'opportunistic', tenantId: active.id },
  });
  const statuses = ['pending', 'verified', 'degraded', 'failed', 'disabled'] as const;
  const domains = [];
  for (const [i, status] of statuses.entries()) {
    domains.push(
      await prisma.domain.create({
        data: {
          tenantId: active.id,
          name: `${status}.active.example`,
          status,
          relayId: shared.id,
          compileOverride: status === 'failed',
          concurrency: i === 1 ? 3 : null,
        },
      }),
    );
  }
  domains.push(
    await prisma.domain.create({
      data: {
        tenantId: active.id,
        name: 'fallback.active.example',
        status: 'verified',
        relayId: implicit.id,
        fallbackRelayId: implicitFallback.id,
        rateDelaySeconds: 30,
        recipientsPerMessage: 2,
      },
    }),
    await prisma.domain.create({
      data: { tenantId: active.id, name: 'owned.active.example', status: 'verified', relayId: owned.id },
    }),
    await prisma.domain.create({
      data: { tenantId: active.id, name: 'direct.active.example', status: 'verified', route: 'direct' },
    }),
    await prisma.domain.create({
      data: { tenantId: suspended.id, name: 'held.suspended.example', status: 'verified', relayId: shared.id },
    }),
  );
  const credential = (
    relayId: string,
    domainId: string | null,
    status: 'staged' | 'active' | 'retiring' | 'retired',
    secret: string,
  ) => insertSealedCredential(prisma, secretBox, { relayId, domainId, status, secret });
  await credential(shared.id, null, 'active', 'relay-wide: "quoted" \\ and ünïcödé');
  await credential(shared.id, domains[1]!.id, 'active', 'domain-scoped');
  await credential(shared.id, domains[1]!.id, 'retiring', 'the previous one');
  await credential(shared.id, domains[1]!.id, 'retired', 'an old one');
  await credential(shared.id, domains[2]!.id, 'staged', 'not yet');
  await credential(implicit.id, domains[5]!.id, 'active', 'primary secret');
  await credential(implicitFallback.id, domains[5]!.id, 'active', 'fallback secret');
  await prisma.destinationPolicy.createMany({
    data: [
      { pattern: 'mx.example', tls: 'verify' },
      { pattern: '.provider.example', tls: 'encrypt', concurrency: 4, rateDelaySeconds: 10 },
      { pattern: 'plain.example' },
    ],
  });
}

beforeAll(async () => {
  database = await createTestDatabase();
  direct = createPrismaClient(database.url, { poolSize: 2 });
  // Not made by createPrismaClient, so no pool of ours behind it: the loader takes the Prisma path.
  viaPrisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) });
  await seed(direct);
});
afterAll(async () => {
  await direct?.$disconnect();
  await viaPrisma?.$disconnect();
  await database?.drop();
});

describe('snapshot loader', () => {
  it('reads the same Snapshot through node-postgres as through Prisma', async () => {
    expect(directPool(direct)).toBeDefined();
    expect(directPool(viaPrisma)).toBeUndefined();
    const { direct: fast, viaPrisma: reference } = await loadBoth();
    expect(fast).toStrictEqual(reference);
    // Not equal by being empty: every kind of row is there, and only active credentials.
    expect(reference.tenants.map((t) => t.status).sort()).toEqual(['active', 'suspended']);
    expect(new Set(reference.domains.map((d) => d.status))).toEqual(
      new Set(['pending', 'verified', 'degraded', 'failed', 'disabled']),
    );
    expect(reference.domains.filter((d) => d.limits !== null)).toHaveLength(2);
    expect(reference.relays.filter((r) => r.limits !== null)).toHaveLength(2);
    expect(reference.credentials.map((c) => c.secret).sort()).toEqual([
      'domain-scoped',
      'fallback secret',
      'primary secret',
      'relay-wide: "quoted" \\ and ünïcödé',
    ]);
    expect(reference.destinationPolicies).toHaveLength(3);
    expect(compile(fast).version).toBe(compile(reference).version);
  });

  it('reads the stored settings the same way as the defaults', async () => {
    await direct.settings.create({
      data: {
        id: 1,
        defaultConcurrency: 1,
        defaultRateDelaySeconds: 5,
        inetProtocols: 'ipv4',
        addressPreference: 'ipv6',
        minimalBackoffSeconds: 60,
      },
    });
    const { direct: fast, viaPrisma: reference } = await loadBoth();
    expect(fast).toStrictEqual(reference);
    expect(reference.settings).toMatchObject({
      defaultRateDelaySeconds: 5,
      inetProtocols: 'ipv4',
      minimalBackoffTime: '60s',
    });
  });
});

describe('opened secrets between loads', () => {
  /** A secret box that counts what it really opens. */
  function countingBox() {
    let opens = 0;
    const box = {
      ...secretBox,
      open: (...args: Parameters<typeof secretBox.open>) => (opens++, secretBox.open(...args)),
    };
    return { box, opens: () => opens };
  }

  it('opens each secret once, then only what changed: a re-seal, a tampered row (refused), a new credential', async () => {
    const counting = countingBox();
    const service = createSnapshotService({
      prisma: direct,
      snapshots: createSnapshotRepository(),
      secretBox: counting.box,
    });
    const first = await service.load();
    const active = first.credentials.length;
    expect(counting.opens()).toBe(active);
    expect(await service.load()).toStrictEqual(first);
    expect(counting.opens()).toBe(active);

    // Rotated in place: a new secret sealed under a new nonce is opened, the others are not.
    const target = first.credentials.find((c) => c.secret === 'domain-scoped')!;
    const resealed = secretBox.seal('rotated secret', target.id);
    await direct.relayCredential.update({
      where: { id: target.id },
      data: { secretCiphertext: new Uint8Array(resealed.ciphertext), secretNonce: new Uint8Array(resealed.nonce) },
    });
    const second = await service.load();
    expect(second.credentials.find((c) => c.id === target.id)?.secret).toBe('rotated secret');
    expect(counting.opens()).toBe(active + 1);
    // The fingerprint masked tables show is the opened secret's (the row's column was left stale on purpose).
    expect(second.credentials.find((c) => c.id === target.id)?.fingerprint).toBe(
      secretBox.fingerprint('rotated secret'),
    );
    for (const c of second.credentials) expect(c.fingerprint).toBe(secretBox.fingerprint(c.secret));

    // Same nonce, other ciphertext: never served from memory; it does not authenticate, so the load fails.
    const tampered = Buffer.from(resealed.ciphertext);
    tampered[0] = tampered[0]! ^ 1;
    await direct.relayCredential.update({
      where: { id: target.id },
      data: { secretCiphertext: new Uint8Array(tampered) },
    });
    await expect(service.load()).rejects.toThrow();
    await direct.relayCredential.update({
      where: { id: target.id },
      data: { secretCiphertext: new Uint8Array(resealed.ciphertext) },
    });

    // Retired and re-activated: it left the cache when it stopped being active, so it is opened again.
    await direct.relayCredential.update({ where: { id: target.id }, data: { status: 'retired' } });
    expect((await service.load()).credentials.some((c) => c.id === target.id)).toBe(false);
    const before = counting.opens();
    await direct.relayCredential.update({ where: { id: target.id }, data: { status: 'active' } });
    expect((await service.load()).credentials.find((c) => c.id === target.id)?.secret).toBe('rotated secret');
    expect(counting.opens()).toBe(before + 1);
  });
});

describe('snapshot loader, connection ended by the server', () => {
  it('fails only the load in progress when PostgreSQL ends its connection between two reads', async () => {
    const pool = directPool(direct)!;
    const watcher = new pg.Client({ connectionString: database.url });
    await watcher.connect();
    const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
    let ended = false;
    // The load's connection is ended (as a fast shutdown ends it) after BEGIN, before its next read:
    // no query is in flight, so node-postgres reports the end as an 'error' event on the client.
    pool.connect = (async () => {
      const client = await connect();
      const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
      client.query = (async (...args: unknown[]) => {
        if (!ended && !String(args[0]).startsWith('BEGIN')) {
          ended = true;
          const closed = new Promise((resolve) => client.once('end', resolve));
          const pid = (client as unknown as { processID: number }).processID;
          await watcher.query('SELECT pg_terminate_backend($1)', [pid]);
          await closed;
        }
        return query(...args);
      }) as typeof client.query;
      return client;
    }) as unknown as typeof pool.connect;
    try {
      const load = createSnapshotService({ prisma: direct, snapshots: createSnapshotRepository(), secretBox }).load();
      await expect(load).rejects.toThrow(/connection/i);
    } finally {
      pool.connect = connect as unknown as typeof pool.connect;
      await watcher.end();
    }
    expect(ended).toBe(true);
    // The pool replaced the ended connection: the next load reads as before.
    const after = await loadBoth();
    expect(after.direct).toEqual(after.viaPrisma);
  });
});
