/**
 * The config engine in its worker thread (src/config-engine/thread.ts), over real
 * PostgreSQL: the same answers as the engine on this thread (bundle, masked bundle, version,
 * explanation, the compiler's refusal with its problems); the compiling done on another thread,
 * which keeps its state between calls (a change compiles incrementally there); close() fails what
 * waits on it, and the next call starts a new thread.
 */
import { randomBytes } from 'node:crypto';
import { threadId } from 'node:worker_threads';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { createConfigBundleRepository } from '../../src/repositories/config-bundle.repository.js';
import { createSnapshotRepository } from '../../src/repositories/snapshot.repository.js';
import { type ConfigEngine, createBundleStore, createConfigEngine } from '../../src/config-engine/index.js';
import { createSnapshotService } from '../../src/services/snapshot.service.js';
import { usePrismaDatabase } from '../helpers/database.js';
import { insertSealedCredential } from '../helpers/fixtures.js';

const db = usePrismaDatabase();
const masterKey = randomBytes(32);
const secretBox = createSecretBox(masterKey);
const quiet = { info() {}, error() {} };
let engines: ConfigEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.map((engine) => engine.close()));
  engines = [];
});

function threadEngine(
  log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void } = quiet,
  key: Uint8Array = masterKey,
  idleStopMs?: number,
) {
  const engine = createConfigEngine({
    execution: 'worker-thread',
    databaseUrl: db.database.url,
    masterKey: key,
    log,
    ...(idleStopMs === undefined ? {} : { idleStopMs }),
  });
  engines.push(engine);
  return engine;
}

function localEngine() {
  const prisma = db.prisma;
  return createConfigEngine({
    execution: 'in-process',
    snapshots: createSnapshotService({ prisma, snapshots: createSnapshotRepository(), secretBox }),
    bundles: createBundleStore({ prisma, repository: createConfigBundleRepository() }),
    log: quiet,
  });
}

async function seed(slug: string) {
  const tenant = await db.prisma.tenant.create({ data: { name: slug, slug } });
  const relay = await db.prisma.relay.create({
    data: { name: `${slug} relay`, host: `smtp.${slug}.test`, port: 587, tls: 'starttls', concurrency: 4 },
  });
  const implicit = await db.prisma.relay.create({
    data: { name: `${slug} implicit`, host: `smtps.${slug}.test`, port: 465, tls: 'implicit' },
  });
  const shop = await db.prisma.domain.create({
    data: { tenantId: tenant.id, name: `shop.${slug}.example`, status: 'verified', relayId: relay.id },
  });
  await db.prisma.domain.create({
    data: { tenantId: tenant.id, name: `tls.${slug}.example`, status: 'verified', relayId: implicit.id },
  });
  await db.prisma.domain.create({
    data: { tenantId: tenant.id, name: `pending.${slug}.example`, status: 'pending', relayId: relay.id },
  });
  await insertSealedCredential(db.prisma, secretBox, {
    relayId: relay.id,
    domainId: shop.id,
    status: 'active',
    secret: 'pa ss:wo#rd "ü"',
  });
  await insertSealedCredential(db.prisma, secretBox, {
    relayId: implicit.id,
    domainId: null,
    status: 'active',
    secret: 'relay-wide',
  });
  return { tenant, relay, implicit };
}

