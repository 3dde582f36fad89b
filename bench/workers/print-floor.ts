import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

// The third floor of a cold start (bench/compile.bench.ts): what any compiler must spend just to
// write out the hash tables the real one produced, given their entries already in memory (keys
// and values as strings, secrets already open) and already in key order: print each table's
// lines and hash the text. No sorting, resolution, checks or escaping, so a lower bound. A fresh
// process, as the sync job's start is: nothing here is optimized yet when the clock starts.
const dir = process.env.BENCH_OUT_DIR!;
const tables = JSON.parse(process.env.BENCH_TABLES!) as string[];

const entries = tables.map((name) =>
  readFileSync(path.join(dir, name), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line): [string, string] => {
      const space = line.indexOf(' ');
      return [line.slice(0, space), line.slice(space + 1)];
    }),
);

const cpuStart = process.cpuUsage();
const start = performance.now();
for (const table of entries) {
  const lines = new Array<string>(table.length);
  for (let i = 0; i < table.length; i += 1) lines[i] = `${table[i]![0]} ${table[i]![1]}\n`;
  const text = lines.join('');
  createHash('sha256').update(text).digest('hex');
}
const ms = performance.now() - start;
const cpu = process.cpuUsage(cpuStart);
process.stdout.write(JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000 }));
