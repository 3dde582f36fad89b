/**
 * What a deploy shows of itself: its state machine's transitions and its step records, both sent
 * to the caller's log as they happen. Steps sent ahead of the answer before them are timed from
 * when that one was done (the node ran them one after the other).
 */
import { RemoteCommandError, SKIPPED_EXIT } from '../ssh/index.js';
import type { DeployClock, DeployEvent, DeployState, DeployStep, DeployStepRecord } from './deploy-types.js';

/** A step sent behind one that failed: the node never ran it. */
export const skipped = (err: unknown) => err instanceof RemoteCommandError && err.exitCode === SKIPPED_EXIT;

/** Ends a step that did not happen because the one it follows failed (no record, see DeployJournal.step). */
export function skipStep(step: string): never {
  throw new RemoteCommandError(`${step}: skipped, a step before it failed`, SKIPPED_EXIT, '');
}

/** A step sent ahead of the answer it follows: its failure is taken when awaited, never unhandled. */
export function ahead<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export class DeployJournal {
  state: DeployState = 'pending';
  readonly steps: DeployStepRecord[] = [];
  private lastFinishedAt: Date | undefined;
  /** Settles once every step begun so far is recorded (or known skipped). */
  private recorded: Promise<void> = Promise.resolve();

  constructor(
    private readonly version: string,
    private readonly clock: DeployClock,
    private readonly log: ((event: DeployEvent) => void) | undefined,
    /** How an error reads in a record (secrets redacted). */
    private readonly describeError: (err: unknown) => string,
  ) {}

  /**
   * Runs a step and records it; a step the node skipped (one before it failed) did not happen: no
   * record. Records come in the order the steps began, as the node ran them, whatever order their
   * answers settle in (one packet from the node may answer several steps).
   */
  async step<T>(step: DeployStep, fn: () => Promise<T>, describe?: (result: T) => string | undefined): Promise<T> {
    const sentAt = this.clock.now();
    const before = this.recorded;
    let done = () => {};
    this.recorded = new Promise<void>((resolve) => (done = resolve));
    const record = (ok: boolean, detail: string | undefined) => {
      const finishedAt = this.clock.now();
      const startedAt =
        this.lastFinishedAt !== undefined && this.lastFinishedAt > sentAt ? this.lastFinishedAt : sentAt;
      this.lastFinishedAt = finishedAt;
      this.steps.push({ step, startedAt, finishedAt, ok, ...(detail !== undefined ? { detail } : {}) });
      this.emit({
        type: 'step',
        version: this.version,
        step,
        ok,
        durationMs: finishedAt.getTime() - startedAt.getTime(),
        ...(detail !== undefined ? { detail } : {}),
      });
    };
    try {
      const result = await fn();
      await before;
      record(true, describe?.(result));
      return result;
    } catch (err) {
      await before;
      if (!skipped(err)) record(false, this.describeError(err));
      throw err;
    } finally {
      done();
    }
  }

  to(next: DeployState): void {
    if (next === this.state) return;
    const from = this.state;
    this.state = next;
    this.emit({ type: 'state', version: this.version, from, to: next });
  }

  private emit(event: DeployEvent): void {
    try {
      this.log?.(event);
    } catch {
      // A broken logger must not change what happens on the node.
    }
  }
}
