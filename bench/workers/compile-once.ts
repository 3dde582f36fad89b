import { randomUUID } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { createPrismaClient } from '../../src/db/prisma.js';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { compile, createIncrementalCompiler, renderBundle } from '../../src/postfix/index.js';
import { createSnapshotRepository } from '../../src/repositories/snapshot.repository.js';
import { createSnapshotService } from '../../src/services/snapshot.service.js';
import { createConfigBundleRepository } from '../../src/repositories/config-bundle.repository.js';
import { createBundleStore, createConfigEngineThread } from '../../src/config-engine/index.js';

// One cold load + compile in a fresh process (what the sync job does when it starts), so its peak
// memory is the compiler's and the loader's alone; then real changes written to the database, each
// followed by the load + compile the sync job runs for it (same process, same loader and compiler).
const url = process.env.BENCH_DATABASE_URL!;
const secretBox = createSecretBox(Buffer.from(process.env.BENCH_MASTER_KEY!, 'base64'));
const prisma = createPrismaClient(url, { poolSize: 2 });
const snapshots = createSnapshotService({ prisma, snapshots: createSnapshotRepository(), secretBox });
const compiler = createIncrementalCompiler();
// The sync job keeps every change's bundle, masked, for diffs (the config engine's deployable()).
const bundles = createBundleStore({ prisma, repository: createConfigBundleRepository() });
const round = Number(process.env.BENCH_ROUND ?? 0);
const changesPerKind = Number(process.env.BENCH_CHANGES ?? 3);
await prisma.$connect();
// The longest the event loop went without a turn (the API shares the leader's process), sampled
// only while a measured step runs. One histogram per step: a re-enabled one would count the time it
// was disabled (the untimed checks between changes) in its first sample.
const coldStall = monitorEventLoopDelay({ resolution: 10 });
let changeStallMs = 0;
const stallMs = (histogram: ReturnType<typeof monitorEventLoopDelay>) => histogram.max / 1e6;

/** The cold run; only its numbers leave the function, so its snapshot and bundle can be collected. */
async function coldRun() {
  coldStall.enable();
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const snapshot = await snapshots.load();
  const loaded = performance.now();
  const bundle = compiler.compile(snapshot);
  const compiled = performance.now();
  const cpu = process.cpuUsage(cpuStart);
  // One more turn, so the sample that the compile delayed is taken.
  await new Promise((resolve) => setTimeout(resolve, 20));
  coldStall.disable();
  await bundles.keep(bundle);
  const stored = performance.now();
  const outDir = process.env.BENCH_OUT_DIR!;
  const rendered = renderBundle(bundle, outDir);
  for (const [name, file] of Object.entries(rendered.files)) {
    await writeFile(path.join(outDir, name), file.content, { mode: file.mode });
  }
  return {
    loadMs: loaded - start,
    compileMs: compiled - loaded,
    storeMs: stored - compiled,
    // Every thread of the process (V8 collects garbage on helper threads).
    cpuMs: (cpu.user + cpu.system) / 1000,
    // Peak memory of the cold load + compile, before the changes below.
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    files: Object.fromEntries(
      Object.entries(bundle.files).map(([name, file]) => [
        name,
        { lines: file.content.split('\n').length, mapType: file.mapType },
      ]),
    ),
  };
}

const cold = await coldRun();

// What the API's process sees since the config engine runs in a thread of its own
// (src/config-engine/thread.ts): the same cold run (load, compile, mask and store) there,
// and the longest the API's event loop waited meanwhile (for the answer's copy to arrive).
const engineLog: Array<{ obj: Record<string, number>; msg: string }> = [];
const engine = createConfigEngineThread({
  databaseUrl: url,
  masterKey: Buffer.from(process.env.BENCH_MASTER_KEY!, 'base64'),
  // Every reconcile checks: the check's cost is measured below.
  verifyIntervalMs: 0,
  log: {
    info: (obj, msg) => engineLog.push({ obj: obj as Record<string, number>, msg }),
    error: (obj, msg) => engineLog.push({ obj: obj as Record<string, number>, msg }),
  },
});
/** The engine's deployable() timed, with the API thread's longest stall meanwhile. */
async function engineRun(verify: boolean) {
  const stall = monitorEventLoopDelay({ resolution: 10 });
  stall.enable();
  const start = performance.now();
  const { bundle } = await engine.deployable({ verify });
  const ms = performance.now() - start;
  await new Promise((resolve) => setTimeout(resolve, 20));
  stall.disable();
  return { ms, stallMs: stallMs(stall), version: bundle.version };
}
const engineCold = await engineRun(false);

