/**
 * Content-defined chunks of a text, cut at line ends. A chunk ends after a line whose key (the text
 * before its first space, for a lookup table's source line) hashes to a value with its low
 * BOUNDARY_BITS bits zero, so where a chunk ends depends on that line's key alone, not on its
 * position or its value: adding, changing or removing a line changes only the chunk that holds it
 * (two, if the line is a boundary), and masking a secret value never moves a boundary. Stored
 * config bundles keep their files as such chunks by digest, so a version that differs in a few
 * lines of a 100,000-line table stores a few kilobytes, not the table again.
 */

/** About 2^8 = 256 lines per chunk (≈ 15 kB of a sender table). */
const BOUNDARY_BITS = 8;
const BOUNDARY_MASK = (1 << BOUNDARY_BITS) - 1;
/**
 * A chunk also ends at the first line end past this many characters, so that lines that never hash
 * to a boundary cannot make one chunk of the whole text. Such cuts depend on position again;
 * ordinary tables never reach them (a map line is at most a few kilobytes).
 */
const MAX_CHUNK_CHARS = 1 << 20;

/** FNV-1a (32-bit) of the line's key, up to its first space: cheap, and the same on every machine and Node version. */
function keyHash(text: string, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i += 1) {
    const c = text.charCodeAt(i);
    if (c === 0x20) break;
    hash = Math.imul(hash ^ c, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * The chunks of the last few texts cut: a changed table is cut once by whoever stores, sends or
 * checks it. Keyed by the text itself, as src/deploy/content-cache.ts explains. (A table the
 * incremental compiler built comes with its own chunks instead: chunkedFile, src/postfix/bundle.ts.)
 */
const RECENT_TEXTS = 8;
const recent = new Map<string, readonly string[]>();

function remember(text: string, chunks: readonly string[]): void {
  recent.delete(text);
  recent.set(text, chunks);
  if (recent.size > RECENT_TEXTS) recent.delete(recent.keys().next().value!);
}

/** The chunks of `text`, in order: their concatenation is `text`, exactly. Shared: never change the array. */
export function lineChunks(text: string): readonly string[] {
  const known = recent.get(text);
  if (known !== undefined) {
    remember(text, known);
    return known;
  }
  const chunks = cut(text);
  remember(text, chunks);
  return chunks;
}

function cut(text: string): string[] {
  const chunks: string[] = [];
  let chunkStart = 0;
  let lineStart = 0;
  while (lineStart < text.length) {
    const newline = text.indexOf('\n', lineStart);
    const lineEnd = newline === -1 ? text.length : newline + 1;
    const boundary = (keyHash(text, lineStart, lineEnd) & BOUNDARY_MASK) === 0;
    if (boundary || lineEnd - chunkStart >= MAX_CHUNK_CHARS || lineEnd === text.length) {
      chunks.push(text.slice(chunkStart, lineEnd));
      chunkStart = lineEnd;
    }
    lineStart = lineEnd;
  }
  return chunks;
}
