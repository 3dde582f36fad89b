import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { UsageCounters } from '../src/usage/accumulator.js';
import { machine, median, recordSection, ROOT } from './lib.js';
import { writePostfixLog } from './usage/generate-log.js';
import { findExecutable, parseGrandTotals, type GrandTotals } from './usage/pflogsumm.js';

/**
 * Issue 5's benchmark: a realistic 1,000,000-line Postfix log (generated, not timed), then in the
 * same run pflogsumm on it and Relayplane's parse + aggregation of it, each three times, medians
 * reported. Goal: Relayplane ≥ 10× pflogsumm's lines/s. Both read the same file from the page cache.
 */
const LINES = Number(process.env.BENCH_USAGE_LINES ?? 1_000_000);
const RUNS = 5;
const SYSLOG_NAME = 'postfix-node1';
const START = new Date('2026-11-28T05:00:00Z');

interface WorkerResult {
  splitter: string;
  lines: number;
  events: number;
  ignored: number;
  malformed: number;
  buckets: number;
  totals: UsageCounters;
  elapsedMs: number;
  cpuMs: number;
  maxRssMb: number;
  /** Whole process, Node and tsx start-up included. */
  processMs: number;
}

interface PflogsummResult {
  wallMs: number;
  cpuMs: number;
  maxRssMb: number;
  totals: GrandTotals;
}

