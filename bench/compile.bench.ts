import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { applyMigrations } from '../src/db/migrate.js';
import { fullLoadQueries } from '../src/repositories/snapshot.repository.js';
import { machine, median, recordSection, ROOT, scratchDatabase } from './lib.js';
import { PER_TENANT, POLICIES, RELAYS, seed } from './seed.js';
import { createSecretBox } from '../src/lib/secret-box.js';
import { backdate } from '../test/lab/postfix-node.js';
import { findExecutable } from './usage/pflogsumm.js';

/**
 * Issue 4's benchmark: 100,000 sender domains (credentials across 50 relays, 1,000 destination
 * policies) in PostgreSQL; load + compile in a fresh process vs real `postmap` of the produced
 * tables, same run, in interleaved rounds (BENCH_ROUNDS, default 3). Goal: compile / postmap ≤ 1.
 */
const DOMAINS = Number(process.env.BENCH_DOMAINS ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface WorkerResult {
  loadMs: number;
  compileMs: number;
  /** Masking the bundle and storing it by version (every chunk is new on the cold run). */
  storeMs: number;
  cpuMs: number;
  maxRssMb: number;
  files: Record<string, { lines: number; mapType: string | null }>;
  /** Each change written to the database, then loaded and compiled by the same loader and compiler. */
  changes: Array<{ kind: string; loadMs: number; compileMs: number; storeMs: number; mode: string }>;
  unchangedLoadMs: number;
  unchangedCompileMs: number;
  /** Heap in use after a full garbage collection, once the changes are done: the loader's and compiler's state. */
  retainedMb: number;
  /** The longest the event loop waited for a turn during the cold load + compile on it (no engine thread). */
  coldStallMs: number;
  /** The config engine's thread (what the API's process runs): its cold run (load + compile + store), and the API thread's longest stall meanwhile. */
  engineColdMs: number;
  engineColdStallMs: number;
  /** The API thread's longest stall while the engine's thread ran any change's whole step. */
  changeStallMs: number;
  /** The reconcile's check (a full compile in the engine's thread) and the API thread's longest stall during that reconcile. */
  checkMs: number;
  checkStallMs: number;
  /** The engine thread's heap once checked: its kept state and the full compile's working set. */
  checkHeapMb: number;
}

/**
 * What any cold start on this stack must spend before compiling a single domain, measured beside
 * postmap: PostgreSQL handing out the rows a full load reads (its own COPY, one repeatable-read
 * transaction, into /dev/null: no client-side parsing at all; the sum of psql's own \timing of each
 * statement, so psql's start is not counted), and opening every sealed secret once.
 */
function exportFloorMs(url: string): number {
  const statements = [
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    ...fullLoadQueries().map((query) => `COPY (${query}) TO STDOUT`),
    'COMMIT',
  ];
  const commands = ['\\timing on', '\\o /dev/null', ...statements];
  const run = spawnSync(
    'psql',
    ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, ...commands.flatMap((command) => ['-c', command])],
    { encoding: 'utf8' },
  );
  const times = [...run.stdout.matchAll(/^Time: ([\d.]+) ms/gm)].map((match) => Number(match[1]));
  if (run.status !== 0 || times.length !== statements.length) throw new Error(`psql: ${run.stderr}`);
  return times.reduce((sum, ms) => sum + ms, 0);
}

/**
 * What every smtpd process on a node pays to open the sender access table and answer one MAIL FROM
 * of an unknown sender (the case that consults the whole table): `postmap -q` on the table as
 * compiled (hash), and on the same entries as the regexp: table the compiler wrote before (one
 * pattern per domain, then the catch-all), rebuilt here from the compiled entries.
 */
function accessLookups(
  timeBin: string,
  dir: string,
): { hash: { ms: number; rssMb: number }; regexp: { ms: number; rssMb: number } } {
  const source = readFileSync(path.join(dir, 'sender_access'), 'utf8');
  const formerly = source
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const space = line.indexOf(' ');
      const [key, value] = [line.slice(0, space), line.slice(space + 1)];
      return key === '<>' ? `/^<>$/ ${value}` : `/@${key.replaceAll('.', '\\.')}$/ ${value === 'OK' ? 'DUNNO' : value}`;
    });
  writeFileSync(
    path.join(dir, 'sender_access.regexp'),
    [...formerly, '/^/ REJECT Relayplane: the sender domain is not configured on this relay', ''].join('\n'),
  );
  const lookup = (spec: string) => {
    const start = performance.now();
    const run = spawnSync(timeBin, ['-f', 'TIME %M', 'postmap', '-c', dir, '-q', 'someone@unknown.example', spec], {
      encoding: 'utf8',
    });
    const ms = performance.now() - start;
    const rss = /^TIME (\d+)$/m.exec(run.stderr);
    // Exit 1 with no output is postmap's "not found" (the hash table has no catch-all entry).
    if (rss === null || (run.status !== 0 && !(run.status === 1 && run.stdout === '')))
      throw new Error(`postmap -q ${spec}: ${run.stderr}`);
    return { ms, rssMb: Number(rss[1]) / 1024 };
  };
  return {
    hash: lookup(`hash:${path.join(dir, 'sender_access')}`),
    regexp: lookup(`regexp:${path.join(dir, 'sender_access.regexp')}`),
  };
}

