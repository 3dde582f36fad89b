import { performance } from 'node:perf_hooks';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createPrismaClient } from '../../src/db/prisma.js';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { compile, renderBundle } from '../../src/postfix/index.js';
import { createSnapshotRepository } from '../../src/repositories/snapshot.repository.js';
import { createSnapshotService } from '../../src/services/snapshot.service.js';

// One load + compile in a fresh process, so its peak memory is the compiler's and the loader's alone.
const prisma = createPrismaClient(process.env.BENCH_DATABASE_URL!, { poolSize: 2 });
const snapshots = createSnapshotService({
  prisma,
  snapshots: createSnapshotRepository(),
  secretBox: createSecretBox(Buffer.from(process.env.BENCH_MASTER_KEY!, 'base64')),
});
await prisma.$connect();
const start = performance.now();
const snapshot = await snapshots.load();
const loaded = performance.now();
const bundle = compile(snapshot);
const compiled = performance.now();
const outDir = process.env.BENCH_OUT_DIR!;
const rendered = renderBundle(bundle, outDir);
for (const [name, file] of Object.entries(rendered.files)) {
  await writeFile(path.join(outDir, name), file.content, { mode: file.mode });
}
await prisma.$disconnect();
process.stdout.write(
  `${JSON.stringify({
    loadMs: loaded - start,
    compileMs: compiled - loaded,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    domains: snapshot.domains.length,
    credentials: snapshot.credentials.length,
    files: Object.fromEntries(Object.entries(bundle.files).map(([name, file]) => [name, { lines: file.content.split('\n').length, mapType: file.mapType }])),
  })}\n`,
);
