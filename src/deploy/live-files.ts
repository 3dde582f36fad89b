/**
 * Cheap drift check of a release's files against the bundle, in one round trip: sha256 of every
 * source file, and for hash maps the sha256 of `postmap -s` (what Postfix actually answers, sorted),
 * compared with digests computed here from the bundle. It catches a hand-edited source, a .db
 * rebuilt from an edited source, and a missing file. Only digests cross the wire: never contents.
 */
import { createHash } from 'node:crypto';
import { chunkedDigest, hashMaps, type Bundle, type BundleFile } from './bundle.js';
import { memoByContent } from './content-cache.js';
import { parseMapSource } from './map-source.js';
import { fileView } from './table-view.js';
import { sh, type NodeConnection } from '../ssh/index.js';
import { nodeBundle, shardedTables } from './table-shards.js';

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** `postmap -s` prints `key<TAB>value` per entry in hash order; `LC_ALL=C sort` orders bytes. */
function dumpDigest(content: string): string {
  const lines = parseMapSource(content).entries.map((e) => Buffer.from(`${e.key}\t${e.value}\n`, 'utf8'));
  lines.sort(Buffer.compare);
  return sha256(Buffer.concat(lines));
}

const textDigest = memoByContent((content: string) => sha256(content));
const parsedDumpDigest = memoByContent(dumpDigest);
/** SHA-256 (hex) of a table's text, once per text (consecutive bundles share most tables); a chunked file's without joining it. */
export function sourceDigest(file: BundleFile): string {
  return chunkedDigest(file) ?? textDigest(file.content);
}

/** The digest of what `postmap -s | LC_ALL=C sort` prints for the table. */
function tableDumpDigest(file: BundleFile): string {
  const view = fileView(file);
  return view.simple ? view.dumpDigest() : parsedDumpDigest(file.content);
}

/**
 * The tables whose `.db` is dumped and digested among `names`: each a file, or a sharded table
 * (table-shards.ts) when all its shards are asked, dumped shard by shard into one sorted digest
 * that must equal the table's own: the union answers exactly what the table holds.
 */
function dumpedTables(
  bundle: Bundle,
  names: ReadonlySet<string>,
): Array<{ name: string; file: BundleFile; maps: string[] }> {
  const tables: Array<{ name: string; file: BundleFile; maps: string[] }> = [];
  const inTables = new Set<string>();
  for (const [name, { file, shards }] of shardedTables(bundle)) {
    if (!shards.every((shard) => names.has(shard))) continue;
    tables.push({ name, file, maps: shards });
    for (const shard of shards) inTables.add(shard);
  }
  for (const [name, file] of hashMaps(bundle)) {
    if (names.has(name) && !inTables.has(name)) tables.push({ name, file, maps: [name] });
  }
  return tables.sort((a, b) => (a.name < b.name ? -1 : 1));
}

const namesOf = (bundle: Bundle, only: readonly string[] | undefined) => new Set(only ?? Object.keys(bundle.files));

/** `name source <hex>` and `name db <hex>` lines the node must print for these files of the bundle (default all). */
export function expectedDigests(bundle: Bundle, only?: readonly string[]): Map<string, string> {
  const names = namesOf(bundle, only);
  const out = new Map<string, string>();
  for (const name of [...names].sort()) out.set(`${name} source`, sourceDigest(bundle.files[name]!));
  for (const { name, file } of dumpedTables(bundle, names)) out.set(`${name} db`, tableDumpDigest(file));
  return out;
}

/**
 * Prints `<hex>  <name>` for every source (one sha256sum for all; a missing file only goes to
 * stderr) and `<name> db <hex>  -` for every table whose .db exists, run in the release dir.
 */
export function digestScript(bundle: Bundle, only?: readonly string[]): string {
  const names = namesOf(bundle, only);
  if (names.size === 0) return 'true';
  const lines = [
    `sha256sum -- ${[...names]
      .sort()
      .map((n) => sh(n))
      .join(' ')}`,
  ];
  for (const { name, maps } of dumpedTables(bundle, names)) {
    // postmap -s dumps the first table it is given only: one per shard.
    const dump =
      maps.length === 1
        ? sh('postmap', '-s', `hash:${maps[0]!}`)
        : `for rp_map in ${maps.map((m) => sh(`hash:${m}`)).join(' ')}; do postmap -s "$rp_map" || exit 1; done`;
    lines.push(
      `test -f ${sh(`${maps[0]!}.db`)} && { printf '%s db ' ${sh(name)}; { ${dump}; } | LC_ALL=C sort | sha256sum; }`,
    );
  }
  // Each line may fail (a missing file): the script as a whole must not.
  return `${lines.map((l) => `{ ${l}; } 2>/dev/null`).join('\n')}\ntrue`;
}

/** Names of the bundle files whose source or table content differs, from digestScript's output. */
export function driftFromDigests(stdout: string, bundle: Bundle, only?: readonly string[]): string[] {
  const seen = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const source = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line);
    if (source !== null) seen.set(`${source[2]!} source`, source[1]!);
    const db = /^(\S+ db) ([0-9a-f]{64}) {2}-$/.exec(line);
    if (db !== null) seen.set(db[1]!, db[2]!);
  }
  const drifted = new Set<string>();
  const sharded = shardedTables(bundle);
  for (const [key, digest] of expectedDigests(bundle, only)) {
    if (seen.get(key) === digest) continue;
    const name = key.slice(0, key.lastIndexOf(' '));
    // A sharded table's dump differs: which shard is not known, all are restored.
    for (const file of key.endsWith(' db') ? (sharded.get(name)?.shards ?? [name]) : [name]) drifted.add(file);
  }
  return [...drifted].sort();
}

/**
 * Names of the files of the bundle's release (nodeBundle: its large tables as shards) whose source
 * or table content in `dir` differs from the bundle.
 */
export async function driftedFiles(
  conn: NodeConnection,
  dir: string,
  bundle: Bundle,
  shardSize?: number,
): Promise<string[]> {
  const release = nodeBundle(bundle, shardSize);
  if (Object.keys(release.files).length === 0) return [];
  return driftFromDigests((await conn.exec(digestScript(release), { cwd: dir })).stdout, release);
}
