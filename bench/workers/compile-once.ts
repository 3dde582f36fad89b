import { performance } from 'node:perf_hooks';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createPrismaClient } from '../../src/db/prisma.js';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { compile, renderBundle } from '../../src/postfix/index.js';
import { createSnapshotRepository } from '../../src/repositories/snapshot.repository.js';
import { createSnapshotService } from '../../src/services/snapshot.service.js';

// One load + compile in a fresh process, so its peak memory is the compiler's and the loader's alone;
// then a second one in the same process, as the sync job does on every later change.
const prisma = createPrismaClient(process.env.BENCH_DATABASE_URL!, { poolSize: 2 });
const snapshots = createSnapshotService({
  prisma,
  snapshots: createSnapshotRepository(),
  secretBox: createSecretBox(Buffer.from(process.env.BENCH_MASTER_KEY!, 'base64')),
});
await prisma.$connect();
/** The cold run; only its numbers leave the function, so its snapshot and bundle can be collected. */
async function coldRun() {
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const snapshot = await snapshots.load();
  const loaded = performance.now();
  const bundle = compile(snapshot);
  const compiled = performance.now();
  const cpu = process.cpuUsage(cpuStart);
  const outDir = process.env.BENCH_OUT_DIR!;
  const rendered = renderBundle(bundle, outDir);
  for (const [name, file] of Object.entries(rendered.files)) {
    await writeFile(path.join(outDir, name), file.content, { mode: file.mode });
  }
  return {
    loadMs: loaded - start,
    compileMs: compiled - loaded,
    // Every thread of the process (V8 collects garbage on helper threads).
    cpuMs: (cpu.user + cpu.system) / 1000,
    // Peak memory of the cold load + compile, before the recompile below.
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    version: bundle.version,
    domains: snapshot.domains.length,
    credentials: snapshot.credentials.length,
    files: Object.fromEntries(Object.entries(bundle.files).map(([name, file]) => [name, { lines: file.content.split('\n').length, mapType: file.mapType }])),
  };
}

const cold = await coldRun();
// What the running sync job does on the next change: load and compile again in the same process
// (code warm, secrets of unchanged credentials kept by the loader; the previous snapshot is garbage).
const again = performance.now();
const snapshotAgain = await snapshots.load();
const loadedAgain = performance.now();
const bundleAgain = compile(snapshotAgain);
const compiledAgain = performance.now();
if (bundleAgain.version !== cold.version) throw new Error('the recompile of unchanged rows gave another version');
await prisma.$disconnect();
process.stdout.write(`${JSON.stringify({ ...cold, warmLoadMs: loadedAgain - again, warmCompileMs: compiledAgain - loadedAgain })}\n`);
