/**
 * A large lookup table goes to the nodes as shards: files `<name>.0` … `<name>.<n-1>`, each holding
 * the lines whose key hashes to it, and main.cf names them together as
 * `unionmap:{hash:<dir>/<name>.0,…}` wherever it named `hash:<dir>/<name>`. A union gives each
 * query to every shard and joins what they find; a key lives in exactly one shard, so the union
 * answers every query, partial addresses included, as the one table would (it takes its first
 * table's match flags: a union of hash tables is searched as a hash table is). A change to a few
 * keys then changes a few shards, which a delta release sends and builds whole with one `postmap`
 * (bundle-delta.ts), where a 5 MB table would be spliced, hashed, copied and patched on every node:
 * a node's work per change is set by what changed, not by the table's size
 * (src/postfix/README.md has the measurements).
 *
 * Pure and deterministic: the layout is a function of the bundle (so a version names one set of
 * files on every node), shards are cut by a hash of the key alone (so an unchanged key stays in
 * its shard), and the count is a power of two of the table's size and of its lines (so it changes
 * when the table doubles or halves, not with every domain). Tables below the size, and any not in
 * the compiler's sorted `key value` form or named from master.cf, go as they are.
 */
import { chunkedFile, textLength, type Bundle, type BundleFile } from './bundle.js';
import { fileView, knownSimpleChunk, linesOfChunk } from './table-view.js';

/** Characters per shard on average at most: a changed shard is under SEND_WHOLE_UP_TO, sent and built whole. */
export const SHARD_SIZE = 512 * 1024;
/**
 * Lines per shard on average at most: `postmap`'s work is per line, so a table of short lines (a
 * domain and `OK`) is cut as finely as one of long ones, and a change rebuilds at most ≈ this many
 * lines per table it touches, whatever the names' lengths.
 */
export const SHARD_LINES = 8192;
const MAX_SHARDS = 256;
/** The shortest line of a table in the compiler's form: a key, a blank, a value, a newline. */
const MIN_LINE = 4;

/** 1 when the table fits in one shard, else the power of two that keeps each under `shardSize` on average. */
export function shardCount(length: number, shardSize: number): number {
  if (length <= shardSize) return 1;
  let n = 2;
  while (n < MAX_SHARDS && length > n * shardSize) n *= 2;
  return n;
}

/** A table's shards: as many as its characters or its lines ask for, whichever is more. */
function tableShardCount(file: BundleFile, shardSize: number): number {
  const length = textLength(file);
  const bySize = shardCount(length, shardSize);
  // Only a table that can hold more lines than a shard takes has them counted.
  return length <= SHARD_LINES * MIN_LINE
    ? bySize
    : Math.max(bySize, shardCount(fileView(file).lineCount, SHARD_LINES));
}

/** postmap's blanks: space, tab, CR, VT, FF (a simple table's key ends at the first). */
const isBlank = (code: number) => code === 32 || code === 9 || code === 13 || code === 11 || code === 12;

/** The shard of a line: FNV-1a of its key, lower-cased as a hash map stores it. */
function shardOf(line: string, n: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < line.length; i += 1) {
    let c = line.charCodeAt(i);
    if (isBlank(c)) break;
    if (c >= 65 && c <= 90) c += 32;
    hash = Math.imul(hash ^ c, 0x01000193);
  }
  return (hash >>> 0) & (n - 1);
}

/** A chunk's lines by shard, in order (each part a run of whole lines, '' when none). */
function splitChunk(chunk: string, n: number): string[] {
  const lines: string[][] = Array.from({ length: n }, () => []);
  for (const line of linesOfChunk(chunk)) lines[shardOf(line, n)]!.push(line);
  return lines.map((ls) => {
    if (ls.length === 0) return '';
    const part = `${ls.join('\n')}\n`;
    // Lines of a simple chunk, in order: the part is simple too, and is not read again to know it.
    knownSimpleChunk(part, ls);
    return part;
  });
}

/** A shard's file and the parts it was made of, to hand the same object on while its parts stay. */
interface ShardFile {
  parts: string[];
  file: BundleFile;
}

/**
 * Per table (name, count and kind), what the last bundle laid out made of it: the split of each of
 * its chunks and its shards. The next bundle shares all but a few.
 */
const lastLayout = new Map<string, { splits: Map<string, string[]>; shards: ShardFile[] }>();

function sameParts(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((part, i) => part === b[i]);
}

