import { Worker } from 'node:worker_threads';
import { UnprocessableError } from '../lib/errors.js';
import { createBundleReceiver, type WireDeployable } from './bundle-transfer.js';
import type { ConfigEngine, ConfigEngineLog, DeployableBundle } from './engine.js';

/**
 * How long the thread may go without a call before it stops, giving back the memory of its kept
 * state (a process that served one preview, say); the next call starts a new one. The app keeps it
 * above twice the sync worker's reconcile period, so the leading process's thread never stops.
 */
export const DEFAULT_ENGINE_IDLE_STOP_MS = 15 * 60_000;

/** What the thread is started with: its own database connection and the key that opens the secrets. */
export interface ConfigEngineThreadData {
  databaseUrl: string;
  masterKey: Uint8Array;
  verifyIntervalMs?: number;
}

type Operation = 'deployable' | 'settled' | 'masked' | 'version' | 'explain';

/** Main thread → engine thread. */
export type EngineRequest = { id: number; op: Operation; args: unknown[] } | { id: number; op: 'close' };

/** An error as it crosses: the API's 422 problem (a refusal) stays one, anything else keeps its message. */
export interface CrossingError {
  message: string;
  stack?: string | undefined;
  unprocessable?: { code: string; extra: Record<string, unknown> };
}

/** Engine thread → main thread: an answer, or a log line. */
export type EngineMessage =
  | { id: number; result: unknown }
  | { id: number; error: CrossingError }
  | { log: { level: 'info' | 'error'; obj: object; msg: string } };

export function toCrossingError(error: unknown): CrossingError {
  if (error instanceof UnprocessableError)
    return { message: error.message, unprocessable: { code: error.code, extra: error.extra } };
  if (error instanceof Error) return { message: error.message, stack: error.stack };
  return { message: String(error) };
}

function fromCrossingError(error: CrossingError): Error {
  if (error.unprocessable !== undefined)
    return new UnprocessableError(error.message, error.unprocessable.code, error.unprocessable.extra);
  const rebuilt = new Error(`config engine thread: ${error.message}`);
  if (error.stack !== undefined) rebuilt.stack = `${rebuilt.stack}\n  in the thread: ${error.stack}`;
  return rebuilt;
}

