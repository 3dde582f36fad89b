/**
 * Stored config bundles: masked, kept by version as content-defined chunks in real PostgreSQL, read
 * back byte for byte; a new version stores only the chunks that changed; what remembers the
 * previous bundle (masking, chunk digests) never gives another answer than starting afresh.
 */
import { describe, expect, it } from 'vitest';
import {
  chunksOf,
  compile,
  createIncrementalCompiler,
  maskedChunksOf,
  type Snapshot,
} from '../../src/postfix/index.js';
import { createConfigBundleRepository } from '../../src/repositories/config-bundle.repository.js';
import { UnmaskedSecretError, createBundleStore } from '../../src/config-engine/index.js';
import { usePrismaDatabase } from '../helpers/database.js';
import { credential, domain, relay, snapshot, tenant, withSecret } from '../postfix/fixtures.js';

const db = usePrismaDatabase();
const store = () => createBundleStore({ prisma: db.prisma, repository: createConfigBundleRepository() });

/** 6,000 domains on two relays, each with its own credential: tables of many chunks. */
function fleet(): Snapshot {
  const domains = Array.from({ length: 6000 }, (_, i) =>
    domain(`d${i}`, 't', `d${i}.fleet.test`, { relayId: i % 2 === 0 ? 'a' : 'b' }),
  );
  return snapshot({
    tenants: [tenant('t')],
    relays: [relay('a'), relay('b')],
    domains,
    credentials: domains.map((d) => credential(`c-${d.id}`, d.relayId!, d.id, `user-${d.id}`, `secret ${d.id}:é#"`)),
  });
}

const chunkCount = () => db.prisma.configChunk.count();

