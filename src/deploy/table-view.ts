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
  /** Lower-cased keys (as a hash map stores them) and values without surrounding blanks, one per line (simple only; made when first asked: entriesOf). */
  entries?: { keys: string[]; values: string[] };
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
  /**
   * The value stored at a key (lower case, as postmap stores it), undefined when none (simple
   * only): found by comparing keys in the lines in place, so asking a few thousand keys of a
   * 100,000-line table makes no strings but the answers.
   */
  valueAt(key: string): string | undefined;
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
/** A character postmap keeps in a key as written (lower-cased): printable ASCII, no blank. */
const isKeyChar = (code: number) => code >= 0x21 && code <= 0x7e;
const lower = (code: number) => (code >= 65 && code <= 90 ? code + 32 : code);

/** Where a line's key ends (its first blank, or its end). */
function keyEnd(line: string): number {
  let end = 0;
  while (end < line.length && !isBlank(line.charCodeAt(end))) end += 1;
  return end;
}

/** The order of two lines' lower-cased keys, compared in place (no strings made for a table's 100,000 lines). */
function compareKeys(a: string, aEnd: number, b: string, bEnd: number): number {
  const n = Math.min(aEnd, bEnd);
  for (let i = 0; i < n; i += 1) {
    const d = lower(a.charCodeAt(i)) - lower(b.charCodeAt(i));
    if (d !== 0) return d;
  }
  return aEnd - bEnd;
}

/**
 * Whether the chunk is simple, read in place: every character of every line is looked at once, and
 * no key or value is made until someone asks for them (entriesOf). A table that changed all over
 * (a relay's first limit at 100,000 domains) is read whole on the path to live.
 */
function chunkFacts(chunk: string): ChunkFacts {
  const lines = (chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk).split('\n');
  const facts: ChunkFacts = { lines, simple: chunk.endsWith('\n') };
  let previousEnd = 0;
  for (let i = 0; i < lines.length && facts.simple; i += 1) {
    const line = lines[i]!;
    const end = keyEnd(line);
    let printable = end > 0 && line.charCodeAt(0) !== 35; // '#'
    for (let c = 0; printable && c < end; c += 1) printable = isKeyChar(line.charCodeAt(c));
    let valueEnd = line.length;
    while (valueEnd > end && isBlank(line.charCodeAt(valueEnd - 1))) valueEnd -= 1;
    const ascending = i === 0 || (lines[i - 1]! < line && compareKeys(lines[i - 1]!, previousEnd, line, end) < 0);
    facts.simple = printable && valueEnd > end && ascending;
    previousEnd = end;
  }
  return facts;
}

/** A simple chunk's keys (lower case) and values (without surrounding blanks), made once per chunk. */
function entriesOf(facts: ChunkFacts): { keys: string[]; values: string[] } {
  if (facts.entries !== undefined) return facts.entries;
  const keys: string[] = [];
  const values: string[] = [];
  for (const line of facts.lines) {
    const end = keyEnd(line);
    keys.push(line.slice(0, end).toLowerCase());
    values.push(valueAfter(line, end));
  }
  return (facts.entries = { keys, values });
}

/** A simple line's value: what follows its key, without surrounding blanks. */
function valueAfter(line: string, keyEnd: number): string {
  let start = keyEnd;
  while (start < line.length && isBlank(line.charCodeAt(start))) start += 1;
  let valueEnd = line.length;
  while (valueEnd > start && isBlank(line.charCodeAt(valueEnd - 1))) valueEnd -= 1;
  return line.slice(start, valueEnd);
}

/** A simple chunk's entries as `postmap -s` prints them, made once per chunk. */
function dumpOf(facts: ChunkFacts): string {
  if (facts.dump !== undefined) return facts.dump;
  const { keys, values } = entriesOf(facts);
  return (facts.dump = keys.map((key, i) => `${key}\t${values[i]!}\n`).join(''));
}

/**
 * Facts of the chunks of the last few tables read: a chunk met again (in the next bundle's version
 * of the table, or in another node's deploy) is not read again. Each table read is a generation,
 * and a change reads many (its compile's check, every changed shard it deploys): with too few kept,
 * a 100,000-domain table's facts were gone by the next change when it went to several nodes.
 */
const GENERATIONS = 256;
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

/** A chunk's lines (without their newlines), as the facts of the chunks last read have them. */
export function linesOfChunk(chunk: string): string[] {
  for (const generation of recent) {
    const facts = generation.get(chunk);
    if (facts !== undefined) return facts.lines;
  }
  return chunkFacts(chunk).lines;
}

/**
 * Facts of a chunk known to be simple without reading it again: a run of lines of a simple chunk,
 * in order (a shard's part of it, table-shards.ts), whose lines are given. Kept with the newest
 * chunks read.
 */
export function knownSimpleChunk(chunk: string, lines: string[]): void {
  if (recent.length === 0) recent.unshift(new Map());
  recent[0]!.set(chunk, { lines, simple: true });
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
    const last = before.lines.at(-1)!;
    const first = after.lines[0]!;
    simple = last < first && compareKeys(last, keyEnd(last), first, keyEnd(first)) < 0;
  }
  let lineCount = 0;
  for (const f of facts) lineCount += f.lines.length;
  // Where each chunk's entries start, for entryAt.
  const starts: number[] = [];
  let count = 0;
  for (const f of facts) {
    starts.push(count);
    count += f.simple ? f.lines.length : 0;
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
      const { keys, values } = entriesOf(facts[lo]!);
      return { key: keys[i - starts[lo]!]!, value: values[i - starts[lo]!]! };
    },
    valueAt(key) {
      // The last chunk whose first key is not above `key`, then the line within it.
      let lo = 0;
      let hi = facts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        const first = facts[mid]!.lines[0]!;
        if (compareKeys(first, keyEnd(first), key, key.length) <= 0) lo = mid;
        else hi = mid - 1;
      }
      const lines = facts[lo]?.lines ?? [];
      let low = 0;
      let high = lines.length - 1;
      while (low <= high) {
        const mid = (low + high) >> 1;
        const line = lines[mid]!;
        const end = keyEnd(line);
        const order = compareKeys(line, end, key, key.length);
        if (order === 0) return valueAfter(line, end);
        if (order < 0) low = mid + 1;
        else high = mid - 1;
      }
      return undefined;
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
