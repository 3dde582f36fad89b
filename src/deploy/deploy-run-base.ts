/**
 * What a deploy does besides its main line (node-deployer.ts): its state (set as steps run), the
 * step records, and the operations on the node that several paths share: apply, repair of drifted
 * files, rollback, removal of what was staged, pruning.
 */
import { posix } from 'node:path';
import { releaseFiles, type Bundle } from './bundle.js';
import type { BundleDelta } from './bundle-delta.js';
import { DeployJournal, skipped } from './deploy-journal.js';
import { systemClock, type DeployOptions, type DeployState, type DeployStep } from './deploy-types.js';
import { DeployCheckError } from './errors.js';
import type { NodeLayout } from './layout.js';
import { FILES_STAT, filesStatCommand, postmapTables } from './node-checks.js';
import {
  driftReportFiles,
  liveProblems,
  planIsEmpty,
  type ConfigPlan,
  type DesiredConfig,
  type LiveState,
  type NodeState,
} from './postfix-config.js';
import { describeRestart, parseRestartVia, restartAgainCommand, type RestartVia } from './postfix-restart.js';
import { RELOAD_COMMAND } from './reload-steps.js';
import {
  applyCommand,
  pruneReleases,
  removeReleaseDir,
  restoreConfig,
  stageRelease,
  switchCurrent,
} from './release-store.js';
import { redactBundleSecrets } from './secret-scrub.js';
import { excerpt, execOk, sh, type NodeConnection } from '../ssh/index.js';

/** Throws a DeployCheckError when a check found problems. */
export function assertNone(step: DeployStep, problems: string[]): void {
  if (problems.length > 0) throw new DeployCheckError(step, problems);
}

export function message(err: unknown): string {
  return excerpt(err instanceof Error ? err.message : String(err));
}

export abstract class DeployRunBase {
  protected readonly journal: DeployJournal;
  protected readonly warnings: string[] = [];
  // Set by the check-bundle step (a bad configDir must end in an outcome too, not a throw).
  protected layout!: NodeLayout;
  protected desired!: DesiredConfig;
  protected node: NodeState | undefined;
  /** postconf edits from the node's config as read before anything changed (its manifest names what we owned). */
  protected plan: ConfigPlan | undefined;
  /** The plan whose checks ran beside postmap (configCheckAhead), if any did. */
  protected planAhead: ConfigPlan | undefined;
  protected previousVersion: string | null = null;
  protected changed = false;
  /** Where the bundle's files are: the staging dir, then the release dir. */
  protected stagingDir: string | undefined;
  protected releaseDir: string | undefined;
  protected promoted = false;
  protected switchStarted = false;
  protected backupTaken = false;
  /** The node already ran this version but its config drifted: re-apply without a switch. */
  protected repair = false;
  /** master was (or is being) restarted: the rollback must restart too, and the log shows a start, not a reload. */
  protected restarted = false;
  /** How the restart went about it (systemd unit or postfix stop/start): the rollback restarts the same way. */
  protected restartVia: RestartVia | undefined;
  /** The staged release was built from the base release plus this delta. */
  protected delta: BundleDelta | undefined;

  constructor(
    protected readonly conn: NodeConnection,
    protected readonly bundle: Bundle,
    protected readonly options: DeployOptions,
  ) {
    this.journal = new DeployJournal(bundle.version, options.clock ?? systemClock, options.log, (err) =>
      this.failure(err),
    );
  }

  protected step<T>(step: DeployStep, fn: () => Promise<T>, describe?: (result: T) => string | undefined): Promise<T> {
    return this.journal.step(step, fn, describe);
  }

  protected to(next: DeployState): void {
    this.journal.to(next);
  }

  /** An error as the outcome, a step and the logs show it: node text may quote the bundle's secret tables. */
  protected failure(err: unknown): string {
    return redactBundleSecrets(message(err), this.bundle);
  }

