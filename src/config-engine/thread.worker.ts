// Worker thread entry of thread.ts: the config engine with its own database client. The thread's
// composition root, as services/index.ts is the main thread's: the one file of config-engine/
// that builds services (the snapshot loader and the quarantine recorder).
import { parentPort, workerData } from 'node:worker_threads';
import { createPrismaClient } from '../db/prisma.js';
import { createSecretBox } from '../lib/secret-box.js';
import { createAuditRepository } from '../repositories/audit.repository.js';
import { createConfigBundleRepository } from '../repositories/config-bundle.repository.js';
import { createQuarantineRepository } from '../repositories/quarantine.repository.js';
import { createSnapshotRepository } from '../repositories/snapshot.repository.js';
import { createBundleStore } from './bundle-store.js';
import { createBundleSender } from './bundle-transfer.js';
import { createInProcessEngine, type DeployableBundle } from './engine.js';
import { type ConfigEngineThreadData, type EngineMessage, type EngineRequest, toCrossingError } from './thread.js';
import { createQuarantineRecorder } from '../services/quarantine.service.js';
import { createSnapshotService } from '../services/snapshot.service.js';

const data = workerData as ConfigEngineThreadData;
const port = parentPort!;
const post = (message: EngineMessage) => port.postMessage(message);
// Two connections: a load's repeatable-read transaction, and a store beside it.
const prisma = createPrismaClient(data.databaseUrl, { poolSize: 2 });
const secretBox = createSecretBox(Buffer.from(data.masterKey));
const engine = createInProcessEngine({
  snapshots: createSnapshotService({ prisma, snapshots: createSnapshotRepository(), secretBox }),
  bundles: createBundleStore({ prisma, repository: createConfigBundleRepository() }),
  log: {
    info: (obj, msg) => post({ log: { level: 'info', obj, msg } }),
    error: (obj, msg) => post({ log: { level: 'error', obj, msg } }),
  },
  ...(data.verifyIntervalMs !== undefined ? { verifyIntervalMs: data.verifyIntervalMs } : {}),
  onClose: () => prisma.$disconnect(),
  quarantine: createQuarantineRecorder({
    prisma,
    repository: createQuarantineRepository(),
    audit: createAuditRepository(),
  }),
});

// Deployable bundles cross as what changed since the previous one (bundle-transfer.ts).
const sender = createBundleSender();

port.on('message', (request: EngineRequest) => {
  if (request.op === 'close') {
    // In a worker thread, process.exit() ends this thread only (tsx's loader, from the sources,
    // would otherwise keep it alive).
    void engine.close().finally(() => process.exit(0));
    return;
  }
  const operation = engine[request.op] as (...args: unknown[]) => Promise<unknown>;
  operation(...request.args).then(
    // Encoded as it is posted: the receiver decodes messages in the order they were encoded.
    (result) =>
      post({
        id: request.id,
        result: request.op === 'deployable' ? sender.encode(result as DeployableBundle) : result,
      }),
    (error: unknown) => post({ id: request.id, error: toCrossingError(error) }),
  );
});
