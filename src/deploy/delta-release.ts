/**
 * A release built on the node from its live one plus a delta (bundle-delta.ts), instead of every
 * table uploaded and `postmap`ped whole. Measured on Postfix 3.7.11 (the lab's):
 * `postmap -i -r hash:T` inserts or replaces the entries it reads (without -r an existing key is
 * kept, with a "duplicate entry" warning); `postmap -d - hash:T` deletes the keys it reads, silently
 * for keys not there. Both fold keys to lower case as a hash build does.
 *
 * stage: the delta's files go into a fresh staging dir in one `tar -x` (0700 dir, umask 077), the
 * base release's files are checked against the `stat` manifest written when it was built (inode,
 * size, mtime; a release without one: its sources' SHA-256; a hand-edited base → exit 10, the
 * caller stages a full release), unchanged files are hard-linked with their `.db` (nothing writes
 * a release's file in place; drift repair renames over it), changed sources rebuilt (spliced from
 * the base's byte ranges, table-splice.ts, or merged with `comm`/`sort -m`) and checked against
 * the next version's SHA-256 (SHA256_CHECK; → exit 11); small changed tables (TableDelta.sent)
 * and files sent whole arrive in the tar as they are.
 * postmap: each patched table's base `.db` copied and updated in place; the tables sent whole
 * built by one `postmap` (two side by side, halves by size, past SPLIT_BUILD_OVER in all). Tables
 * are independent files: with more than one, each table's work runs as a job of its own
 * (`concurrently`, shell-jobs.ts), so a change to four tables waits for the slowest, not for the
 * four in turn. The delta's files (0600, in a 0700 dir of the 0700 staging dir: they hold secret
 * lines) are removed by promote's one `rm` (release-store.ts).
 */
import { posix } from 'node:path';
import { gzipSync } from 'node:zlib';
import { hashMaps, serviceKey, textLength, type Bundle, type BundleFile } from './bundle.js';
import { SEND_WHOLE_UP_TO, type BundleDelta } from './bundle-delta.js';
import { DELTA_DIR, META_DIR, type NodeLayout } from './layout.js';
import { postmapStderr } from './secret-scrub.js';
import { chained, excerpt, sh, type NodeConnection } from '../ssh/index.js';
import { skipped } from './deploy-journal.js';
import {
  FILES_STAT,
  SHELL_READ_LINES,
  filesStatCommand,
  modeProblems,
  postmapTables,
  withModes,
} from './node-checks.js';
import { releasesDirCommand, stageRelease, switchLinkEntry } from './release-store.js';
import { tarArchive, type TarEntry } from './tar-archive.js';
import { spliceScript } from './table-splice.js';
import { concurrently, type BesideScript } from './shell-jobs.js';

export const BASE_DRIFTED = 10;
export const DIGEST_MISMATCH = 11;

const lines = (items: readonly string[]) => items.map((i) => `${i}\n`).join('');
const digestList = (digests: Record<string, string>) =>
  lines(Object.entries(digests).map(([name, hex]) => `${hex}  ${name}`));

/**
 * `rp_sha256_ok <file>`: whether the file named in `<file>` (a `<hex>  <name>` line, as sha256sum
 * writes) has that SHA-256. Asked of `openssl dgst` first (Debian's postfix depends on openssl
 * through ssl-cert): it uses the CPU's SHA instructions, coreutils' sha256sum does not, and a
 * spliced table is megabytes (src/postfix/README.md). An openssl that is missing, fails or
 * answers in another form leaves the answer to sha256sum: a node is never sent full releases for
 * want of a working openssl.
 */
export const SHA256_CHECK = [
  'rp_sha256_ok() { read -r rp_want rp_name < "$1" || return 1',
  '  rp_got=$(openssl dgst -sha256 -r "$rp_name" 2>/dev/null) || rp_got=',
  '  case $rp_got in',
  '    *" *$rp_name") [ "$rp_got" = "$rp_want *$rp_name" ] ;;',
  '    *) sha256sum --quiet --strict -c "$1" ;;',
  '  esac; }',
].join('\n');

export type DeltaStageResult = 'staged' | 'base-drifted' | 'digest-mismatch';

/** Each delta's archive, built once: every node deploying the same delta is sent the same bytes. */
const archives = new WeakMap<BundleDelta, { bytes: Buffer; gzipped: boolean }>();

