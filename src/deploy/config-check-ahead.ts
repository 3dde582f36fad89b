/**
 * validate's `postconf` checks of a staged main.cf/master.cf, run beside postmap when the plan can
 * be foreseen. stage and postmap are sent before read-node answers, so the plan (what the node's
 * main.cf and master.cf lack) is not known yet; but a node still holding the config its live
 * release left needs exactly the plan from that release's bundle to this one. The checks of that
 * plan run in the postmap frame, on the node's other core, and leave their record in the scratch
 * dir; validate reads it when read-node found that plan (CheckedAhead), else checks again.
 */
import type { Bundle } from './bundle.js';
import { desiredConfig, planConfig, planIsEmpty, type ConfigPlan, type DesiredConfig } from './postfix-config.js';
import { scratchDirOf } from './release-store.js';
import { stagedConfigBackground, stagedConfigRecord, type CheckedAhead } from './validate-step.js';
import type { NodeLayout } from './layout.js';
import type { BesideScript } from './shell-jobs.js';

export interface ConfigCheckAhead {
  /** The plan the checks were run for. */
  plan: ConfigPlan;
  script: BesideScript;
}

/** The plan read-node will find if the node's main.cf and master.cf are as `base`, its live release, left them. */
export function foreseenPlan(base: Bundle, desired: DesiredConfig, liveDir: string): ConfigPlan {
  const left = desiredConfig(base, liveDir);
  return planConfig(desired, {
    params: new Map(left.params),
    services: new Map(left.services.map((s) => [s.key, s.fields])),
    serviceParams: new Map(left.services.map((s) => [s.key, new Map(s.params)])),
    // As read-node reads them: the release's `params` manifest, sorted.
    managedParams: Object.keys(base.mainCf).sort(),
  });
}

/**
 * The checks for the plan from `base` to the bundle, to run beside postmap in `staging`; undefined
 * when that plan is empty (a change of tables only: nothing to check).
 */
export function configCheckAhead(args: {
  base: Bundle;
  desired: DesiredConfig;
  layout: NodeLayout;
  staging: string;
}): ConfigCheckAhead | undefined {
  const plan = foreseenPlan(args.base, args.desired, args.layout.liveDir);
  if (planIsEmpty(plan)) return undefined;
  const checks = {
    scratchDir: scratchDirOf(args.staging),
    configDir: args.layout.configDir,
    plan,
    desired: args.desired,
  };
  return {
    plan,
    // The checks in the background before the frame's own work (a failed start leaves validate to
    // run them); waited for before the frame answers, so nothing of them outlives it.
    script: { start: stagedConfigBackground(checks), finish: stagedConfigRecord(checks) },
  };
}

/** How validate finds the checks: none ran ahead, they ran for the plan read-node found, or for another. */
export function checkedAhead(ahead: ConfigPlan | undefined, plan: ConfigPlan): CheckedAhead {
  if (ahead === undefined) return 'none';
  return JSON.stringify(ahead) === JSON.stringify(plan) ? 'same-plan' : 'other-plan';
}
