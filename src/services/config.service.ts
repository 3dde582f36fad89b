import { createTwoFilesPatch } from 'diff';
import { NotFoundError } from '../lib/errors.js';
import type { BundleStore, ConfigEngine, DeployableBundle, DeployableOptions } from '../config-engine/index.js';
import type { DeployMetrics } from './deploy-metrics.js';
import { requireAdmin, type RequestContext } from './principal.js';

const ADMIN_ONLY = 'the compiled configuration spans all tenants: admin only';

interface ConfigLog {
  info(obj: object, msg: string): void;
}

export function createConfigService(deps: {
  /** Loads, compiles, checks and stores (in a worker thread of its own in the app: services/index.ts). */
  engine: ConfigEngine;
  /** The stored bundles: found again for diffs, pruned. */
  bundles: BundleStore;
  log?: ConfigLog;
  /** Told what each compile for a deploy quarantined (the /metrics gauge). */
  metrics?: Pick<DeployMetrics, 'configCompiled'>;
}) {
  const { engine } = deps;

  return {
    /** The version of what the database says now (nothing stored). */
    currentVersion: () => engine.version(),

    /** Stops the engine's thread (the app's onClose); a later call would start it again. */
    close: () => engine.close(),

    /** Deletes stored bundles past the retention and the chunks no bundle uses (the leader's periodic task). */
    async pruneBundles() {
      const pruned = await deps.bundles.prune();
      if (pruned.bundles > 0) deps.log?.info(pruned, 'stored config bundles pruned');
      return pruned;
    },

    /**
     * For the sync worker: the bundle to deploy (stored masked, for diffs, see deployedStored) and
     * the credential ids it contains. `verify` (the reconcile): check the incremental compile
     * against a full one; `keep: false` (preparing a run): neither stored nor its quarantine recorded.
     */
    async compileForDeploy(options: DeployableOptions = {}): Promise<DeployableBundle> {
      const deployable = await engine.deployable(options);
      deps.metrics?.configCompiled(deployable.bundle.quarantine);
      return deployable;
    },

    /** Resolves once the bundles compileForDeploy returned are stored and their quarantine recorded. */
    deployedStored(): Promise<void> {
      return engine.settled();
    },

    async current(ctx: RequestContext) {
      requireAdmin(ctx, ADMIN_ONLY);
      return engine.masked();
    },

    /** What would change going from a stored version to what the database says now: a dry-run plan. */
    async diff(ctx: RequestContext, fromVersion: string) {
      requireAdmin(ctx, ADMIN_ONLY);
      const from = await deps.bundles.find(fromVersion);
      if (from === null) throw new NotFoundError('config version', fromVersion);
      const to = await engine.masked();
      const names = [...new Set([...Object.keys(from.files), ...Object.keys(to.files)])].sort();
      const files = names.flatMap((name) => {
        const before = from.files[name]?.content;
        const after = to.files[name]?.content;
        if (before === after) return [];
        const change = before === undefined ? 'added' : after === undefined ? 'removed' : 'modified';
        return [
          {
            name,
            change,
            diff: createTwoFilesPatch(`a/${name}`, `b/${name}`, before ?? '', after ?? '', undefined, undefined, {
              context: 1,
            }),
          },
        ];
      });
      const params = [...new Set([...Object.keys(from.mainCf), ...Object.keys(to.mainCf)])].sort();
      const mainCf = params
        .filter((name) => from.mainCf[name] !== to.mainCf[name])
        .map((name) => ({ name, from: from.mainCf[name] ?? null, to: to.mainCf[name] ?? null }));
      const beforeServices = new Map(from.masterCf.map((service) => [service.name, service.line]));
      const afterServices = new Map(to.masterCf.map((service) => [service.name, service.line]));
      const masterCf = [...new Set([...beforeServices.keys(), ...afterServices.keys()])]
        .sort()
        .filter((name) => beforeServices.get(name) !== afterServices.get(name))
        .map((name) => ({ name, from: beforeServices.get(name) ?? null, to: afterServices.get(name) ?? null }));
      return { from: fromVersion, to: to.version, changed: fromVersion !== to.version, files, mainCf, masterCf };
    },

    /** Which service, nexthops, credential (id only), TLS and destination policy a message would get, and why. */
    async explain(ctx: RequestContext, sender: string, recipient: string) {
      requireAdmin(ctx, ADMIN_ONLY);
      return engine.explain(sender, recipient);
    },
  };
}

export type ConfigService = ReturnType<typeof createConfigService>;