function collect(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - start;
      if (code === 0) resolve({ stdout, stderr, ms });
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

async function runPflogsumm(timeBin: string, pflogsumm: string, file: string): Promise<PflogsummResult> {
  // GNU time writes its own line last on stderr: elapsed, user, system, max RSS in KiB.
  const run = await collect(timeBin, ['-f', 'TIME %e %U %S %M', pflogsumm, `--syslog-name=${SYSLOG_NAME}`, file]);
  const m = /^TIME (\S+) (\S+) (\S+) (\d+)$/m.exec(run.stderr);
  if (m === null) throw new Error(`no GNU time output in: ${run.stderr.slice(-500)}`);
  return {
    wallMs: run.ms,
    cpuMs: (Number(m[2]) + Number(m[3])) * 1000,
    maxRssMb: Number(m[4]) / 1024,
    totals: parseGrandTotals(run.stdout),
  };
}

async function runRelayplane(
  file: string,
  splitter: 'chunk' | 'readline',
  tenants: Record<string, string>,
): Promise<WorkerResult> {
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const run = await collect(
    process.execPath,
    [...profile, '--import', 'tsx', path.join(ROOT, 'bench/workers/usage-parse-once.ts'), file],
    {
      USAGE_SPLITTER: splitter,
      USAGE_TIME: JSON.stringify({ year: START.getUTCFullYear(), month: START.getUTCMonth(), utcOffsetMinutes: 0 }),
      USAGE_TENANTS: JSON.stringify(tenants),
    },
  );
  return { ...(JSON.parse(run.stdout) as Omit<WorkerResult, 'processMs'>), processMs: run.ms };
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

const pflogsumm = findExecutable('pflogsumm');
const timeBin = findExecutable('time');
if (pflogsumm === undefined) throw new Error('pflogsumm is not installed (apt-get install pflogsumm)');
if (timeBin === undefined)
  throw new Error("GNU time is not installed (apt-get install time): it measures pflogsumm's peak memory");

const dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-bench-usage-'));
try {
  const file = path.join(dir, 'maillog');
  const generateStart = performance.now();
  const truth = await writePostfixLog(file, { lines: LINES, seed: 1, start: START, syslogName: SYSLOG_NAME });
  const generateSeconds = (performance.now() - generateStart) / 1000;
  const size = (await stat(file)).size;
  const tenants = Object.fromEntries(truth.tenantOfDomain);

  const theirs: PflogsummResult[] = [];
  const chunk: WorkerResult[] = [];
  const readline: WorkerResult[] = [];
  // Interleaved, so that a burst of other work on the machine hits both sides alike.
  for (let i = 0; i < RUNS; i++) {
    theirs.push(await runPflogsumm(timeBin, pflogsumm, file));
    chunk.push(await runRelayplane(file, 'chunk', tenants));
    readline.push(await runRelayplane(file, 'readline', tenants));
    process.stdout.write(
      `run ${i + 1}/${RUNS}: pflogsumm ${seconds(theirs[i]!.wallMs)}, Relayplane ${seconds(chunk[i]!.elapsedMs)} (chunk) / ${seconds(readline[i]!.elapsedMs)} (readline)\n`,
    );
  }

  // Same file, same totals: otherwise the speed comparison means nothing.
  const t = theirs[0]!.totals;
  for (const r of [...chunk, ...readline]) {
    const ours = {
      received: r.totals.messages,
      delivered: r.totals.delivered,
      deferrals: r.totals.deferred,
      bounced: r.totals.bounced,
    };
    const expected = { received: t.received, delivered: t.delivered, deferrals: t.deferrals, bounced: t.bounced };
    if (JSON.stringify(ours) !== JSON.stringify(expected) || t.received !== truth.received) {
      throw new Error(
        `totals disagree: Relayplane ${JSON.stringify(ours)}, pflogsumm ${JSON.stringify(expected)}, generated ${truth.received} received`,
      );
    }
  }

  const theirWall = median(theirs.map((r) => r.wallMs));
  const row = (label: string, runs: WorkerResult[]) => {
    const ms = median(runs.map((r) => r.elapsedMs));
    return {
      label,
      ms,
      linesPerSecond: LINES / (ms / 1000),
      cpuMs: median(runs.map((r) => r.cpuMs)),
      rss: median(runs.map((r) => r.maxRssMb)),
      processMs: median(runs.map((r) => r.processMs)),
      all: runs.map((r) => r.elapsedMs),
      buckets: runs[0]!.buckets,
    };
  };
  const fast = [row('chunk splitter', chunk), row('`readline`', readline)].sort((a, b) => a.ms - b.ms);
  const best = fast[0]!;
  const theirRate = LINES / (theirWall / 1000);
  const ratio = best.linesPerSecond / theirRate;
  const cpuRatio = median(theirs.map((r) => r.cpuMs)) / best.cpuMs;
  const processRatio = theirWall / best.processMs;

  const table = [
    '## Parsing and aggregating a 1,000,000-line Postfix log vs pflogsumm (issue 6)',
    '',
    `Command: \`npm run bench -- usage-parse\` (generated log: ${int(LINES)} lines, ${(size / 1e6).toFixed(0)} MB, ${int(truth.received)} messages received, ${int(truth.delivered)} delivered, ${int(truth.deferrals)} deferrals, ${int(truth.bounced)} bounced, ${int(truth.expired)} expired, ${int(truth.notifications)} bounce notifications, ${truth.tenantOfDomain.size} sender domains; generating it took ${generateSeconds.toFixed(1)} s and is not measured; median of ${RUNS} interleaved runs each; ${machine()}; ${new Date().toISOString().slice(0, 10)}).`,
    '',
    '| Program | Median time | Lines/s | CPU (user + sys) | Peak memory (max RSS) | Runs |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
    `| \`pflogsumm --syslog-name=${SYSLOG_NAME} FILE\` (1.1.5, Perl; wall clock of the process) | ${seconds(theirWall)} | ${int(theirRate)} | ${seconds(median(theirs.map((r) => r.cpuMs)))} | ${median(theirs.map((r) => r.maxRssMb)).toFixed(0)} MB | ${theirs.map((r) => seconds(r.wallMs)).join(', ')} |`,
    ...fast.map(
      (r) =>
        `| Relayplane \`LogLineParser\` + \`UsageAccumulator\`, ${r.label} (read → buckets, in a fresh process) | ${r === best ? `**${seconds(r.ms)}**` : seconds(r.ms)} | ${r === best ? `**${int(r.linesPerSecond)}**` : int(r.linesPerSecond)} | ${seconds(r.cpuMs)} | ${r.rss.toFixed(0)} MB | ${r.all.map(seconds).join(', ')} |`,
    ),
    '',
    `Ratio Relayplane / pflogsumm lines/s: **${ratio.toFixed(1)}×** (goal ≥ 10×: ${ratio >= 10 ? 'met' : 'NOT met'}). By CPU time: ${cpuRatio.toFixed(1)}×. Counting the whole Relayplane process (Node and tsx start-up, ${seconds(best.processMs)}): ${processRatio.toFixed(1)}×.`,
    '',
    `**Reading.** Both sides read the same file, and their totals were checked equal before any number was kept: received ${int(t.received)} = Relayplane messages, delivered ${int(t.delivered)}, deferrals ${int(t.deferrals)} = Relayplane deferred, bounced ${int(t.bounced)} (the generator's own counts agree too). Relayplane's time covers reading the file (1 MiB chunks), splitting lines, parsing every line, joining events by queue id, adding them into ${int(best.buckets)} tenant × sender domain × recipient domain × hour buckets and building one record per finished message (for \`GET /v1/usage/messages\`, handed off every 26,000 lines as the collector commits them every 4 MiB); it excludes writing them to PostgreSQL. pflogsumm's covers its whole report. CPU time counts every thread (V8 collects garbage on helper threads, so Relayplane's CPU exceeds its wall time). The machine has ${os.availableParallelism()} cores shared with other work: single runs vary by ±20 %, on both sides. \`BENCH_CPU_PROF=DIR\` writes a CPU profile of each Relayplane run.`,
  ].join('\n');
  await recordSection('usage-parse', table);
  process.stdout.write(`${table}\n`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
