import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';

const QUARANTINE_TREATMENTS = ['last-good', 'held', 'defaults'] as const;

/**
 * Worker metrics (deploys, usage collection, domain checks): deploy counters and durations in the registry /metrics serves (fastify-metrics exposes the
 * default one). Metrics are looked up at each use, not held: fastify-metrics clears the registry
 * when an app starts, and an observation must land in the registry that is served now.
 */
export function createDeployMetrics(registry: Registry = defaultRegistry) {
  const registers = [registry];
  function metric<T>(name: string, make: () => T): T {
    return (registry.getSingleMetric(name) as T | undefined) ?? make();
  }
  const deployments = () =>
    metric(
      'relayplane_deployments_total',
      () =>
        new Counter({
          name: 'relayplane_deployments_total',
          help: 'Finished deployment runs by reason and final state.',
          labelNames: ['reason', 'state'],
          registers,
        }),
    );
  const nodeDeploys = () =>
    metric(
      'relayplane_node_deploys_total',
      () =>
        new Counter({
          name: 'relayplane_node_deploys_total',
          help: 'Per-node sync results (live, unchanged, failed, rolled_back).',
          labelNames: ['outcome'],
          registers,
        }),
    );
  const nodeSeconds = () =>
    metric(
      'relayplane_node_deploy_duration_seconds',
      () =>
        new Histogram({
          name: 'relayplane_node_deploy_duration_seconds',
          help: 'Time to sync one node (connect, retries, deploy), by outcome.',
          labelNames: ['outcome'],
          buckets: [0.25, 0.5, 1, 2, 5, 10, 20, 60],
          registers,
        }),
    );
  const usageLines = () =>
    metric(
      'relayplane_usage_log_lines_total',
      () =>
        new Counter({
          name: 'relayplane_usage_log_lines_total',
          help: 'Postfix log lines read by usage collection, per node.',
          labelNames: ['node'],
          registers,
        }),
    );
  const usageRuns = () =>
    metric(
      'relayplane_usage_collections_total',
      () =>
        new Counter({
          name: 'relayplane_usage_collections_total',
          help: 'Per-node usage collections by outcome (ok, failed).',
          labelNames: ['outcome'],
          registers,
        }),
    );
  const verifications = () =>
    metric(
      'relayplane_domain_checks_total',
      () =>
        new Counter({
          name: 'relayplane_domain_checks_total',
          help: 'Domain DNS checks by resulting status.',
          labelNames: ['status'],
          registers,
        }),
    );
  const quarantined = () =>
    metric(
      'relayplane_config_quarantined_units',
      () =>
        new Gauge({
          name: 'relayplane_config_quarantined_units',
          help: 'Units (domains, tenants, relays, credentials, settings) the last compile for a deploy quarantined, by treatment.',
          labelNames: ['treatment'],
          registers,
        }),
    );
  const rollbacks = () =>
    metric(
      'relayplane_node_rollbacks_total',
      () =>
        new Counter({
          name: 'relayplane_node_rollbacks_total',
          help: 'Deploys rolled back on a node after the switch.',
          registers,
        }),
    );

  /** Registers the series up front so /metrics lists them before the first deploy. */
  function declare() {
    deployments();
    nodeDeploys();
    nodeSeconds();
    rollbacks();
    usageLines();
    usageRuns();
    verifications();
    for (const treatment of QUARANTINE_TREATMENTS) quarantined().set({ treatment }, 0);
  }

  return {
    declare,
    nodeSynced(outcome: string, seconds: number) {
      nodeDeploys().inc({ outcome });
      nodeSeconds().observe({ outcome }, seconds);
      if (outcome === 'rolled_back') rollbacks().inc();
    },
    deploymentFinished(reason: string, state: string) {
      deployments().inc({ reason, state });
    },
    usageCollected(node: string, outcome: 'ok' | 'failed', lines: number) {
      usageRuns().inc({ outcome });
      if (lines > 0) usageLines().inc({ node }, lines);
    },
    domainChecked(status: string) {
      verifications().inc({ status });
    },
    configCompiled(quarantine: ReadonlyArray<{ treatment: string }>) {
      for (const treatment of QUARANTINE_TREATMENTS)
        quarantined().set({ treatment }, quarantine.filter((u) => u.treatment === treatment).length);
    },
  };
}

export type DeployMetrics = ReturnType<typeof createDeployMetrics>;
