// Worker thread entry of full-compile-thread.ts: one full compile of the snapshot it was given.
import v8 from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import type { Snapshot } from '../postfix/index.js';
import { fullCompileOutcome } from './full-compile-thread.js';

const outcome = fullCompileOutcome(workerData as Snapshot);
// This thread's heap once compiled (its copy of the rows and the compile's working set): what the
// check adds to the process, for the log and the benchmark.
parentPort!.postMessage({ ...outcome, threadHeapBytes: v8.getHeapStatistics().total_heap_size });
