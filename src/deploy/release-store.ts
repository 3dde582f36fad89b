/**
 * Release directories on a node (see layout.ts): staging, promotion, the `current` switch, the
 * main.cf/master.cf backups a rollback restores, and pruning. Every path is derived from the layout
 * and a validated version, so the `rm -rf` calls here can only hit release directories.
 */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { serviceKey, type Bundle } from './bundle.js';
import { DELTA_DIR, META_DIR, SWITCH_LINK, VERSION_RE, releasesListing, type NodeLayout } from './layout.js';
import { SCRATCH_BEFORE } from './validate-step.js';
import { backdateCommand, planCommands, type ConfigPlan } from './postfix-config.js';
import { RemoteCommandError, SKIPPED_EXIT, excerpt, perlQuote, sh, execOk, type NodeConnection } from '../ssh/index.js';
import { skipStep } from './deploy-journal.js';
import { tarArchive, type TarEntry } from './tar-archive.js';

function assertVersion(version: string): void {
  if (!VERSION_RE.test(version)) throw new Error(`not a release version: ${JSON.stringify(version)}`);
}

/** Creates releases/ (0755) unless it is there: `test` is built in, `mkdir` a process on every deploy. */
export function releasesDirCommand(layout: NodeLayout): string {
  return `{ [ -d ${sh(layout.releases)} ] || { umask 022 && ${sh('mkdir', '-p', layout.releases)}; }; }`;
}

/** The archive entry of a release's switch link (SWITCH_LINK): relative, so every node's layout takes the same bytes. */
export function switchLinkEntry(layout: NodeLayout, version: string): TarEntry {
  assertVersion(version);
  return { name: SWITCH_LINK, mode: 0o777, linkTo: layout.linkTarget(version) };
}

/** A fresh staging dir name for a version (beside its release dir, removed or renamed by the deploy). */
export function stagingDirFor(layout: NodeLayout, version: string): string {
  assertVersion(version);
  return `${layout.release(version)}.tmp-${randomBytes(6).toString('hex')}`;
}

/**
 * Uploads the bundle's files and manifests into a fresh staging dir in one `tar -x`; returns its
 * path. The staging dir is created 0700 under `umask 077`, so no file in it is reachable by anyone
 * but root while it is written; tar opens each file with its final mode (0600 secrets) masked by
 * that umask and sets the exact mode at the end. -m: files get the extraction time, so the .db
 * files postmap writes next are never older than their sources (Postfix warns about that).
 */
export async function stageRelease(
  conn: NodeConnection,
  layout: NodeLayout,
  bundle: Bundle,
  staging = stagingDirFor(layout, bundle.version),
): Promise<string> {
  assertVersion(bundle.version);
  const lines = (items: string[]) => items.map((i) => `${i}\n`).join('');
  const archive = tarArchive([
    ...Object.entries(bundle.files).map(([name, f]) => ({ name, mode: f.mode, content: f.content })),
    { name: `${META_DIR}/`, mode: 0o755 },
    { name: `${META_DIR}/params`, mode: 0o644, content: lines(Object.keys(bundle.mainCf).sort()) },
    { name: `${META_DIR}/services`, mode: 0o644, content: lines(bundle.masterCf.map(serviceKey).sort()) },
    switchLinkEntry(layout, bundle.version),
  ]);
  // releases/ stays traversable (0755): Postfix daemons open tables as root, but nothing needs more
  // secrecy than the 0600 of the secret files themselves.
  await execOk(
    conn,
    `${releasesDirCommand(layout)} && umask 077 && ${sh('mkdir', staging)} && ${sh('tar', '-x', '-m', '--no-same-owner', '-f', '-', '-C', staging)}`,
    { stdin: archive },
  );
  return staging;
}

/**
 * Removes a delta's inputs (validate's scratch copy stays for apply), writes VERSION last and
 * renames the staging dir to releases/<version> (which must not be live).
 */