const writer = new pg.Client({ connectionString: url });
await writer.connect();
/** The row at `offset` (wrapping around) of a query: rows spread over the table, at any BENCH_DOMAINS. */
const one = async (sql: string, offset: number) =>
  (
    await writer.query<{ id: string }>(
      `${sql} OFFSET $1::int % (SELECT count(*) FROM (${sql}) AS candidates) LIMIT 1`,
      [offset],
    )
  ).rows[0]!.id;
/** A new secret sealed into a credential's row, as a rotation through the API does. */
async function reseal(id: string, secret: string) {
  const sealed = secretBox.seal(secret, id);
  await writer.query(
    'UPDATE relay_credentials SET secret_ciphertext = $2, secret_nonce = $3, secret_key_id = $4, fingerprint = $5, updated_at = now() WHERE id = $1',
    [id, sealed.ciphertext, sealed.nonce, sealed.keyId, secretBox.fingerprint(secret)],
  );
}
/** The writes a hosting panel or an admin makes through the API, as SQL (one transaction each). */
const CHANGES = {
  /** A panel onboards a domain with its own credential on a relay (every 7th relay has limits: a generated service). */
  async onboard(n: number) {
    const relayId = await one('SELECT id FROM relays ORDER BY name', n % 50);
    const tenantId = await one('SELECT id FROM tenants ORDER BY slug', n);
    const domainId = randomUUID();
    const credentialId = randomUUID();
    const sealed = secretBox.seal(`onboarded-secret-${n}`, credentialId);
    await writer.query('BEGIN');
    await writer.query(
      `INSERT INTO domains (id, tenant_id, name, status, route, relay_id, updated_at) VALUES ($1, $2, $3, 'verified', 'relay', $4, now())`,
      [domainId, tenantId, `onboarded-${round}-${n}.customer.example`, relayId],
    );
    await writer.query(
      `INSERT INTO relay_credentials (id, relay_id, domain_id, username, secret_ciphertext, secret_nonce, secret_key_id, fingerprint, status, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', now())`,
      [
        credentialId,
        relayId,
        domainId,
        `user@onboarded-${round}-${n}`,
        sealed.ciphertext,
        sealed.nonce,
        sealed.keyId,
        secretBox.fingerprint(`onboarded-secret-${n}`),
      ],
    );
    await writer.query('COMMIT');
  },
  /** An admin rotates a domain's credential (new secret sealed into the same row). */
  async rotate(n: number) {
    const id = await one(
      'SELECT id FROM relay_credentials WHERE domain_id IS NOT NULL ORDER BY id',
      1000 + round * 100 + n,
    );
    await reseal(id, `rotated-secret-${round}-${n}`);
  },
  /** An admin disables a domain. */
  async disable(n: number) {
    const id = await one(`SELECT id FROM domains WHERE status = 'verified' ORDER BY id`, 2000 + round * 100 + n);
    await writer.query(`UPDATE domains SET status = 'disabled', updated_at = now() WHERE id = $1`, [id]);
  },
  /** A billing system suspends a tenant (its ten domains lose their routes). */
  async suspend(n: number) {
    const id = await one(`SELECT id FROM tenants WHERE status = 'active' ORDER BY id`, 3000 + round * 100 + n);
    await writer.query(`UPDATE tenants SET status = 'suspended', updated_at = now() WHERE id = $1`, [id]);
  },
  /** An admin rotates a relay's relay-wide (platform) credential: every domain on that relay without its own is redone. */
  async 'rotate-relay-wide'(n: number) {
    // Of a relay that some domain uses without a credential of its own (else nothing compiled changes).
    const id = await one(
      `SELECT c.id FROM relay_credentials c WHERE c.domain_id IS NULL AND EXISTS (
         SELECT FROM domains d WHERE d.relay_id = c.relay_id AND NOT EXISTS (SELECT FROM relay_credentials o WHERE o.domain_id = d.id)) ORDER BY c.id`,
      round * 10 + n,
    );
    await reseal(id, `rotated-platform-secret-${round}-${n}`);
  },
  /** An admin changes a relay's concurrency limit: every domain routed through it is redone (2 % of them here). */
  async 'relay-limit'(n: number) {
    const id = await one('SELECT id FROM relays ORDER BY id', round * 10 + n);
    await writer.query(
      'UPDATE relays SET concurrency = coalesce(concurrency, 10) + 1, updated_at = now() WHERE id = $1',
      [id],
    );
  },
  /** An admin changes a destination policy's TLS level. */
  async policy(n: number) {
    const id = await one('SELECT id FROM destination_policies ORDER BY id', round * 10 + n);
    await writer.query(
      `UPDATE destination_policies SET tls = CASE WHEN tls = 'verify' THEN 'encrypt'::tls_requirement ELSE 'verify'::tls_requirement END, updated_at = now() WHERE id = $1`,
      [id],
    );
  },
} as const;