/**
 * Past this size an archive is sent gzipped (level 1): table text shrinks about 15 times, which the
 * control plane compresses once per delta instead of encrypting megabytes to every node (a layout
 * change, or a relay limit reaching thousands of domains, sends many shards). Below it the node
 * would pay more for `gzip -d` (two processes and the inflating) than for deciphering the bytes it
 * saves, and the control plane encrypts them to each node in about a millisecond: the four shards
 * an onboarding changes at 100,000 domains (≈ 700 kB) go as they are.
 */
const GZIP_OVER = 2048 * 1024;

/** The tar stageDelta extracts: files sent whole, the release's metadata, each patched table's delta. */
function archiveOf(
  layout: NodeLayout,
  bundle: Bundle,
  delta: BundleDelta,
  patched: Array<[string, BundleDelta['tables'][string]]>,
  sentWhole: string[],
): Buffer {
  const entries: TarEntry[] = [
    ...sentWhole.map((name) => ({ name, mode: bundle.files[name]!.mode, content: bundle.files[name]!.content })),
    { name: `${META_DIR}/`, mode: 0o755 },
    { name: `${META_DIR}/params`, mode: 0o644, content: lines(Object.keys(bundle.mainCf).sort()) },
    { name: `${META_DIR}/services`, mode: 0o644, content: lines(bundle.masterCf.map(serviceKey).sort()) },
    switchLinkEntry(layout, bundle.version),
    { name: `${DELTA_DIR}/`, mode: 0o700 },
    { name: `${DELTA_DIR}/base.sha256`, mode: 0o600, content: digestList(delta.baseDigests) },
    ...patched.flatMap(([name, t]) => [
      { name: `${DELTA_DIR}/${name}.sha256`, mode: 0o600, content: digestList({ [name]: delta.nextDigests[name]! }) },
      // A splice needs no removed lines: their bytes are skipped in the base.
      { name: `${DELTA_DIR}/${name}.removed`, mode: 0o600, content: t.splice === null ? lines(t.removed) : '' },
      { name: `${DELTA_DIR}/${name}.added`, mode: 0o600, content: lines(t.added) },
      { name: `${DELTA_DIR}/${name}.deleted`, mode: 0o600, content: lines(t.deleted) },
    ]),
  ];
  return tarArchive(entries);
}

/** Stages `bundle` in `staging` from the base release plus `delta`. Never leaves a partial staging dir behind on a refusal. */
export async function stageDelta(
  conn: NodeConnection,
  layout: NodeLayout,
  bundle: Bundle,
  delta: BundleDelta,
  staging: string,
): Promise<DeltaStageResult> {
  const base = layout.release(delta.base);
  const patched = Object.entries(delta.tables).filter(([, t]) => !t.sent);
  const sentWhole = [...delta.whole, ...Object.keys(delta.tables).filter((name) => delta.tables[name]!.sent)];
  // Built before the exec without a wait: the steps sent behind this one are queued on the
  // connection in call order, so nothing may be awaited before conn.exec (a compression in the
  // thread pool would let postmap's command overtake this one).
  let archive = archives.get(delta);
  if (archive === undefined) {
    const bytes = archiveOf(layout, bundle, delta, patched, sentWhole);
    const gzipped = bytes.length > GZIP_OVER;
    archives.set(delta, (archive = { bytes: gzipped ? gzipSync(bytes, { level: 1 }) : bytes, gzipped }));
  }
  const link = linkCommand(bundle, delta, posix.relative(staging, base));
  const rebuild = patched.map(([name, t]) => {
    // Created with its mode (umask is built in; the files are new): no chmod process.
    const umask = (~bundle.files[name]!.mode & 0o777).toString(8).padStart(3, '0');
    const d = (suffix: string) => posix.join(DELTA_DIR, `${name}.${suffix}`);
    const build =
      t.splice === null
        ? `comm -23 ${sh(posix.join(base, name))} ${sh(d('removed'))} | sort -m - ${sh(d('added'))} > ${sh(name)}`
        : spliceScript(t.splice, posix.join(base, name), d('added'), name);
    return `umask ${umask} && ${build} && umask 077 && rp_sha256_ok ${sh(d('sha256'))}`;
  });
  // The base's files as its manifest saw them when it was built (a short manifest read by the
  // shell's own `read`, a long one compared by `cmp`: SHELL_READ_LINES); a release from before
  // manifests: its SHA-256s.
  const manifestMatches =
    delta.baseFiles.length <= SHELL_READ_LINES
      ? [
          `rp_m=; while IFS= read -r rp_l; do rp_m="$rp_m$rp_l`,
          `"; done < ${sh(FILES_STAT)}; [ "$(${filesStatCommand(delta.baseFiles)})" = "\${rp_m%?}" ]`,
        ].join('\n')
      : `${filesStatCommand(delta.baseFiles)} | cmp -s - ${sh(FILES_STAT)}`;
  const baseCheck = [
    `if [ -f ${sh(FILES_STAT)} ]; then ${manifestMatches}`,
    `else ${sh('sha256sum', '--quiet', '--strict', '-c', posix.join(staging, DELTA_DIR, 'base.sha256'))}; fi`,
  ].join('\n');
  const refuse = (code: number) => `{ cd / && rm -rf ${sh(staging)}; exit ${code}; }`;
  const script = [
    `${releasesDirCommand(layout)} && umask 077 && ${sh('mkdir', staging)} && cd ${sh(staging)}`,
    sh('tar', '-x', ...(archive.gzipped ? ['-z'] : []), '-m', '--no-same-owner', '-f', '-'),
    // In the script's own shell (a subshell is one more process on the node), then back.
    `{ cd ${sh(base)} && ${baseCheck}; } >/dev/null 2>&1 || ${refuse(BASE_DRIFTED)}`,
    `cd ${sh(staging)}`,
    ...(link !== '' ? [link] : []),
    ...(rebuild.length > 0
      ? [SHA256_CHECK, `${concurrently(rebuild)} >/dev/null 2>&1 || ${refuse(DIGEST_MISMATCH)}`]
      : []),
  ].join(' &&\n');
  const r = await conn.exec(script, { stdin: archive.bytes });
  if (r.code === 0) return 'staged';
  if (r.code === BASE_DRIFTED) return 'base-drifted';
  if (r.code === DIGEST_MISMATCH) return 'digest-mismatch';
  throw new Error(`stage (delta): exit ${r.code}: ${excerpt(r.stderr, 300) || '(no stderr)'}`);
}

