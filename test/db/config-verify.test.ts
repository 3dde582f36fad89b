/**
 * The reconcile's safety net: the config engine's deployable({ verify: true }) compiles everything
 * again and, if the incremental result ever differed, deploys the full one and says so. Shown with a
 * compiler that corrupts its incremental results (so on the in-process engine: a compiler cannot
 * be handed to a thread), over real PostgreSQL, the real loader and the real bundle store.
 */
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { compile, createIncrementalCompiler, type IncrementalCompiler } from '../../src/postfix/index.js';
import { createConfigBundleRepository } from '../../src/repositories/config-bundle.repository.js';
import { createSnapshotRepository } from '../../src/repositories/snapshot.repository.js';
import { createBundleStore, createConfigEngine } from '../../src/config-engine/index.js';
import { createSnapshotService } from '../../src/services/snapshot.service.js';
import { usePrismaDatabase } from '../helpers/database.js';

const db = usePrismaDatabase();

it('a reconcile replaces a wrong incremental result by the full compile and logs it', async () => {
  const secretBox = createSecretBox(randomBytes(32));
  const snapshots = createSnapshotService({ prisma: db.prisma, snapshots: createSnapshotRepository(), secretBox });
  const real = createIncrementalCompiler();
  const faulty: IncrementalCompiler = {
    compile(snapshot) {
      const bundle = real.compile(snapshot);
      return real.lastMode === 'incremental' ? { ...bundle, version: 'f'.repeat(64) } : bundle;
    },
    get lastMode() {
      return real.lastMode;
    },
    get plan() {
      return real.plan;
    },
    get lastGood() {
      return real.lastGood;
    },
    reset: () => real.reset(),
  };
  const errors: object[] = [];
  const bundles = createBundleStore({ prisma: db.prisma, repository: createConfigBundleRepository() });
  const engine = createConfigEngine({
    execution: 'in-process',
    snapshots,
    bundles,
    compiler: faulty,
    verifyIntervalMs: 0,
    log: { info() {}, error: (obj) => errors.push(obj) },
  });

  const tenant = await db.prisma.tenant.create({ data: { name: 'T', slug: 't' } });
  const relay = await db.prisma.relay.create({
    data: { name: 'r', host: 'smtp.relay.test', port: 587, tls: 'starttls' },
  });
  await db.prisma.domain.create({
    data: { tenantId: tenant.id, name: 'a.example', status: 'verified', relayId: relay.id },
  });
  const first = await engine.deployable();
  expect(first.bundle.version).toBe(
    compile(await createSnapshotService({ prisma: db.prisma, snapshots: createSnapshotRepository(), secretBox }).load())
      .version,
  );

  // A change: compiled incrementally, and (by this faulty compiler) wrongly; only a change run.
  await db.prisma.domain.create({
    data: { tenantId: tenant.id, name: 'b.example', status: 'verified', relayId: relay.id },
  });
  const unchecked = await engine.deployable();
  expect(unchecked.bundle.version).toBe('f'.repeat(64));
  expect(errors).toEqual([]);

  await db.prisma.domain.create({
    data: { tenantId: tenant.id, name: 'c.example', status: 'verified', relayId: relay.id },
  });
  const checked = await engine.deployable({ verify: true });
  const truth = compile(
    await createSnapshotService({ prisma: db.prisma, snapshots: createSnapshotRepository(), secretBox }).load(),
  );
  expect(checked.bundle.version).toBe(truth.version);
  expect(checked.bundle.files.sender_relay?.content).toContain('@c.example ');
  expect(errors).toEqual([{ incremental: 'f'.repeat(64), full: truth.version }]);
  // The bundles are stored after the engine answered: done before the database goes.
  await engine.settled();
});

it('checks at most once per interval: a reconcile soon after a full compile trusts the incremental one', async () => {
  const secretBox = createSecretBox(randomBytes(32));
  const snapshots = createSnapshotService({ prisma: db.prisma, snapshots: createSnapshotRepository(), secretBox });
  const compiler = createIncrementalCompiler();
  const modes: unknown[] = [];
  const bundles = createBundleStore({ prisma: db.prisma, repository: createConfigBundleRepository() });
  const engine = createConfigEngine({
    execution: 'in-process',
    snapshots,
    bundles,
    compiler,
    verifyIntervalMs: 60_000,
    log: { info: (obj) => modes.push((obj as { mode: string }).mode), error() {} },
  });
  const tenant = await db.prisma.tenant.create({ data: { name: 'U', slug: 'u' } });
  const relay = await db.prisma.relay.create({ data: { name: 'u', host: 'smtp.u.test', port: 587, tls: 'starttls' } });
  await engine.deployable();
  await db.prisma.domain.create({
    data: { tenantId: tenant.id, name: 'u1.example', status: 'verified', relayId: relay.id },
  });
  await engine.deployable({ verify: true });
  // Within the interval of the first (full) compile: no second, full compile.
  expect(modes).toEqual(['full', 'incremental']);
  expect(compiler.lastMode).toBe('incremental');
  // The bundles are stored after the engine answered: done before the database goes.
  await engine.settled();
});
