/**
 * Deploys one bundle to one node over an open connection, as a small explicit state machine:
 *
 *   pending → checked → staged → validated → switched → applied → reloaded → live
 *   (`reloaded` after `postfix reload`, or after a restart when the plan changes a parameter
 *   master reads only at start, inet_protocols or inet_interfaces: `systemctl restart <unit>` where
 *   systemd runs master, else `postfix stop; postfix start`)
 *   any failure before `switched`  → failed        (staging removed, node untouched)
 *   any failure from `switched` on → rolling_back → rolled_back (or failed + rollbackError)
 *
 * The outcome is assembled in `finally`, so a caller always gets one, whatever threw. No retries
 * here: the caller (sync worker) decides, and holds the per-node lock; two concurrent deploys to
 * the same node are not safe.
 *
 * Round trips: steps that need no earlier answer are sent before it arrives (the node's shell runs
 * them in order): read-node with stage and postmap (when the caller expects another live version),
 * validate, then promote…verify, each sent only-if-the-one-before-exited-0 (`chained`): the node
 * stops at the first failure as if each had waited. Answers are taken in order; prune follows live.
 * A delta that changes tables only has its validate decided on the node (validateDeltaOnNode), so
 * validate and promote…verify go together once postmap answered: two waits until live.
 */
import type { Bundle } from './bundle.js';
import { checkBundle } from './bundle-checks.js';
import { bundleDelta } from './bundle-delta.js';
import { checkedAhead, configCheckAhead } from './config-check-ahead.js';
import { ahead, skipped, skipStep } from './deploy-journal.js';
import { assertNone, DeployRunBase } from './deploy-run-base.js';
import type { DeployOptions, DeployOutcome } from './deploy-types.js';
import { stagingPlan } from './delta-release.js';
import { nodeBundle } from './table-shards.js';
import { nodeLayout } from './layout.js';
import { driftedFiles } from './live-files.js';
import { postmapTables } from './node-checks.js';
import { describeValidate, validateDeltaOnNode, validatesOnNode, validateStaged } from './validate-step.js';
import {
  describePlan,
  desiredConfig,
  nodeStateProblems,
  planConfig,
  planIsEmpty,
  readNodeState,
  restartParams,
  type ConfigPlan,
  type NodeState,
} from './postfix-config.js';
import { describeRestart } from './postfix-restart.js';
import { reloadPostfix, verifyAfterReload } from './reload-steps.js';
import { promoteAndSwitch, pruneHasWork, scratchDirOf, stageRelease, stagingDirFor } from './release-store.js';
import { chained, excerpt, type NodeConnection } from '../ssh/index.js';

interface StagedAhead {
  stage: Promise<string>;
  postmap: Promise<void>;
}

export async function deployBundle(
  conn: NodeConnection,
  bundle: Bundle,
  options: DeployOptions,
): Promise<DeployOutcome> {
  // The release as the node holds it: large tables as shards (the same version, one layout per bundle).
  const base = options.base === undefined ? undefined : nodeBundle(options.base, options.shardSize);
  return new DeployRun(conn, nodeBundle(bundle, options.shardSize), { ...options, base }).execute();
}

class DeployRun extends DeployRunBase {
  async execute(): Promise<DeployOutcome> {
    let error: string | undefined;
    let rollbackError: string | undefined;
    try {
      await this.run();
    } catch (err) {
      error = this.failure(err);
      if (this.switchStarted || this.backupTaken) {
        try {
          await this.rollback();
        } catch (err2) {
          rollbackError = this.failure(err2);
        }
      } else {
        await this.discardStaging().catch((err2: unknown) =>
          this.warnings.push(`removing the staged release failed: ${this.failure(err2)}`),
        );
      }
    } finally {
      // Every path ends in one of the three outcome states.
      if (error === undefined) this.to('live');
      else if (rollbackError === undefined && this.journal.state === 'rolling_back') this.to('rolled_back');
      else this.to('failed');
    }
    return {
      state: this.journal.state === 'live' ? 'live' : this.journal.state === 'rolled_back' ? 'rolled_back' : 'failed',
      version: this.bundle.version,
      previousVersion: this.previousVersion,
      changed: this.changed,
      steps: this.journal.steps,
      warnings: [...this.bundle.warnings, ...this.warnings],
      ...(error !== undefined ? { error } : {}),
      ...(rollbackError !== undefined ? { rollbackError } : {}),
    };
  }

