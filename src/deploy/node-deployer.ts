/**
 * Deploys one bundle to one node over an open connection, as a small explicit state machine:
 *
 *   pending → checked → staged → validated → switched → applied → reloaded → live
 *   (`reloaded` after `postfix reload`, or after `postfix stop; postfix start` when the plan
 *   changes a parameter master reads only at start: inet_protocols, inet_interfaces)
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
 */
import { posix } from 'node:path';
import type { Bundle } from './bundle.js';
import { checkBundle } from './bundle-checks.js';
import { systemClock, type DeployOptions, type DeployOutcome, type DeployState, type DeployStep } from './deploy-types.js';
import { DeployCheckError } from './errors.js';
import { chained, excerpt, sh, execOk, RemoteCommandError, SKIPPED_EXIT, type NodeConnection } from '../ssh/index.js';
import { ahead, DeployJournal, skipped } from './deploy-journal.js';
import { bundleDelta, type BundleDelta } from './bundle-delta.js';
import { stagingPlan } from './delta-release.js';
import { redactBundleSecrets } from './secret-scrub.js';
import { META_DIR, nodeLayout, type NodeLayout } from './layout.js';
import { driftedFiles } from './live-files.js';
import { postmapTables, validateStaged } from './node-checks.js';
import {
  backdateCommand,
  describePlan,
  desiredConfig,
  driftReportFiles,
  liveProblems,
  planCommands,
  planConfig,
  planIsEmpty,
  nodeStateProblems,
  readNodeState,
  restartParams,
  type ConfigPlan,
  type DesiredConfig,
  type LiveState,
  type NodeState,
} from './postfix-config.js';
import { RELOAD_COMMAND, RESTART_COMMAND, reloadPostfix, verifyAfterReload } from './reload-steps.js';
import { backupCommand, promoteRelease, pruneReleases, removeReleaseDir, restoreConfig, stageRelease, stagingDirFor, switchCurrent } from './release-store.js';

interface StagedAhead {
  stage: Promise<string>;
  postmap: Promise<void>;
}

export async function deployBundle(conn: NodeConnection, bundle: Bundle, options: DeployOptions): Promise<DeployOutcome> {
  return new DeployRun(conn, bundle, options).execute();
}

/** Throws a DeployCheckError when a check found problems. */
function assertNone(step: DeployStep, problems: string[]): void {
  if (problems.length > 0) throw new DeployCheckError(step, problems);
}

function message(err: unknown): string {
  return excerpt(err instanceof Error ? err.message : String(err));
}

class DeployRun {
  private readonly journal: DeployJournal;
  private readonly warnings: string[] = [];
  // Set by the check-bundle step (a bad configDir must end in an outcome too, not a throw).
  private layout!: NodeLayout;
  private desired!: DesiredConfig;
  private node: NodeState | undefined;
  /** postconf edits from the node's config as read before anything changed (its manifest names what we owned). */
  private plan: ConfigPlan | undefined;
  private previousVersion: string | null = null;
  private changed = false;
  /** Where the bundle's files are: the staging dir, then the release dir. */
  private stagingDir: string | undefined;
  private releaseDir: string | undefined;
  private promoted = false;
  private switchStarted = false;
  private backupTaken = false;
  /** The node already ran this version but its config drifted: re-apply without a switch. */
  private repair = false;
  /** master was (or is being) restarted: the rollback must restart too, and the log shows a start, not a reload. */
  private restarted = false;
  /** The staged release was built from the base release plus this delta. */
  private delta: BundleDelta | undefined;

  constructor(
    private readonly conn: NodeConnection,
    private readonly bundle: Bundle,
    private readonly options: DeployOptions,
  ) {
    this.journal = new DeployJournal(bundle.version, options.clock ?? systemClock, options.log, (err) => this.failure(err));
  }

  private step<T>(step: DeployStep, fn: () => Promise<T>, describe?: (result: T) => string | undefined): Promise<T> {
    return this.journal.step(step, fn, describe);
  }

  private to(next: DeployState): void {
    this.journal.to(next);
  }

