/**
 * After its first load, the snapshot service reads only what committed since its previous load
 * (the config_changes log) and hands out the same frozen object for every row the compiler would
 * see unchanged. Each step below is checked against a full load by a fresh service.
 */
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPrismaClient } from '../../src/db/prisma.js';
import { PrismaClient } from '../../src/generated/prisma/client.js';
import { createSecretBox } from '../../src/lib/secret-box.js';
import type { Snapshot } from '../../src/postfix/index.js';
import {
  createSnapshotRepository,
  type SnapshotChanges,
  type TableKey,
} from '../../src/repositories/snapshot.repository.js';
import { createSnapshotService, type SnapshotServiceOptions } from '../../src/services/snapshot.service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertSealedCredential, snapshotById as byId } from '../helpers/fixtures.js';

const TABLES = [
  'tenants',
  'domains',
  'relays',
  'credentials',
  'destinationPolicies',
] as const satisfies readonly TableKey[];
const secretBox = createSecretBox(randomBytes(32));

let database: TestDatabase;
let prisma: PrismaClient;
let sql: pg.Client;

beforeEach(async () => {
  database = await createTestDatabase();
  prisma = createPrismaClient(database.url, { poolSize: 3 });
  sql = new pg.Client({ connectionString: database.url });
  await sql.connect();
});
afterEach(async () => {
  await sql?.end();
  await prisma?.$disconnect();
  await database?.drop();
});

/** A real repository that records what each load read, and a secret box that counts real opens. */
function instrumented(options?: Partial<SnapshotServiceOptions>, client: PrismaClient = prisma) {
  const repository = createSnapshotRepository();
  const reports: SnapshotChanges[] = [];
  let opens = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const snapshots = {
    ...repository,
    loadChanges: async (...args: Parameters<typeof repository.loadChanges>) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        const report = await repository.loadChanges(...args);
        reports.push(report);
        return report;
      } finally {
        inFlight--;
      }
    },
  };
  const box = {
    ...secretBox,
    open: (...args: Parameters<typeof secretBox.open>) => (opens++, secretBox.open(...args)),
  };
  const service = createSnapshotService({
    prisma: client,
    snapshots,
    secretBox: box,
    ...(options === undefined ? {} : { options }),
  });
  return { service, last: () => reports.at(-1)!, opens: () => opens, maxInFlight: () => maxInFlight };
}

/** What a load read, compactly: the changed ids of each table (sorted), 'all' for a table read whole. */
function changedOf(report: SnapshotChanges) {
  const changed: Record<string, string[] | 'all' | true> = {};
  if (report.settings.changed) changed.settings = true;
  for (const table of TABLES) {
    const read = report.tables[table];
    if (read.full) changed[table] = 'all';
    else if (read.ids.length > 0) changed[table] = [...read.ids].sort();
  }
  return changed;
}

function expectFrozen(snapshot: Snapshot) {
  expect(Object.isFrozen(snapshot.settings)).toBe(true);
  for (const table of TABLES) {
    for (const row of snapshot[table]) {
      expect(Object.isFrozen(row)).toBe(true);
      for (const value of Object.values(row))
        if (typeof value === 'object' && value !== null) expect(Object.isFrozen(value)).toBe(true);
    }
  }
}

/** Same content ⇔ same object (a re-sealed credential is new even with the same secret). */
function expectIdentity(previous: Snapshot, next: Snapshot, resealed: string[] = []) {
  if (isDeepStrictEqual(previous.settings, next.settings)) expect(next.settings).toBe(previous.settings);
  else expect(next.settings).not.toBe(previous.settings);
  for (const table of TABLES) {
    const before = new Map<string, object>(previous[table].map((row) => [row.id, row]));
    for (const row of next[table]) {
      const old = before.get(row.id);
      if (old === undefined) continue;
      if (isDeepStrictEqual(old, row) && !resealed.includes(row.id)) expect(row, `${table} ${row.id}`).toBe(old);
      else expect(row, `${table} ${row.id}`).not.toBe(old);
    }
  }
}

const fullLoad = async () =>
  byId(await createSnapshotService({ prisma, snapshots: createSnapshotRepository(), secretBox }).load());
const find = <T extends { id: string }>(rows: T[], id: string) => rows.find((row) => row.id === id);

const credential = (relayId: string, domainId: string | null, status: 'active' | 'retired', secret: string) =>
  insertSealedCredential(prisma, secretBox, { relayId, domainId, status, secret });

