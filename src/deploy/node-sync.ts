/**
 * One node's part of a sync run: connect (pinned host key, short timeout), deploy the bundle,
 * retry what may be transient with exponential back-off, and report. A host key mismatch is never
 * retried (a wrong address, a reinstalled node, or an attacker). No database here: the caller
 * records the result.
 */
import type { Bundle } from './bundle.js';
import {
  systemClock,
  type DeployClock,
  type DeployEvent,
  type DeployStepRecord,
  type DriftReport,
} from './deploy-types.js';
import { HostKeyMismatchError, excerpt, connectNode, type NodeConnection, type NodeTarget } from '../ssh/index.js';
import { deployBundle } from './node-deployer.js';

export interface RetryPolicy {
  /** Attempts in all (default 3). */
  attempts: number;
  /** Delay before the 2nd attempt; doubled for each next one (default 1000 ms). */
  baseDelayMs: number;
}

export interface NodeSyncOptions {
  configDir: string;
  retry?: Partial<RetryPolicy>;
  /** SSH connect (handshake) timeout; one dead node must not hold a run for long (default 5 s). */
  connectTimeoutMs?: number;
  keepReleases?: number;
  clock?: DeployClock;
  log?: (event: DeployEvent) => void;
  /** Lets a test count connections; production uses connectNode. */
  connect?: (target: NodeTarget) => Promise<NodeConnection>;
  /** Drift found on the live release, before the repair (see DeployOptions.onDrift). */
  onDrift?: (drift: DriftReport) => Promise<void>;
  /** The version the node ran when last seen (see DeployOptions.expectedLiveVersion). */
  expectedLiveVersion?: string | null | undefined;
  /** That version's bundle, when the caller still has it (see DeployOptions.base). */
  base?: Bundle | undefined;
}

export interface NodeSyncResult {
  /** live: the bundle now serves (changed); unchanged: it already did and verified. */
  state: 'live' | 'unchanged' | 'failed' | 'rolled_back';
  attempts: number;
  /** What the node ran before, when it could be read. */
  previousVersion: string | null;
  /** What the node runs now, null when unknown (never reached). */
  liveVersion: string | null;
  /** The live release differed from its version (hand edits) when an attempt looked at it. */
  driftFound: boolean;
  /** What was found drifted (see DriftReport.files); empty when nothing was. */
  driftFiles: string[];
  hostKeyMismatch: boolean;
  error?: string;
  steps: DeployStepRecord[];
  warnings: string[];
  startedAt: Date;
  finishedAt: Date;
}

const TRANSIENT =
  /timed out|timeout|not connected|ECONNRESET|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|socket|channel|connection|handshake/i;

export async function syncNode(target: NodeTarget, bundle: Bundle, options: NodeSyncOptions): Promise<NodeSyncResult> {
  const clock = options.clock ?? systemClock;
  const retry: RetryPolicy = { attempts: 3, baseDelayMs: 1000, ...options.retry };
  const connect = options.connect ?? connectNode;
  const startedAt = clock.now();
  let attempts = 0;
  let last: Omit<NodeSyncResult, 'attempts' | 'startedAt' | 'finishedAt' | 'driftFound' | 'driftFiles'> | undefined;
  // A repair that failed after the drift was found must still say so, whatever a retry saw.
  let driftFiles: string[] = [];
  const onDrift = async (drift: DriftReport) => {
    driftFiles = drift.files;
    await options.onDrift?.(drift);
  };
  while (attempts < Math.max(1, retry.attempts)) {
    if (attempts > 0) await clock.sleep(retry.baseDelayMs * 2 ** (attempts - 1));
    attempts++;
    let conn: NodeConnection;
    try {
      conn = await connect({ ...target, readyTimeoutMs: options.connectTimeoutMs ?? 5000 });
    } catch (err) {
      const mismatch = err instanceof HostKeyMismatchError;
      last = {
        state: 'failed',
        previousVersion: null,
        liveVersion: null,
        hostKeyMismatch: mismatch,
        error: excerpt(
          mismatch ? `host key mismatch: ${err.message}` : err instanceof Error ? err.message : String(err),
          500,
        ),
        steps: [],
        warnings: [],
      };
      if (mismatch) break;
      continue;
    }
    try {
      const outcome = await deployBundle(conn, bundle, {
        configDir: options.configDir,
        expectedLiveVersion: options.expectedLiveVersion,
        base: options.base,
        clock,
        ...(options.keepReleases !== undefined ? { keepReleases: options.keepReleases } : {}),
        ...(options.log !== undefined ? { log: options.log } : {}),
        onDrift,
      });
      const error = [outcome.error, outcome.rollbackError && `rollback failed: ${outcome.rollbackError}`]
        .filter(Boolean)
        .join('; ');
      last = {
        state: outcome.state === 'live' ? (outcome.changed ? 'live' : 'unchanged') : outcome.state,
        previousVersion: outcome.previousVersion,
        liveVersion:
          outcome.state === 'live' ? outcome.version : outcome.state === 'rolled_back' ? outcome.previousVersion : null,
        hostKeyMismatch: false,
        ...(error !== '' ? { error: excerpt(error, 500) } : {}),
        steps: outcome.steps,
        warnings: outcome.warnings,
      };
      // A refused bundle or a rollback is deterministic; only a lost connection or a timeout is worth another try.
      if (outcome.state !== 'failed' || outcome.rollbackError !== undefined || !TRANSIENT.test(outcome.error ?? ''))
        break;
    } finally {
      conn.close();
    }
  }
  return { ...last!, driftFound: driftFiles.length > 0, driftFiles, attempts, startedAt, finishedAt: clock.now() };
}

/** Runs `fn` over `items` with at most `limit` at a time; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, lane));
  return results;
}