const linkCommands = new WeakMap<BundleDelta, { from: string; command: string }>();

/**
 * The `ln` of a delta's unchanged files (a table with its `.db`) from the base release at `from`,
 * relative to the staging dir beside it: the same for every node, so built once per delta (at
 * 100,000 domains a release is hundreds of files). Empty when nothing is unchanged.
 */
function linkCommand(bundle: Bundle, delta: BundleDelta, from: string): string {
  const known = linkCommands.get(delta);
  if (known?.from === from) return known.command;
  const files = delta.unchanged.flatMap((name) =>
    bundle.files[name]!.mapType === 'hash' ? [name, `${name}.db`] : [name],
  );
  const command = files.length === 0 ? '' : `ln ${files.map((f) => sh(posix.join(from, f))).join(' ')} .`;
  linkCommands.set(delta, { from, command });
  return command;
}

/**
 * Tables sent whole are built by two `postmap`s side by side past this many characters in all (a
 * relay's first limit, a layout change: every shard of a table), where the wait is the build's;
 * below it by one: a `postmap` costs the node its start-up (dynamic linking, main.cf) before it
 * reads a line, more than splitting the four shards an onboarding touches saves of the wait.
 */
const SPLIT_BUILD_OVER = 4 * SEND_WHOLE_UP_TO;

/** The tables in one group, or in two of about equal size when they are more than SPLIT_BUILD_OVER together. */
function buildGroups<T extends readonly [string, BundleFile]>(tables: T[]): T[][] {
  const sizes = tables.map(([, file]) => textLength(file));
  const total = sizes.reduce((a, b) => a + b, 0);
  if (tables.length < 2 || total <= SPLIT_BUILD_OVER) return tables.length === 0 ? [] : [tables];
  const groups: [T[], T[]] = [[], []];
  const filled = [0, 0];
  // Largest first, each to the lighter group.
  for (const i of sizes.map((_, i) => i).sort((a, b) => sizes[b]! - sizes[a]!)) {
    const g = filled[0]! <= filled[1]! ? 0 : 1;
    groups[g].push(tables[i]!);
    filled[g]! += sizes[i]!;
  }
  return groups;
}

/**
 * The delta release's tables: each changed table's base `.db` copied and updated (`postmap -d`,
 * then `postmap -i -r`), whole ones built, then the modes as postmapTables checks them. Any
 * postmap stderr is a failure, quoted without secrets.
 */