async function openFloorMs(url: string, masterKey: Buffer): Promise<number> {
  const box = createSecretBox(masterKey);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const { rows } = await client.query<{ id: string; ciphertext: Buffer; nonce: Buffer; keyId: string }>(
    `SELECT id::text, secret_ciphertext AS ciphertext, secret_nonce AS nonce, secret_key_id AS "keyId" FROM relay_credentials WHERE status = 'active'`,
  );
  await client.end();
  const start = performance.now();
  for (const row of rows) box.open(row, row.id);
  return performance.now() - start;
}

/**
 * The third floor: printing and hashing the hash tables the compiler produced, from their entries
 * already in memory and in key order (bench/workers/print-floor.ts, a fresh process): what a
 * compiler that sorted, resolved and checked nothing would still spend.
 */
function printFloor(dir: string, tables: string[]): { ms: number; cpuMs: number } {
  const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/workers/print-floor.ts')], {
    cwd: ROOT,
    env: { ...process.env, BENCH_OUT_DIR: dir, BENCH_TABLES: JSON.stringify(tables) },
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`print floor: ${run.stderr}`);
  return JSON.parse(run.stdout) as { ms: number; cpuMs: number };
}

function runWorker(env: Record<string, string>): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
        '--expose-gc',
        '--import',
        'tsx',
        path.join(ROOT, 'bench/workers/compile-once.ts'),
      ],
      { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(output)) : reject(new Error(`compile worker exited ${code}`)),
    );
  });
}

const database = await scratchDatabase('rp_bench_compile');
// GNU time reports postmap's CPU time beside its wall clock.
const timeBin = findExecutable('time');
if (timeBin === undefined)
  throw new Error("GNU time is not installed (apt-get install time): it measures postmap's CPU time");
