import { BUNDLE_PRUNE_INTERVAL_MS } from '../config-engine/index.js';
import type { PeriodicTask } from '../deploy/index.js';
import type { ConfigService } from '../services/config.service.js';
import { CHANGE_LOG_PRUNE_INTERVAL_MS, type SnapshotService } from '../services/snapshot.service.js';

/** What the leader deletes as it ages: the change log the snapshot loader reads, and stored config bundles. */
export function retentionTasks(deps: {
  snapshots: Pick<SnapshotService, 'pruneChangeLog'>;
  config: Pick<ConfigService, 'pruneBundles'>;
}): PeriodicTask[] {
  return [
    {
      name: 'change-log',
      intervalMs: CHANGE_LOG_PRUNE_INTERVAL_MS,
      run: async () => void (await deps.snapshots.pruneChangeLog()),
    },
    {
      name: 'config-bundles',
      intervalMs: BUNDLE_PRUNE_INTERVAL_MS,
      run: async () => void (await deps.config.pruneBundles()),
    },
  ];
}
