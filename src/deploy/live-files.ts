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

/** `name source <hex>` and `name db <hex>` lines the node must print for this bundle. */
export function expectedDigests(bundle: Bundle): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(bundle.files)) out.set(`${name} source`, sourceDigest(file));
  for (const [name, file] of hashMaps(bundle)) out.set(`${name} db`, tableDumpDigest(file));
  return out;
}

/**
 * Prints `<hex>  <name>` for every source (one sha256sum for all; a missing file only goes to
 * stderr) and `<name> db <hex>  -` for every table whose .db exists, run in the release dir.
 */
export function digestScript(bundle: Bundle): string {
  const names = Object.keys(bundle.files).sort();
  if (names.length === 0) return 'true';
  const lines = [`sha256sum -- ${names.map((n) => sh(n)).join(' ')}`];
  for (const [name] of hashMaps(bundle)) {
    lines.push(
      `test -f ${sh(`${name}.db`)} && { printf '%s db ' ${sh(name)}; postmap -s ${sh(`hash:${name}`)} | LC_ALL=C sort | sha256sum; }`,
    );
  }
  // Each line may fail (a missing file): the script as a whole must not.
  return `${lines.map((l) => `{ ${l}; } 2>/dev/null`).join('\n')}\ntrue`;
}

/** Names of the bundle files whose source or table content differs, from digestScript's output. */
export function driftFromDigests(stdout: string, bundle: Bundle): string[] {
  const seen = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const source = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line);
    if (source !== null) seen.set(`${source[2]!} source`, source[1]!);
    const db = /^(\S+ db) ([0-9a-f]{64}) {2}-$/.exec(line);
    if (db !== null) seen.set(db[1]!, db[2]!);
  }
  const drifted = new Set<string>();
  for (const [key, digest] of expectedDigests(bundle)) {
    if (seen.get(key) !== digest) drifted.add(key.slice(0, key.lastIndexOf(' ')));
  }
  return [...drifted].sort();
}

/** Names of the bundle files whose source or table content in `dir` differs from the bundle. */
export async function driftedFiles(conn: NodeConnection, dir: string, bundle: Bundle): Promise<string[]> {
  if (Object.keys(bundle.files).length === 0) return [];
  return driftFromDigests((await conn.exec(digestScript(bundle), { cwd: dir })).stdout, bundle);
}