  private async run(): Promise<void> {
    await this.step('check-bundle', async () => {
      this.layout = nodeLayout(this.options.configDir);
      this.desired = desiredConfig(this.bundle, this.layout.liveDir);
      assertNone('check-bundle', checkBundle(this.bundle));
    });
    this.to('checked');
    const reading = this.step(
      'read-node',
      () => this.readNode(),
      (s) => `live ${s.liveVersion ?? 'none'}`,
    );
    // Sent with the read when the caller knows the node runs another version; a node expected to
    // run this one already (a reconcile), or one nothing is known about, is read first.
    const expected = this.options.expectedLiveVersion;
    const staged = expected === undefined || expected === this.bundle.version ? undefined : this.stageAhead();
    const node = await reading;
    this.node = node;
    this.previousVersion = node.liveVersion;
    const plan = planConfig(this.desired, node.config);
    this.plan = plan;

    if (node.liveVersion === this.bundle.version) {
      const ready = staged === undefined ? undefined : await this.settled(staged);
      // Files of the live release whose content differs from the bundle (hand edits).
      let drifted: string[] = [];
      const drift = await this.step(
        'verify-live',
        async () => {
          drifted = await driftedFiles(this.conn, this.layout.liveDir, this.bundle);
          return this.liveProblems(node, drifted);
        },
        (p) => (p.length === 0 ? 'in sync' : excerpt(p.join('; '))),
      );
      if (drift.length === 0) {
        await this.discardStaging();
        return; // idempotent: nothing touched
      }
      await this.reportDrift(drifted, plan, drift);
      this.repair = true;
      this.releaseDir = this.layout.release(this.bundle.version);
      if (drifted.length > 0) await this.repairFiles(drifted, ready);
      else await this.discardStaging();
      this.changed = true;
      await this.step(
        'apply',
        () => this.apply(plan, this.conn),
        () => describePlan(plan),
      );
      this.to('applied');
      await this.reloadAndVerify(plan, false);
    } else {
      await this.stageAndValidate(staged);
    }
  }

  /** Stage and postmap, sent behind read-node: one round trip for the three. */
  private stageAhead(): StagedAhead {
    const dir = stagingDirFor(this.layout, this.bundle.version);
    this.stagingDir = dir;
    // From the bundle the node last ran, when this process still has it: only the change is sent.
    const { base, expectedLiveVersion, deltaSendWholeUpTo } = this.options;
    const live = base !== undefined && base.version === expectedLiveVersion ? base : undefined;
    // validate's postconf checks beside postmap, for the plan the live release's config calls for.
    const check = live && configCheckAhead({ base: live, desired: this.desired, layout: this.layout, staging: dir });
    this.planAhead = check?.plan;
    const delta = live && bundleDelta(live, this.bundle, { sendWholeUpTo: deltaSendWholeUpTo });
    const plan = stagingPlan(this.conn, this.layout, this.bundle, dir, delta ?? null, check?.script);
    const staged = ahead(
      this.step(
        'stage',
        () => plan.stage(),
        () => plan.describe(),
      ),
    );
    const postmap = ahead(this.step('postmap', async () => assertNone('postmap', await plan.postmap(staged))));
    return { stage: ahead(staged.then((delta) => ((this.delta = delta ?? undefined), dir))), postmap };
  }

