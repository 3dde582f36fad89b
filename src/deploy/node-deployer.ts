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
 */
import { posix } from 'node:path';
import type { Bundle } from './bundle.js';
import { checkBundle } from './bundle-checks.js';
import {
  systemClock,
  type DeployClock,
  type DeployEvent,
  type DeployOptions,
  type DeployOutcome,
  type DeployState,
  type DeployStep,
  type DeployStepRecord,
} from './deploy-types.js';
import { DeployCheckError } from './errors.js';
import { excerpt, execSections, sectionOk, type Section, sh, execOk, type NodeConnection } from '../ssh/index.js';
import { redactBundleSecrets } from './secret-scrub.js';
import { META_DIR, nodeLayout, versionOfTarget, type NodeLayout } from './layout.js';
import { digestScript, driftFromDigests, driftedFiles } from './live-files.js';
import { postmapTables, reloadLogProblems, reloadLogScript, validateStaged } from './node-checks.js';
import {
  backdateCommand,
  describePlan,
  desiredConfig,
  liveStateScript,
  parseLiveState,
  planCommands,
  planConfig,
  planIsEmpty,
  readNodeState,
  restartParams,
  type ConfigPlan,
  type DesiredConfig,
  type LiveState,
  type NodeState,
} from './postfix-config.js';
import { backupCommand, promoteRelease, pruneReleases, removeReleaseDir, restoreConfig, stageRelease, switchCurrent } from './release-store.js';

