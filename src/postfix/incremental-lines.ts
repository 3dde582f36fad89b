// The per-domain tables the incremental compiler keeps between compiles (incremental.ts).
import { createHash } from 'node:crypto';
import { renderHashMap } from './map-encoding.js';

/** Lines per chunk of a SortedLines: small enough to re-join cheaply, large enough to be few. */
const CHUNK = 512;

interface Chunk {
  keys: string[];
  lines: string[];
  /** The chunk's lines joined, until one of them changes. */
  joined: string | undefined;
}

/**
 * The lines of one table sorted by key (code units, like renderHashMap), in chunks: changing a line
 * re-joins its chunk only, and the table's text is the chunks' texts joined.
 */
export class SortedLines {
  private readonly chunks: Chunk[] = [];
  private joined: string | undefined;
  /** chunkTexts() until a line changes: the same array, so an unchanged table is recognised by identity. */
  private texts: readonly string[] | undefined;
  private sha256: string | undefined;

  constructor(keys: readonly string[], lines: readonly string[]) {
    for (let i = 0; i < keys.length; i += CHUNK) {
      this.chunks.push({ keys: keys.slice(i, i + CHUNK), lines: lines.slice(i, i + CHUNK), joined: undefined });
    }
  }

  /** The chunk `key` belongs in: the last one whose first key is not above it. */
  private chunkFor(key: string): Chunk | undefined {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >>> 1;
      if (this.chunks[mid]!.keys[0]! <= key) low = mid;
      else high = mid - 1;
    }
    return this.chunks[low];
  }

  /** Sets (line) or removes (null) the line of `key`. */
  set(key: string, line: string | null): void {
    let chunk = this.chunkFor(key);
    if (chunk === undefined) {
      if (line === null) return;
      this.chunks.push((chunk = { keys: [], lines: [], joined: undefined }));
    }
    const { keys, lines } = chunk;
    let at = 0;
    let high = keys.length;
    while (at < high) {
      const mid = (at + high) >>> 1;
      if (keys[mid]! < key) at = mid + 1;
      else high = mid;
    }
    const present = keys[at] === key;
    if (line === null) {
      if (!present) return;
      keys.splice(at, 1);
      lines.splice(at, 1);
      if (keys.length === 0) this.chunks.splice(this.chunks.indexOf(chunk), 1);
    } else if (present) {
      if (lines[at] === line) return;
      lines[at] = line;
    } else {
      keys.splice(at, 0, key);
      lines.splice(at, 0, line);
      if (keys.length > 2 * CHUNK) {
        const half = { keys: keys.splice(CHUNK), lines: lines.splice(CHUNK), joined: undefined };
        this.chunks.splice(this.chunks.indexOf(chunk) + 1, 0, half);
      }
    }
    chunk.joined = undefined;
    this.joined = undefined;
    this.texts = undefined;
    this.sha256 = undefined;
  }

  /** The texts of the chunks, in order (each a run of lines): the same array until a line changes. */
  chunkTexts(): readonly string[] {
    return (this.texts ??= this.chunks.map((chunk) => (chunk.joined ??= chunk.lines.join(''))));
  }

  content(): string {
    return (this.joined ??= this.chunkTexts().join(''));
  }

  /**
   * The SHA-256 of content(), fed chunk by chunk: the same bytes as hashing the
   * whole text (chunks end with a newline, so no character is split), without converting a
   * multi-megabyte string to UTF-8 in one piece.
   */
  digest(): string {
    if (this.sha256 !== undefined) return this.sha256;
    const hash = createHash('sha256');
    for (const text of this.chunkTexts()) hash.update(text);
    return (this.sha256 = hash.digest('hex'));
  }

  /** From a rendered table whose lines are `key value` in key order. */
  static fromHashMap(content: string): SortedLines {
    const lines = content.split('\n');
    lines.pop(); // after the last '\n'
    return new SortedLines(
      lines.map((line) => line.slice(0, line.indexOf(' '))),
      lines.map((line) => `${line}\n`),
    );
  }
}

export function hashLine(key: string, value: string): string {
  return renderHashMap([[key, value]]);
}
