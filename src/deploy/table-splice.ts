/**
 * A changed table rebuilt on the node as byte ranges of its base with the added lines in between,
 * read in order from both files by `head -c`, which reads no further than it is asked to: both
 * file offsets advance in step, and the bulk of the file is copied by `cat` at the end. A few
 * processes that compare nothing, where `comm -23 | sort -m` compares every line of the table
 * (≈ 3 times the CPU for a 5 MB table). The node checks the result against the next version's
 * SHA-256 either way. Pure.
 */
import { sh } from '../ssh/index.js';

/** Copy bytes of the base, skip bytes of the base (a removed line), or insert bytes of the added lines. */
export type SpliceOp = readonly ['copy' | 'skip' | 'insert', number];

/** Past this many ops the merge is cheaper than the processes. */
export const MAX_SPLICE_OPS = 24;

const bytes = (text: string) => Buffer.byteLength(text, 'utf8');

/** Offset of the first line of the sorted, newline-terminated `text` that is not less than `line` (text.length if none). */
function lowerBound(text: string, line: string): number {
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = lo + ((hi - lo) >> 1);
    const start = text.lastIndexOf('\n', mid - 1) + 1;
    const end = text.indexOf('\n', start);
    if (text.slice(start, end) < line) lo = end + 1;
    else hi = start;
  }
  return lo;
}

/**
 * A sorted table as chunks of whole lines (a BundleFile's chunks, or its text as one): positions
 * are a chunk's index and an offset in it, so nothing joins the table's text.
 */
class ChunkedLines {
  /** UTF-8 bytes before each chunk. */
  private readonly byteStarts: number[] = [];

  constructor(private readonly chunks: readonly string[]) {
    let at = 0;
    for (const chunk of chunks) {
      this.byteStarts.push(at);
      at += bytes(chunk);
    }
  }

  /** Where `line` is or would go: [chunk, offset], the offset at a line start (or the chunk's end). */
  lowerBound(line: string): [number, number] {
    // The last chunk whose first line is not above `line` holds it, or it goes before the first.
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      const chunk = this.chunks[mid]!;
      if (chunk.slice(0, chunk.indexOf('\n')) <= line) lo = mid;
      else hi = mid - 1;
    }
    const chunk = this.chunks[lo] ?? '';
    return [lo, lowerBound(chunk, line)];
  }

  hasLineAt([c, offset]: [number, number], line: string): boolean {
    return (this.chunks[c] ?? '').startsWith(`${line}\n`, offset);
  }

  /** UTF-8 bytes before a position. */
  byteOffset([c, offset]: [number, number]): number {
    const chunk = this.chunks[c];
    return chunk === undefined ? 0 : this.byteStarts[c]! + bytes(chunk.slice(0, offset));
  }
}

/**
 * The ops that turn `base` (sorted lines, each newline-terminated: its text, or its chunks of whole
 * lines) into the next version, given the lines only in one or the other (both sorted); null when
 * a removed line is not found as a whole line or the ops would be too many.
 */
export function spliceOps(
  base: string | readonly string[],
  removed: readonly string[],
  added: readonly string[],
): SpliceOp[] | null {
  const text = new ChunkedLines(typeof base === 'string' ? [base] : base);
  const ops: Array<['copy' | 'skip' | 'insert', number]> = [];
  const push = (kind: 'copy' | 'skip' | 'insert', n: number) => {
    const last = ops.at(-1);
    if (last !== undefined && last[0] === kind) last[1] += n;
    else if (n > 0) ops.push([kind, n]);
  };
  // Byte offsets in the base from here on.
  let cursor = 0;
  // Both lists are sorted and a line's place in the base grows with the line, so taking them in
  // line order takes the edits in the base's order (an added line first where it goes before a
  // removed one), and the walk stops as soon as there are too many ops: a table changed all over
  // costs a few lookups, not one per line.
  let r = 0;
  let a = 0;
  while (r < removed.length || a < added.length) {
    const insert = r >= removed.length || (a < added.length && added[a]! < removed[r]!);
    const line = insert ? added[a++]! : removed[r++]!;
    const found = text.lowerBound(line);
    if (!insert && !text.hasLineAt(found, line)) return null;
    const at = text.byteOffset(found);
    if (at > cursor) push('copy', at - cursor);
    cursor = Math.max(cursor, at);
    if (insert) push('insert', bytes(line) + 1);
    else {
      push('skip', bytes(line) + 1);
      cursor += bytes(line) + 1;
    }
    if (ops.length > MAX_SPLICE_OPS) return null;
  }
  return ops;
}

/** The shell command writing `out` from `base` and `added` by `ops`; the rest of the base follows the last op. */
export function spliceScript(ops: readonly SpliceOp[], base: string, added: string, out: string): string {
  const steps = ops.map(([kind, n]) =>
    kind === 'copy' ? `head -c ${n} <&3` : kind === 'skip' ? `head -c ${n} <&3 >/dev/null` : `head -c ${n} <&4`,
  );
  return `{ ${[...steps, 'cat <&3'].join(' && ')}; } 3< ${sh(base)} 4< ${sh(added)} > ${sh(out)}`;
}
