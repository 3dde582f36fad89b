/**
 * The delta between two bundles, computed in memory: which files are linked, which tables get
 * their lines merged on the node, which are sent whole. Applying a delta here the way the node
 * does (remove lines, merge-sort the added ones) must give the next version's bytes exactly.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bundleDelta, type TableDelta } from '../../src/deploy/bundle-delta.js';
import { buildBundle, type Route } from './bundles.js';
import { chunkedFile, type Bundle } from '../../src/postfix/index.js';

const route = (domain: string, user = `u-${domain}`): Route => ({
  domain,
  nexthop: '[127.0.0.1]:2525',
  user,
  password: `pw ${domain}`,
});

/** What the node's `comm -23 base removed | LC_ALL=C sort -m - added` produces. */
function applyLines(base: string, t: TableDelta): string {
  const removed = new Set(t.removed);
  const kept = base
    .slice(0, -1)
    .split('\n')
    .filter((l) => !removed.has(l));
  const merged = [...kept, ...t.added].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return `${merged.join('\n')}\n`;
}

describe('bundleDelta', () => {
  it('copies unchanged files and merges the changed lines of changed tables', () => {
    const base = buildBundle([route('a.test'), route('b.test'), route('c.test')]);
    const next = buildBundle([route('a.test'), route('b.test', 'rotated'), route('d.test')]);
    const delta = bundleDelta(base, next, { sendWholeUpTo: 0 })!;
    expect(delta.base).toBe(base.version);
    expect(delta.unchanged).toEqual(['tls_policy']);
    expect(delta.whole).toEqual([]);
    expect(delta.tables.sasl_passwd).toMatchObject({
      removed: ['@b.test u-b.test:pw b.test', '@c.test u-c.test:pw c.test'],
      added: ['@b.test rotated:pw b.test', '@d.test u-d.test:pw d.test'],
      deleted: ['@c.test'],
    });
    expect(delta.tables.sasl_passwd).toMatchObject({ sent: false, splice: expect.any(Array) });
    expect(Object.keys(delta.nextDigests).sort()).toEqual(['sasl_passwd', 'sender_relay']);
    for (const [name, t] of Object.entries(delta.tables))
      expect(applyLines(base.files[name]!.content, t), name).toBe(next.files[name]!.content);
  });

  it("computes the same delta from chunked files (the engine thread's), without joining their texts", () => {
    const base = buildBundle([route('a.test'), route('b.test'), route('c.test'), route('e.test')]);
    const next = buildBundle([route('a.test'), route('b.test', 'rotated'), route('d.test'), route('e.test')]);
    const joined: string[] = [];
    /** Each file as chunks of two lines whose join() is recorded. */
    const chunked = (bundle: Bundle): Bundle => ({
      ...bundle,
      files: Object.fromEntries(
        Object.entries(bundle.files).map(([name, file]) => {
          const lines = file.content.split(/(?<=\n)/);
          const chunks = Array.from({ length: Math.ceil(lines.length / 2) }, (_, i) =>
            lines.slice(2 * i, 2 * i + 2).join(''),
          );
          const join = (sep?: string) => (joined.push(name), Array.prototype.join.call(chunks, sep));
          return [
            name,
            chunkedFile(Object.assign(chunks, { join }), {
              mode: file.mode,
              secret: file.secret,
              mapType: file.mapType,
            }),
          ];
        }),
      ),
    });
    const expected = bundleDelta(base, next, { sendWholeUpTo: 0 })!;
    const fromChunks = bundleDelta(chunked(base), chunked(next), { sendWholeUpTo: 0 })!;
    expect(fromChunks).toEqual(expected);
    expect(Object.keys(fromChunks.tables).sort()).toEqual(['sasl_passwd', 'sender_relay']);
    expect(joined).toEqual([]);
  });

  it('compares chunked tables cut at other places piece by piece, without joining them', () => {
    const lines = ['@a.test [h]:25\n', '@b.test [h]:25\n', '@c.test [h]:25\n', '@d.test [h]:25\n'];
    const joined: string[] = [];
    const cut = (version: string, parts: string[]): Bundle => {
      const chunks = Object.assign([...parts], {
        join: (sep?: string) => (joined.push(version), Array.prototype.join.call(parts, sep)),
      });
      return {
        ...buildBundle([route('a.test')]),
        version: version.padStart(64, '0'),
        files: { sender_relay: chunkedFile(chunks, { mode: 0o644, secret: false, mapType: 'hash' }) },
      };
    };
    const base = cut('1', [lines[0]! + lines[1]!, lines[2]! + lines[3]!]);
    const sameText = cut('2', [lines[0]!, lines[1]! + lines[2]!, lines[3]!]);
    // As long as the base, one character changed, cut at yet other places.
    const changed = cut('3', [lines[0]! + lines[1]!.replace('25', '26'), lines[2]!, lines[3]!]);
    expect(bundleDelta(base, sameText)).toMatchObject({ unchanged: ['sender_relay'], tables: {} });
    expect(bundleDelta(base, changed)?.tables.sender_relay).toMatchObject({
      removed: ['@b.test [h]:25'],
      added: ['@b.test [h]:26'],
    });
    expect(joined).toEqual([]);
  });

  it('sends small changed tables whole, still saying which keys changed (the probes ask them)', () => {
    const base = buildBundle([route('a.test'), route('b.test'), route('c.test')]);
    const next = buildBundle([route('a.test'), route('b.test', 'rotated'), route('d.test')]);
    const small = bundleDelta(base, next)!;
    expect(small.tables.sasl_passwd).toMatchObject({
      sent: true,
      splice: null,
      added: ['@b.test rotated:pw b.test', '@d.test u-d.test:pw d.test'],
      deleted: ['@c.test'],
    });
    expect(small.nextDigests).toEqual({});
    // The size decides, per table: sender_relay's lines are the shorter ones.
    const threshold = next.files.sender_relay!.content.length;
    const mixed = bundleDelta(base, next, { sendWholeUpTo: threshold })!;
    expect(mixed.tables.sender_relay?.sent).toBe(true);
    expect(mixed.tables.sasl_passwd?.sent).toBe(false);
    expect(Object.keys(mixed.nextDigests)).toEqual(['sasl_passwd']);
    expect(mixed).not.toBe(small);
    expect(bundleDelta(base, next)).toBe(small);
  });

  it('sends whole what it cannot merge: new files, another mode, unsorted or commented tables', () => {
    const base = buildBundle([route('a.test'), route('b.test')]);
    const next = buildBundle([route('a.test'), route('b.test')], {
      files: {
        extra: { content: 'x y\n', mode: 0o644, secret: false, mapType: 'hash' },
        tls_policy: { content: '# a comment\n[127.0.0.1]:2525 encrypt\n', mode: 0o644, secret: false, mapType: 'hash' },
      },
      saslPasswd: '@b.test u:p\n@a.test u:p\n',
    });
    const delta = bundleDelta(base, next)!;
    expect(delta.whole.sort()).toEqual(['extra', 'sasl_passwd', 'tls_policy']);
    expect(delta.unchanged).toEqual(['sender_relay']);
    expect(Object.keys(delta.baseDigests)).toEqual(['sender_relay']);
  });

  it('gives up when nothing is reusable', () => {
    const base = buildBundle([route('a.test')]);
    expect(bundleDelta(base, buildBundle([route('z.test')], { files: {} }))).toEqual(
      expect.objectContaining({ unchanged: ['tls_policy'] }),
    );
    const other = buildBundle([route('x.test')], { saslPasswd: '' });
    const none = bundleDelta({ ...base, files: {} }, other);
    expect(none).toBeNull();
  });

  it('rebuilds every changed table exactly, for random changes of many domains', () => {
    // Sorted, as the compiler writes its tables: only those can be merged.
    const domains = fc
      .uniqueArray(fc.stringMatching(/^[a-z]{1,6}\.(test|example)$/), { maxLength: 60 })
      .map((list) => [...list].sort());
    let merged = 0;
    fc.assert(
      fc.property(domains, domains, fc.boolean(), (before, after, rotate) => {
        const base = buildBundle(before.map((d) => route(d)));
        const next = buildBundle(after.map((d, i) => route(d, rotate && i % 3 === 0 ? 'rotated' : undefined)));
        const delta = bundleDelta(base, next, { sendWholeUpTo: 0 });
        if (delta === null) return;
        merged += Object.keys(delta.tables).length;
        for (const [name, t] of Object.entries(delta.tables)) {
          expect(applyLines(base.files[name]!.content, t)).toBe(next.files[name]!.content);
          const keys = new Set(t.added.map((l) => l.split(' ')[0]));
          for (const k of t.deleted) expect(keys.has(k)).toBe(false);
        }
        for (const name of delta.unchanged) expect(base.files[name]!.content).toBe(next.files[name]!.content);
      }),
      { numRuns: 200 },
    );
    expect(merged).toBeGreaterThan(50);
  });
});
