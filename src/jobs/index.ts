/**
 * Long-running work, one job a file: the sync worker's runs (sync.ts), usage collection
 * (usage-collection.ts), DNS re-checks (dns-recheck.ts) and retention (retention.ts). Started and
 * stopped by one Fastify plugin (src/plugins/jobs.ts); the use cases the API calls stay in services/.
 */
import type { PrismaClient } from '../db/prisma.js';
import type { PeriodicTask } from '../deploy/index.js';
import { createAuditRepository } from '../repositories/audit.repository.js';
import { createDeploymentRepository } from '../repositories/deployment.repository.js';
import { createNodeRepository } from '../repositories/node.repository.js';
import { createUsageRepository } from '../repositories/usage.repository.js';
import type { DeployMetrics } from '../services/deploy-metrics.js';
import type { AppServices } from '../services/index.js';
import { DEFAULT_SSH, privateKeyReader, type SshSettings } from '../ssh/index.js';
import { dnsRecheckTask } from './dns-recheck.js';
import { retentionTasks } from './retention.js';
import { createSyncJob } from './sync.js';
import { DEFAULT_USAGE, createUsageCollection, type UsageSettings } from './usage-collection.js';

export { DEFAULT_USAGE, type UsageSettings } from './usage-collection.js';
export type { SyncJob } from './sync.js';
export type { UsageCollection } from './usage-collection.js';

export interface JobDeps {
  prisma: PrismaClient;
  services: Pick<AppServices, 'config' | 'snapshots' | 'domainVerification' | 'credentialRotation'>;
  /** Defaults: no private key, DEFAULT_SSH timeouts. */
  ssh?: Partial<SshSettings> | undefined;
  /** Defaults: DEFAULT_USAGE. */
  usage?: Partial<UsageSettings> | undefined;
  metrics: DeployMetrics;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
  now?: (() => Date) | undefined;
}

/** How often the leader runs the periodic jobs; 0: never on a timer. */
export interface JobIntervals {
  usageIntervalMs: number;
  dnsIntervalMs: number;
}

export function createJobs(deps: JobDeps) {
  const { prisma, services } = deps;
  const ssh: SshSettings = { ...DEFAULT_SSH, ...deps.ssh };
  const readPrivateKey = privateKeyReader(ssh.privateKeyPath);
  const nodes = createNodeRepository();
  const sync = createSyncJob({
    prisma,
    nodes,
    deployments: createDeploymentRepository(),
    audit: createAuditRepository(),
    rotation: services.credentialRotation,
    config: services.config,
    ssh,
    readPrivateKey,
    metrics: deps.metrics,
    log: deps.log,
    now: deps.now,
  });
  const usage = createUsageCollection({
    prisma,
    usage: createUsageRepository(),
    nodes,
    ssh,
    readPrivateKey,
    settings: { ...DEFAULT_USAGE, ...deps.usage },
    metrics: deps.metrics,
    log: deps.log,
    now: deps.now,
  });
  return {
    sync,
    usage,
    /** The periodic tasks of the leading sync worker. */
    periodic(intervals: JobIntervals): PeriodicTask[] {
      return [
        { name: 'usage', intervalMs: intervals.usageIntervalMs, run: () => usage.collectAll() },
        dnsRecheckTask(services.domainVerification, intervals.dnsIntervalMs),
        ...retentionTasks(services),
      ];
    },
  };
}

export type Jobs = ReturnType<typeof createJobs>;
