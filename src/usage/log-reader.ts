/**
 * Reads a node's Postfix log over SSH by byte offset, and finds the rest of a rotated log.
 *
 * A position is (inode, offset, head): the head is the SHA-256 of the file's first bytes (up to
 * 256), so a log replaced under the same name (new inode: `postfix logrotate`, logrotate's rename)
 * or truncated in place (copytruncate: same inode, new content) is never read from a stale offset.
 * Where a rotated log went is found next to it: the file with the old inode (renamed), or a copy
 * whose head is the old head (copytruncate), or a gzip-compressed file whose content starts with the
 * old head (`postfix logrotate` gzips the rotated log a moment later by default,
 * `maillog_file_compressor = gzip`). A deleted one is gone: the collector records the loss.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { excerpt, shellQuote, type NodeConnection } from '../ssh/index.js';

export const HEAD_BYTES = 256;

export interface LogChunk {
  inode: bigint;
  /** Size of the file when the chunk was read. */
  size: bigint;
  /** The file's first bytes (up to HEAD_BYTES), for the head digest. */
  head: Buffer;
  /** Bytes from the offset asked for (up to maxBytes). */
  data: Buffer;
  /** The node's clock: UTC offset in minutes, local year and month (0–11). */
  utcOffsetMinutes: number;
  year: number;
  month: number;
}

export class LogReadError extends Error {}

/** The node's `maillog_file` is no longer the file the collector read: it starts over there. */
export class MaillogMovedError extends LogReadError {
  constructor(readonly path: string) {
    super(`the node's maillog_file is now ${JSON.stringify(path)}`);
  }
}

/** `len:sha256hex` of the first `min(length, HEAD_BYTES)` bytes of `head`. */
export function headDigest(head: Buffer, length: bigint | number): string | null {
  const n = Math.min(Number(length), HEAD_BYTES, head.length);
  if (n === 0) return null;
  return `${n}:${createHash('sha256').update(head.subarray(0, n)).digest('hex')}`;
}

/** Does a file whose first bytes are `head` start like the file `digest` was taken of? */
export function sameHead(digest: string | null, head: Buffer): boolean {
  if (digest === null) return true;
  const [len] = digest.split(':');
  return headDigest(head, Number(len)) === digest;
}

function parseOffset(z: string): number {
  const m = /^([+-])(\d\d)(\d\d)$/.exec(z);
  if (m === null) throw new LogReadError(`unexpected output of date +%z: ${JSON.stringify(z)}`);
  const minutes = Number(m[2]) * 60 + Number(m[3]);
  return m[1] === '-' ? -minutes : minutes;
}

/**
 * One command: opens the file once (so stat, head and data are of the same file even if it is
 * rotated meanwhile), prints `inode size`, the node's `date +%z %Y %m`, the base64 head, then
 * up to `maxBytes` from `offset`. With `checkMaillog`, first checks on the node that `path` is still
 * Postfix's `maillog_file` (throws MaillogMovedError when not): the check costs no round trip.
 */