function promoteScript(layout: NodeLayout, staging: string, version: string): string {
  assertVersion(version);
  const release = layout.release(version);
  const versionFile = posix.join(staging, 'VERSION');
  const delta = posix.join(staging, DELTA_DIR);
  // Tests and umask are built into the shell: only what must change starts a process.
  return [
    // validate's scratch dir stays: apply installs its checked main.cf and master.cf.
    `{ [ ! -e ${sh(delta)} ] || ${sh('rm', '-rf', delta)}; }`,
    `umask 022 && printf '%s\\n' ${version} > ${sh(versionFile)}`,
    sh('chmod', '0755', staging),
    `{ [ ! -e ${sh(release)} ] || ${sh('rm', '-rf', release)}; }`,
    sh('mv', '-T', staging, release),
  ].join(' && ');
}

/** promoteScript in Perl, for the node's Perl loop: the same steps with no process started. */
function promotePerl(layout: NodeLayout, staging: string, version: string): string {
  assertVersion(version);
  const q = perlQuote;
  return [
    `my ($delta, $staging, $release) = (${q(posix.join(staging, DELTA_DIR))}, ${q(staging)}, ${q(layout.release(version))});`,
    'rmtree($delta) or do { err("rm -rf $delta: $!\\n"); return 1 };',
    'my $v;',
    `open($v, ">", "$staging/VERSION") && print({$v} "${version}\\n") && close($v) or do { err("writing $staging/VERSION: $!\\n"); return 1 };`,
    'chmod(0755, $staging) or do { err("chmod $staging: $!\\n"); return 1 };',
    'rmtree($release) or do { err("rm -rf $release: $!\\n"); return 1 };',
    'rename($staging, $release) or do { err("rename $staging to $release: $!\\n"); return 1 };',
    'return 0;',
  ].join('\n');
}

/** switchScript in Perl, for the node's Perl loop. */
function switchPerl(layout: NodeLayout, version: string): string {
  assertVersion(version);
  const q = perlQuote;
  return [
    `my ($own, $current, $target) = (${q(posix.join(layout.release(version), SWITCH_LINK))}, ${q(layout.current)}, ${q(layout.linkTarget(version))});`,
    'if (-l $own) { rename($own, $current) and return 0; err("rename $own to $current: $!\\n"); return 1 }',
    'my $tmp = "$current.tmp"; unlink $tmp;',
    'symlink($target, $tmp) && rename($tmp, $current) and return 0;',
    'err("linking $current to $target: $!\\n"); return 1;',
  ].join('\n');
}

/**
 * Points `current` at a release. A symlink renamed over the old one: rename(2) is atomic, so a
 * daemon opening a table sees the old or the new release, never neither. The release's own link
 * (SWITCH_LINK, from its archive) is renamed when it is there (a release staged by this version,
 * not yet live); otherwise (a rollback, an older release) one is made.
 */
function switchScript(layout: NodeLayout, version: string): string {
  assertVersion(version);
  const own = posix.join(layout.release(version), SWITCH_LINK);
  const tmp = `${layout.current}.tmp`;
  const made = `${sh('ln', '-sfn', layout.linkTarget(version), tmp)} && ${sh('mv', '-T', tmp, layout.current)}`;
  return `if [ -h ${sh(own)} ]; then ${sh('mv', '-T', own, layout.current)}; else ${made}; fi`;
}

/** Points `current` at a release (switchScript), or removes it for null. */
export async function switchCurrent(conn: NodeConnection, layout: NodeLayout, version: string | null): Promise<void> {
  await execOk(
    conn,
    version === null ? sh('rm', '-f', layout.current) : switchScript(layout, version),
    version === null ? {} : { perl: switchPerl(layout, version) },
  );
}

/** The exit code of promoteAndSwitch's command when the promote failed (nothing was switched). */
const PROMOTE_FAILED = 90;

export interface PromoteAndSwitch {
  /** Resolves with the release dir once promoted (promoteScript); rejects when the promote failed. */
  promoted: Promise<string>;
  /** Resolves once switched (switchScript); rejects when the switch failed, as skipped when the promote did. */
  switched: Promise<void>;
}

/**
 * promoteScript, then switchScript, as one command: one frame, so one shell process fewer on the
 * node per deploy. The exit code tells which part failed: PROMOTE_FAILED, nothing switched.
 */