const changes: Array<{ kind: string; loadMs: number; compileMs: number; storeMs: number; mode: string | null }> = [];
for (let n = 0; n < changesPerKind; n++) {
  for (const [kind, write] of Object.entries(CHANGES)) {
    await write(n);
    const start = performance.now();
    const snapshot = await snapshots.load();
    const loaded = performance.now();
    const bundle = compiler.compile(snapshot);
    const compiled = performance.now();
    await bundles.keep(bundle);
    const stored = performance.now();
    // Not timed: the change must give exactly what a full compile of the same rows gives.
    if (compile(snapshot).version !== bundle.version)
      throw new Error(`${kind}: the incremental compile differs from compile()`);
    // The same change through the engine's thread: what the API's event loop waits for it.
    const engineChange = await engineRun(false);
    if (engineChange.version !== bundle.version)
      throw new Error(`${kind}: the engine's thread compiled another version`);
    changeStallMs = Math.max(changeStallMs, engineChange.stallMs);
    changes.push({
      kind,
      loadMs: loaded - start,
      compileMs: compiled - loaded,
      storeMs: stored - compiled,
      mode: compiler.lastMode,
    });
  }
}
// And a run with nothing changed (a reconcile): load and compile again.
const again = performance.now();
const snapshotAgain = await snapshots.load();
const loadedAgain = performance.now();
compiler.compile(snapshotAgain);
const compiledAgain = performance.now();
// The reconcile's periodic check in the engine's thread: a change (so the compile is incremental),
// then a full compile of the same rows beside it.
await CHANGES.policy(changesPerKind);
const checked = await engineRun(true);
const check = engineLog.findLast((line) => line.msg === 'full compile for the check done');
if (check === undefined) throw new Error('the engine did not check');
if (engineLog.some((line) => line.msg.startsWith('the incremental compile differed')))
  throw new Error('the check found a difference');
await engine.close();
await writer.end();
// What the loader and the compiler keep between changes (the rest is garbage by now).
(globalThis as { gc?: () => void }).gc?.();
const retainedMb = process.memoryUsage().heapUsed / 1024 / 1024;
await prisma.$disconnect();
process.stdout.write(
  `${JSON.stringify({ ...cold, changes, unchangedLoadMs: loadedAgain - again, unchangedCompileMs: compiledAgain - loadedAgain, retainedMb, coldStallMs: stallMs(coldStall), engineColdMs: engineCold.ms, engineColdStallMs: engineCold.stallMs, changeStallMs, checkMs: check.obj.ms!, checkStallMs: checked.stallMs, checkHeapMb: check.obj.heapMb! })}\n`,
);
