import { createTwoFilesPatch } from 'diff';
import type { PrismaClient } from '../db/prisma.js';
import { ForbiddenError, NotFoundError, UnprocessableError } from '../lib/errors.js';
import type { SecretBox } from '../lib/secret-box.js';
import { type Bundle, CompileError, createIncrementalCompiler, explainRoute, type IncrementalCompiler, type Snapshot } from '../postfix/index.js';
import type { ConfigBundleRepository } from '../repositories/config-bundle.repository.js';
import { createBundleStore } from './bundle-store.js';
import { type FullCompileOutcome, fullCompileOutcome, fullCompileVersionInThread } from './full-compile-thread.js';
import { isAdmin, type RequestContext } from './principal.js';
import type { SnapshotService } from './snapshot.service.js';

function requireAdmin(ctx: RequestContext) {
  if (!isAdmin(ctx.actor)) throw new ForbiddenError('the compiled configuration spans all tenants: admin only');
}

interface ConfigLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** A configuration Postfix cannot express is refused whole: 422 with every problem. */
function refusedAsProblem<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof CompileError) {
      throw new UnprocessableError(error.message, 'config-not-compilable', { problems: error.problems });
    }
    throw error;
  }
}

export function createConfigService(deps: {
  prisma: PrismaClient;
  snapshots: SnapshotService;
  /** Where masked bundles are kept by version, for diffs. */
  bundles: ConfigBundleRepository;
  secretBox: SecretBox;
  log?: ConfigLog;
  /** Tests only: another compiler behind the same interface. */
  compiler?: IncrementalCompiler;
  /** Least time between two full compiles that check the incremental one (default 10 minutes). */
  verifyIntervalMs?: number;
  /** How long stored bundles are kept (default DEFAULT_BUNDLE_RETENTION_SECONDS). */
  bundleRetentionSeconds?: number;
}) {
  // Keeps the last compile's plan and tables: with the loader handing out unchanged rows as the
  // same objects, a change to a few domains recompiles only those (src/postfix/incremental.ts).
  const compiler = deps.compiler ?? createIncrementalCompiler();
  const verifyIntervalMs = deps.verifyIntervalMs ?? 10 * 60_000;
  let lastFullAt = Number.NEGATIVE_INFINITY;

  /** Compiles what the database says now; a configuration Postfix cannot express is refused whole. */
  async function compileCurrent(): Promise<Bundle> {
    return (await compileWithSnapshot()).bundle;
  }

  /**
   * The version a full compile of `snapshot` gives, or undefined if the full compiler refuses it.
   * Compiled in a worker thread; should the thread fail, here, as before it existed.
   */
  async function fullVersion(snapshot: Snapshot): Promise<string | undefined> {
    let outcome: FullCompileOutcome;
    const started = performance.now();
    try {
      outcome = await fullCompileVersionInThread(snapshot);
      deps.log?.info({ ms: Math.round(performance.now() - started), threadHeapMb: Math.round((outcome.threadHeapBytes ?? 0) / 2 ** 20) }, 'full compile for the check done in its thread');
    } catch (error) {
      deps.log?.error({ err: error }, 'the full-compile thread failed: checking on the event loop instead');
      outcome = fullCompileOutcome(snapshot);
    }
    return 'version' in outcome ? outcome.version : undefined;
  }

  /**
   * `verify` (the reconcile): unless the last full compile is younger than verifyIntervalMs, also
   * compile everything from scratch (in a worker thread: over a second at 100,000 domains, which
   * the API would otherwise wait for) and compare: should the incremental path ever disagree, the
   * full result wins, the error is logged, and the compiler starts over from a full compile.
   */
  async function compileWithSnapshot(verify = false) {
    const snapshot = await deps.snapshots.load();
    const started = performance.now();
    const bundle = refusedAsProblem(() => compiler.compile(snapshot));
    const mode = compiler.lastMode;
    deps.log?.info({ mode, ms: Math.round(performance.now() - started), version: bundle.version }, 'config compiled');
    if (mode === 'full') lastFullAt = Date.now();
    if (!verify || mode !== 'incremental' || Date.now() - lastFullAt < verifyIntervalMs) return { bundle, snapshot };
    lastFullAt = Date.now();
    const full = await fullVersion(snapshot);
    if (full === bundle.version) return { bundle, snapshot };
    deps.log?.error({ incremental: bundle.version, full: full ?? null }, 'the incremental compile differed from a full compile: using the full one');
    return {
      bundle: refusedAsProblem(() => {
        compiler.reset();
        return compiler.compile(snapshot);
      }),
      snapshot,
    };
  }

  // Masked bundles by version, for later diffs: every change's bundle is stored, as chunks.
  const bundles = createBundleStore({
    prisma: deps.prisma,
    secretBox: deps.secretBox,
    repository: deps.bundles,
    ...(deps.bundleRetentionSeconds !== undefined ? { retentionSeconds: deps.bundleRetentionSeconds } : {}),
  });

  return {
    compileCurrent,

    /** Deletes stored bundles past the retention and the chunks no bundle uses (the leader's periodic task). */
    async pruneBundles() {
      const pruned = await bundles.prune();
      if (pruned.bundles > 0) deps.log?.info(pruned, 'stored config bundles pruned');
      return pruned;
    },

    /**
     * For the sync worker: the bundle to deploy (stored masked, for diffs) and the credential ids it
     * contains. `verify` (the reconcile): check the incremental compile against a full one.
     */
    async compileForDeploy(options: { verify?: boolean } = {}) {
      const { bundle, snapshot } = await compileWithSnapshot(options.verify ?? false);
      await bundles.keep(bundle);
      return { bundle, credentialIds: snapshot.credentials.map((credential) => credential.id) };
    },

    async current(ctx: RequestContext) {
      requireAdmin(ctx);
      return bundles.keep(await compileCurrent());
    },

    /** What would change going from a stored version to what the database says now: a dry-run plan. */
    async diff(ctx: RequestContext, fromVersion: string) {
      requireAdmin(ctx);
      const from = await bundles.find(fromVersion);
      if (from === null) throw new NotFoundError('config version', fromVersion);
      const to = await bundles.keep(await compileCurrent());
      const names = [...new Set([...Object.keys(from.files), ...Object.keys(to.files)])].sort();
      const files = names.flatMap((name) => {
        const before = from.files[name]?.content;
        const after = to.files[name]?.content;
        if (before === after) return [];
        const change = before === undefined ? 'added' : after === undefined ? 'removed' : 'modified';
        return [{ name, change, diff: createTwoFilesPatch(`a/${name}`, `b/${name}`, before ?? '', after ?? '', undefined, undefined, { context: 1 }) }];
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
      requireAdmin(ctx);
      const snapshot = await deps.snapshots.load();
      // The compiler's own plan, read in the same turn as the compile that made it (the next
      // compile updates it in place); planned from scratch if the compiler kept none.
      return refusedAsProblem(() => {
        compiler.compile(snapshot);
        return explainRoute(compiler.plan ?? snapshot, sender, recipient);
      });
    },
  };
}

export type ConfigService = ReturnType<typeof createConfigService>;
