import { Worker } from 'node:worker_threads';
import { compile, CompileError, type Snapshot } from '../postfix/index.js';

/**
 * What the thread answers: the full compile's version, or the compiler's refusal (the caller
 * compiles again to report it); and the size of the thread's heap once it compiled.
 */
export type FullCompileOutcome = ({ version: string } | { refused: string }) & { threadHeapBytes?: number };

/** A full compile's outcome, on the calling thread: what the worker thread runs, and the fallback should it fail. */
export function fullCompileOutcome(snapshot: Snapshot): FullCompileOutcome {
  try {
    return { version: compile(snapshot).version };
  } catch (error) {
    if (!(error instanceof CompileError)) throw error;
    return { refused: error.message };
  }
}

// From the TypeScript sources (tests, tsx) the thread registers tsx's loader before loading its
// entry (`--import tsx` in the worker's execArgv did not take effect on Node 20); the built dist/
// is plain JavaScript.
const fromSources = import.meta.url.endsWith('.ts');
const entry = new URL(`./full-compile.worker.${fromSources ? 'ts' : 'js'}`, import.meta.url);
const sourcesBootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); })`;

/**
 * Compiles `snapshot` from scratch in a worker thread and gives its version: the reconcile's check of
 * the incremental compiler, off the event loop the API shares (a full compile of 100,000 domains
 * holds it for over a second; handing the snapshot over holds it ≈ 20 ms there: BENCHMARKS.md).
 */
export function fullCompileVersionInThread(snapshot: Snapshot): Promise<FullCompileOutcome> {
  return new Promise((resolve, reject) => {
    const worker = fromSources ? new Worker(sourcesBootstrap, { eval: true, workerData: snapshot }) : new Worker(entry, { workerData: snapshot });
    let answered = false;
    worker.once('message', (outcome: FullCompileOutcome) => {
      answered = true;
      resolve(outcome);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the full-compile thread exited with code ${code} without an answer`));
    });
  });
}