const outDir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-bench-compile-'));
await chmod(outDir, 0o755);
try {
  await applyMigrations({ databaseUrl: database.url });
  const masterKey = randomBytes(32);
  const seedStart = performance.now();
  const seeded = await seed(database.url, masterKey, DOMAINS);
  const seedSeconds = (performance.now() - seedStart) / 1000;
  // Interleaved rounds (a fresh load + compile process, then postmap of what it wrote), medians
  // compared: single runs on this 2-core machine vary by ±30 %, on both sides.
  /** One round: the worker's numbers, postmap's, and the cold start's floors. */
  type Round = Omit<WorkerResult, 'files' | 'changes' | 'unchangedLoadMs' | 'unchangedCompileMs'> & {
    unchangedMs: number;
    postmapMs: number;
    postmapCpuMs: number;
    exportMs: number;
    openMs: number;
    print: ReturnType<typeof printFloor>;
    access: ReturnType<typeof accessLookups>;
  };
  const rounds: Round[] = [];
  const changes: WorkerResult['changes'] = [];
  let tables: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await rm(outDir, { recursive: true, force: true });
    await mkdir(outDir, { mode: 0o755 });
    const result = await runWorker({
      BENCH_DATABASE_URL: database.url,
      BENCH_MASTER_KEY: masterKey.toString('base64'),
      BENCH_OUT_DIR: outDir,
      BENCH_ROUND: String(round),
    });
    changes.push(...result.changes);
    // postmap reads a main.cf; an empty one in its own config dir keeps the machine's Postfix out of
    // it. Dated back as the deployer does on nodes: Postfix re-reads a main.cf modified in the last
    // ~2 s every 300 ms until it is older, which would add ~2 s to the first postmap of every round.
    await writeFile(path.join(outDir, 'main.cf'), '');
    await backdate(path.join(outDir, 'main.cf'));
    let postmapMs = 0;
    let postmapCpuMs = 0;
    // Only hash tables: the nodes postmap those, and nothing else.
    const hashTables = Object.entries(result.files).filter(([, file]) => file.mapType === 'hash');
    tables = hashTables.map(([name, file]) => `${name} (${file.lines - 1} lines)`);
    for (const [name] of hashTables) {
      // GNU time writes its own line last on stderr: user and system CPU seconds.
      const start = performance.now();
      const run = spawnSync(timeBin, ['-f', 'TIME %U %S', 'postmap', '-c', outDir, `hash:${path.join(outDir, name)}`], {
        encoding: 'utf8',
      });
      postmapMs += performance.now() - start;
      const cpu = /^TIME (\S+) (\S+)$/m.exec(run.stderr);
      if (run.status !== 0 || cpu === null || run.stderr !== cpu[0] + '\n')
        throw new Error(`postmap ${name}: ${run.stderr}`);
      postmapCpuMs += (Number(cpu[1]) + Number(cpu[2])) * 1000;
    }
    const access = accessLookups(timeBin, outDir);
    const exportMs = exportFloorMs(database.url);
    const openMs = await openFloorMs(database.url, masterKey);
    const print = printFloor(
      outDir,
      hashTables.map(([name]) => name),
    );
    const { files: _files, changes: _changes, unchangedLoadMs, unchangedCompileMs, ...measured } = result;
    rounds.push({
      ...measured,
      unchangedMs: unchangedLoadMs + unchangedCompileMs,
      postmapMs,
      postmapCpuMs,
      exportMs,
      openMs,
      print,
      access,
    });
    const r = rounds[round]!;
    const perChange = result.changes
      .map((c) => `${c.kind} ${(c.loadMs + c.compileMs).toFixed(0)} + store ${c.storeMs.toFixed(0)} (${c.mode})`)
      .join(', ');
    process.stdout.write(
      `round ${round + 1}/${ROUNDS}: cold load ${r.loadMs.toFixed(0)} ms, compile ${r.compileMs.toFixed(0)} ms (CPU ${r.cpuMs.toFixed(0)} ms), postmap ${postmapMs.toFixed(0)} ms (CPU ${postmapCpuMs.toFixed(0)} ms), floors: COPY ${r.exportMs.toFixed(0)} ms, open ${r.openMs.toFixed(0)} ms, print ${r.print.ms.toFixed(0)} ms; changes: ${perChange} ms; unchanged ${r.unchangedMs.toFixed(0)} ms\n`,
    );
  }
  const loadMs = median(rounds.map((r) => r.loadMs));
  const compileMs = median(rounds.map((r) => r.compileMs));
  const compilePath = median(rounds.map((r) => r.loadMs + r.compileMs));
  const postmapMs = median(rounds.map((r) => r.postmapMs));
  const unchangedMs = median(rounds.map((r) => r.unchangedMs));
  const cpuMs = median(rounds.map((r) => r.cpuMs));
  const postmapCpuMs = median(rounds.map((r) => r.postmapCpuMs));
  const coldRatio = compilePath / postmapMs;
  const exportMs = median(rounds.map((r) => r.exportMs));
  const openMs = median(rounds.map((r) => r.openMs));
  const printMs = median(rounds.map((r) => r.print.ms));
  const floorsMs = exportMs + openMs + printMs;
  const cores = os.availableParallelism();
  const changeLoadMs = median(changes.map((c) => c.loadMs));
  const changeCompileMs = median(changes.map((c) => c.compileMs));
  const changeMs = median(changes.map((c) => c.loadMs + c.compileMs));
  const worstChangeMs = Math.max(...changes.map((c) => c.loadMs + c.compileMs));
  const changeRatio = changeMs / postmapMs;
  // The sync job's whole compile step for a change: load, compile, and keep the masked bundle by version.
  const stepMs = median(changes.map((c) => c.loadMs + c.compileMs + c.storeMs));
  const worstStepMs = Math.max(...changes.map((c) => c.loadMs + c.compileMs + c.storeMs));
  const changeStoreMs = median(changes.map((c) => c.storeMs));
  const stepRatio = stepMs / postmapMs;
  const kinds = [...new Set(changes.map((c) => c.kind))];
  const incremental = changes.filter((c) => c.mode === 'incremental').length;
  const table = [
    '## Compiling 100,000 sender domains vs postmap (issue 4)',
    '',
    `Command: \`npm run bench -- compile\` (${DOMAINS} domains of ${DOMAINS / PER_TENANT} tenants, ${RELAYS} relays, ${seeded.credentials} active credentials, ${POLICIES} destination policies; seeding took ${seedSeconds.toFixed(1)} s and is not measured; ${ROUNDS} interleaved rounds, each a fresh process that loads and compiles everything (the sync job's start), then writes ${changes.length / ROUNDS} changes to the database (${kinds.join(', ')}) and loads and compiles after each (the sync job's run for that change), then postmap of the tables it wrote; medians shown; ${machine()}; ${new Date().toISOString().slice(0, 10)}).`,
    '',
    '| Step | Median time | Runs |',
    '| --- | ---: | --- |',
    `| cold load (one repeatable-read transaction, decrypt ${seeded.credentials} secrets) | ${loadMs.toFixed(0)} ms | ${rounds.map((r) => r.loadMs.toFixed(0)).join(', ')} |`,
    `| cold compile (everything; keeps the plan and tables for the next change) | ${compileMs.toFixed(0)} ms | ${rounds.map((r) => r.compileMs.toFixed(0)).join(', ')} |`,
    `| **cold load + compile** | **${compilePath.toFixed(0)} ms** | ${rounds.map((r) => (r.loadMs + r.compileMs).toFixed(0)).join(', ')} |`,
    `| cold: mask the bundle and store it by version (every chunk new) | ${median(rounds.map((r) => r.storeMs)).toFixed(0)} ms | ${rounds.map((r) => r.storeMs.toFixed(0)).join(', ')} |`,
    ...kinds.map((kind) => {
      const runs = changes.filter((c) => c.kind === kind);
      const full = runs.filter((c) => c.mode !== 'incremental').length;
      const how =
        full === 0
          ? 'compile incrementally'
          : full === runs.length
            ? 'compile fully'
            : `compile (${full} of ${runs.length} fully)`;
      const steps = runs.map((c) => c.loadMs + c.compileMs + c.storeMs);
      return `| change "${kind}": load what changed + ${how} | ${median(runs.map((c) => c.loadMs + c.compileMs)).toFixed(0)} ms | ${runs.map((c) => (c.loadMs + c.compileMs).toFixed(0)).join(', ')}; with the bundle stored: median ${median(steps).toFixed(0)} ms, worst ${Math.max(...steps).toFixed(0)} ms |`;
    }),
    `| **any change: load + compile** (of which load ${changeLoadMs.toFixed(0)} ms, compile ${changeCompileMs.toFixed(0)} ms) | **${changeMs.toFixed(0)} ms** | worst ${worstChangeMs.toFixed(0)} ms; ${incremental} of ${changes.length} compiled incrementally |`,
    `| **any change: the sync job's whole compile step** (load + compile + mask and store the bundle, of which store ${changeStoreMs.toFixed(0)} ms) | **${stepMs.toFixed(0)} ms** | worst ${worstStepMs.toFixed(0)} ms |`,
    `| nothing changed (a reconcile): load + compile | ${unchangedMs.toFixed(0)} ms | ${rounds.map((r) => r.unchangedMs.toFixed(0)).join(', ')} |`,
    `| real \`postmap\` of the produced hash tables: ${tables.join(', ')} | ${postmapMs.toFixed(0)} ms | ${rounds.map((r) => r.postmapMs.toFixed(0)).join(', ')} |`,
    `| CPU time (user + system) of the cold load + compile, every thread | ${cpuMs.toFixed(0)} ms | ${rounds.map((r) => r.cpuMs.toFixed(0)).join(', ')} |`,
    `| CPU time (user + system) of those postmap runs | ${postmapCpuMs.toFixed(0)} ms | ${rounds.map((r) => r.postmapCpuMs.toFixed(0)).join(', ')} |`,
    `| floor of any cold start: PostgreSQL's own \`COPY\` of the rows a full load reads (one repeatable-read transaction into /dev/null, each statement timed by psql, no parsing) | ${exportMs.toFixed(0)} ms | ${rounds.map((r) => r.exportMs.toFixed(0)).join(', ')} |`,
    `| floor of any cold start: opening the ${seeded.credentials} sealed secrets once (AES-256-GCM) | ${openMs.toFixed(0)} ms | ${rounds.map((r) => r.openMs.toFixed(0)).join(', ')} |`,
    `| floor of any cold start: printing and hashing the hash tables above from their entries already in memory and in key order, secrets open (a fresh process; no sorting, resolution, checks or escaping) | ${printMs.toFixed(0)} ms | ${rounds.map((r) => `${r.print.ms.toFixed(0)} (CPU ${r.print.cpuMs.toFixed(0)})`).join(', ')} |`,
    `| on a node: opening \`sender_access\` and one lookup of an unknown sender (\`postmap -q\`, what every smtpd process pays when it starts), the hash table compiled now | ${median(rounds.map((r) => r.access.hash.ms)).toFixed(0)} ms, ${median(rounds.map((r) => r.access.hash.rssMb)).toFixed(0)} MB max RSS | ${rounds.map((r) => `${r.access.hash.ms.toFixed(0)} ms ${r.access.hash.rssMb.toFixed(0)} MB`).join(', ')} |`,
    `| the same with the same entries as the regexp table compiled before (one pattern per domain) | ${median(rounds.map((r) => r.access.regexp.ms)).toFixed(0)} ms, ${median(rounds.map((r) => r.access.regexp.rssMb)).toFixed(0)} MB max RSS | ${rounds.map((r) => `${r.access.regexp.ms.toFixed(0)} ms ${r.access.regexp.rssMb.toFixed(0)} MB`).join(', ')} |`,
    `| longest event-loop stall, were the cold load + compile on the API's thread (as before the engine thread) | ${median(rounds.map((r) => r.coldStallMs)).toFixed(0)} ms | ${rounds.map((r) => r.coldStallMs.toFixed(0)).join(', ')} |`,
    `| the config engine's thread (what the server runs): cold load + compile + mask and store | ${median(rounds.map((r) => r.engineColdMs)).toFixed(0)} ms | ${rounds.map((r) => r.engineColdMs.toFixed(0)).join(', ')} |`,
    `| longest stall of the API's event loop meanwhile (receiving the compiled bundle's copy) | ${median(rounds.map((r) => r.engineColdStallMs)).toFixed(0)} ms | ${rounds.map((r) => r.engineColdStallMs.toFixed(0)).join(', ')} |`,
    `| longest stall of the API's event loop: any change's whole step in the engine's thread | ${median(rounds.map((r) => r.changeStallMs)).toFixed(0)} ms | ${rounds.map((r) => r.changeStallMs.toFixed(0)).join(', ')} |`,
    `| the reconcile's check (every 10 minutes at most): a full compile of the same rows in the engine's thread | ${median(rounds.map((r) => r.checkMs)).toFixed(0)} ms | ${rounds.map((r) => r.checkMs.toFixed(0)).join(', ')} |`,
    `| longest stall of the API's event loop during that reconcile | ${median(rounds.map((r) => r.checkStallMs)).toFixed(0)} ms | ${rounds.map((r) => r.checkStallMs.toFixed(0)).join(', ')} |`,
    '',
    `Peak memory (max RSS) of the cold load + compile: ${median(rounds.map((r) => r.maxRssMb)).toFixed(0)} MB (median). The engine thread's heap right after the reconcile's check (the state it keeps between compiles plus a full compile's working set): ${median(rounds.map((r) => r.checkHeapMb)).toFixed(0)} MB (${rounds.map((r) => r.checkHeapMb.toFixed(0)).join(', ')}). Kept in memory between changes (heap in use after a full garbage collection: the loader's rows and secrets, the compiler's index, plan and tables): ${median(rounds.map((r) => r.retainedMb)).toFixed(0)} MB.`,
    '',
    `Ratio (load + compile) / postmap for a change, medians: **${changeRatio.toFixed(2)}** (goal ≤ 1: ${changeRatio <= 1 ? 'met' : 'NOT met'}; worst change ${(worstChangeMs / postmapMs).toFixed(2)}); ` +
      `with storing the bundle, the sync job's whole step: **${stepRatio.toFixed(2)}** (${stepRatio <= 1 ? 'met' : 'NOT met'}; worst change ${(worstStepMs / postmapMs).toFixed(2)}). ` +
      `At the sync job's start (cold, everything): **${coldRatio.toFixed(2)}** (${coldRatio <= 1 ? 'met' : 'NOT met'}); per round: ${rounds.map((r) => ((r.loadMs + r.compileMs) / r.postmapMs).toFixed(2)).join(', ')}; by CPU time: ${(cpuMs / postmapCpuMs).toFixed(2)}. ` +
      `Floors of any cold start, per postmap: PostgreSQL's COPY of the rows **${(exportMs / postmapMs).toFixed(2)}**, opening the secrets **${(openMs / postmapMs).toFixed(2)}**, the two **${((exportMs + openMs) / postmapMs).toFixed(2)}** before a single domain is compiled; ` +
      `printing the tables from entries in memory **${(printMs / postmapMs).toFixed(2)}**; the three in sequence **${(floorsMs / postmapMs).toFixed(2)}**, ` +
      `and spread perfectly over this machine's ${cores} cores, no less than **${(floorsMs / cores / postmapMs).toFixed(2)}**.`,
  ].join('\n');
  await recordSection('compile', table);
  process.stdout.write(`${table}\n`);
} finally {
  await rm(outDir, { recursive: true, force: true });
  await database.drop();
}
