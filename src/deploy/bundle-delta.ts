/**
 * What changed between the bundle a node runs (the base) and the next one, table by table, so a
 * node can build the next release from its live one instead of receiving and `postmap`ping every
 * table whole. Pure: both bundles are in memory (the base is the one this process deployed last;
 * after a restart there is none and the release is full).
 *
 * A table qualifies when both versions are hash maps of one `key value` line each, sorted by line
 * (as the compiler writes them) and ending in a newline: the node then rebuilds the source with
 * byte ranges of the base and the added lines (table-splice.ts) or, for many scattered changes,
 * `comm -23 base removed | sort -m - added` (C locale), checks it against the next version's
 * SHA-256, and updates a copy of the base `.db` with `postmap -d` (keys that are gone) and
 * `postmap -i -r` (lines added or changed). A small table is cheaper sent whole than patched (a
 * patch runs a few processes and a Postfix program of its own; one `postmap` builds every small
 * table at once): up to `sendWholeUpTo` characters its next source travels in the delta and its
 * `.db` is built whole, while its changed keys are probed as a patched table's. Any other file that
 * changed is sent whole.
 */
import { chunksOf, releaseFiles, textLength, type Bundle, type BundleFile } from './bundle.js';
import { sourceDigest } from './live-files.js';
import { fileView, type TableView } from './table-view.js';
import { spliceOps, type SpliceOp } from './table-splice.js';

export interface TableDelta {
  /** Lines of the base that are not in the next version (removed or changed), in order. */
  removed: string[];
  /** Lines of the next version that are not in the base (new or changed), in order. */
  added: string[];
  /** Keys whose entry is gone altogether (removed, not re-added with another value). */
  deleted: string[];
  /** How the node splices the source from its base (table-splice.ts); null: it merges (`comm`/`sort -m`). */
  splice: SpliceOp[] | null;
  /** A small table: its next source is sent and its `.db` built whole (no splice, no patch). */
  sent: boolean;
}

/**
 * Changed tables up to this many characters (≈ 12,000 lines) are sent whole (see above): a shard
 * of a large table (SHARD_SIZE, table-shards.ts) with room for uneven hashing.
 */
export const SEND_WHOLE_UP_TO = 640 * 1024;

export interface DeltaOptions {
  /** Default SEND_WHOLE_UP_TO; 0: every changed table is patched on the node. */
  sendWholeUpTo?: number | undefined;
}

export interface BundleDelta {
  /** The version the delta applies to. */
  base: string;
  /** Files identical in both (source and, for hash maps, `.db`): hard-linked from the live release. */
  unchanged: string[];
  /** Tables built from the base plus their delta. */
  tables: Record<string, TableDelta>;
  /** Files sent whole (new, changed in kind or mode, or not in the sorted one-line form). */
  whole: string[];
  /** SHA-256 (hex) of each base source the delta relies on: a node whose copy differs (drift) gets a full release. */
  baseDigests: Record<string, string>;
  /** The base release's files (releaseFiles), as its `files.stat` manifest lists them. */
  baseFiles: readonly string[];
  /** SHA-256 (hex) of each next source built on the node. */
  nextDigests: Record<string, string>;
}

/**
 * Order of lines as `LC_ALL=C sort` and `comm` compare them (UTF-8 bytes). JavaScript's order of
 * UTF-16 units is the same but for characters above U+FFFF against U+E000–U+FFFF, which keys (IDNA
 * ASCII) never hold; should a value make them differ, the node's SHA-256 check of the rebuilt
 * table refuses the delta and the release goes whole.
 */
const byteCompare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The table when it has the form the node can merge: one `key value` line each, sorted, newline-terminated. */
function mergeable(file: BundleFile): TableView | null {
  if (file.mapType !== 'hash') return null;
  const view = fileView(file);
  return view.simple ? view : null;
}

/** A table line's key as a hash map stores it (lower case). */
export const keyOf = (line: string) => line.slice(0, line.search(/[ \t]/)).toLowerCase();

/** Lines only in `base` and lines only in `next`, both sorted (a merge walk). */
function lineDiff(base: string[], next: string[]): { removed: string[]; added: string[] } {
  const removed: string[] = [];
  const added: string[] = [];
  let i = 0;
  let j = 0;
  while (i < base.length || j < next.length) {
    if (j >= next.length) removed.push(base[i++]!);
    else if (i >= base.length) added.push(next[j++]!);
    else {
      const c = base[i] === next[j] ? 0 : byteCompare(base[i]!, next[j]!);
      if (c === 0) {
        i++;
        j++;
      } else if (c < 0) removed.push(base[i++]!);
      else added.push(next[j++]!);
    }
  }
  return { removed, added };
}