  /** An error as the outcome, a step and the logs show it: node text may quote the bundle's secret tables. */
  private failure(err: unknown): string {
    return redactBundleSecrets(message(err), this.bundle);
  }

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
        await this.discardStaging().catch((err2: unknown) => this.warnings.push(`removing the staged release failed: ${this.failure(err2)}`));
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
    const reading = this.step('read-node', () => this.readNode(), (s) => `live ${s.liveVersion ?? 'none'}`);
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
      await this.step('apply', () => this.apply(plan, this.conn), () => describePlan(plan));
      this.to('applied');
      await this.reloadAndVerify(plan, false);
    } else {
      await this.stageAndValidate(staged);
      await this.goLive(plan);
    }
  }

  /** Stage and postmap, sent behind read-node: one round trip for the three. */
  private stageAhead(): StagedAhead {
    const dir = stagingDirFor(this.layout, this.bundle.version);
    this.stagingDir = dir;
    // From the bundle the node last ran, when this process still has it: only the change is sent.
    const { base, expectedLiveVersion } = this.options;
    const plan = stagingPlan(this.conn, this.layout, this.bundle, dir, base !== undefined && base.version === expectedLiveVersion ? bundleDelta(base, this.bundle) : null);
    const staged = ahead(this.step('stage', () => plan.stage(), () => plan.describe()));
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

  /** Promote, switch, apply, reload (or restart), verify and prune: sent at once, chained on the node. */
  private async goLive(plan: ConfigPlan): Promise<void> {
    const release = this.layout.release(this.bundle.version);
    const next = chained(this.conn);
    const promote = ahead(
      this.step('promote', async () => {
        this.releaseDir = await promoteRelease(this.conn, this.layout, this.stagingDir!, this.bundle.version);
        this.promoted = true;
        this.stagingDir = undefined;
      }),
    );
    const switched = ahead(
      this.step('switch', async () => {
        try {
          await switchCurrent(next, this.layout, this.bundle.version);
        } catch (err) {
          if (!skipped(err)) this.switchStarted = true;
          throw err;
        }
        this.switchStarted = true;
      }),
    );
    const applied = ahead(this.step('apply', () => this.apply(plan, next, release), () => describePlan(plan)));
    const verified = this.reloadAndVerify(plan, true, release);
    await promote;
    await switched;
    this.to('switched');
    this.changed = true;
    await applied;
    this.to('applied');
    await verified;
  }

  /**
   * Reload (or restart) and verify, chained on the previous step when `chain`; then prune, once the
   * verify said the release is live (pruning is housekeeping: the release is live before it).
   */
  private async reloadAndVerify(plan: ConfigPlan, chain: boolean, release = this.releaseDir!): Promise<void> {
    const conn = this.conn;
    const restart = restartParams(plan);
    this.restarted = restart.length > 0;
    const maillog = this.node?.maillogFile ?? '';
    const reloading = ahead(
      this.restarted
        ? this.step('restart', () => reloadPostfix(conn, { maillog, release, restart: true, ifPreviousOk: chain }), () => `postfix stop; postfix start: ${restart.join(', ')} take effect only when master starts`)
        : this.step('reload', () => reloadPostfix(conn, { maillog, release, restart: false, ifPreviousOk: chain })),
    );
    const settleMs = this.options.settleMs ?? 300;
    const timeoutMs = this.options.reloadTimeoutMs ?? 10_000;
    const verifying = ahead(
      this.step('verify', async () => {
        // After a delta, the files it built (the copies are the base's, verified before the copy).
        const digestFiles = this.delta === undefined ? undefined : [...Object.keys(this.delta.tables), ...this.delta.whole];
        const found = await verifyAfterReload(chained(this.conn), { layout: this.layout, bundle: this.bundle, digestFiles, maillog, release, settleMs, timeoutMs, restarted: this.restarted, ifPreviousOk: true });
        if (found.logProblems === null) this.warnings.push('maillog_file is not set: the log was not checked for fatal errors after the reload');
        assertNone('verify', [...this.liveProblems(found.live, found.drifted), ...(found.logProblems ?? [])]);
      }),
    );
    await reloading;
    this.to('reloaded');
    await verifying;
    this.to('live');
    await this.prune();
  }

  /** The node's state; refuses a session on another instance, or a `current` we did not make. */
  private async readNode(): Promise<NodeState> {
    const state = await readNodeState(this.conn, this.layout);
    assertNone('read-node', nodeStateProblems(state, this.layout));
    return state;
  }

  private async stageAndValidate(staged: StagedAhead | undefined): Promise<void> {
    const staging = await (staged?.stage ?? this.step('stage', () => stageRelease(this.conn, this.layout, this.bundle)));
    this.stagingDir = staging;
    this.to('staged');
    await (staged?.postmap ?? this.step('postmap', async () => assertNone('postmap', await postmapTables(this.conn, staging, this.bundle))));
    await this.step('validate', async () => {
      const { problems, warnings, configChecked } = await validateStaged(this.conn, {
        bundle: this.bundle,
        stagingDir: staging,
        daemonDirectory: this.node!.daemonDirectory,
        scratchDir: posix.join(staging, META_DIR, 'check'),
        configDir: this.layout.configDir,
        plan: this.plan!,
        desired: this.desired,
        delta: this.delta,
      });
      this.warnings.push(...warnings.map((w) => `postfix check: ${w}`));
      assertNone('validate', problems);
      return configChecked;
    }, (configChecked) => (configChecked ? undefined : 'tables only: main.cf and master.cf unchanged, postfix check not needed'));
    this.to('validated');
  }

  /**
   * Hand-edited tables of the live release: a fresh copy is staged and postmap'ed beside it, then
   * each drifted file is renamed over the live one (.db first: that is what Postfix reads). Each
   * rename is atomic; the release directory and the `current` symlink stay as they are.
   */
  private async repairFiles(names: string[], ready: string | undefined): Promise<void> {
    let staging = ready;
    if (staging === undefined) {
      await this.discardStaging();
      const dir = await this.step('stage', () => stageRelease(this.conn, this.layout, this.bundle));
      this.stagingDir = dir;
      await this.step('postmap', async () => assertNone('postmap', await postmapTables(this.conn, dir, this.bundle)));
      staging = dir;
    }
    const release = this.releaseDir!;
    await this.step(
      'repair-files',
      async () => {
        const moves = names.flatMap((name) => {
          const parts = this.bundle.files[name]?.mapType === 'hash' ? [`${name}.db`, name] : [name];
          return parts.map((p) => sh('mv', '-f', posix.join(staging, p), posix.join(release, p)));
        });
        await execOk(this.conn, moves.join(' && '));
        await removeReleaseDir(this.conn, this.layout, staging!);
        this.stagingDir = undefined;
      },
      () => `restored ${names.join(', ')}`,
    );
  }

  /** Tells the caller what drifted before the repair starts; the caller's trouble never stops the repair. */
  private async reportDrift(drifted: string[], plan: ConfigPlan, problems: string[]): Promise<void> {
    try {
      await this.options.onDrift?.({ files: driftReportFiles(drifted, plan), problems });
    } catch (err) {
      this.warnings.push(`reporting the drift failed: ${message(err)}`);
    }
  }

  /** Saves main.cf/master.cf into the release, then runs only the postconf edits that differ. */
  private async apply(plan: ConfigPlan, conn: NodeConnection, release = this.releaseDir!): Promise<void> {
    const edits = planIsEmpty(plan) ? [] : [...planCommands(plan), backdateCommand(posix.join(this.layout.configDir, 'main.cf'))];
    // One command; the marker tells whether the backup exists, even when an edit failed after it.
    const r = await conn.exec([backupCommand(this.layout, release), 'echo backed-up', ...edits].join(' && '));
    if (r.code === SKIPPED_EXIT) throw new RemoteCommandError('apply: skipped', r.code, '');
    this.backupTaken = r.stdout.includes('backed-up');
    if (r.code !== 0) throw new Error(`apply: exit ${r.code}: ${excerpt(r.stderr, 300)}`);
  }

  private liveProblems(now: LiveState, drifted: readonly string[]): string[] {
    return liveProblems(now, drifted, this.bundle.version, this.desired);
  }

  /** Back to the previous release and the saved main.cf/master.cf, then reload. */
  private async rollback(): Promise<void> {
    this.to('rolling_back');
    await this.step('rollback', async () => {
      if (!this.repair) await switchCurrent(this.conn, this.layout, this.previousVersion);
      if (this.backupTaken) await restoreConfig(this.conn, this.layout, this.releaseDir!);
      await execOk(this.conn, this.restarted ? RESTART_COMMAND : RELOAD_COMMAND);
      if (!this.repair && this.releaseDir !== undefined) await removeReleaseDir(this.conn, this.layout, this.releaseDir);
    }, () => `live ${this.previousVersion ?? 'none'}`);
  }

  /** Failure before the switch: remove what was staged; the node runs as before. */
  private async discardStaging(): Promise<void> {
    if (this.stagingDir !== undefined) await removeReleaseDir(this.conn, this.layout, this.stagingDir);
    this.stagingDir = undefined;
    if (this.promoted && this.releaseDir !== undefined) await removeReleaseDir(this.conn, this.layout, this.releaseDir);
  }

  /** Pruning never fails a deploy that is live: a failure is a warning. */
  private async prune(): Promise<void> {
    const keep = Math.max(1, this.options.keepReleases ?? 5);
    try {
      await this.step('prune', () => pruneReleases(this.conn, this.layout, keep, [this.bundle.version, this.previousVersion]), (removed) =>
        removed.length > 0 ? `removed ${removed.length}` : 'nothing to remove',
      );
    } catch (err) {
      this.warnings.push(`prune: ${this.failure(err)}`);
    }
  }
}
