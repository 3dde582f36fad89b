/** Public types of a deploy: options, the outcome, the events it emits. */
import type { Bundle } from './bundle.js';

export type DeployState =
  | 'pending'
  | 'checked'
  | 'staged'
  | 'validated'
  | 'switched'
  | 'applied'
  | 'reloaded'
  | 'live'
  | 'rolling_back'
  | 'rolled_back'
  | 'failed';

export type DeployStep =
  | 'check-bundle'
  | 'read-node'
  | 'verify-live'
  | 'repair-files'
  | 'stage'
  | 'postmap'
  | 'validate'
  | 'promote'
  | 'switch'
  | 'apply'
  | 'reload'
  /** Instead of `reload` when the plan changes a parameter master reads only at start (RESTART_PARAMS). */
  | 'restart'
  | 'verify'
  | 'prune'
  | 'rollback';

/** The steps of a deploy that changes a node, in the order they run (a restart replaces reload). */
export const CHANGE_STEPS: readonly DeployStep[] = [
  'check-bundle',
  'read-node',
  'stage',
  'postmap',
  'validate',
  'promote',
  'switch',
  'apply',
  'reload',
  'verify',
  'prune',
];

export interface DeployStepRecord {
  step: DeployStep;
  startedAt: Date;
  finishedAt: Date;
  ok: boolean;
  detail?: string;
}

export interface DeployOutcome {
  /** live: the bundle serves; failed: nothing changed on the node (or a rollback failed, see rollbackError); rolled_back: the previous release serves again. */
  state: 'live' | 'failed' | 'rolled_back';
  version: string;
  previousVersion: string | null;
  /** False when the node already ran this version and verified (nothing touched). */
  changed: boolean;
  steps: DeployStepRecord[];
  /** Short excerpt of what went wrong. Never contains secret values. */
  error?: string;
  /** Set when a rollback after the switch failed too: the node needs a human. */
  rollbackError?: string;
  /** Non-fatal findings (postfix check warnings, bundle warnings, prune errors). */
  warnings: string[];
}

export type DeployEvent =
  | { type: 'state'; version: string; from: DeployState; to: DeployState }
  | { type: 'step'; version: string; step: DeployStep; ok: boolean; durationMs: number; detail?: string };

export interface DeployClock {
  now(): Date;
  sleep(ms: number): Promise<void>;
}

export const systemClock: DeployClock = {
  now: () => new Date(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface DeployOptions {
  /** Postfix config dir on the node (what `postconf -h config_directory` prints), e.g. /etc/postfix. */
  configDir: string;
  /**
   * The version the node ran when last seen (a hint): when it is the bundle's, the node is read
   * before anything is uploaded; otherwise staging is sent along with the read.
   */
  expectedLiveVersion?: string | null | undefined;
  /**
   * The bundle of expectedLiveVersion, when the caller still has it: the release is then built on
   * the node from that one plus the change (delta-release.ts), falling back to a full one.
   */
  base?: Bundle | undefined;
  /**
   * A delta sends changed tables up to this many characters whole and builds their `.db` with one
   * `postmap` (default SEND_WHOLE_UP_TO, bundle-delta.ts); 0: every changed table is patched.
   */
  deltaSendWholeUpTo?: number | undefined;
  /**
   * Tables over this many characters (or SHARD_LINES lines) go to the node as shards (default
   * SHARD_SIZE, table-shards.ts).
   */
  shardSize?: number | undefined;
  /** Releases kept on the node, live and previous always included (default 5). */
  keepReleases?: number;
  log?: (event: DeployEvent) => void;
  clock?: DeployClock;
  /** Wait after master logged the reload before reading the log for fatal errors (default 300 ms). */
  settleMs?: number;
  /** How long master may take to log the reload (default 10 s). */
  reloadTimeoutMs?: number;
  /**
   * Called when the live release is found drifted, before anything is repaired, and awaited: the
   * caller can show the drift while the repair runs (or after it fails). A throw is a warning.
   */
  onDrift?: (drift: DriftReport) => Promise<void>;
}

export interface DriftReport {
  /** Bundle files whose content differs, then `main.cf` and/or `master.cf` when the config differs. */
  files: string[];
  problems: string[];
}