describe('bundle store', () => {
  it('keeps a masked bundle by version and reads it back exactly; the next version stores only changed chunks', async () => {
    const bundles = store();
    const first = compile(fleet());
    const masked = await bundles.keep(first);
    expect(masked.files.sasl_passwd?.content).toContain('@d7.fleet.test user-d7:sha:');
    expect(masked.files.sasl_passwd?.content).not.toContain('secret d7');
    expect(await bundles.find(first.version)).toEqual(masked);
    const stored = await chunkCount();
    expect(stored).toBeGreaterThan(40);
    const chunks = await db.prisma.configChunk.findMany();
    expect(chunks.some((chunk) => chunk.content.includes('secret d'))).toBe(false);

    // One domain rotated and one disabled: a few chunks of the four tables that changed.
    const changed = fleet();
    changed.credentials = changed.credentials.map((c) => (c.id === 'c-d3000' ? withSecret(c, 'rotated secret') : c));
    changed.domains = changed.domains.map((d) => (d.id === 'd100' ? { ...d, status: 'disabled' as const } : d));
    const second = compile(changed);
    const secondMasked = await bundles.keep(second);
    expect(await bundles.find(second.version)).toEqual(secondMasked);
    expect((await chunkCount()) - stored).toBeGreaterThan(0);
    expect((await chunkCount()) - stored).toBeLessThanOrEqual(10);
    // The first version is still whole.
    expect(await bundles.find(first.version)).toEqual(masked);

    // Masking remembered from the previous bundle gives what a fresh store (another process) gives:
    // the rotation shows. Keeping a version again, here or there, adds nothing.
    expect(secondMasked).toEqual(await store().keep(second));
    expect(secondMasked.files.sasl_passwd?.content).not.toBe(masked.files.sasl_passwd?.content);
    await bundles.keep(second);
    expect(await db.prisma.configBundle.count()).toBe(2);
  });

  it("stores the incremental compiler's tables by their own chunks, masked, without joining or cutting them", async () => {
    const bundles = store();
    const compiler = createIncrementalCompiler();
    // The loader's way: a row that did not change is the same object (the compiler goes by identity).
    const base = fleet();
    const rotated = (n: number): Snapshot => ({
      ...base,
      credentials: base.credentials.map((c) => (c.id === `c-d${n}` ? withSecret(c, `rotated ${n}`) : c)),
      domains: base.domains.map((d) => (d.id === `d${n + 1}` ? { ...d, status: 'disabled' as const } : d)),
    });
    compiler.compile(base);
    const second = compiler.compile(rotated(100));
    const third = compiler.compile(rotated(4000));
    expect(compiler.lastMode).toBe('incremental');
    expect(chunksOf(third.files.sender_relay!)).toBeDefined();
    expect(maskedChunksOf(third.files.sasl_passwd!)).toBeDefined();

    await bundles.keep(second);
    const stored = await chunkCount();
    // Every chunks array of the third bundle records a join (the text of a chunked file is joined on first read).
    const joined: string[] = [];
    for (const [name, file] of Object.entries(third.files)) {
      for (const chunks of [chunksOf(file), maskedChunksOf(file)]) {
        if (chunks === undefined) continue;
        Object.defineProperty(chunks, 'join', {
          value: (separator?: string) => (joined.push(name), Array.prototype.join.call(chunks, separator)),
        });
      }
    }
    const masked = await bundles.keep(third);
    expect(joined).toEqual([]);
    // Two tables changed by two lines each, and sasl_passwd by a line: a few chunks, not the tables again.
    expect((await chunkCount()) - stored).toBeGreaterThan(0);
    expect((await chunkCount()) - stored).toBeLessThanOrEqual(10);
    // Read back, it is what a full compile of the same rows shows; no secret was stored.
    const full = await store().keep(compile(rotated(4000)));
    expect(await bundles.find(third.version)).toEqual(full);
    expect(masked).toEqual(full);
    const chunks = await db.prisma.configChunk.findMany();
    expect(chunks.some((chunk) => /secret d|rotated /.test(chunk.content))).toBe(false);
  });

  it('prunes bundles past the retention, except the newest and those a node runs or is being given, and the chunks only they used', async () => {
    await db.prisma.configBundle.deleteMany();
    await db.prisma.configChunk.deleteMany();
    const bundles = createBundleStore({
      prisma: db.prisma,
      repository: createConfigBundleRepository(),
      retentionSeconds: 30 * 86_400,
    });
    const base = fleet();
    // Five versions, each with one more domain disabled: most chunks shared, a few each its own.
    const compiled = [];
    const versions = [];
    for (let i = 0; i < 5; i++) {
      const next = {
        ...base,
        domains: base.domains.map((d, j) =>
          j < i * 1000 && j % 1000 === 0
            ? { ...d, status: 'disabled' as const }
            : j === 5000 + i
              ? { ...d, status: 'disabled' as const }
              : d,
        ),
      };
      compiled.push(compile(next));
      versions.push(await bundles.keep(compiled[i]!));
    }
    const [old, live, deploying, newest, recent] = versions.map((v) => v.version) as [
      string,
      string,
      string,
      string,
      string,
    ];
    const daysAgo = (days: number) => new Date(Date.now() - days * 86_400_000);
    for (const [version, age] of [
      [old, 40],
      [live, 39],
      [deploying, 38],
      [newest, 31],
      [recent, 1],
    ] as const) {
      await db.prisma.configBundle.update({ where: { version }, data: { createdAt: daysAgo(age) } });
    }
    // `recent` is the newest by time; `newest` is only the newest of the old ones, so it goes.
    await db.prisma.node.create({ data: { name: 'n1', sshHost: '127.0.0.1', hostKey: 'SHA256:x', liveVersion: live } });
    await db.prisma.deployment.create({ data: { version: deploying, reason: 'change', state: 'running' } });
    const chunksBefore = await chunkCount();

    expect(await bundles.prune()).toEqual({ bundles: 2, chunks: expect.any(Number) });
    expect((await db.prisma.configBundle.findMany({ orderBy: { createdAt: 'asc' } })).map((b) => b.version)).toEqual([
      live,
      deploying,
      recent,
    ]);
    const removed = chunksBefore - (await chunkCount());
    expect(removed).toBeGreaterThan(0);
    expect(removed).toBeLessThan(chunksBefore / 4);
    for (const kept of [versions[1]!, versions[2]!, versions[4]!])
      expect(await bundles.find(kept.version)).toEqual(kept);
    expect(await bundles.find(old)).toBeNull();

    // Saved again after the prune, by the same store: whole again (no memory of chunks that were deleted).
    await bundles.keep(compiled[0]!);
    expect(await bundles.find(old)).toEqual(versions[0]);
  });

  it('stores and shows secret files only as the compiler masked them, whatever characters a secret holds', async () => {
    const bundles = store();
    // U+2028/2029 end a line for a regular expression's `.`: masking by pattern once let these through.
    const secrets = ['line\u2028separator', 'para\u2029graph', 'sp ace:colon#hash\\"q\'', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀'];
    const rows = snapshot({
      tenants: [tenant('t')],
      relays: [relay('a'), relay('b', { port: 2525 })],
      domains: [
        domain('d0', 't', 'd0.test', { relayId: 'a' }),
        domain('d1', 't', 'd1.test', { relayId: 'a', fallbackRelayId: 'b' }),
      ],
      credentials: [
        credential('c0', 'a', 'd0', 'u0', secrets[0]),
        credential('c1', 'a', null, 'u1', secrets[1]),
        credential('c2', 'b', null, 'u2', secrets[2]),
        credential('c3', 'a', 'd1', 'u3', secrets[3]),
      ],
    });
    const compiled = compile(rows);
    const secretFiles = Object.entries(compiled.files).filter(([, f]) => f.secret);
    expect(secretFiles.length).toBeGreaterThanOrEqual(2);
    expect(secretFiles.map(([, f]) => f.content).join('')).toContain(secrets[0]);
    const masked = await bundles.keep(compiled);
    expect(masked.files.sasl_passwd?.content).toBe(`@d0.test u0:sha:${rows.credentials[0]!.fingerprint}\n`);
    const stored = [
      ...(await db.prisma.configChunk.findMany()).map((chunk) => chunk.content),
      ...(await db.prisma.configBundle.findMany()).map((bundle) => JSON.stringify(bundle.bundle)),
      JSON.stringify(masked),
      JSON.stringify(await bundles.find(compiled.version)),
    ].join('\n');
    for (const secret of secrets) expect(stored).not.toContain(secret);
  });

  it('refuses to store a secret file that comes without its masked form', async () => {
    const bundles = store();
    const compiled = compile(fleet());
    const { masked: _masked, ...unmasked } = compiled.files.sasl_passwd!;
    const before = await db.prisma.configBundle.count();
    await expect(
      bundles.keep({ ...compiled, version: 'e'.repeat(64), files: { ...compiled.files, sasl_passwd: unmasked } }),
    ).rejects.toThrow(UnmaskedSecretError);
    expect(await db.prisma.configBundle.count()).toBe(before);
  });

  it('shows a stored secret line that is not in the masked form as hidden, never as it was stored', async () => {
    const bundles = store();
    const compiled = compile(
      snapshot({
        tenants: [tenant('t')],
        relays: [relay('a')],
        domains: [domain('d', 't', 'legacy.test', { relayId: 'a' })],
        credentials: [credential('c', 'a', 'd')],
      }),
    );
    const kept = await bundles.keep(compiled);
    // What an earlier version stored for a secret its pattern could not mask.
    const manifest = (await db.prisma.configBundle.findUniqueOrThrow({ where: { version: compiled.version } }))
      .bundle as { files: Record<string, { chunks: string[] }> };
    const [digest] = manifest.files.sasl_passwd!.chunks;
    await db.prisma.configChunk.update({
      where: { digest: digest! },
      data: { content: '@legacy.test user-c:leaked\u2028secret\n' },
    });
    const found = await bundles.find(compiled.version);
    expect(found?.files.sasl_passwd?.content).toBe(
      '@legacy.test (hidden: this line was stored unmasked by an earlier version)\n',
    );
    expect(found?.files.sender_relay).toEqual(kept.files.sender_relay);
  });

  it('reads bundles stored before chunking (files inline), and refuses one whose chunks are missing', async () => {
    const bundles = store();
    // Kept, then its row replaced by one in the earlier form: the masked bundle with its files inline.
    const legacy = await bundles.keep(
      compile(
        snapshot({
          tenants: [tenant('t')],
          relays: [relay('a')],
          domains: [domain('d', 't', 'old.test', { relayId: 'a' })],
        }),
      ),
    );
    await db.prisma.configBundle.delete({ where: { version: legacy.version } });
    await db.prisma.configBundle.create({ data: { version: legacy.version, bundle: legacy as never } });
    expect(await bundles.find(legacy.version)).toEqual(legacy);
    expect(await bundles.find('0'.repeat(64))).toBeNull();

    const broken = {
      ...legacy,
      version: 'b'.repeat(64),
      files: { sender_relay: { mode: 0o644, secret: false, mapType: 'hash', chunks: ['c'.repeat(64)] } },
    };
    await db.prisma.configBundle.create({ data: { version: broken.version, bundle: broken as never } });
    await expect(bundles.find(broken.version)).rejects.toThrow(/chunk c{64} of sender_relay is missing/);
  });
});
