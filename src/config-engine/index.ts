/**
 * The config engine: load a snapshot of the database, compile it, check the incremental compile,
 * mask and store the bundle (bundle-store.ts). The one entry point of this folder: callers build
 * the engine with createConfigEngine() and say where it runs.
 */
import { createInProcessEngine, type ConfigEngine, type ConfigEngineLog, type InProcessEngineDeps } from './engine.js';
import { createConfigEngineThread, type ConfigEngineThreadData } from './thread.js';

export {
  type ConfigEngine,
  type ConfigEngineLog,
  type DeployableBundle,
  type DeployableOptions,
  type InProcessEngineDeps,
  type QuarantineRecorder,
  type SnapshotLoader,
  DEFAULT_VERIFY_INTERVAL_MS,
  createInProcessEngine,
  refusalProblem,
} from './engine.js';
export { DEFAULT_ENGINE_IDLE_STOP_MS, createConfigEngineThread, type ConfigEngineThreadData } from './thread.js';
export {
  BUNDLE_PRUNE_INTERVAL_MS,
  DEFAULT_BUNDLE_RETENTION_SECONDS,
  UnmaskedSecretError,
  createBundleStore,
  type BundleStore,
  type MaskedBundle,
} from './bundle-store.js';

/**
 * Where the engine runs, chosen by whoever builds it. `worker-thread`: in a thread of its own with
 * its own database connection (to `databaseUrl`), so the API's event loop never waits for a full
 * compile (seconds at 100,000 domains, BENCHMARKS.md); `in-process`: on the calling thread.
 */
export type ConfigEngineExecution =
  | { execution: 'in-process' }
  | { execution: 'worker-thread'; databaseUrl: string; /** default DEFAULT_ENGINE_IDLE_STOP_MS */ idleStopMs?: number };

export type ConfigEngineOptions =
  | ({ execution: 'in-process' } & InProcessEngineDeps)
  | ({ execution: 'worker-thread'; log: ConfigEngineLog; idleStopMs?: number } & ConfigEngineThreadData);

/** The config engine, on the calling thread or in its worker thread as `options.execution` says. */
export function createConfigEngine(options: ConfigEngineOptions): ConfigEngine {
  if (options.execution === 'worker-thread') return createConfigEngineThread(options);
  return createInProcessEngine(options);
}
