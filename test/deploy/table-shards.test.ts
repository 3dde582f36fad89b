/**
 * Large tables laid out as shards for the nodes (src/deploy/table-shards.ts): every line in exactly
 * one shard, each shard in the compiler's sorted form, main.cf naming the union where it named the
 * table, and a change of one key changing one shard of each table it touches (a relay's first limit
 * none of sender_transport's).
 */
import { describe, expect, it } from 'vitest';
import { checkBundle } from '../../src/deploy/bundle-checks.js';
import { bundleDelta } from '../../src/deploy/bundle-delta.js';
import { expectedDigests } from '../../src/deploy/live-files.js';
import { fileView } from '../../src/deploy/table-view.js';
import { SHARD_LINES, nodeBundle, shardCount, shardedTables } from '../../src/deploy/table-shards.js';
import { chunkedFile, compile, type Bundle } from '../../src/postfix/index.js';
import { credential, domain, relay, snapshot, tenant } from '../postfix/fixtures.js';
import { buildBundle, service, type Route } from './bundles.js';

const route = (domain: string): Route => ({
  domain,
  nexthop: '[127.0.0.1]:2525',
  user: `u-${domain}`,
  password: `pw ${domain}`,
});
const domains = (n: number, extra: string[] = []) =>
  [...Array.from({ length: n }, (_, i) => `d${String(i).padStart(4, '0')}.test`), ...extra].sort();
const bundleOf = (names: string[]) => buildBundle(names.map(route));
const lines = (text: string) => text.split('\n').filter((l) => l !== '');
const keyOf = (line: string) => line.slice(0, line.indexOf(' ')).toLowerCase();

/** 200 domains: sender_relay ≈ 6,000 characters, sasl_passwd ≈ 9,000; tls_policy one line. */
const SHARD_SIZE = 1000;