// From the TypeScript sources (tests, tsx) the thread registers tsx's loader before loading its
// entry (`--import tsx` in the worker's execArgv did not take effect on Node 20); the built dist/
// is plain JavaScript.
const fromSources = import.meta.url.endsWith('.ts');
const entry = new URL(`./thread.worker.${fromSources ? 'ts' : 'js'}`, import.meta.url);
const sourcesBootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); })`;

/** How long close() lets the thread close its database connections before it is terminated. */
const CLOSE_GRACE_MS = 5_000;

/**
 * The config engine in a worker thread of its own: loading (opening every secret), compiling,
 * the reconcile's check and masking + storing the bundle all run there, with the loader's rows
 * and the compiler's state; the API's event loop only waits for the answer's copy to arrive
 * (BENCHMARKS.md: the stall it still sees). The thread starts at the first call and keeps its
 * state between calls, as the in-process engine does. Should it die, every call waiting on it
 * fails with the reason, and the next call starts a new one (which compiles everything once).
 */
export function createConfigEngineThread(
  options: ConfigEngineThreadData & { log: ConfigEngineLog; idleStopMs?: number },
): ConfigEngine {
  const idleStopMs = options.idleStopMs ?? DEFAULT_ENGINE_IDLE_STOP_MS;
  /** A started thread and the calls waiting on it (each thread its own: an old one's exit fails only its calls). */
  interface Running {
    worker: Worker;
    waiting: Map<number, { op: Operation; resolve: (value: unknown) => void; reject: (error: Error) => void }>;
    /** Mirrors the thread's sender: deployable bundles arrive as what changed (bundle-transfer.ts). */
    receiver: ReturnType<typeof createBundleReceiver>;
  }
  let running: Running | null = null;
  let nextId = 1;
  let idleTimer: NodeJS.Timeout | undefined;

  /**
   * Once nothing waits: stop the thread if no call comes for idleStopMs. An idle thread does not
   * keep the process alive (nor does the timer); a thread with calls waiting does.
   */
  function armIdleStop(thread: Running) {
    clearTimeout(idleTimer);
    if (thread.waiting.size > 0 || running !== thread) return;
    thread.worker.unref();
    idleTimer = setTimeout(() => {
      if (running === thread && thread.waiting.size === 0) {
        options.log.info({ idleMs: idleStopMs }, 'config engine thread idle: stopped');
        void stop(thread);
      }
    }, idleStopMs);
    idleTimer.unref();
  }

  /** Asks the thread to close its database client and end; terminated if it takes too long. */
  async function stop(thread: Running) {
    if (running === thread) running = null;
    // Whatever still waits is abandoned: its answer could arrive after the caller shut down.
    failAll(thread, new Error('the config engine was closed'));
    const exited = new Promise<void>((resolve) => thread.worker.once('exit', () => resolve()));
    thread.worker.postMessage({ id: 0, op: 'close' } satisfies EngineRequest);
    const timer = setTimeout(() => void thread.worker.terminate(), CLOSE_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  function failAll(thread: Running, reason: Error) {
    for (const call of thread.waiting.values()) call.reject(reason);
    thread.waiting.clear();
  }

  function start(): Running {
    const workerData: ConfigEngineThreadData = {
      databaseUrl: options.databaseUrl,
      masterKey: options.masterKey,
      ...(options.verifyIntervalMs !== undefined ? { verifyIntervalMs: options.verifyIntervalMs } : {}),
    };
    const worker = fromSources
      ? new Worker(sourcesBootstrap, { eval: true, workerData })
      : new Worker(entry, { workerData });
    const thread: Running = { worker, waiting: new Map(), receiver: createBundleReceiver() };
    worker.on('message', (message: EngineMessage) => {
      if ('log' in message) {
        options.log[message.log.level](message.log.obj, message.log.msg);
        return;
      }
      const call = thread.waiting.get(message.id);
      if (call === undefined) return;
      thread.waiting.delete(message.id);
      if ('error' in message) call.reject(fromCrossingError(message.error));
      else if (call.op !== 'deployable') call.resolve(message.result);
      else {
        let deployable: DeployableBundle;
        try {
          deployable = thread.receiver.decode(message.result as WireDeployable);
        } catch (error) {
          // The two sides no longer mirror each other: a new thread starts both afresh.
          call.reject(error as Error);
          void stop(thread);
          return;
        }
        call.resolve(deployable);
      }
      armIdleStop(thread);
    });
    worker.on('error', (error) => {
      options.log.error({ err: error }, 'the config engine thread failed');
      if (running === thread) running = null;
      failAll(thread, new Error(`the config engine thread failed: ${error.message}`));
    });
    worker.on('exit', (code) => {
      if (running === thread) running = null;
      failAll(thread, new Error(`the config engine thread exited with code ${code}`));
    });
    return thread;
  }

  function call<T>(op: Operation, ...args: unknown[]): Promise<T> {
    const thread = (running ??= start());
    clearTimeout(idleTimer);
    thread.worker.ref();
    const id = nextId++;
    const answer = new Promise<T>((resolve, reject) =>
      thread.waiting.set(id, { op, resolve: resolve as (value: unknown) => void, reject }),
    );
    thread.worker.postMessage({ id, op, args } satisfies EngineRequest);
    return answer;
  }

  return {
    deployable: (deployOptions = {}) => call('deployable', deployOptions),
    // No thread, nothing it could still be storing.
    settled: () => (running === null ? Promise.resolve() : call('settled')),
    masked: () => call('masked'),
    version: () => call('version'),
    explain: (sender, recipient) => call('explain', sender, recipient),

    async close() {
      clearTimeout(idleTimer);
      if (running !== null) await stop(running);
    },
  };
}