async function reseal(id: string, secret: string) {
  const sealed = secretBox.seal(secret, id);
  await prisma.relayCredential.update({
    where: { id },
    data: { secretCiphertext: new Uint8Array(sealed.ciphertext), secretNonce: new Uint8Array(sealed.nonce) },
  });
}

async function seed() {
  const acme = await prisma.tenant.create({ data: { name: 'Acme', slug: 'acme', defaultConcurrency: 5 } });
  const beta = await prisma.tenant.create({ data: { name: 'Beta', slug: 'beta' } });
  const shared = await prisma.relay.create({
    data: { name: 'shared', host: 'smtp.shared.example', port: 587, tls: 'starttls', verify: true },
  });
  const owned = await prisma.relay.create({
    data: { name: 'owned', host: '192.0.2.25', port: 465, tls: 'implicit', tenantId: acme.id, concurrency: 3 },
  });
  const domain = (tenantId: string, name: string, relayId: string) =>
    prisma.domain.create({ data: { tenantId, name, status: 'verified', relayId } });
  const a1 = await domain(acme.id, 'a1.example', shared.id);
  const a2 = await domain(acme.id, 'a2.example', owned.id);
  const a3 = await domain(acme.id, 'a3.example', shared.id);
  const b1 = await domain(beta.id, 'b1.example', shared.id);
  const policy = await prisma.destinationPolicy.create({ data: { pattern: 'mx.example', tls: 'verify' } });
  return {
    acme: acme.id,
    beta: beta.id,
    shared: shared.id,
    owned: owned.id,
    a1: a1.id,
    a2: a2.id,
    a3: a3.id,
    b1: b1.id,
    policy: policy.id,
    relayWide: await credential(shared.id, null, 'active', 'relay-wide'),
    forA1: await credential(shared.id, a1.id, 'active', 'a1 secret'),
    retiredA1: await credential(shared.id, a1.id, 'retired', 'old a1 secret'),
    forA3: await credential(shared.id, a3.id, 'active', 'a3 secret'),
    forB1: await credential(shared.id, b1.id, 'active', 'b1 secret'),
    onOwned: await credential(owned.id, null, 'active', 'owned secret'),
  };
}