export async function readLogChunk(
  conn: NodeConnection,
  path: string,
  offset: bigint,
  maxBytes: number,
  compressed = false,
  checkMaillog = false,
): Promise<LogChunk> {
  const check = checkMaillog
    ? [
        `rp_log=$(postconf -xh maillog_file) || exit 5`,
        `[ "$rp_log" = ${shellQuote(path)} ] || { printf '%s' "$rp_log"; exit 9; }`,
      ]
    : [];
  // A gzip file is read through gzip -dc: its size and head are those of the content (a rotated
  // log is complete, so decompressing it twice gives the same bytes).
  const script = compressed
    ? [
        ...check,
        `exec 3< ${shellQuote(path)} || exit 3`,
        `printf '%s %s\\n' "$(stat -L -c %i /dev/fd/3)" "$(gzip -dc < /dev/fd/3 | wc -c)" || exit 4`,
        `date '+%z %Y %m'`,
        `gzip -dc < /dev/fd/3 | head -c ${HEAD_BYTES} | base64 -w0; echo`,
        `gzip -dc <&3 | tail -c +${offset + 1n} | head -c ${maxBytes}`,
      ].join('\n')
    : [
        ...check,
        `exec 3< ${shellQuote(path)} || exit 3`,
        `stat -L -c '%i %s' /dev/fd/3 || exit 4`,
        `date '+%z %Y %m'`,
        `head -c ${HEAD_BYTES} /dev/fd/3 | base64 -w0; echo`,
        `tail -c +${offset + 1n} <&3 | head -c ${maxBytes}`,
      ].join('\n');
  const r = await conn.execBytes(script);
  if (r.code === 9) throw new MaillogMovedError(r.stdout.toString('utf8'));
  if (r.code === 5) throw new LogReadError(`postconf -xh maillog_file failed: ${excerpt(r.stderr.trim(), 200)}`);
  if (r.code === 3) throw new LogReadError(`cannot open the log ${path} on the node: ${excerpt(r.stderr.trim(), 200)}`);
  if (r.code !== 0) throw new LogReadError(`reading ${path} failed (exit ${r.code}): ${excerpt(r.stderr.trim(), 200)}`);
  let pos = 0;
  const line = (): string => {
    const nl = r.stdout.indexOf(10, pos);
    if (nl < 0) throw new LogReadError(`unexpected output while reading ${path}`);
    const text = r.stdout.subarray(pos, nl).toString('latin1');
    pos = nl + 1;
    return text;
  };
  const [inode, size] = line().split(' ');
  const [zone, year, month] = line().split(' ');
  const head = Buffer.from(line(), 'base64');
  if (inode === undefined || size === undefined || zone === undefined || year === undefined || month === undefined) {
    throw new LogReadError(`unexpected output while reading ${path}`);
  }
  return {
    inode: BigInt(inode),
    size: BigInt(size),
    head,
    data: r.stdout.subarray(pos),
    utcOffsetMinutes: parseOffset(zone),
    year: Number(year),
    month: Number(month) - 1,
  };
}

export interface RotatedLog {
  path: string;
  inode: bigint;
  size: bigint;
  /** gzip-compressed: read through gzip -dc. */
  compressed: boolean;
}

/**
 * The file that holds the rest of a log last read at (inode, head): renamed files keep their inode;
 * a copytruncate copy has a new inode but the old head. Looks at `<log>*` beside the log,
 * leaving out compressed files (they cannot be read from an offset).
 */
export async function findRotatedLog(
  conn: NodeConnection,
  path: string,
  inode: bigint,
  digest: string | null,
  offset: bigint,
): Promise<RotatedLog | undefined> {
  const dir = posix.dirname(path);
  const base = posix.basename(path);
  const script =
    `cd ${shellQuote(dir)} || exit 3\n` +
    `for g in ${shellQuote(base)}?*; do [ -f "$g" ] || continue; case "$g" in ` +
    `*.gz) printf '%s %s ' "$(stat -c %i -- "$g") 0" "$(gzip -dc -- "$g" 2>/dev/null | head -c ${HEAD_BYTES} | base64 -w0)";; ` +
    `*.bz2|*.xz|*.zst|*.lz4) continue;; ` +
    `*) printf '%s %s ' "$(stat -c '%i %s' -- "$g")" "$(head -c ${HEAD_BYTES} -- "$g" | base64 -w0)";; esac; printf '%s\\n' "$g"; done`;
  const r = await conn.execBytes(script);
  if (r.code !== 0) return undefined;
  const candidates: (Omit<RotatedLog, 'compressed'> & { head: Buffer })[] = [];
  for (const text of r.stdout.toString('utf8').split('\n')) {
    const m = /^(\d+) (\d+) (\S*) (.+)$/.exec(text);
    if (m === null) continue;
    candidates.push({
      inode: BigInt(m[1]!),
      size: BigInt(m[2]!),
      head: Buffer.from(m[3]!, 'base64'),
      path: posix.join(dir, m[4]!),
    });
  }
  const compressed = (c: { path: string }) => c.path.endsWith('.gz');
  const renamed = candidates.find((c) => c.inode === inode && !compressed(c));
  if (renamed !== undefined) return { path: renamed.path, inode: renamed.inode, size: renamed.size, compressed: false };
  // Copies (copytruncate) and compressed rotations: the same first bytes, at least as long.
  // (A compressed file's size is only known once decompressed: readLogChunk finds it.)
  const copy = candidates.find(
    (c) => digest !== null && (compressed(c) || c.size >= offset) && sameHead(digest, c.head),
  );
  return copy === undefined
    ? undefined
    : { path: copy.path, inode: copy.inode, size: copy.size, compressed: compressed(copy) };
}