describe('nodeBundle', () => {
  it('puts every line of a large table in exactly one shard, each sorted, by its key alone', () => {
    const bundle = bundleOf(domains(200));
    const laid = nodeBundle(bundle, SHARD_SIZE);
    expect(laid.version).toBe(bundle.version);
    const tables = shardedTables(laid);
    expect([...tables.keys()].sort()).toEqual(['sasl_passwd', 'sender_relay']);
    for (const [name, { file, shards }] of tables) {
      expect(shards).toHaveLength(shardCount(file.content.length, SHARD_SIZE));
      expect(laid.files[name]).toBeUndefined();
      const shardLines = shards.map((s) => lines(laid.files[s]!.content));
      expect(shardLines.flat().sort()).toEqual(lines(file.content).sort());
      const shardOfKey = new Map<string, number>();
      shardLines.forEach((ls, i) => {
        expect(ls.length).toBeGreaterThan(0);
        expect(fileView(laid.files[shards[i]!]!).simple).toBe(true);
        for (const l of ls) {
          expect(shardOfKey.has(keyOf(l))).toBe(false);
          shardOfKey.set(keyOf(l), i);
        }
        expect(laid.files[shards[i]!]).toMatchObject({ mode: file.mode, secret: file.secret, mapType: 'hash' });
      });
      // The same key is in the same shard in another bundle (here sasl_passwd and sender_relay share keys).
      const other = [...tables.values()].find((t) => t.file !== file)!;
      other.shards.forEach((s, i) => {
        for (const l of lines(laid.files[s]!.content)) expect(shardOfKey.get(keyOf(l))).toBe(i);
      });
    }
    expect(laid.files.tls_policy).toBe(bundle.files.tls_policy);
    expect(checkBundle(laid)).toEqual([]);
  });

  it('names the union of the shards in main.cf where the table was named', () => {
    const laid = nodeBundle(bundleOf(domains(200)), SHARD_SIZE);
    const { shards } = shardedTables(laid).get('sender_relay')!;
    expect(laid.mainCf.sender_dependent_relayhost_maps).toBe(
      `unionmap:{${shards.map((s) => `hash:{{dir}}/${s}`).join(',')}}`,
    );
    expect(laid.mainCf.smtp_tls_policy_maps).toBe('hash:{{dir}}/tls_policy');
  });

  it('leaves small tables, other forms and tables master.cf names as they are', () => {
    const small = bundleOf(domains(3));
    expect(nodeBundle(small, SHARD_SIZE)).toBe(small);
    const big = bundleOf(domains(200));
    const named = {
      ...big,
      masterCf: [service('rp_x', 'smtp', { smtp_sasl_password_maps: 'hash:{{dir}}/sasl_passwd' })],
      files: {
        ...big.files,
        // Unsorted: not the compiler's form.
        sender_relay: {
          ...big.files.sender_relay!,
          content: lines(big.files.sender_relay!.content).reverse().join('\n') + '\n',
        },
      },
    };
    expect(nodeBundle(named, SHARD_SIZE)).toBe(named);
  });

  it('is done once per bundle: laying out a laid-out bundle gives it back', () => {
    const bundle = bundleOf(domains(200));
    const laid = nodeBundle(bundle, SHARD_SIZE);
    expect(nodeBundle(bundle, SHARD_SIZE)).toBe(laid);
    expect(nodeBundle(laid, SHARD_SIZE)).toBe(laid);
    expect(nodeBundle(laid)).toBe(laid);
  });

  it('changes one shard per table for one domain more: the others are the same files, the changed ones sent whole', () => {
    const before = nodeBundle(bundleOf(domains(200)), SHARD_SIZE);
    const after = nodeBundle(bundleOf(domains(200, ['new.test'])), SHARD_SIZE);
    const changed = Object.keys(after.files).filter(
      (name) => after.files[name]!.content !== before.files[name]?.content,
    );
    expect(changed.map((name) => name.replace(/\.\d+$/, '')).sort()).toEqual(['sasl_passwd', 'sender_relay']);
    // The unchanged shards are the same objects: nothing is hashed or compared again.
    for (const { shards } of shardedTables(after).values())
      for (const name of shards) if (!changed.includes(name)) expect(after.files[name]).toBe(before.files[name]);
    for (const name of changed) expect(after.files[name]!.content).toContain('@new.test ');
    const delta = bundleDelta(before, after)!;
    expect(Object.keys(delta.tables).sort()).toEqual(changed.sort());
    for (const t of Object.values(delta.tables))
      expect(t).toMatchObject({ sent: true, added: [expect.stringMatching(/^@new\.test /)] });
    expect(delta.unchanged).toHaveLength(Object.keys(after.files).length - 2);
  });

  it('hands on a shard of the last bundle only for a table of the same kind', () => {
    const bundle = bundleOf(domains(200));
    const secret = nodeBundle(bundle, SHARD_SIZE);
    const relay = bundle.files.sender_relay!;
    // The same text, now a secret table: its shards must be 0600 and secret, not the last ones.
    const changed: Bundle = {
      ...bundle,
      files: { ...bundle.files, sender_relay: { ...relay, mode: 0o600, secret: true } },
    };
    const laid = nodeBundle(changed, SHARD_SIZE);
    for (const name of shardedTables(laid).get('sender_relay')!.shards) {
      expect(laid.files[name]).toMatchObject({ mode: 0o600, secret: true });
      expect(laid.files[name]).not.toBe(secret.files[name]);
    }
  });

  it('cuts the same shards from a table made of chunks and from its text', () => {
    const bundle = bundleOf(domains(200));
    const text = bundle.files.sender_relay!;
    const chunks = lines(text.content).map((l) => `${l}\n`);
    const chunked: Bundle = {
      ...bundle,
      files: {
        ...bundle.files,
        sender_relay: chunkedFile([chunks.slice(0, 77).join(''), chunks.slice(77).join('')], text),
      },
    };
    const a = nodeBundle(bundle, SHARD_SIZE);
    const b = nodeBundle(chunked, SHARD_SIZE);
    for (const name of shardedTables(a).get('sender_relay')!.shards)
      expect(b.files[name]!.content).toBe(a.files[name]!.content);
  });

  it('expects the table’s own dump digest of its shards together', () => {
    const bundle = bundleOf(domains(200));
    const laid = nodeBundle(bundle, SHARD_SIZE);
    const whole = expectedDigests(bundle);
    const sharded = expectedDigests(laid);
    expect(sharded.get('sender_relay db')).toBe(whole.get('sender_relay db'));
    expect(sharded.get('sasl_passwd db')).toBe(whole.get('sasl_passwd db'));
    expect(sharded.has('sender_relay source')).toBe(false);
    expect(sharded.has('sender_relay.0 source')).toBe(true);
  });
});