export function promoteAndSwitch(
  conn: NodeConnection,
  layout: NodeLayout,
  staging: string,
  version: string,
): PromoteAndSwitch {
  const command = `{ ${promoteScript(layout, staging, version)}; } || exit ${PROMOTE_FAILED}\n${switchScript(layout, version)}`;
  const perl = `my $promote = sub {\n${promotePerl(layout, staging, version)}\n};\n$promote->() == 0 or return ${PROMOTE_FAILED};\n${switchPerl(layout, version)}`;
  const ran = conn.exec(command, { perl });
  const failed = (what: string, code: number, stderr: string) =>
    new RemoteCommandError(`${what}: exit ${code}: ${excerpt(stderr, 300) || '(no stderr)'}`, code, stderr);
  const promoted = ran.then((r) => {
    if (r.code === SKIPPED_EXIT || r.code === PROMOTE_FAILED) throw failed('promote', r.code, r.stderr);
    return layout.release(version);
  });
  const switched = ran.then((r) => {
    if (r.code === SKIPPED_EXIT || r.code === PROMOTE_FAILED) skipStep('switch');
    if (r.code !== 0) throw failed('switch', r.code, r.stderr);
  });
  return { promoted, switched };
}

/** main.cf and master.cf as they were just before the release was applied: what restoreConfig puts back. */
const backupDir = (release: string) => posix.join(release, META_DIR, 'before');

/** Where validate edits and checks copies of main.cf and master.cf (stagedConfigScript), in a staging or release dir. */
export const scratchDirOf = (dir: string) => posix.join(dir, META_DIR, 'check');

/**
 * Applies the plan to the live main.cf and master.cf, after a copy of both goes into the release
 * (printing `backed-up` once it is there). `checked`: validate edited and checked copies in the
 * release's scratch dir (stagedConfigScript); while the live files still match the copies it read,
 * its files are renamed into place and the copies it read become the backup, with no postconf on
 * the way. Otherwise (a hand edit since, or a repair without validate) the plan's postconf edits
 * run on the live files.
 */
export function applyCommand(layout: NodeLayout, release: string, plan: ConfigPlan, checked: boolean): string {
  const live = (f: string) => posix.join(layout.configDir, f);
  const backup = backupDir(release);
  const edits = [
    sh('mkdir', '-p', backup),
    // A backup validate installed is a hard link of a live file (its copy as read, see below): a
    // repair of that release copies over it only once the link is gone ("are the same file").
    sh('rm', '-f', posix.join(backup, 'main.cf'), posix.join(backup, 'master.cf')),
    sh('cp', '-p', live('main.cf'), live('master.cf'), backup),
    'echo backed-up',
    ...planCommands(plan),
    backdateCommand(live('main.cf')),
  ].join(' && ');
  if (!checked) return edits;
  const scratch = scratchDirOf(release);
  const read = posix.join(scratch, SCRATCH_BEFORE);
  const same = ['main.cf', 'master.cf'].map((f) => sh('cmp', '-s', live(f), posix.join(read, f))).join(' && ');
  const install = [
    sh('mv', '-T', read, backup),
    'echo backed-up',
    // Renames (the scratch dir is under the config dir): main.cf keeps the date validate gave it.
    sh('mv', '-f', posix.join(scratch, 'master.cf'), posix.join(scratch, 'main.cf'), layout.configDir),
    // What is left: validate's record of its checks (stagedConfigStart).
    sh('rm', '-rf', scratch),
  ].join(' && ');
  return `if ${same}; then ${install}; else ${sh('rm', '-rf', scratch)} && ${edits}; fi`;
}

/** Puts the backed-up main.cf and master.cf back (copy, then rename over the live file). */
export async function restoreConfig(conn: NodeConnection, layout: NodeLayout, release: string): Promise<void> {
  const steps = ['main.cf', 'master.cf'].map((f) => {
    const live = posix.join(layout.configDir, f);
    const tmp = `${live}.relayplane-restore`;
    return `${sh('cp', '-p', posix.join(backupDir(release), f), tmp)} && ${sh('mv', '-f', tmp, live)}`;
  });
  await execOk(conn, [...steps, backdateCommand(posix.join(layout.configDir, 'main.cf'))].join(' && '));
}

