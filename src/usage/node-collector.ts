/**
 * One node's collection run: read its log from the saved position in chunks of whole lines, parse
 * each chunk, and hand it to `commit` together with the position after it. The caller commits the
 * counts and the position in one transaction, so a crash anywhere re-reads exactly the lines whose
 * counts were not committed. No database here.
 *
 * Rotation: when the file at the log's path is no longer the one the position is in (other inode,
 * or the same inode with other first bytes or fewer bytes: truncated), the rest of the old file is
 * read first where it can still be found (see findRotatedLog), then the new file from its start.
 */
import { LogLineParser, type LogEvent } from './log-line.js';
import { findRotatedLog, headDigest, readLogChunk, sameHead, type LogChunk } from './log-reader.js';
import type { NodeConnection } from '../ssh/index.js';

export interface LogPosition {
  inode: bigint | null;
  offset: bigint;
  headDigest: string | null;
}

export interface ParsedBatch {
  events: LogEvent[];
  lines: number;
  malformed: number;
  /** Timestamp of the batch's last parsed line, ms. */
  lastLineAt: number | null;
  /** The position before the batch (the commit must find the stored position still there). */
  from: LogPosition;
  /** The position after the batch. */
  to: LogPosition;
  /** The batch reached the end of the live log. */
  atEnd: boolean;
  /** Bytes of a rotated log that could not be read any more (the lines there are lost). */
  bytesLost: number;
  /** Why bytes were lost, for the node's status. */
  notice?: string;
}

export interface CollectOptions {
  path: string;
  /** Bytes read per batch (a batch is one transaction). */
  chunkBytes: number;
  /** Batches per run at most; the next run goes on from there. */
  maxBatches: number;
  /** `path` is the node's maillog_file as last seen: the first read checks it still is (MaillogMovedError). */
  checkMaillog?: boolean;
  commit(batch: ParsedBatch): Promise<void>;
}

export interface CollectRunResult {
  batches: number;
  lines: number;
  atEnd: boolean;
}

function parseChunk(chunk: LogChunk, data: Buffer): Pick<ParsedBatch, 'events' | 'lines' | 'malformed' | 'lastLineAt'> {
  const parser = new LogLineParser({ year: chunk.year, month: chunk.month, utcOffsetMinutes: chunk.utcOffsetMinutes });
  const events: LogEvent[] = [];
  let lines = 0;
  let malformed = 0;
  let lastLineAt: number | null = null;
  const text = data.toString('utf8');
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    if (end > start) {
      lines++;
      const r = parser.parseAt(text, start, end);
      if (r === 'malformed') malformed++;
      else if (r !== 'ignored') {
        events.push(r);
        lastLineAt = r.at;
      }
    }
    start = end + 1;
  }
  return { events, lines, malformed, lastLineAt };
}

/** Whole lines of a chunk: up to and including its last newline. */
function wholeLines(data: Buffer, maxBytes: number): Buffer {
  const nl = data.lastIndexOf(10);
  if (nl >= 0) return data.subarray(0, nl + 1);
  // A "line" longer than a whole chunk is not a Postfix log line: skip it rather than stall.
  return data.length >= maxBytes ? data : data.subarray(0, 0);
}

export async function collectNodeLog(
  conn: NodeConnection,
  start: LogPosition,
  options: CollectOptions,
): Promise<CollectRunResult> {
  let position = start;
  let lines = 0;
  for (let batch = 0; batch < options.maxBatches; batch++) {
    const live = await readLogChunk(
      conn,
      options.path,
      position.inode === null ? 0n : position.offset,
      options.chunkBytes,
      false,
      batch === 0 && options.checkMaillog === true,
    );
    const current =
      position.inode === null ||
      (live.inode === position.inode && live.size >= position.offset && sameHead(position.headDigest, live.head));
    if (position.inode === null) position = { inode: live.inode, offset: 0n, headDigest: null };

    if (current) {
      const data = wholeLines(live.data, options.chunkBytes);
      const offset = position.offset + BigInt(data.length);
      const atEnd = offset >= live.size || data.length === 0;
      const parsed = parseChunk(live, data);
      await options.commit({
        ...parsed,
        from: position,
        to: { inode: live.inode, offset, headDigest: headDigest(live.head, offset) },
        atEnd,
        bytesLost: 0,
      });
      position = { inode: live.inode, offset, headDigest: headDigest(live.head, offset) };
      lines += parsed.lines;
      if (atEnd) return { batches: batch + 1, lines, atEnd: true };
      continue;
    }

    // Rotated or truncated: finish the old file where it still exists, then start the new one.
    const old = await findRotatedLog(conn, options.path, position.inode!, position.headDigest, position.offset);
    const fresh: LogPosition = { inode: live.inode, offset: 0n, headDigest: null };
    if (old === undefined) {
      await options.commit({
        events: [],
        lines: 0,
        malformed: 0,
        lastLineAt: null,
        from: position,
        to: fresh,
        atEnd: false,
        bytesLost: 0,
        notice: `the log was rotated and the previous file was not found beside ${options.path} (deleted, or compressed other than with gzip): lines after byte ${position.offset} of it were not collected`,
      });
      position = fresh;
      continue;
    }
    const rest = await readLogChunk(conn, old.path, position.offset, options.chunkBytes, old.compressed);
    if (rest.inode !== old.inode) continue; // moved again meanwhile: look again
    const data = wholeLines(rest.data, options.chunkBytes);
    const offset = position.offset + BigInt(data.length);
    const finished = offset >= rest.size || data.length === 0;
    // An unterminated last line of a rotated file will never be completed: it is counted as lost.
    const unterminated = finished ? Number(rest.size - offset) : 0;
    const parsed = parseChunk(rest, data);
    const to = finished ? fresh : { inode: position.inode, offset, headDigest: position.headDigest };
    await options.commit({ ...parsed, from: position, to, atEnd: false, bytesLost: Math.max(0, unterminated) });
    position = to;
    lines += parsed.lines;
  }
  return { batches: options.maxBatches, lines, atEnd: false };
}