/** master detaches from the session's stdio, so the SSH command returns once it runs. */
const RESTART_COMMAND = 'postfix stop >/dev/null 2>&1; postfix start </dev/null >/dev/null';

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
  private state: DeployState = 'pending';
  private readonly steps: DeployStepRecord[] = [];
  private readonly warnings: string[] = [];
  private readonly clock: DeployClock;
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

  constructor(
    private readonly conn: NodeConnection,
    private readonly bundle: Bundle,
    private readonly options: DeployOptions,
  ) {
    this.clock = options.clock ?? systemClock;
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
      else if (rollbackError === undefined && this.state === 'rolling_back') this.to('rolled_back');
      else this.to('failed');
    }
    return {
      state: this.state === 'live' ? 'live' : this.state === 'rolled_back' ? 'rolled_back' : 'failed',
      version: this.bundle.version,
      previousVersion: this.previousVersion,
      changed: this.changed,
      steps: this.steps,
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
    const node = await this.step('read-node', () => this.readNode(), (s) => `live ${s.liveVersion ?? 'none'}`);
    this.node = node;
    this.previousVersion = node.liveVersion;
    const plan = planConfig(this.desired, node.config);
    this.plan = plan;

    if (node.liveVersion === this.bundle.version) {
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
      if (drift.length === 0) return; // idempotent: nothing touched
      await this.reportDrift(drifted, plan, drift);
      this.repair = true;
      this.releaseDir = this.layout.release(this.bundle.version);
      if (drifted.length > 0) await this.repairFiles(drifted);
    } else {
      await this.stageAndValidate();
      await this.step('switch', async () => {
        this.switchStarted = true;
        await switchCurrent(this.conn, this.layout, this.bundle.version);
      });
      this.to('switched');
    }
    this.changed = true;
    await this.step('apply', () => this.apply(plan), () => describePlan(plan));
    this.to('applied');
    const restart = restartParams(plan);
    const offset =
      restart.length === 0
        ? await this.step('reload', () => this.reload())
        : await this.step('restart', () => this.restart(), () => `postfix stop; postfix start: ${restart.join(', ')} take effect only when master starts`);
    this.to('reloaded');
    await this.step('verify', async () => assertNone('verify', await this.verifyAfterReload(offset)));
    this.to('live');
    await this.prune();
  }

  /** The node's state; refuses a session on another instance, or a `current` we did not make. */
  private async readNode(): Promise<NodeState> {
    const state = await readNodeState(this.conn, this.layout);
    const problems: string[] = [];
    if (state.configDirectory !== this.layout.configDir) {
      problems.push(`the SSH session acts on config_directory ${state.configDirectory}, not ${this.layout.configDir}`);
    }
    // A rollback must know exactly where to point `current` back to.
    const target = versionOfTarget(state.currentTarget);
    if (state.currentTarget !== null && (target === null || target !== state.liveVersion)) {
      problems.push(`inconsistent live release: current → ${state.currentTarget}, VERSION ${state.liveVersion ?? 'missing'}`);
    }
    assertNone('read-node', problems);
    return state;
  }

  private async stageAndValidate(): Promise<void> {
    const staging = await this.step('stage', () => stageRelease(this.conn, this.layout, this.bundle));
    this.stagingDir = staging;
    this.to('staged');
    await this.step('postmap', async () => assertNone('postmap', await postmapTables(this.conn, staging, this.bundle)));
    await this.step('validate', async () => {
      const { problems, warnings } = await validateStaged(this.conn, {
        bundle: this.bundle,
        stagingDir: staging,
        daemonDirectory: this.node!.daemonDirectory,
        scratchDir: posix.join(staging, META_DIR, 'check'),
        configDir: this.layout.configDir,
        plan: this.plan!,
        desired: this.desired,
      });
      this.warnings.push(...warnings.map((w) => `postfix check: ${w}`));
      assertNone('validate', problems);
    });
    this.to('validated');
    await this.step('promote', async () => {
      this.releaseDir = await promoteRelease(this.conn, this.layout, staging, this.bundle.version);
      this.promoted = true;
      this.stagingDir = undefined;
    });
  }

  /**
   * Hand-edited tables of the live release: a fresh copy is staged and postmap'ed beside it, then
   * each drifted file is renamed over the live one (.db first: that is what Postfix reads). Each
   * rename is atomic; the release directory and the `current` symlink stay as they are.
   */
  private async repairFiles(names: string[]): Promise<void> {
    const staging = await this.step('stage', () => stageRelease(this.conn, this.layout, this.bundle));
    this.stagingDir = staging;
    await this.step('postmap', async () => assertNone('postmap', await postmapTables(this.conn, staging, this.bundle)));
    const release = this.releaseDir!;
    await this.step(
      'repair-files',
      async () => {
        const moves = names.flatMap((name) => {
          const parts = this.bundle.files[name]?.mapType === 'hash' ? [`${name}.db`, name] : [name];
          return parts.map((p) => sh('mv', '-f', posix.join(staging, p), posix.join(release, p)));
        });
        await execOk(this.conn, moves.join(' && '));
        await removeReleaseDir(this.conn, this.layout, staging);
        this.stagingDir = undefined;
      },
      () => `restored ${names.join(', ')}`,
    );
  }

  /** Tells the caller what drifted before the repair starts; the caller's trouble never stops the repair. */
  private async reportDrift(drifted: string[], plan: ConfigPlan, problems: string[]): Promise<void> {
    const files = [...drifted];
    if (plan.setParams.length + plan.removeParams.length > 0) files.push('main.cf');
    if (plan.writeServices.length + plan.removeServices.length > 0) files.push('master.cf');
    try {
      await this.options.onDrift?.({ files, problems });
    } catch (err) {
      this.warnings.push(`reporting the drift failed: ${message(err)}`);
    }
  }

  /** Saves main.cf/master.cf into the release, then runs only the postconf edits that differ. */
  private async apply(plan: ConfigPlan): Promise<void> {
    const release = this.releaseDir!;
    const edits = planIsEmpty(plan) ? [] : [...planCommands(plan), backdateCommand(posix.join(this.layout.configDir, 'main.cf'))];
    // One round trip; the marker tells whether the backup exists, even when an edit failed after it.
    const r = await this.conn.exec([backupCommand(this.layout, release), 'echo backed-up', ...edits].join(' && '));
    this.backupTaken = r.stdout.includes('backed-up');
    if (r.code !== 0) throw new Error(`apply: exit ${r.code}: ${excerpt(r.stderr, 300)}`);
  }

  /** `postfix reload`; returns the maillog size before it, where the log check starts reading. */
  private async reload(): Promise<number> {
    const log = this.node?.maillogFile ?? '';
    const size = log === '' ? 'echo 0' : `{ wc -c < ${sh(log)} 2>/dev/null || echo 0; }`;
    const r = await execOk(this.conn, `${size} && postfix reload >/dev/null`);
    return Number.parseInt(r.stdout.trim(), 10) || 0;
  }

  /**
   * `postfix stop; postfix start` (master re-reads RESTART_PARAMS only at start); returns the
   * maillog size before it. `postfix start` returns once master has bound its listeners (-w).
   */
  private async restart(): Promise<number> {
    this.restarted = true;
    const log = this.node?.maillogFile ?? '';
    const size = log === '' ? 'echo 0' : `{ wc -c < ${sh(log)} 2>/dev/null || echo 0; }`;
    const r = await this.conn.exec(`${size} && ${RESTART_COMMAND}`);
    const offset = Number.parseInt(r.stdout.trim(), 10) || 0;
    if (r.code === 0) return offset;
    // master's reason (a listener it cannot bind under the new value, say) is only in the log.
    const reasons = log === '' ? '' : (await this.conn.exec(`tail -c +${offset + 1} ${sh(log)} | grep -E ': (fatal|panic): ' | head -n 3`)).stdout;
    const why = reasons.split('\n').filter((l) => l !== '').map((l) => l.replace(/^.*?: (fatal|panic): /, '$1: '));
    throw new Error(`postfix start failed (exit ${r.code})${why.length > 0 ? `: ${excerpt(why.join('; '), 300)}` : ''}`);
  }

  /** What differs between the node and the bundle, given the files found drifted: empty when in sync. */
  private liveProblems(now: LiveState, drifted: readonly string[]): string[] {
    const problems: string[] = [];
    if (now.liveVersion !== this.bundle.version) problems.push(`live version is ${now.liveVersion ?? 'none'}`);
    const plan = planConfig(this.desired, now.config);
    if (!planIsEmpty(plan)) problems.push(`config differs: ${describePlan(plan)}`);
    if (drifted.length > 0) problems.push(`files differ from the release: ${drifted.join(', ')}`);
    return problems;
  }

  /**
   * After the reload, in one round trip: the live release and config read again, the digests of
   * the live files, then (on the node) the wait for master's reload line, the settle time and the log since.
   */
  private async verifyAfterReload(offset: number): Promise<string[]> {
    const log = this.node?.maillogFile ?? '';
    const settleMs = this.options.settleMs ?? 300;
    const timeoutMs = this.options.reloadTimeoutMs ?? 10_000;
    const sections: Section[] = [
      { name: 'live-state', script: liveStateScript(this.layout) },
      { name: 'digests', script: digestScript(this.bundle), cwd: this.layout.liveDir },
    ];
    if (log !== '') sections.push({ name: 'reload-log', script: reloadLogScript({ maillog: log, offset, settleMs, timeoutMs, restarted: this.restarted }) });
    // The wait is bounded on the node; the exec gets that much time on top of its usual limit.
    const r = await execSections(this.conn, sections, { timeoutMs: 60_000 + settleMs + timeoutMs });
    const problems = this.liveProblems(parseLiveState(sectionOk(r, 'live-state').stdout), driftFromDigests(r.get('digests')!.stdout, this.bundle));
    if (log === '') {
      this.warnings.push('maillog_file is not set: the log was not checked for fatal errors after the reload');
      return problems;
    }
    return [...problems, ...reloadLogProblems(r.get('reload-log')!, timeoutMs)];
  }

  /** Back to the previous release and the saved main.cf/master.cf, then reload. */
  private async rollback(): Promise<void> {
    this.to('rolling_back');
    await this.step('rollback', async () => {
      if (!this.repair) await switchCurrent(this.conn, this.layout, this.previousVersion);
      if (this.backupTaken) await restoreConfig(this.conn, this.layout, this.releaseDir!);
      await execOk(this.conn, this.restarted ? RESTART_COMMAND : 'postfix reload >/dev/null');
      if (!this.repair && this.releaseDir !== undefined) await removeReleaseDir(this.conn, this.layout, this.releaseDir);
    }, () => `live ${this.previousVersion ?? 'none'}`);
  }

  /** Failure before the switch: remove what was staged; the node runs as before. */
  private async discardStaging(): Promise<void> {
    if (this.stagingDir !== undefined) await removeReleaseDir(this.conn, this.layout, this.stagingDir);
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

  private async step<T>(step: DeployStep, fn: () => Promise<T>, describe?: (result: T) => string | undefined): Promise<T> {
    const startedAt = this.clock.now();
    const record = (ok: boolean, detail: string | undefined) => {
      const finishedAt = this.clock.now();
      this.steps.push({ step, startedAt, finishedAt, ok, ...(detail !== undefined ? { detail } : {}) });
      this.emit({ type: 'step', version: this.bundle.version, step, ok, durationMs: finishedAt.getTime() - startedAt.getTime(), ...(detail !== undefined ? { detail } : {}) });
    };
    try {
      const result = await fn();
      record(true, describe?.(result));
      return result;
    } catch (err) {
      record(false, this.failure(err));
      throw err;
    }
  }

  private to(next: DeployState): void {
    if (next === this.state) return;
    const from = this.state;
    this.state = next;
    this.emit({ type: 'state', version: this.bundle.version, from, to: next });
  }

  private emit(event: DeployEvent): void {
    try {
      this.options.log?.(event);
    } catch {
      // A broken logger must not change what happens on the node.
    }
  }
}