export async function postmapDelta(
  conn: NodeConnection,
  layout: NodeLayout,
  bundle: Bundle,
  delta: BundleDelta,
  staging: string,
  beside?: BesideScript,
): Promise<string[]> {
  const base = layout.release(delta.base);
  const names = Object.keys(delta.tables).filter((name) => !delta.tables[name]!.sent);
  const jobs = names.map((name) => {
    const table = sh(`hash:${name}`);
    const d = (suffix: string) => sh(posix.join(DELTA_DIR, `${name}.${suffix}`));
    return [
      sh('cp', '-p', posix.join(base, `${name}.db`), '.'),
      `{ [ ! -s ${d('deleted')} ] || postmap -d - ${table} < ${d('deleted')}; }`,
      `{ [ ! -s ${d('added')} ] || postmap -i -r ${table} < ${d('added')}; }`,
    ].join(' && ');
  });
  // The tables sent whole built by one postmap, or two side by side when they are large (many shards).
  const whole = hashMaps(bundle).filter(([name]) => delta.whole.includes(name) || delta.tables[name]?.sent === true);
  for (const group of buildGroups(whole)) jobs.push(sh('postmap', ...group.map(([name]) => `hash:${name}`)));
  // One touch for every table (each process costs milliseconds of the node's CPU).
  const steps = [
    ...(jobs.length > 0 ? [concurrently(jobs)] : []),
    ...(names.length > 0 ? [sh('touch', ...names.map((name) => `${name}.db`))] : []),
  ];
  const script = steps.length > 0 ? steps.join(' && ') : 'true';
  // Skipped when the stage before it did not stage (a RemoteCommandError of SKIPPED_EXIT).
  const r = await conn.exec(withModes(script, bundle, beside), { cwd: staging, ifPreviousOk: true });
  if (r.code !== 0 || r.stderr.trim() !== '')
    return [`postmap (delta) exit ${r.code}: ${excerpt(postmapStderr(r.stderr, bundle), 300)}`];
  return modeProblems(r.stdout, bundle);
}

/** Stage and postmap of a release sent ahead: from a delta when one applies, else (or when the node refuses it) whole. */
export interface StagingPlan {
  dir: string;
  /** Stages the release; resolves with the delta it was built from, or null for a full release. */
  stage(): Promise<BundleDelta | null>;
  /** Builds its tables; `staged` is stage()'s promise (after a refused delta, the full build follows it). */
  postmap(staged: Promise<unknown>): Promise<string[]>;
  /** What stage did, for its step record. */
  describe(): string | undefined;
}

export function stagingPlan(
  conn: NodeConnection,
  layout: NodeLayout,
  bundle: Bundle,
  dir: string,
  delta: BundleDelta | null,
  beside?: BesideScript,
): StagingPlan {
  let used: BundleDelta | null = null;
  let refused: DeltaStageResult | undefined;
  return {
    dir,
    async stage() {
      if (delta !== null) {
        const result = await stageDelta(conn, layout, bundle, delta, dir);
        if (result === 'staged') return (used = delta);
        refused = result;
      }
      await stageRelease(conn, layout, bundle, dir);
      return null;
    },
    async postmap(staged) {
      if (delta === null) return postmapTables(chained(conn), dir, bundle, beside);
      try {
        return await postmapDelta(conn, layout, bundle, delta, dir, beside);
      } catch (err) {
        // The node refused the delta (the full upload is on its way) or staging failed: skipped here.
        const fullRelease = await staged.then(
          (d) => d === null,
          () => false,
        );
        if (!skipped(err) || !fullRelease) throw err;
        return postmapTables(conn, dir, bundle, beside);
      }
    },
    describe() {
      if (used !== null) {
        const tables = Object.values(used.tables);
        const entries = tables.reduce((n, t) => n + t.added.length + t.deleted.length, 0);
        const spliced = tables.filter((t) => t.splice !== null).length;
        const sent = tables.filter((t) => t.sent).length;
        const merged = tables.length - spliced - sent;
        return `delta from ${used.base.slice(0, 12)}: ${tables.length} table(s) changed (${entries} entries; ${spliced} spliced, ${merged} merged, ${sent} sent whole), ${used.unchanged.length} linked, ${used.whole.length} whole`;
      }
      return refused === undefined ? undefined : `full release: the node refused the delta (${refused})`;
    },
  };
}
