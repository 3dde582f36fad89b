import { Counter, Histogram, register as defaultRegistry, type Registry } from 'prom-client';

/**
 * Deploy counters and durations in the registry /metrics serves (fastify-metrics exposes the
 * default one). Metrics are looked up at each use, not held: fastify-metrics clears the registry
 * when an app starts, and an observation must land in the registry that is served now.
 */
export function createDeployMetrics(registry: Registry = defaultRegistry) {
  const registers = [registry];
  function metric<T>(name: string, make: () => T): T {
    return (registry.getSingleMetric(name) as T | undefined) ?? make();
  }
  const deployments = () =>
    metric('relayplane_deployments_total', () => new Counter({ name: 'relayplane_deployments_total', help: 'Finished deployment runs by reason and final state.', labelNames: ['reason', 'state'], registers }));
  const nodeDeploys = () =>
    metric('relayplane_node_deploys_total', () => new Counter({ name: 'relayplane_node_deploys_total', help: 'Per-node sync results (live, unchanged, failed, rolled_back).', labelNames: ['outcome'], registers }));
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
  const rollbacks = () =>
    metric('relayplane_node_rollbacks_total', () => new Counter({ name: 'relayplane_node_rollbacks_total', help: 'Deploys rolled back on a node after the switch.', registers }));

  /** Registers the series up front so /metrics lists them before the first deploy. */
  function declare() {
    deployments();
    nodeDeploys();
    nodeSeconds();
    rollbacks();
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
  };
}

export type DeployMetrics = ReturnType<typeof createDeployMetrics>;