/**
 * The shards of a table: chunked files of the parts of its chunks. A shard whose parts are those of
 * the last bundle's is that bundle's file object, so its digest and its comparison with the base
 * cost nothing (bundle.ts, bundle-delta.ts).
 */
function shardFiles(name: string, file: BundleFile, chunks: readonly string[], n: number): BundleFile[] {
  const meta = { mode: file.mode, secret: file.secret, mapType: file.mapType };
  const key = `${name} ${n} ${meta.mode} ${meta.secret}`;
  const last = lastLayout.get(key);
  const splits = new Map<string, string[]>();
  const byShard: string[][] = Array.from({ length: n }, () => []);
  for (const chunk of chunks) {
    const parts = last?.splits.get(chunk) ?? splitChunk(chunk, n);
    splits.set(chunk, parts);
    parts.forEach((part, i) => {
      if (part !== '') byShard[i]!.push(part);
    });
  }
  const shards = byShard.map((parts, i): ShardFile => {
    const before = last?.shards[i];
    return before !== undefined && sameParts(before.parts, parts) ? before : { parts, file: chunkedFile(parts, meta) };
  });
  lastLayout.set(key, { splits, shards });
  return shards.map((s) => s.file);
}

/** A sharded table: its file (as the bundle has it) and the names of its shards, in order. */
export interface ShardedTable {
  file: BundleFile;
  shards: string[];
}
const tablesOf = new WeakMap<Bundle, Map<string, ShardedTable>>();

/** The sharded tables of a bundle nodeBundle() laid out, by name (empty for any other bundle). */
export function shardedTables(bundle: Bundle): ReadonlyMap<string, ShardedTable> {
  return tablesOf.get(bundle) ?? new Map();
}

const shardName = (table: string, i: number) => `${table}.${i}`;

/** Table references in a main.cf value: `hash:{{dir}}/<name>` up to a separator. */
const TABLE_REF = /hash:\{\{dir\}\}\/([A-Za-z0-9_.-]+)(?=$|[\s,}])/g;

/** The tables master.cf names: they stay whole (an `-o` value cannot hold a union's braces and commas). */
function namedInMasterCf(bundle: Bundle): Set<string> {
  const names = new Set<string>();
  for (const service of bundle.masterCf) {
    for (const value of Object.values(service.options)) for (const m of value.matchAll(TABLE_REF)) names.add(m[1]!);
  }
  return names;
}

const laidOut = new WeakMap<Bundle, Map<number, Bundle>>();

/**
 * The bundle as its release holds it on a node: its large tables as shards, main.cf naming their
 * unions; the same object when nothing is sharded. Same version: the layout follows from the
 * bundle. Once per bundle and shard size, for every node; a bundle it made is returned as it is.
 */
export function nodeBundle(bundle: Bundle, shardSize = SHARD_SIZE): Bundle {
  if (tablesOf.has(bundle)) return bundle; // already laid out
  let bySize = laidOut.get(bundle);
  if (bySize === undefined) laidOut.set(bundle, (bySize = new Map()));
  let out = bySize.get(shardSize);
  if (out === undefined) bySize.set(shardSize, (out = layOut(bundle, shardSize)));
  return out;
}

function layOut(bundle: Bundle, shardSize: number): Bundle {
  const keepWhole = namedInMasterCf(bundle);
  const sharded = new Map<string, ShardedTable>();
  const files: Record<string, BundleFile> = {};
  for (const [name, file] of Object.entries(bundle.files)) {
    const n = file.mapType === 'hash' && !keepWhole.has(name) ? tableShardCount(file, shardSize) : 1;
    const view = n > 1 ? fileView(file) : undefined;
    const names = Array.from({ length: n }, (_, i) => shardName(name, i));
    if (view === undefined || !view.simple || names.some((s) => s in bundle.files)) {
      files[name] = file;
      continue;
    }
    shardFiles(name, file, view.chunks, n).forEach((shard, i) => (files[names[i]!] = shard));
    sharded.set(name, { file, shards: names });
  }
  if (sharded.size === 0) return bundle;
  const union = (ref: string, name: string) => {
    const shards = sharded.get(name)?.shards;
    return shards === undefined ? ref : `unionmap:{${shards.map((s) => `hash:{{dir}}/${s}`).join(',')}}`;
  };
  const mainCf = Object.fromEntries(Object.entries(bundle.mainCf).map(([k, v]) => [k, v.replace(TABLE_REF, union)]));
  const out = { ...bundle, files, mainCf };
  tablesOf.set(out, sharded);
  return out;
}
