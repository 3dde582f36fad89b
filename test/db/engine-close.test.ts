/**
 * The config engine stores a deployable bundle after answering (engine.ts, storeAfterAnswer): its
 * close() waits for that store before it releases what it holds, so a bundle answered just before
 * a shutdown (or the thread's idle stop) is in the store. Over real PostgreSQL and the real store.
 */
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { createConfigBundleRepository } from '../../src/repositories/config-bundle.repository.js';
import { createSnapshotRepository } from '../../src/repositories/snapshot.repository.js';
import { createBundleStore, createConfigEngine } from '../../src/config-engine/index.js';
import { createSnapshotService } from '../../src/services/snapshot.service.js';
import { usePrismaDatabase } from '../helpers/database.js';

const db = usePrismaDatabase();

it('stores the bundles it answered with before it closes', async () => {
  const secretBox = createSecretBox(randomBytes(32));
  const bundles = createBundleStore({ prisma: db.prisma, repository: createConfigBundleRepository() });
  let version = '';
  let storedWhenClosing: boolean | undefined;
  const engine = createConfigEngine({
    execution: 'in-process',
    snapshots: createSnapshotService({ prisma: db.prisma, snapshots: createSnapshotRepository(), secretBox }),
    bundles,
    log: { info() {}, error() {} },
    onClose: async () => {
      storedWhenClosing = (await bundles.find(version)) !== null;
    },
  });
  const tenant = await db.prisma.tenant.create({ data: { name: 'T', slug: 't' } });
  const relay = await db.prisma.relay.create({
    data: { name: 'r', host: 'smtp.relay.test', port: 587, tls: 'starttls' },
  });
  await db.prisma.domain.create({
    data: { tenantId: tenant.id, name: 'a.example', status: 'verified', relayId: relay.id },
  });

  version = (await engine.deployable()).bundle.version;
  await engine.close();
  expect(storedWhenClosing).toBe(true);
});
