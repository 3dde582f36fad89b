/**
 * A lookup table's text read chunk by chunk (a chunked file's own chunks, chunkedFile() in
 * src/postfix/bundle.ts, else its content-defined lineChunks()), so that what the deployer derives
 * from a table costs what changed in it: consecutive bundles share all but a few chunks of a
 * 100,000-line table, and each chunk is read once. Any cut at line ends will do: a line only in one
 * table lies in a chunk the other does not have (linesNotIn).
 *
 * Only tables in the form the compiler writes qualify (`simple`): one `key value` line each, keys
 * of printable ASCII, strictly ascending by key and by line, newline-terminated. For such a table
 * postmap(1) reads every line as one entry with no warning, so its entries, their count and the
 * digest of `postmap -s | LC_ALL=C sort` follow from the chunks alone. Anything else is answered
 * by the whole-text parse (map-source.ts), as before.
 */
import { createHash } from 'node:crypto';
import { lineChunks } from '../lib/line-chunks.js';
import { memoByContent } from './content-cache.js';
import { chunksOf } from './bundle.js';

/** What one chunk says, whatever text surrounds it. */
interface ChunkFacts {
  lines: string[];
  /** Every line `key value` (see the module comment) and both keys and lines strictly ascending. */
  simple: boolean;
  /** Lower-cased keys (as a hash map stores them), one per line; empty unless simple. */
  keys: string[];
  /** Values without surrounding blanks, one per line; empty unless simple. */
  values: string[];
  /** `key<TAB>value\n` per line: what `postmap -s` prints for the chunk's entries (made when first asked: dumpOf). */
  dump?: string;
}

export interface TableView {
  /** The text is in the compiler's form: the fields below answer for it; otherwise use the whole-text parse. */
  simple: boolean;
  /** Its lines (every table). */
  lineCount: number;
  /** Entries (simple only). */
  count: number;
  /** Entry `i`'s key and value (simple only). */
  entryAt(i: number): { key: string; value: string };
  /** SHA-256 (hex) of the table's `postmap -s` output sorted by bytes (simple only). */
  dumpDigest(): string;
  /** The lines of the chunks `other` does not share, in order: a superset of the lines only in this one. */
  linesNotIn(other: TableView): string[];
  /** The chunks, as `linesNotIn` compares them. */
  chunks: readonly string[];
}

/** postmap's blanks around a key and a value: space, tab, CR, VT, FF (by code: this runs for every character of a key). */
const isBlank = (code: number) => code === 32 || code === 9 || code === 13 || code === 11 || code === 12;
/** A key postmap stores as written (lower-cased): printable ASCII, no blank. */
const KEY_RE = /^[!-~]+$/;

function chunkFacts(chunk: string): ChunkFacts {
  const lines = (chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk).split('\n');
  const facts: ChunkFacts = { lines, simple: chunk.endsWith('\n'), keys: [], values: [] };
  for (let i = 0; i < lines.length && facts.simple; i += 1) {
    const line = lines[i]!;
    let keyEnd = 0;
    while (keyEnd < line.length && !isBlank(line.charCodeAt(keyEnd))) keyEnd += 1;
    let start = keyEnd;
    while (start < line.length && isBlank(line.charCodeAt(start))) start += 1;
    let end = line.length;
    while (end > start && isBlank(line.charCodeAt(end - 1))) end -= 1;
    const raw = line.slice(0, keyEnd);
    const key = raw.toLowerCase();
    const value = line.slice(start, end);
    const ascending = i === 0 || (lines[i - 1]! < line && facts.keys[i - 1]! < key);
    if (keyEnd === 0 || raw[0] === '#' || !KEY_RE.test(raw) || value === '' || !ascending) {
      facts.simple = false;
      break;
    }
    facts.keys.push(key);
    facts.values.push(value);
  }
  if (!facts.simple) facts.keys = facts.values = [];
  return facts;
}

/** A simple chunk's entries as `postmap -s` prints them, made once per chunk. */
function dumpOf(facts: ChunkFacts): string {
  return (facts.dump ??= facts.keys.map((key, i) => `${key}\t${facts.values[i]!}\n`).join(''));
}

/**
 * Facts of the chunks of the last few tables read: a chunk met again (in the next bundle's version
 * of the table, or in another node's deploy) is not read again.
 */
const GENERATIONS = 32;
const recent: Array<Map<string, ChunkFacts>> = [];

function factsOf(chunks: readonly string[]): ChunkFacts[] {
  const now = new Map<string, ChunkFacts>();
  const out = chunks.map((chunk) => {
    let facts = now.get(chunk);
    for (let g = 0; facts === undefined && g < recent.length; g += 1) facts = recent[g]!.get(chunk);
    facts ??= chunkFacts(chunk);
    now.set(chunk, facts);
    return facts;
  });
  recent.unshift(now);
  if (recent.length > GENERATIONS) recent.pop();
  return out;
}

const sha256Hex = (parts: string[]) => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part, 'utf8');
  return hash.digest('hex');
};

function viewOf(chunks: readonly string[]): TableView {
  const facts = factsOf(chunks);
  let simple = (chunks.at(-1)?.endsWith('\n') ?? false) && facts.every((f) => f.simple);
  // Ascending across chunk boundaries too.
  for (let c = 1; simple && c < facts.length; c += 1) {
    const before = facts[c - 1]!;
    const after = facts[c]!;
    simple = before.lines.at(-1)! < after.lines[0]! && before.keys.at(-1)! < after.keys[0]!;
  }
  let lineCount = 0;
  for (const f of facts) lineCount += f.lines.length;
  // Where each chunk's entries start, for entryAt.
  const starts: number[] = [];
  let count = 0;
  for (const f of facts) {
    starts.push(count);
    count += f.keys.length;
  }
  let digest: string | undefined;
  return {
    simple,
    lineCount,
    count: simple ? count : 0,
    chunks,
    entryAt(i) {
      let lo = 0;
      let hi = starts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (starts[mid]! <= i) lo = mid;
        else hi = mid - 1;
      }
      const f = facts[lo]!;
      return { key: f.keys[i - starts[lo]!]!, value: f.values[i - starts[lo]!]! };
    },
    dumpDigest: () => (digest ??= sha256Hex(facts.map(dumpOf))),
    linesNotIn(other) {
      const shared = new Set(other.chunks);
      // A loop, not flatMap: a table rewritten all over gives 100,000 lines, and flatMap's
      // intermediate arrays cost several times the copy.
      const out: string[] = [];
      facts.forEach((f, c) => {
        if (!shared.has(chunks[c]!)) for (const line of f.lines) out.push(line);
      });
      return out;
    },
  };
}

/** The table's view, once per text. */
export const tableView = memoByContent((content: string) => viewOf(lineChunks(content)));

const chunkedViews = new WeakMap<readonly string[], TableView>();

/** A bundle file's view: a chunked file's (chunkedFile) from its chunks, once per chunks array, without its text. */
export function fileView(file: { content: string }): TableView {
  const chunks = chunksOf(file);
  if (chunks === undefined) return tableView(file.content);
  let view = chunkedViews.get(chunks);
  if (view === undefined) chunkedViews.set(chunks, (view = viewOf(chunks)));
  return view;
}
