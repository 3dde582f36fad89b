import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { SyncWorker } from '../deploy/index.js';
import { createJobs, type JobDeps, type Jobs } from '../jobs/index.js';

export interface SyncOptions {
  /** The worker's own connection (advisory lock + LISTEN), besides Prisma's pool. */
  databaseUrl: string;
  reconcileIntervalMs: number;
  debounceMs: number;
  leaderPollMs?: number;
  /** Usage collection period; 0 or absent: no collection. */
  usageIntervalMs?: number;
  /** How often the leader looks for domains due a DNS re-check; 0 or absent: never. */
  dnsIntervalMs?: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The long-running jobs (src/jobs/), there to run by hand too (tests, the CLI). */
    jobs: Jobs;
    /** The sync worker when the app runs one (`sync`), else null. */
    syncWorker: SyncWorker | null;
  }
}

/**
 * Builds the jobs and, given `sync`, the sync worker that runs them: started when the app is
 * ready, stopped (its last run finished) when it closes, then the jobs' SSH connections closed.
 */
async function jobsPlugin(app: FastifyInstance, options: Omit<JobDeps, 'log'> & { sync?: SyncOptions | undefined }) {
  const { sync, ...deps } = options;
  // Collections keep their node connections until the next run: a run then costs one command per node.
  const usageIntervalMs = sync?.usageIntervalMs ?? 0;
  const usage = usageIntervalMs > 0 ? { ...deps.usage, connectionIdleMs: usageIntervalMs + 30_000 } : deps.usage;
  const jobs = createJobs({ ...deps, usage, log: app.log });
  const worker =
    sync === undefined
      ? null
      : new SyncWorker({
          databaseUrl: sync.databaseUrl,
          reconcileIntervalMs: sync.reconcileIntervalMs,
          debounceMs: sync.debounceMs,
          ...(sync.leaderPollMs !== undefined ? { leaderPollMs: sync.leaderPollMs } : {}),
          log: app.log.child({ component: 'sync-worker' }),
          handlers: jobs.sync.handlers,
          periodic: jobs.periodic({
            usageIntervalMs: sync.usageIntervalMs ?? 0,
            dnsIntervalMs: sync.dnsIntervalMs ?? 0,
          }),
        });
  app.decorate('jobs', jobs);
  app.decorate('syncWorker', worker);
  if (worker !== null) app.addHook('onReady', () => worker.start());
  app.addHook('onClose', async () => {
    await worker?.stop();
    jobs.sync.close();
    jobs.usage.close();
  });
}

export default fp(jobsPlugin, { name: 'jobs', fastify: '5.x' });