  /** The staging dir when stage and postmap sent ahead both succeeded (else undefined: stage again). */
  private async settled(staged: StagedAhead): Promise<string | undefined> {
    try {
      await staged.postmap;
      return await staged.stage;
    } catch {
      return undefined;
    }
  }

  /**
   * Promote, switch, apply, reload (or restart), verify and prune: sent at once, chained on the node.
   * With `validated` (validate was sent just before, decided on the node), promote is chained on it
   * too, and the answers are taken once `validated` resolved.
   */
  private async goLive(plan: ConfigPlan, validated?: () => Promise<void>): Promise<void> {
    const release = this.layout.release(this.bundle.version);
    const next = chained(this.conn);
    const sent = promoteAndSwitch(
      validated === undefined ? this.conn : next,
      this.layout,
      this.stagingDir!,
      this.bundle.version,
    );
    const promote = ahead(
      this.step('promote', async () => {
        this.releaseDir = await sent.promoted;
        this.promoted = true;
        this.stagingDir = undefined;
      }),
    );
    const switched = ahead(
      this.step('switch', async () => {
        await sent.switched.catch((err: unknown) => {
          if (!skipped(err)) this.switchStarted = true;
          throw err;
        });
        this.switchStarted = true;
      }),
    );
    const applied = ahead(
      this.step(
        'apply',
        // validate (stageAndValidate) checked edited copies of main.cf and master.cf for this plan.
        async () => {
          // An empty plan sends nothing: done once the switch is (skipped with it), recorded after it.
          if (planIsEmpty(plan)) await switched.catch(() => skipStep('apply'));
          return this.apply(plan, next, release, true);
        },
        () => describePlan(plan),
      ),
    );
    // States in the steps' order, however their answers settle (one packet may answer several).
    const recorded = ahead(
      (async () => {
        await validated?.();
        await promote;
        await switched;
        this.to('switched');
        this.changed = true;
        await applied;
        this.to('applied');
      })(),
    );
    const verified = ahead(this.reloadAndVerify(plan, true, release, this.node?.releases, recorded));
    await recorded;
    await verified;
  }

  /**
   * Reload (or restart) and verify, chained on the previous step when `chain`; then prune, once the
   * verify said the release is live (pruning is housekeeping: the release is live before it). With
   * `releases` (what read-node listed), the prune is sent behind the verify, chained on it: one
   * round trip fewer. It keeps the live release and the one before it whatever the verify finds, so
   * a rollback still has its release.
   */
  private async reloadAndVerify(
    plan: ConfigPlan,
    chain: boolean,
    release = this.releaseDir!,
    releases?: string,
    /** Settles once the steps before the reload recorded their states: `reloaded` comes after them. */
    before?: Promise<void>,
  ): Promise<void> {
    const conn = this.conn;
    const restart = restartParams(plan);
    this.restarted = restart.length > 0;
    const maillog = this.node?.maillogFile ?? '';
    const queueDirectory = this.node?.queueDirectory ?? '';
    const reloading = ahead(
      this.restarted
        ? this.step(
            'restart',
            () =>
              reloadPostfix(conn, {
                maillog,
                queueDirectory,
                release,
                restart: true,
                ifPreviousOk: chain,
                onRestart: (via) => (this.restartVia = via),
              }),
            ({ via }) => `${describeRestart(via)}: ${restart.join(', ')} take effect only when master starts`,
          )
        : this.step('reload', () =>
            reloadPostfix(conn, { maillog, queueDirectory, release, restart: false, ifPreviousOk: chain }),
          ),
    );
    const settleMs = this.options.settleMs ?? 300;
    const timeoutMs = this.options.reloadTimeoutMs ?? 10_000;
    let listed: string | undefined;
    const verifying = ahead(
      this.step('verify', async () => {
        // After a delta, only the files sent whole: the merged were checked as built, the copies are the base's.
        const digestFiles = this.delta === undefined ? undefined : this.delta.whole;
        const found = await verifyAfterReload(chained(this.conn), {
          layout: this.layout,
          bundle: this.bundle,
          digestFiles,
          // main.cf and master.cf as read-node found them when the deploy left them alone (a
          // tables-only change); the reconcile's verify-live reads them again.
          knownConfig: planIsEmpty(plan) && !this.restarted ? this.node?.config : undefined,
          maillog,
          release,
          settleMs,
          timeoutMs,
          restarted: this.restarted,
          ifPreviousOk: true,
          listReleases: releases === undefined,
          // A deploy that edits main.cf or master.cf: `postfix check` beside the wait, on what is now live.
          checkInstallation: chain && !planIsEmpty(plan),
        });
        listed = found.releases;
        this.warnings.push(...(found.installation?.warnings ?? []).map((w) => `postfix check: ${w}`));
        if (found.logProblems === null)
          this.warnings.push('maillog_file is not set: the log was not checked for fatal errors after the reload');
        assertNone('verify', [
          ...this.liveProblems(found.live, found.drifted),
          ...(found.logProblems ?? []),
          ...(found.installation?.problems ?? []),
        ]);
      }),
    );
    // Sent now only when it has something to remove: otherwise it sends nothing, after the verify.
    const pruned =
      releases !== undefined && pruneHasWork(this.keepReleases, this.pruneProtects(), releases)
        ? this.prune(releases, chained(conn))
        : undefined;
    await reloading;
    await before;
    this.to('reloaded');
    await verifying;
    this.to('live');
    await (pruned ?? this.prune(releases ?? listed));
  }

