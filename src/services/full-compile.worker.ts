// Worker thread entry of full-compile-thread.ts: one full compile of the snapshot it was given.
import { parentPort, workerData } from 'node:worker_threads';
import { compile, CompileError, type Snapshot } from '../postfix/index.js';
import type { FullCompileOutcome } from './full-compile-thread.js';

let outcome: FullCompileOutcome;
try {
  outcome = { version: compile(workerData as Snapshot).version };
} catch (error) {
  if (!(error instanceof CompileError)) throw error;
  outcome = { refused: error.message };
}
parentPort!.postMessage(outcome);