describe('the config engine in its thread', () => {
  it('answers as the engine on this thread does', async () => {
    const { tenant, relay } = await seed('same');
    const thread = threadEngine();
    const local = localEngine();
    const [there, here] = [await thread.deployable(), await local.deployable()];
    // The secret arrives opened (in the relay's own map: the relay has limits, so a service of its own).
    expect(Object.values(there.bundle.files).some((file) => file.content.includes(':pa ss:wo#rd "ü"'))).toBe(true);
    expect(there).toEqual(here);
    expect(await thread.masked()).toEqual(await local.masked());
    expect(await thread.version()).toBe(here.bundle.version);
    const explained = await thread.explain('a@shop.same.example', 'b@gmail.test');
    expect(explained.outcome).not.toBe('rejected');
    expect(explained).toEqual(await local.explain('a@shop.same.example', 'b@gmail.test'));

    // A configuration Postfix cannot express: the same quarantine on both, with the same problems.
    const loose = await db.prisma.relay.create({
      data: { name: 'loose', host: 'smtp.loose.test', port: 465, tls: 'implicit' },
    });
    await db.prisma.domain.create({
      data: {
        tenantId: tenant.id,
        name: 'loose.same.example',
        status: 'verified',
        relayId: loose.id,
        fallbackRelayId: relay.id,
      },
    });
    const [quarantinedThere, quarantinedHere] = [await thread.deployable(), await local.deployable()];
    expect(quarantinedThere).toEqual(quarantinedHere);
    expect(quarantinedThere.bundle.quarantine).toEqual([
      expect.objectContaining({
        resourceType: 'domain',
        treatment: 'held',
        problems: [expect.objectContaining({ message: expect.stringMatching(/implicit TLS/) })],
      }),
    ]);
    await db.prisma.domain.deleteMany({ where: { relayId: loose.id } });
  });

  it('compiles on a thread of its own and keeps its state there between calls', async () => {
    const { tenant, relay } = await seed('kept');
    const compiled: Array<{ mode: string; threadId: number }> = [];
    const engine = threadEngine({
      info: (obj, msg) => msg === 'config compiled' && compiled.push(obj as (typeof compiled)[number]),
      error() {},
    });
    await engine.deployable();
    await db.prisma.domain.create({
      data: { tenantId: tenant.id, name: 'new.kept.example', status: 'verified', relayId: relay.id },
    });
    const changed = await engine.deployable();
    expect(changed.bundle.files.sender_relay?.content).toContain('@new.kept.example [smtp.kept.test]:587');
    expect(compiled.map((line) => line.mode)).toEqual(['full', 'incremental']);
    expect(compiled[0]!.threadId).not.toBe(threadId);
    expect(compiled[1]!.threadId).toBe(compiled[0]!.threadId);
  });

  it('close() fails the calls waiting on it; the next call starts a new thread', async () => {
    await seed('closed');
    const compiled: Array<{ mode: string; threadId: number }> = [];
    const engine = threadEngine({
      info: (obj, msg) => msg === 'config compiled' && compiled.push(obj as (typeof compiled)[number]),
      error() {},
    });
    await engine.deployable();
    const waiting = expect(engine.deployable()).rejects.toThrow(/closed/);
    await engine.close();
    await waiting;
    const again = await engine.deployable();
    expect(again.bundle.version).toMatch(/^[0-9a-f]{64}$/);
    // A new thread, with nothing kept: a full compile.
    expect(compiled.at(-1)!.mode).toBe('full');
    expect(compiled.at(-1)!.threadId).not.toBe(compiled[0]!.threadId);
  });

  it('a thread that dies fails the call with its reason, and the next call tries a new thread', async () => {
    // A key the thread refuses at start: its entry throws, so the thread dies before answering.
    const errors: string[] = [];
    const engine = threadEngine({ info() {}, error: (_obj, msg) => errors.push(msg) }, Buffer.alloc(5));
    await expect(engine.version()).rejects.toThrow(/config engine thread failed: the master key must be 32 bytes/);
    await expect(engine.version()).rejects.toThrow(/master key must be 32 bytes/);
    expect(errors).toEqual(['the config engine thread failed', 'the config engine thread failed']);
  });

  it('stops after idling, and the next call starts a new thread', async () => {
    await seed('idle');
    const lines: Array<{ msg: string; threadId?: number; mode?: string }> = [];
    const engine = threadEngine({ info: (obj, msg) => lines.push({ ...obj, msg }), error() {} }, masterKey, 300);
    await engine.deployable();
    await vi.waitFor(() => expect(lines.map((line) => line.msg)).toContain('config engine thread idle: stopped'), {
      timeout: 5_000,
    });
    await engine.version();
    const compiled = lines.filter((line) => line.msg === 'config compiled');
    expect(compiled.map((line) => line.mode)).toEqual(['full', 'full']);
    expect(compiled[1]!.threadId).not.toBe(compiled[0]!.threadId);
  });
});
