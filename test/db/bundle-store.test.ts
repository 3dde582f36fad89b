/**
 * Stored config bundles: masked, kept by version as content-defined chunks in real PostgreSQL, read
 * back byte for byte; a new version stores only the chunks that changed; what remembers the
 * previous bundle (masking, chunk digests) never gives another answer than starting afresh.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrismaClient } from '../../src/db/prisma.js';
import type { PrismaClient } from '../../src/generated/prisma/client.js';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { compile, type Snapshot } from '../../src/postfix/index.js';
import { createConfigBundleRepository } from '../../src/repositories/config-bundle.repository.js';
import { createBundleStore } from '../../src/services/bundle-store.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { credential, domain, relay, snapshot, tenant } from '../postfix/fixtures.js';

let database: TestDatabase;
let prisma: PrismaClient;
const secretBox = createSecretBox(randomBytes(32));
const store = () => createBundleStore({ prisma, secretBox, repository: createConfigBundleRepository() });

beforeAll(async () => {
  database = await createTestDatabase();
  prisma = createPrismaClient(database.url, { poolSize: 2 });
});
afterAll(async () => {
  await prisma?.$disconnect();
  await database?.drop();
});

/** 6,000 domains on two relays, each with its own credential: tables of many chunks. */
function fleet(): Snapshot {
  const domains = Array.from({ length: 6000 }, (_, i) => domain(`d${i}`, 't', `d${i}.fleet.test`, { relayId: i % 2 === 0 ? 'a' : 'b' }));
  return snapshot({
    tenants: [tenant('t')],
    relays: [relay('a'), relay('b')],
    domains,
    credentials: domains.map((d) => credential(`c-${d.id}`, d.relayId!, d.id, `user-${d.id}`, `secret ${d.id}:é#"`)),
  });
}

const chunkCount = () => prisma.configChunk.count();

describe('bundle store', () => {
  it('keeps a masked bundle by version and reads it back exactly; the next version stores only changed chunks', async () => {
    const bundles = store();
    const first = compile(fleet());
    const masked = bundles.mask(first);
    expect(masked.files.sasl_passwd?.content).toContain('@d7.fleet.test user-d7:sha:');
    expect(masked.files.sasl_passwd?.content).not.toContain('secret d7');
    await bundles.save(masked);
    expect(await bundles.find(first.version)).toEqual(masked);
    const stored = await chunkCount();
    expect(stored).toBeGreaterThan(40);
    const chunks = await prisma.configChunk.findMany();
    expect(chunks.some((chunk) => chunk.content.includes('secret d'))).toBe(false);

    // One domain rotated and one disabled: a few chunks of the four tables that changed.
    const changed = fleet();
    changed.credentials = changed.credentials.map((c) => (c.id === 'c-d3000' ? { ...c, secret: 'rotated secret' } : c));
    changed.domains = changed.domains.map((d) => (d.id === 'd100' ? { ...d, status: 'disabled' as const } : d));
    const second = compile(changed);
    const secondMasked = bundles.mask(second);
    await bundles.save(secondMasked);
    expect(await bundles.find(second.version)).toEqual(secondMasked);
    expect((await chunkCount()) - stored).toBeGreaterThan(0);
    expect((await chunkCount()) - stored).toBeLessThanOrEqual(10);
    // The first version is still whole.
    expect(await bundles.find(first.version)).toEqual(masked);

    // Masking remembered from the previous bundle gives what a fresh store gives: the rotation shows.
    expect(secondMasked).toEqual(store().mask(second));
    expect(secondMasked.files.sasl_passwd?.content).not.toBe(masked.files.sasl_passwd?.content);
    // Saving again, in this process or another, adds nothing.
    await bundles.save(secondMasked);
    await store().save(secondMasked);
    expect(await prisma.configBundle.count()).toBe(2);
  });

  it('reads bundles stored before chunking (files inline), and refuses one whose chunks are missing', async () => {
    const bundles = store();
    const legacy = bundles.mask(compile(snapshot({ tenants: [tenant('t')], relays: [relay('a')], domains: [domain('d', 't', 'old.test', { relayId: 'a' })] })));
    await prisma.configBundle.create({ data: { version: legacy.version, bundle: legacy as never } });
    expect(await bundles.find(legacy.version)).toEqual(legacy);
    expect(await bundles.find('0'.repeat(64))).toBeNull();

    const broken = { ...legacy, version: 'b'.repeat(64), files: { sender_relay: { mode: 0o644, secret: false, mapType: 'hash', chunks: ['c'.repeat(64)] } } };
    await prisma.configBundle.create({ data: { version: broken.version, bundle: broken as never } });
    await expect(bundles.find(broken.version)).rejects.toThrow(/chunk c{64} of sender_relay is missing/);
  });
});