describe('delta loads', () => {
  it('match a full load after every kind of write, and keep unchanged rows as the same frozen objects', async () => {
    const s = await seed();
    const { service, last, opens } = instrumented();
    let previous = await service.load();
    expect(last().kind).toBe('full');
    expect(byId(previous)).toStrictEqual(await fullLoad());
    expect(opens()).toBe(5);
    expectFrozen(previous);

    /** One load after a write: equal to a full load, frozen, identity kept exactly where nothing changed. */
    const step = async (expected: ReturnType<typeof changedOf>, resealed: string[] = []) => {
      const next = await service.load();
      expect(last().kind).toBe('delta');
      expect(changedOf(last())).toEqual(expected);
      expect(byId(next)).toStrictEqual(await fullLoad());
      expectFrozen(next);
      expectIdentity(previous, next, resealed);
      // A table none of whose rows was read again keeps its array (the compiler skips it by identity).
      for (const table of TABLES) if (!(table in expected)) expect(next[table], table).toBe(previous[table]);
      const before = previous;
      previous = next;
      return { next, before };
    };

    // Nothing changed: nothing read, the same Snapshot again (its arrays too).
    let { next, before } = await step({});
    expect(next).toBe(before);

    const a4 = await prisma.domain.create({
      data: { tenantId: s.acme, name: 'a4.example', status: 'pending', relayId: s.shared },
    });
    ({ next } = await step({ domains: [a4.id] }));
    expect(find(next.domains, a4.id)?.name).toBe('a4.example');

    await prisma.domain.update({ where: { id: s.a2 }, data: { relayId: s.shared, concurrency: 7 } });
    ({ next, before } = await step({ domains: [s.a2] }));
    expect(find(next.domains, s.a2)).not.toBe(find(before.domains, s.a2));
    expect(find(next.domains, s.a2)?.limits).toEqual({
      concurrency: 7,
      rateDelaySeconds: null,
      recipientsPerMessage: null,
    });

    // Columns the compiler does not read: logged and read again, but the objects stay.
    await prisma.domain.update({ where: { id: s.a1 }, data: { verifiedAt: new Date(), statusChangedAt: new Date() } });
    await prisma.tenant.update({ where: { id: s.acme }, data: { name: 'Acme Corporation' } });
    ({ next, before } = await step({ domains: [s.a1], tenants: [s.acme] }));
    expect(find(next.domains, s.a1)).toBe(find(before.domains, s.a1));
    expect(find(next.tenants, s.acme)).toBe(find(before.tenants, s.acme));
    expect(find(next.tenants, s.acme)?.defaultLimits).toBe(find(before.tenants, s.acme)?.defaultLimits);

    // The cascade to its credential is logged too.
    await prisma.domain.delete({ where: { id: s.a3 } });
    ({ next } = await step({ domains: [s.a3], credentials: [s.forA3] }));
    expect(find(next.domains, s.a3)).toBeUndefined();
    expect(find(next.credentials, s.forA3)).toBeUndefined();

    // Rotated: opened once; the credentials around it are not opened again.
    await reseal(s.forA1, 'rotated a1 secret');
    ({ next } = await step({ credentials: [s.forA1] }));
    expect(find(next.credentials, s.forA1)?.secret).toBe('rotated a1 secret');
    expect(opens()).toBe(6);

    // Re-sealed with the same secret: other sealed bytes, so a new object (opened to check them).
    await reseal(s.forB1, 'b1 secret');
    ({ next, before } = await step({ credentials: [s.forB1] }, [s.forB1]));
    expect(find(next.credentials, s.forB1)).not.toBe(find(before.credentials, s.forB1));
    expect(opens()).toBe(7);

    await prisma.relayCredential.update({ where: { id: s.relayWide }, data: { status: 'retired' } });
    ({ next } = await step({ credentials: [s.relayWide] }));
    expect(find(next.credentials, s.relayWide)).toBeUndefined();
    expect(opens()).toBe(7);

    await prisma.tenant.update({ where: { id: s.beta }, data: { status: 'suspended' } });
    ({ next, before } = await step({ tenants: [s.beta] }));
    expect(find(next.tenants, s.beta)?.status).toBe('suspended');
    expect(find(next.domains, s.b1)).toBe(find(before.domains, s.b1));

    await prisma.settings.create({ data: { id: 1, minimalBackoffSeconds: 60 } });
    ({ next } = await step({ settings: true }));
    expect(next.settings.minimalBackoffTime).toBe('60s');
    await prisma.settings.update({ where: { id: 1 }, data: { updatedAt: new Date() } });
    ({ next, before } = await step({ settings: true }));
    expect(next.settings).toBe(before.settings);

    // A relay and everything referring to it, in one transaction.
    await prisma.$transaction([
      prisma.domain.deleteMany({ where: { relayId: s.owned } }),
      prisma.relay.delete({ where: { id: s.owned } }),
    ]);
    await step({ relays: [s.owned], credentials: [s.onOwned] });

    await sql.query('TRUNCATE destination_policies');
    ({ next } = await step({ destinationPolicies: 'all' }));
    expect(next.destinationPolicies).toEqual([]);
    const policy = await prisma.destinationPolicy.create({ data: { pattern: '.provider.example', tls: 'encrypt' } });
    await step({ destinationPolicies: [policy.id] });

    // Too many ids to read one by one: the table is read whole, identity still kept.
    await sql.query(
      `INSERT INTO domains (id, tenant_id, name, status, relay_id, updated_at)
                     SELECT gen_random_uuid(), $1, 'bulk-' || i || '.example', 'verified', $2, now() FROM generate_series(1, 1500) AS i`,
      [s.acme, s.shared],
    );
    ({ next, before } = await step({ domains: 'all' }));
    expect(next.domains).toHaveLength(1504);
    expect(find(next.domains, s.a1)).toBe(find(before.domains, s.a1));

    await sql.query('TRUNCATE tenants CASCADE');
    ({ next } = await step({ tenants: 'all', domains: 'all', relays: 'all', credentials: 'all' }));
    expect(next.tenants).toEqual([]);
    expect(next.domains).toEqual([]);
  });

  it('sees a change committed after a later transaction’s change, on the next load', async () => {
    const s = await seed();
    const { service, last } = instrumented();
    const first = await service.load();
    const a = new pg.Client({ connectionString: database.url });
    const b = new pg.Client({ connectionString: database.url });
    await a.connect();
    await b.connect();
    try {
      // A writes first (the smaller txid and change id) but commits last.
      await a.query('BEGIN');
      await a.query('UPDATE domains SET concurrency = 11 WHERE id = $1', [s.a1]);
      await b.query('BEGIN');
      await b.query('UPDATE domains SET concurrency = 12 WHERE id = $1', [s.b1]);
      await b.query('COMMIT');

      const second = await service.load();
      expect(changedOf(last())).toEqual({ domains: [s.b1] });
      expect(byId(second)).toStrictEqual(await fullLoad());
      expect(find(second.domains, s.a1)).toBe(find(first.domains, s.a1));
      expect(find(second.domains, s.b1)?.limits?.concurrency).toBe(12);

      await a.query('COMMIT');
      const third = await service.load();
      expect(last().kind).toBe('delta');
      expect(changedOf(last())).toEqual({ domains: [s.a1] });
      expect(find(third.domains, s.a1)?.limits?.concurrency).toBe(11);
      expect(find(third.domains, s.b1)).toBe(find(second.domains, s.b1));
      expect(byId(third)).toStrictEqual(await fullLoad());
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('falls back to a full load when the log was pruned past the previous snapshot', async () => {
    const s = await seed();
    const stale = instrumented();
    const current = instrumented();
    const pruner = instrumented({ changeRetentionMs: 0 });
    const staleFirst = await stale.service.load();
    await current.service.load();

    await prisma.domain.update({ where: { id: s.a1 }, data: { concurrency: 9 } });
    await current.service.load();
    expect(current.last().kind).toBe('delta');
    expect(changedOf(current.last())).toEqual({ domains: [s.a1] });

    await pruner.service.load();
    expect(await pruner.service.pruneChangeLog()).toBeGreaterThan(0); // everything: retention 0
    const log = await sql.query<{ rows: number; pruned: string }>(
      `SELECT (SELECT count(*)::int FROM config_changes) AS rows, (SELECT pruned_through::text FROM config_change_log_state) AS pruned`,
    );
    expect(log.rows[0]!.rows).toBe(0);
    expect(BigInt(log.rows[0]!.pruned)).toBeGreaterThan(0n);

    // The stale service never saw the change, and the log no longer has it: it reads everything.
    const staleNext = await stale.service.load();
    expect(stale.last().kind).toBe('full');
    expect(byId(staleNext)).toStrictEqual(await fullLoad());
    expect(find(staleNext.domains, s.a1)?.limits?.concurrency).toBe(9);
    expectIdentity(staleFirst, staleNext);
    expect(find(staleNext.domains, s.b1)).toBe(find(staleFirst.domains, s.b1));
    expect(stale.opens()).toBe(5);

    // Pruning again with nothing to delete never lowers the mark.
    await createSnapshotRepository().prune(prisma, 0);
    const again = await sql.query<{ pruned: string }>(
      'SELECT pruned_through::text AS pruned FROM config_change_log_state',
    );
    expect(again.rows[0]!.pruned).toBe(log.rows[0]!.pruned);
  });

  it('serializes concurrent loads, each with a complete snapshot', async () => {
    const s = await seed();
    const { service, maxInFlight } = instrumented();
    const first = service.load();
    const write = prisma.domain.update({ where: { id: s.a2 }, data: { status: 'disabled' } });
    const loads = await Promise.all([first, service.load(), write.then(() => service.load()), service.load()]);
    expect(maxInFlight()).toBe(1);
    const full = await fullLoad();
    expect(byId(loads[2]!)).toStrictEqual(full);
    expect(byId(await service.load())).toStrictEqual(full);
    for (const loaded of loads) expect(loaded.domains).toHaveLength(4);
    expect(find(loads[2]!.domains, s.a1)).toBe(find(loads[0]!.domains, s.a1));
  });

  it('keeps identity on the Prisma path too, which always reads everything', async () => {
    const s = await seed();
    const viaPrisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: database.url }) });
    try {
      const { service, last, opens } = instrumented({}, viaPrisma);
      const first = await service.load();
      await prisma.domain.update({ where: { id: s.a1 }, data: { concurrency: 4 } });
      const second = await service.load();
      expect(last().kind).toBe('full');
      expect(byId(second)).toStrictEqual(await fullLoad());
      expectFrozen(second);
      expectIdentity(first, second);
      expect(find(second.domains, s.a1)).not.toBe(find(first.domains, s.a1));
      expect(find(second.domains, s.b1)).toBe(find(first.domains, s.b1));
      expect(opens()).toBe(5);
      // Pruning works through Prisma too.
      expect(await createSnapshotRepository().prune(viaPrisma, 0)).toBeGreaterThan(0);
    } finally {
      await viaPrisma.$disconnect();
    }
  });
});
