/** The deployer: the one-bundle-one-node deploy, node probes and the sync worker (SSH itself is in ../ssh/). */
export { DIR_PLACEHOLDER, MANAGED_SERVICE_PREFIX, type Bundle, type BundleFile, type MasterService } from './bundle.js';
export { checkBundle } from './bundle-checks.js';
export {
  CHANGE_STEPS,
  systemClock,
  type DeployClock,
  type DeployEvent,
  type DeployOptions,
  type DeployOutcome,
  type DeployState,
  type DeployStep,
  type DeployStepRecord,
  type DriftReport,
} from './deploy-types.js';
export { DeployCheckError } from './errors.js';
export { nodeLayout, type NodeLayout } from './layout.js';
export { parseMapSource, type MapEntry, type ParsedMap } from './map-source.js';
export { deployBundle } from './node-deployer.js';
export { driftedFiles } from './live-files.js';
export { probeNode, type NodeProbe } from './node-probe.js';
export { mapLimit, syncNode, type NodeSyncOptions, type NodeSyncResult, type RetryPolicy } from './node-sync.js';
export { SyncWorker, type PeriodicTask, type SyncHandlers, type SyncWorkerOptions } from './sync-worker.js';
