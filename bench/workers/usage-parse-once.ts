import { isAscii } from 'node:buffer';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { UsageAccumulator, emptyCounters, type MessageState, type UsageCounters } from '../../src/usage/accumulator.js';
import { LogLineParser } from '../../src/usage/log-line.js';

/**
 * One parse + aggregation of a Postfix log in a fresh process, so that its peak memory is the
 * parser's and the accumulator's alone. Prints one JSON line.
 *
 *   node --import tsx bench/workers/usage-parse-once.ts FILE
 *   env: USAGE_SPLITTER=chunk|readline, USAGE_TIME='{"year":2026,"month":10,"utcOffsetMinutes":0}',
 *        USAGE_TENANTS='{"tenant0.example":"tenant-0",…}' (sender domain → tenant)
 */
const file = process.argv[2];
if (file === undefined) throw new Error('usage: usage-parse-once.ts FILE');
const splitter = process.env.USAGE_SPLITTER ?? 'chunk';
// Smaller chunks put chunk boundaries everywhere: a way to check the splitter, not a tuning knob.
const CHUNK_BYTES = Number(process.env.USAGE_CHUNK_BYTES ?? 1 << 20);
const time = JSON.parse(process.env.USAGE_TIME ?? '{"year":2026,"month":10,"utcOffsetMinutes":0}') as {
  year: number;
  month: number;
  utcOffsetMinutes: number;
};
const tenants = new Map(Object.entries(JSON.parse(process.env.USAGE_TENANTS ?? '{}') as Record<string, string>));

/**
 * Calls `onLine(text, start, end)` for each line of the file, read in 1 MiB chunks; the parser
 * reads each line in place (no string cut out per line). Three more things make this faster
 * than a line iterator: the per-line loop is synchronous (an async iterator costs a promise and a
 * microtask turn per line); a chunk that is all ASCII, as Postfix logs almost always are, is
 * decoded as latin1 (a plain copy) instead of through the UTF-8 decoder; and only the line that
 * straddles two chunks is copied. Chunks are cut at '\n', which never falls inside a UTF-8 sequence.
 */
async function chunkLines(path: string, onLine: (text: string, start: number, end: number) => void): Promise<void> {
  const decode = (b: Buffer) => (isAscii(b) ? b.toString('latin1') : b.toString('utf8'));
  let carry: Buffer | undefined;
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK_BYTES }) as AsyncIterable<Buffer>) {
    const last = chunk.lastIndexOf(10);
    if (last < 0) {
      carry = carry === undefined ? chunk : Buffer.concat([carry, chunk]);
      continue;
    }
    let from = 0;
    if (carry !== undefined) {
      const first = chunk.indexOf(10);
      const line = decode(Buffer.concat([carry, chunk.subarray(0, first)]));
      onLine(line, 0, line.length);
      from = first + 1;
    }
    carry = last + 1 < chunk.length ? chunk.subarray(last + 1) : undefined;
    if (from > last) continue;
    const text = decode(chunk.subarray(from, last));
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      onLine(text, start, nl);
      start = nl + 1;
    }
    onLine(text, start, text.length);
  }
  if (carry !== undefined) {
    const line = decode(carry);
    onLine(line, 0, line.length);
  }
}

async function readlineLines(path: string, onLine: (text: string, start: number, end: number) => void): Promise<void> {
  const lines = readline.createInterface({
    input: createReadStream(path, { highWaterMark: CHUNK_BYTES }),
    crlfDelay: Infinity,
  });
  lines.on('line', (line: string) => onLine(line, 0, line.length));
  await once(lines, 'close');
}

const start = performance.now();
const cpuStart = process.cpuUsage();
const parser = new LogLineParser(time);
const accumulator = new UsageAccumulator(new Map<string, MessageState>(), (domain) => tenants.get(domain) ?? null);
let lines = 0;
let ignored = 0;
let malformed = 0;
// The collector commits a batch (with its per-message records) every 4 MiB read, about 26,000
// lines: the records of finished messages are handed off at the same pace here.
const BATCH_LINES = 26_000;
let messageRecords = 0;
await (splitter === 'readline' ? readlineLines : chunkLines)(file, (text, lineStart, lineEnd) => {
  lines++;
  const result = parser.parseAt(text, lineStart, lineEnd);
  if (result === 'ignored') ignored++;
  else if (result === 'malformed') malformed++;
  else accumulator.add(result);
  if (lines % BATCH_LINES === 0) {
    messageRecords += accumulator.finished.length;
    accumulator.finished.length = 0;
  }
});
messageRecords += accumulator.finished.length;
const buckets = accumulator.result();
const changes = accumulator.stateChanges();
const elapsedMs = performance.now() - start;
const cpu = process.cpuUsage(cpuStart);

const totals: UsageCounters = emptyCounters();
for (const b of buckets) {
  for (const key of Object.keys(totals) as (keyof UsageCounters)[]) totals[key] += b[key];
}
process.stdout.write(
  `${JSON.stringify({
    splitter,
    lines,
    events: accumulator.stats.events,
    ignored,
    malformed,
    buckets: buckets.length,
    messageRecords,
    openStates: changes.upsert.length,
    totals,
    elapsedMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  })}\n`,
);
