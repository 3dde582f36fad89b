import { getHeapStatistics } from 'node:v8';
import { threadId } from 'node:worker_threads';
import { UnprocessableError } from '../lib/errors.js';
import {
  type Bundle,
  CompileError,
  compile,
  createIncrementalCompiler,
  type Explanation,
  explainRoute,
  type IncrementalCompiler,
  type QuarantinedUnit,
  type Snapshot,
  withoutMaskedText,
} from '../postfix/index.js';
import type { BundleStore, MaskedBundle } from './bundle-store.js';

/** Where the engine reads the database's rows as the compiler takes them (services/snapshot.service.ts). */
export interface SnapshotLoader {
  load(): Promise<Snapshot>;
}

/** Where what a deploy's compile quarantined is kept and audited (services/quarantine.service.ts). */
export interface QuarantineRecorder {
  record(units: readonly QuarantinedUnit[]): Promise<void>;
}

export interface ConfigEngineLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface DeployableOptions {
  verify?: boolean;
  /** Default true: store the bundle and record its quarantine. */
  keep?: boolean;
}

/** A bundle to deploy and the ids of the credentials whose secrets it holds. */
export interface DeployableBundle {
  bundle: Bundle;
  credentialIds: string[];
}

/**
 * Everything heavy the configuration costs: load the rows (secrets opened), compile, check the
 * incremental compiler, mask and store the bundle. Each call compiles what the database says now;
 * a configuration Postfix cannot express is refused whole, as the API's problem (refusalProblem),
 * for every caller alike.
 *
 * Two implementations behind this interface, chosen by createConfigEngine() (index.ts):
 * createInProcessEngine() below runs on the calling thread; createConfigEngineThread() (thread.ts)
 * runs the same one in a worker thread, so the
 * API's event loop never waits for a full compile (seconds at 100,000 domains, BENCHMARKS.md).
 */
export interface ConfigEngine {
  /**
   * For the sync worker: the bundle to deploy. `verify` (the reconcile): check the incremental
   * compile. Storing it masked and recording its quarantine follow the answer (settled());
   * `keep: false` (a preparation, not deployed): neither.
   */
  deployable(options?: DeployableOptions): Promise<DeployableBundle>;
  /** Resolves once every bundle deployable() answered with is stored and its quarantine recorded (or the failure logged). */
  settled(): Promise<void>;
  /** The bundle masked (secrets replaced by their keyed fingerprints) and stored by version, with what it quarantined. */
  masked(): Promise<MaskedBundle & Pick<Bundle, 'quarantine'>>;
  /** The version only; nothing stored. */
  version(): Promise<string>;
  /** Which service, nexthops, credential (id only), TLS and destination policy a message would get, and why. */
  explain(sender: string, recipient: string): Promise<Explanation>;
  /** Releases what the engine holds (its thread and connections); later calls start it again. */
  close(): Promise<void>;
}

/** The compiler's refusal as the API answers it: 422 `config-not-compilable` with every problem. */
export function refusalProblem(error: CompileError): UnprocessableError {
  return new UnprocessableError(error.message, 'config-not-compilable', { problems: error.problems });
}

/** `work`, with the compiler's refusal turned into the API's problem. */
async function refusedAsProblem<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw error instanceof CompileError ? refusalProblem(error) : error;
  }
}

/** The bundle as the deployer needs it: secret files' masked renderings stay with the engine (and off the thread boundary). */
function withoutMasked(bundle: Bundle): Bundle {
  const files: Bundle['files'] = {};
  for (const [name, file] of Object.entries(bundle.files)) files[name] = withoutMaskedText(file);
  return { ...bundle, files };
}

/** How long the check waits after a full compile before it compiles everything again (the reconcile's default). */
export const DEFAULT_VERIFY_INTERVAL_MS = 10 * 60_000;

/** What the engine on the calling thread is built from. */
export interface InProcessEngineDeps {
  snapshots: SnapshotLoader;
  /** Where compiled bundles are masked and kept (its memory of the last files makes a change's store cheap). */
  bundles: BundleStore;
  log: ConfigEngineLog;
  /** Tests only: another compiler behind the same interface. */
  compiler?: IncrementalCompiler;
  /** Least time between two full compiles that check the incremental one (default DEFAULT_VERIFY_INTERVAL_MS). */
  verifyIntervalMs?: number;
  /** Called when the engine is closed (the thread's entry closes its database client). */
  onClose?: () => Promise<void>;
  /** Where what the sync job's compiles quarantined is kept and audited (absent: not recorded). */
  quarantine?: QuarantineRecorder;
}