  /**
   * Hand-edited tables of the live release: a fresh copy is staged and postmap'ed beside it, then
   * each drifted file is renamed over the live one (.db first: that is what Postfix reads). Each
   * rename is atomic; the release directory and the `current` symlink stay as they are.
   */
  protected async repairFiles(names: string[], ready: string | undefined): Promise<void> {
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
        // The release's manifest describes the restored files from here on (mv keeps inode and mtime).
        const manifest = `cd ${sh(release)} && ${filesStatCommand(releaseFiles(this.bundle))} > ${sh(FILES_STAT)}`;
        await execOk(this.conn, [...moves, manifest].join(' && '));
        await removeReleaseDir(this.conn, this.layout, staging!);
        this.stagingDir = undefined;
      },
      () => `restored ${names.join(', ')}`,
    );
  }

  /** Tells the caller what drifted before the repair starts; the caller's trouble never stops the repair. */
  protected async reportDrift(drifted: string[], plan: ConfigPlan, problems: string[]): Promise<void> {
    try {
      await this.options.onDrift?.({ files: driftReportFiles(drifted, plan), problems });
    } catch (err) {
      this.warnings.push(`reporting the drift failed: ${message(err)}`);
    }
  }

  /**
   * Saves main.cf/master.cf into the release, then makes only the edits that differ (none: nothing
   * at all). `checked`: validate edited and checked copies of both in this release (applyCommand).
   */
  protected async apply(
    plan: ConfigPlan,
    conn: NodeConnection,
    release = this.releaseDir!,
    checked = false,
  ): Promise<void> {
    // Nothing to edit, nothing a rollback would restore: the node is not asked anything.
    if (planIsEmpty(plan)) return;
    // One command; the marker tells whether the backup exists, even when an edit failed after it.
    const r = await conn.exec(applyCommand(this.layout, release, plan, checked));
    this.backupTaken = r.stdout.includes('backed-up');
    if (r.code !== 0) throw new Error(`apply: exit ${r.code}: ${excerpt(r.stderr, 300)}`);
  }

  protected liveProblems(now: LiveState, drifted: readonly string[]): string[] {
    return liveProblems(now, drifted, this.bundle.version, this.desired);
  }

  /** Back to the previous release and the saved main.cf/master.cf, then reload. */
  protected async rollback(): Promise<void> {
    this.to('rolling_back');
    await this.step(
      'rollback',
      async () => {
        if (!this.repair) await switchCurrent(this.conn, this.layout, this.previousVersion);
        if (this.backupTaken) await restoreConfig(this.conn, this.layout, this.releaseDir!);
        const r = await execOk(this.conn, this.restarted ? restartAgainCommand(this.restartVia) : RELOAD_COMMAND);
        if (this.restarted) this.restartVia ??= parseRestartVia(r.stdout);
        if (!this.repair && this.releaseDir !== undefined)
          await removeReleaseDir(this.conn, this.layout, this.releaseDir);
      },
      () => `live ${this.previousVersion ?? 'none'}${this.restarted ? `, ${describeRestart(this.restartVia)}` : ''}`,
    );
  }

  /** Failure before the switch: remove what was staged; the node runs as before. */
  protected async discardStaging(): Promise<void> {
    if (this.stagingDir !== undefined) await removeReleaseDir(this.conn, this.layout, this.stagingDir);
    this.stagingDir = undefined;
    if (this.promoted && this.releaseDir !== undefined) await removeReleaseDir(this.conn, this.layout, this.releaseDir);
  }

  protected get keepReleases(): number {
    return Math.max(1, this.options.keepReleases ?? 5);
  }

  /** The releases a prune never removes: this one and the one the node ran before it. */
  protected pruneProtects(): Array<string | null> {
    return [this.bundle.version, this.previousVersion];
  }

  /**
   * Pruning never fails a deploy that is live: a failure is a warning. `listing`: the release dirs,
   * read with the verify (or with read-node, when the prune is sent behind the verify: `conn` is
   * then chained on it, and a prune the node skipped because the verify failed says nothing).
   */
  protected async prune(listing?: string, conn: NodeConnection = this.conn): Promise<void> {
    try {
      await this.step(
        'prune',
        () => pruneReleases(conn, this.layout, this.keepReleases, this.pruneProtects(), listing),
        (removed) => (removed.length > 0 ? `removed ${removed.length}` : 'nothing to remove'),
      );
    } catch (err) {
      if (!skipped(err)) this.warnings.push(`prune: ${this.failure(err)}`);
    }
  }
}