/** Removes a staging or release dir (only ever one under releases/). */
export async function removeReleaseDir(conn: NodeConnection, layout: NodeLayout, dir: string): Promise<void> {
  const name = posix.relative(layout.releases, dir);
  if (!/^[0-9a-f]{64}(\.tmp-[0-9a-f]+)?$/.test(name)) throw new Error(`refusing to remove ${dir}`);
  await execOk(conn, sh('rm', '-rf', dir));
}

/** What pruneReleases removes given a listing: the releases past the newest `keep`, and whether any staging dir is there. */
function pruneChoice(keep: number, protect: Array<string | null>, listing: string) {
  const dirs = listing
    .trim()
    .split('\n')
    .map((l) => l.split(' '))
    .filter((p): p is [string, string] => p.length === 2)
    .map(([t, name]) => ({ mtime: Number(t), name }));
  const releases = dirs.filter((d) => VERSION_RE.test(d.name)).sort((a, b) => b.mtime - a.mtime);
  const kept = new Set(protect.filter((v): v is string => v !== null));
  for (const d of releases) if (kept.size < keep) kept.add(d.name);
  const doomed = releases.filter((d) => !kept.has(d.name)).map((d) => d.name);
  return { doomed, staging: dirs.some((d) => d.name.includes('.tmp-')) };
}

/** Whether pruneReleases, given this listing, has anything to do on the node. */
export function pruneHasWork(keep: number, protect: Array<string | null>, listing: string): boolean {
  const { doomed, staging } = pruneChoice(keep, protect, listing);
  return doomed.length > 0 || staging;
}

/**
 * Keeps the `keep` newest releases (by directory mtime, i.e. promotion time), never removing the
 * ones in `protect` (live and previous). Staging dirs left by a crashed deploy go after 10 minutes.
 * `listing`: what releasesListing printed, when it was read already; a prune with nothing to
 * remove then sends nothing.
 */
export async function pruneReleases(
  conn: NodeConnection,
  layout: NodeLayout,
  keep: number,
  protect: Array<string | null>,
  listing?: string,
): Promise<string[]> {
  const text = listing ?? (await execOk(conn, releasesListing(layout))).stdout;
  const { doomed, staging } = pruneChoice(keep, protect, text);
  if (listing !== undefined && doomed.length === 0 && !staging) return doomed;
  const removeStale = sh(
    'find',
    layout.releases,
    '-mindepth',
    '1',
    '-maxdepth',
    '1',
    '-type',
    'd',
    '-name',
    '*.tmp-*',
    '-mmin',
    '+10',
    '-exec',
    'rm',
    '-rf',
    '{}',
    '+',
  );
  const doomedDirs = doomed.map((name) => posix.join(layout.releases, name));
  const removeOld = doomed.length > 0 ? sh('rm', '-rf', '--', ...doomedDirs) : 'true';
  const withStale = listing === undefined || staging;
  await execOk(conn, withStale ? `${removeStale} && ${removeOld}` : removeOld, {
    perl: prunePerl(layout, withStale, doomedDirs),
  });
  return doomed;
}

/** pruneReleases' removals in Perl, for the node's Perl loop: no `find`, no `rm`. */
function prunePerl(layout: NodeLayout, withStale: boolean, doomedDirs: string[]): string {
  return [
    `my ($releases, @doomed) = (${[layout.releases, ...doomedDirs].map(perlQuote).join(', ')});`,
    ...(withStale
      ? [
          // find's -type d -name '*.tmp-*' -mmin +10: a directory (not a link to one) older than 10 minutes.
          'opendir(my $d, $releases) or do { err("reading $releases: $!\\n"); return 1 };',
          'my @stale = grep { /[.]tmp-/ && lstat("$releases/$_") && -d _ && (stat _)[9] < time - 600 } readdir $d; closedir $d;',
          'push @doomed, map { "$releases/$_" } @stale;',
        ]
      : []),
    'for (@doomed) { rmtree($_) or do { err("rm -rf $_: $!\\n"); return 1 } }',
    'return 0;',
  ].join('\n');
}