/** The engine on the calling thread: the worker thread runs this one, and tests drive it directly. */
export function createInProcessEngine(deps: InProcessEngineDeps): ConfigEngine {
  // Keeps the last compile's plan and tables: with the loader handing out unchanged rows as the
  // same objects, a change to a few domains recompiles only those (src/postfix/incremental.ts).
  const compiler = deps.compiler ?? createIncrementalCompiler();
  const verifyIntervalMs = deps.verifyIntervalMs ?? DEFAULT_VERIFY_INTERVAL_MS;
  let lastFullAt = Number.NEGATIVE_INFINITY;

  /**
   * The reconcile's check: compile everything from scratch and compare. Should the incremental path
   * ever disagree, the full result wins, the error is logged, and the compiler starts over from a
   * full compile. A refusal by the full compiler counts as a disagreement.
   */
  function checked(snapshot: Parameters<typeof compile>[0], bundle: Bundle): Bundle {
    lastFullAt = Date.now();
    const started = performance.now();
    let full: string | null = null;
    try {
      full = compile(snapshot).version;
    } catch (error) {
      if (!(error instanceof CompileError)) throw error;
    }
    // The heap once checked: the state kept between compiles plus the full compile's working set.
    deps.log.info(
      {
        ms: Math.round(performance.now() - started),
        heapMb: Math.round(getHeapStatistics().total_heap_size / 2 ** 20),
      },
      'full compile for the check done',
    );
    if (full === bundle.version) return bundle;
    deps.log.error(
      { incremental: bundle.version, full },
      'the incremental compile differed from a full compile: using the full one',
    );
    compiler.reset();
    return compiler.compile(snapshot);
  }

  async function compileNow(verify: boolean) {
    const snapshot = await deps.snapshots.load();
    const started = performance.now();
    const bundle = compiler.compile(snapshot);
    const mode = compiler.lastMode;
    // threadId: which thread compiled (0 is the main thread, where the API runs).
    deps.log.info(
      { mode, ms: Math.round(performance.now() - started), version: bundle.version, threadId },
      'config compiled',
    );
    if (mode === 'full') lastFullAt = Date.now();
    const due = verify && mode === 'incremental' && Date.now() - lastFullAt >= verifyIntervalMs;
    return { bundle: due ? checked(snapshot, bundle) : bundle, snapshot };
  }

  /**
   * Stores a bundle to deploy and records its quarantine after the answer went out (a macrotask
   * later), one bundle after the other: a deploy waits for its compile, not for these writes.
   */
  let storing: Promise<void> = Promise.resolve();
  function storeAfterAnswer(bundle: Bundle): void {
    storing = storing
      .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
      .then(async () => {
        await deps.bundles.keep(bundle);
        // What the sync job deploys is what nodes run: its quarantine is the one the API reports.
        await deps.quarantine?.record(bundle.quarantine);
      })
      .catch((error: unknown) =>
        deps.log.error(
          { error: error instanceof Error ? error.message : String(error), version: bundle.version },
          'storing a deployed config bundle failed',
        ),
      );
  }

  return {
    deployable: (options = {}) =>
      refusedAsProblem(async () => {
        const { bundle, snapshot } = await compileNow(options.verify ?? false);
        if (options.keep !== false) storeAfterAnswer(bundle);
        return {
          bundle: withoutMasked(bundle),
          credentialIds: snapshot.credentials.map((credential) => credential.id),
        };
      }),

    settled: () => storing,

    masked: () =>
      refusedAsProblem(async () => {
        const { bundle } = await compileNow(false);
        return { ...(await deps.bundles.keep(bundle)), quarantine: bundle.quarantine };
      }),

    version: () => refusedAsProblem(async () => (await compileNow(false)).bundle.version),

    explain: (sender, recipient) =>
      refusedAsProblem(async () => {
        const snapshot = await deps.snapshots.load();
        // The compiler's own plan, read in the same turn as the compile that made it (the next
        // compile updates it in place); planned from scratch if the compiler kept none.
        compiler.compile(snapshot);
        return explainRoute(compiler.plan ?? snapshot, sender, recipient);
      }),

    async close() {
      // Bundles already answered are stored before the connections go (in a thread too: its close
      // ends here, whether the app shuts down or the thread stops when idle).
      await storing;
      await deps.onClose?.();
    },
  };
}
