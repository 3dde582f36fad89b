/**
 * The sync worker's periodic tasks (usage collection, DNS re-checks, change-log and stored-bundle
 * pruning) run only in the leading process, each on its own timer and never twice at once, and stop
 * with the worker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SyncWorker } from '../../src/deploy/index.js';
import { createTestApp, tokenFor } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { waitUntil } from '../lab/util.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };
const noJobs = { runRequested: async () => {}, runChange: async () => {}, runReconcile: async () => {} };

describe('sync worker periodic tasks', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  it('run on the leader only, on their interval, one run at a time', async () => {
    const runs = { a: 0, b: 0 };
    let concurrent = 0;
    let maxConcurrent = 0;
    const task = (name: 'a' | 'b') => ({
      name: 'usage',
      intervalMs: 50,
      run: async () => {
        runs[name]++;
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        await new Promise((r) => setTimeout(r, 120)); // longer than the interval
        concurrent--;
      },
    });
    const options = {
      databaseUrl: db.url,
      debounceMs: 50,
      reconcileIntervalMs: 60_000,
      leaderPollMs: 100,
      log: quiet,
      handlers: noJobs,
    };
    const leader = new SyncWorker({ ...options, periodic: [task('a')] });
    const follower = new SyncWorker({ ...options, periodic: [task('b')] });
    await leader.start();
    await follower.start();
    try {
      expect(leader.isLeader).toBe(true);
      expect(follower.isLeader).toBe(false);
      await waitUntil(async () => runs.a >= 3, 5000, 'three runs on the leader', 20);
      expect(runs.b).toBe(0);
      expect(maxConcurrent).toBe(1);
      // Run on demand (what tests and tools use) joins the running one rather than starting another.
      await Promise.all([leader.runPeriodic('usage'), leader.runPeriodic('usage')]);
      expect(maxConcurrent).toBe(1);
      expect(await follower.runPeriodic('usage')).toBeUndefined();
      expect(runs.b).toBe(0);
    } finally {
      await leader.stop();
      await follower.stop();
    }
    const after = runs.a;
    await new Promise((r) => setTimeout(r, 200));
    expect(runs.a).toBe(after);
  });

  it('include pruning the config change log: rows past the retention go, the mark rises, recent rows stay', async () => {
    const t = await createTestApp({ sync: {} });
    try {
      await waitUntil(async () => t.app.syncWorker?.isLeader === true, 5000, 'leadership', 20);
      await t.prisma.tenant.create({ data: { name: 'Recent', slug: 'recent' } });
      await t.prisma
        .$executeRaw`INSERT INTO config_changes (table_name, row_id, created_at) VALUES ('tenants', 'old', now() - interval '2 hours')`;
      await t.app.syncWorker!.runPeriodic('change-log');
      const rows = await t.prisma.$queryRaw<Array<{ rowId: string }>>`SELECT row_id AS "rowId" FROM config_changes`;
      expect(rows.map((r) => r.rowId)).not.toContain('old');
      expect(rows.length).toBeGreaterThan(0);
      const mark = await t.prisma.$queryRaw<
        Array<{ pruned: string }>
      >`SELECT pruned_through::text AS pruned FROM config_change_log_state`;
      expect(BigInt(mark[0]!.pruned)).toBeGreaterThan(0n);
    } finally {
      await t.close();
    }
  });

  it('the leader prunes stored config bundles past their retention, keeping the newest', async () => {
    const t = await createTestApp({ sync: {} });
    try {
      await waitUntil(async () => t.app.syncWorker?.isLeader === true, 5000, 'leadership', 20);
      const admin = await tokenFor(t.app, ['admin']);
      const first = (await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers })).json()
        .version as string;
      const tenant = await t.prisma.tenant.create({ data: { name: 'Changed', slug: 'changed' } });
      const relay = await t.prisma.relay.create({
        data: { name: 'r', host: 'smtp.pruned.test', port: 587, tls: 'starttls' },
      });
      await t.prisma.domain.create({
        data: { tenantId: tenant.id, name: 'pruned.example', status: 'verified', route: 'relay', relayId: relay.id },
      });
      const second = (await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers })).json()
        .version as string;
      expect(second).not.toBe(first);
      await t.prisma.configBundle.updateMany({ data: { createdAt: new Date(Date.now() - 31 * 86_400_000) } });
      await t.prisma.configBundle.update({
        where: { version: second },
        data: { createdAt: new Date(Date.now() - 30.5 * 86_400_000) },
      });
      await t.app.syncWorker!.runPeriodic('config-bundles');
      expect((await t.prisma.configBundle.findMany()).map((b) => b.version)).toEqual([second]);
    } finally {
      await t.close();
    }
  });
});
