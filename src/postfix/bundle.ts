/**
 * The compiler's output, the one definition of a bundle the deployer (src/deploy/) takes too, and
 * two helpers: renderBundle() puts the live release directory into every table path,
 * masterCfLine() gives the text for `postconf -M`.
 */
import { createHash } from 'node:crypto';
import type { QuarantinedUnit } from './quarantine.js';

/** Stands for the release directory in main.cf values and master.cf options until renderBundle(). */
export const DIR_PLACEHOLDER = '{{dir}}';

/** Every generated master.cf service starts with this, so a deployer can remove stale ones. */
export const SERVICE_PREFIX = 'rp_';

export interface BundleFile {
  content: string;
  /** 0o600 for files holding secrets (then the .db postmap makes must be 0600 too). */
  mode: 0o600 | 0o644;
  secret: boolean;
  /**
   * 'hash': run `postmap hash:FILE` after writing. null: copied as is, for a table Postfix reads
   * from its source file (bundles stored before sender_access became a hash: table held it as a
   * regexp: table; the compiler now writes hash: tables only, see tables.ts).
   */
  mapType: 'hash' | null;
  /**
   * Secret files only: the same table with each entry's value replaced whole by the username and
   * the secret's fingerprint (`user:sha:<fingerprint>`), rendered from the entries, not from
   * `content`. What is shown and stored in place of `content`; not part of the version.
   */
  masked?: string;
}

/**
 * One master.cf service line: `name unix private unpriv chroot wakeup maxproc command args...`.
 * The compiler writes `- - n - - smtp`; the deployer takes any daemon and checks every column
 * itself before a node sees it (src/deploy/bundle-checks.ts), so the columns are plain strings.
 */
export interface MasterService {
  /** Starts with SERVICE_PREFIX: the deployer creates, rewrites and removes those entries. */
  name: string;
  type: 'unix';
  private: string;
  unpriv: string;
  /** The compiler writes 'n': the tables live outside any chroot jail. */
  chroot: string;
  wakeup: string;
  maxproc: string;
  /** A daemon in Postfix's daemon_directory, e.g. `smtp`. */
  command: string;
  /** The `-o name=value` overrides, sorted by name; values may contain DIR_PLACEHOLDER. */
  options: Record<string, string>;
  /** The same as argv tokens, as master.cf shows them: ['-o', 'name=value', ...]. */
  args: string[];
}

export interface Bundle {
  /** sha256 hex over a canonical serialization of files, mainCf and masterCf (not warnings). */
  version: string;
  /** By file name (e.g. 'sender_relay'); each lives at `${dir}/${name}`. */
  files: Record<string, BundleFile>;
  /** Parameters for `postconf -e`; table paths contain DIR_PLACEHOLDER until renderBundle(). */
  mainCf: Record<string, string>;
  /** Generated services, sorted by name; all names start with SERVICE_PREFIX. */
  masterCf: MasterService[];
  warnings: string[];
  /** What the compiler quarantined instead of refusing the whole configuration (not part of the version). */
  quarantine: QuarantinedUnit[];
}