describe('a table of many short lines', () => {
  it('is cut by its lines too: at most SHARD_LINES per shard on average, whatever its size in characters', () => {
    const lineCount = 3 * SHARD_LINES;
    const short = buildBundle([], {
      files: {
        sender_access: {
          content: Array.from({ length: lineCount }, (_, i) => `d${String(i).padStart(6, '0')}.test OK\n`).join(''),
          mode: 0o644,
          secret: false,
          mapType: 'hash',
        },
      },
      mainCf: { smtpd_sender_restrictions: 'check_sender_access hash:{{dir}}/sender_access' },
    });
    // Far under the size in characters: by size alone it would go whole.
    const laid = nodeBundle(short, 100 * 1024 * 1024);
    const shards = shardedTables(laid).get('sender_access')!.shards;
    expect(shards).toHaveLength(4);
    expect(shards.map((s) => lines(laid.files[s]!.content).length).reduce((a, b) => a + b, 0)).toBe(lineCount);
    expect(laid.mainCf.smtpd_sender_restrictions).toBe(
      `check_sender_access unionmap:{${shards.map((s) => `hash:{{dir}}/${s}`).join(',')}}`,
    );
  });
});

describe('shardCount', () => {
  it('is 1 up to the size, then the power of two that keeps shards under it on average', () => {
    expect([1000, 1001, 2000, 2001, 4000, 4001].map((n) => shardCount(n, 1000))).toEqual([1, 2, 2, 4, 4, 8]);
    expect(shardCount(1e12, 1000)).toBe(256);
  });
});

describe("a relay's first limit, laid out for the nodes", () => {
  const LIMIT = { concurrency: 2, rateDelaySeconds: 0, recipientsPerMessage: null, connectionReuseSeconds: null };
  const fleet = (limited: boolean) =>
    compile(
      snapshot({
        tenants: [tenant('t')],
        relays: [relay('a', { limits: limited ? LIMIT : null }), relay('b')],
        domains: domains(400).map((name, i) => domain(`d${i}`, 't', name, { relayId: i % 2 === 0 ? 'a' : 'b' })),
        credentials: domains(400).map((_, i) => credential(`c${i}`, i % 2 === 0 ? 'a' : 'b', `d${i}`)),
      }),
    );

  it('changes sender_service and the config, not one shard of sender_transport', () => {
    const base = nodeBundle(fleet(false), SHARD_SIZE);
    const next = nodeBundle(fleet(true), SHARD_SIZE);
    const transport = shardedTables(next).get('sender_transport')!.shards;
    expect(transport.length).toBeGreaterThan(1);
    // The 200 domains of relay a, in a table of their own (here cut in shards too: SHARD_SIZE is tiny).
    expect(lines(shardedTables(next).get('sender_service')!.file.content)).toHaveLength(200);
    const delta = bundleDelta(base, next)!;
    const touched = [...Object.keys(delta.tables), ...delta.whole];
    expect(touched.some((name) => name.startsWith('sender_service'))).toBe(true);
    expect(touched.filter((name) => name.startsWith('sender_transport'))).toEqual([]);
    for (const shard of transport) expect(delta.unchanged).toContain(shard);
  });
});