const sumLengths = (chunks: readonly string[]) => chunks.reduce((n, chunk) => n + chunk.length, 0);

/** Equal texts; chunked files (chunkedFile) compared chunk by chunk, without joining them. */
function sameText(a: BundleFile, b: BundleFile): boolean {
  const x = chunksOf(a);
  const y = chunksOf(b);
  if (x === undefined || y === undefined) return a.content === b.content;
  if (x === y) return true;
  if (sumLengths(x) !== sumLengths(y)) return false;
  // Chunk by chunk where both are cut at the same places (the compiler's chunks of two versions:
  // shared chunks are one string), else piece by piece where their cuts differ; never joined.
  let i = 0;
  let j = 0;
  let atX = 0;
  let atY = 0;
  while (i < x.length && j < y.length) {
    const cx = x[i]!;
    const cy = y[j]!;
    const n = Math.min(cx.length - atX, cy.length - atY);
    const same =
      atX === 0 && atY === 0 && n === cx.length && n === cy.length
        ? cx === cy
        : cx.slice(atX, atX + n) === cy.slice(atY, atY + n);
    if (!same) return false;
    atX += n;
    atY += n;
    if (atX === cx.length) [i, atX] = [i + 1, 0];
    if (atY === cy.length) [j, atY] = [j + 1, 0];
  }
  return true;
}

function sameKind(a: BundleFile, b: BundleFile): boolean {
  return a.mode === b.mode && a.secret === b.secret && a.mapType === b.mapType;
}

/** Deltas already computed, by next bundle, base version and options: every node on the same base shares one. */
const computed = new WeakMap<Bundle, Map<string, BundleDelta | null>>();

/** The delta from `base` to `next`; null when nothing of the base can be reused (a full release is as cheap). */
export function bundleDelta(base: Bundle, next: Bundle, options: DeltaOptions = {}): BundleDelta | null {
  const sendWholeUpTo = options.sendWholeUpTo ?? SEND_WHOLE_UP_TO;
  let byBase = computed.get(next);
  if (byBase === undefined) computed.set(next, (byBase = new Map()));
  const key = `${base.version} ${sendWholeUpTo}`;
  if (!byBase.has(key)) byBase.set(key, deltaOf(base, next, sendWholeUpTo));
  return byBase.get(key)!;
}

function deltaOf(base: Bundle, next: Bundle, sendWholeUpTo: number): BundleDelta | null {
  const delta: BundleDelta = {
    base: base.version,
    unchanged: [],
    tables: {},
    whole: [],
    baseDigests: {},
    baseFiles: releaseFiles(base),
    nextDigests: {},
  };
  for (const name of Object.keys(next.files).sort()) {
    const file = next.files[name]!;
    const old = base.files[name];
    if (old === undefined || !sameKind(old, file)) {
      delta.whole.push(name);
      continue;
    }
    delta.baseDigests[name] = sourceDigest(old);
    if (sameText(old, file)) {
      delta.unchanged.push(name);
      continue;
    }
    const before = mergeable(old);
    const after = before === null ? null : mergeable(file);
    if (before === null || after === null) {
      delete delta.baseDigests[name];
      delta.whole.push(name);
      continue;
    }
    // Chunks both share hold the same lines: only the others can differ.
    const { removed, added } = lineDiff(before.linesNotIn(after), after.linesNotIn(before));
    // A table rewritten more than half is as cheap to send and build whole.
    if (removed.length + added.length > after.lineCount / 2 + 16) {
      delete delta.baseDigests[name];
      delta.whole.push(name);
      continue;
    }
    const readded = new Set(added.map(keyOf));
    const sent = textLength(file) <= sendWholeUpTo;
    delta.tables[name] = {
      removed,
      added,
      deleted: [...new Set(removed.map(keyOf))].filter((k) => !readded.has(k)),
      splice: sent ? null : spliceOps(chunksOf(old) ?? old.content, removed, added),
      sent,
    };
    if (!sent) delta.nextDigests[name] = sourceDigest(file);
  }
  return delta.unchanged.length + Object.keys(delta.tables).length === 0 ? null : delta;
}