function byKey<T>(record: Record<string, T>): Array<[string, T]> {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * A file's last SHA-256 by name, so that an unchanged file is not hashed again (see bundleVersion):
 * `source` is its text, or the chunks array of a chunked file (chunkedFile).
 */
export type FileDigests = Map<string, { source: string | readonly string[]; digest: string }>;

const fileChunks = new WeakMap<object, readonly string[]>();
const maskedFileChunks = new WeakMap<object, readonly string[]>();
const fileDigests = new WeakMap<object, string>();

/**
 * A file whose content is `chunks` (lines, each chunk ending in a newline) concatenated, joined
 * only when `content` is first read: the incremental compiler hands its tables over this way, so
 * a change that leaves a table's chunks as they were neither joins nor hashes it again, and one
 * that changes a few lines sends those chunks (src/config-engine/bundle-transfer.ts) without
 * joining a multi-megabyte text first. `masked`, when given, is joined lazily the same way.
 */
export function chunkedFile(
  chunks: readonly string[],
  meta: Omit<BundleFile, 'content' | 'masked'>,
  options: { masked?: readonly string[] | undefined; sha256?: string | undefined } = {},
): BundleFile {
  const maskedChunks = options.masked;
  let content: string | undefined;
  let masked: string | undefined;
  const file = { ...meta } as BundleFile;
  Object.defineProperty(file, 'content', { enumerable: true, get: () => (content ??= chunks.join('')) });
  if (maskedChunks !== undefined) {
    Object.defineProperty(file, 'masked', { enumerable: true, get: () => (masked ??= maskedChunks.join('')) });
    maskedFileChunks.set(file, maskedChunks);
  }
  fileChunks.set(file, chunks);
  if (options.sha256 !== undefined) fileDigests.set(file, options.sha256);
  return file;
}

/** The chunks of a chunkedFile() (undefined for a file made of a plain text). */
export function chunksOf(file: object): readonly string[] | undefined {
  return fileChunks.get(file);
}

/** The chunks of a chunkedFile()'s masked rendering (undefined when it has none, or is a plain text). */
export function maskedChunksOf(file: object): readonly string[] | undefined {
  return maskedFileChunks.get(file);
}

/** The SHA-256 (hex) of a chunkedFile()'s content, when whoever made it knew it. */
export function knownDigest(file: object): string | undefined {
  return fileDigests.get(file);
}

const chunksDigests = new WeakMap<readonly string[], string>();

/**
 * The SHA-256 (hex) of a chunkedFile()'s content without joining it: the digest it came with, or
 * its chunks hashed in turn, once per chunks array. Undefined for a file made of a plain text.
 */
export function chunkedDigest(file: BundleFile): string | undefined {
  const chunks = chunksOf(file);
  if (chunks === undefined) return undefined;
  let digest = knownDigest(file) ?? chunksDigests.get(chunks);
  if (digest === undefined) {
    const hash = createHash('sha256');
    for (const chunk of chunks) hash.update(chunk);
    digest = hash.digest('hex');
  }
  chunksDigests.set(chunks, digest);
  return digest;
}

/** The same file without its masked rendering, still joined lazily when it was (chunkedFile). */
export function withoutMaskedText(file: BundleFile): BundleFile {
  const meta = { mode: file.mode, secret: file.secret, mapType: file.mapType };
  const chunks = chunksOf(file);
  return chunks === undefined
    ? { content: file.content, ...meta }
    : chunkedFile(chunks, meta, { sha256: knownDigest(file) });
}

function contentDigest(name: string, file: BundleFile, digests: FileDigests | undefined): string {
  const source = chunksOf(file) ?? file.content;
  const known = digests?.get(name);
  // The same string or chunks array compares without reading it; equal text in another string is read once.
  if (known !== undefined && known.source === source) return known.digest;
  const digest = chunkedDigest(file) ?? createHash('sha256').update(file.content).digest('hex');
  digests?.set(name, { source, digest });
  return digest;
}

/**
 * Same files, parameters and services → same version, whatever order they were built in. The
 * version is the sha256 of this JSON text, in which each file stands as the sha256 of its UTF-8
 * bytes (what is written to the node):
 *   {"files":[[name,mode,secret,mapType,sha256],...],"mainCf":[[k,v],...],"masterCf":[[name,type,...,[[k,v],...]],...]}
 * (files and parameters sorted by name). Hashing each file on its own lets a recompile that
 * changed a few files skip the others (`digests`); every changed file is still read in full.
 */
export function bundleVersion(
  bundle: Omit<Bundle, 'version' | 'warnings' | 'quarantine'>,
  digests?: FileDigests,
): string {
  const files = byKey(bundle.files).map(([name, f]) => [
    name,
    f.mode,
    f.secret,
    f.mapType,
    contentDigest(name, f, digests),
  ]);
  const masterCf = [...bundle.masterCf]
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((s) => [s.name, s.type, s.private, s.unpriv, s.chroot, s.wakeup, s.maxproc, s.command, byKey(s.options)]);
  const text = JSON.stringify({ files, mainCf: byKey(bundle.mainCf), masterCf });
  return createHash('sha256').update(text).digest('hex');
}

export function masterCfLine(service: MasterService): string {
  return [
    service.name,
    service.type,
    service.private,
    service.unpriv,
    service.chroot,
    service.wakeup,
    service.maxproc,
    service.command,
    ...service.args,
  ].join(' ');
}

/**
 * A release directory Postfix can take in a table path and in a master.cf `-o` value: absolute,
 * no whitespace, commas, `$`, braces or other characters Postfix would interpret.
 */
export function isSafeReleaseDir(dir: string): boolean {
  return /^\/[A-Za-z0-9._/-]*$/.test(dir) && !dir.includes('//') && !dir.split('/').includes('..');
}

/** The bundle with DIR_PLACEHOLDER replaced by `dir` (trailing slash ignored). */
export function renderBundle(bundle: Bundle, dir: string): Bundle {
  const base = dir.length > 1 ? dir.replace(/\/+$/, '') : dir;
  if (!isSafeReleaseDir(base)) throw new Error(`unsafe release directory ${JSON.stringify(dir)}`);
  const sub = (value: string) => value.replaceAll(DIR_PLACEHOLDER, base);
  const mainCf = Object.fromEntries(byKey(bundle.mainCf).map(([k, v]) => [k, sub(v)]));
  const masterCf = bundle.masterCf.map((s) => ({
    ...s,
    options: Object.fromEntries(byKey(s.options).map(([k, v]) => [k, sub(v)])),
    args: s.args.map(sub),
  }));
  return { ...bundle, mainCf, masterCf };
}