  /** The node's state; refuses a session on another instance, or a `current` we did not make. */
  private async readNode(): Promise<NodeState> {
    // A reconcile (the node is expected to run this version already) lists no releases: it does not switch.
    const listReleases = this.options.expectedLiveVersion !== this.bundle.version;
    const state = await readNodeState(this.conn, this.layout, { listReleases });
    assertNone('read-node', nodeStateProblems(state, this.layout));
    return state;
  }

  /** Stage (unless sent ahead), postmap, validate, then goLive. */
  private async stageAndValidate(staged: StagedAhead | undefined): Promise<void> {
    const staging = await (staged?.stage ??
      this.step('stage', () => stageRelease(this.conn, this.layout, this.bundle)));
    this.stagingDir = staging;
    this.to('staged');
    const delta = this.delta;
    if (staged !== undefined && this.planAhead === undefined && validatesOnNode(this.bundle, this.plan!, delta)) {
      // Tables only: validate is decided on the node, so promote…verify go with it, chained on it:
      // one wait less. Not before postmap's answer: the control plane checks more of it than its
      // exit code (stderr, the files' modes), and nothing may switch on a build it refused.
      await staged.postmap;
      const validated = ahead(
        this.step(
          'validate',
          async () =>
            assertNone(
              'validate',
              await validateDeltaOnNode(this.conn, { bundle: this.bundle, stagingDir: staging, delta }),
            ),
          () => 'tables only: main.cf and master.cf unchanged; the changed keys checked on the node',
        ),
      );
      await this.goLive(this.plan!, async () => {
        await validated;
        this.to('validated');
      });
      return;
    }
    await (staged?.postmap ??
      this.step('postmap', async () => assertNone('postmap', await postmapTables(this.conn, staging, this.bundle))));
    await this.step(
      'validate',
      async () => {
        const checked = await validateStaged(this.conn, {
          bundle: this.bundle,
          stagingDir: staging,
          daemonDirectory: this.node!.daemonDirectory,
          scratchDir: scratchDirOf(staging),
          configDir: this.layout.configDir,
          plan: this.plan!,
          desired: this.desired,
          delta: this.delta,
          checkedAhead: checkedAhead(this.planAhead, this.plan!),
        });
        assertNone('validate', checked.problems);
        return checked;
      },
      describeValidate,
    );
    this.to('validated');
    await this.goLive(this.plan!);
  }
}
