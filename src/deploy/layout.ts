/**
 * Where a node keeps Relayplane's releases, under the Postfix config dir:
 *
 *   <configDir>/relayplane/current            symlink → releases/<version> (relative), the {{dir}} of main.cf
 *   <configDir>/relayplane/releases/<version>/ map sources, their .db files, VERSION (written last)
 *   <configDir>/relayplane/releases/<version>/.relayplane/
 *       params, services                      what this release manages in main.cf / master.cf
 *       before/main.cf, before/master.cf      the node's files just before this release was applied
 *       check/                                 validate's edited main.cf/master.cf, until apply installs them
 *   <configDir>/relayplane/releases/<version>.tmp-<hex>/  a release being staged (never live)
 *
 * main.cf points at `current`, never at a release: switching the symlink switches every table at
 * once without rewriting main.cf, and rolling back is switching it back.
 */
import { posix } from 'node:path';
import { sh } from '../ssh/index.js';

export interface NodeLayout {
  configDir: string;
  root: string;
  releases: string;
  current: string;
  /** The value of {{dir}}: the stable live directory (the `current` symlink). */
  liveDir: string;
  release(version: string): string;
  /** Symlink target of a release, relative to root (what `current` points at). */
  linkTarget(version: string): string;
}

export const META_DIR = '.relayplane';
/** A delta release's inputs while it is built (delta-release.ts): they hold secret lines, removed at promote. */
export const DELTA_DIR = `${META_DIR}/delta`;
/**
 * A release's own `current` symlink (→ releases/<version>), sent in its archive: the switch renames
 * it over `current`, so making a release live starts no `ln` (release-store.ts).
 */
export const SWITCH_LINK = `${META_DIR}/current`;
export const VERSION_RE = /^[0-9a-f]{64}$/;

export function nodeLayout(configDir: string): NodeLayout {
  if (
    !posix.isAbsolute(configDir) ||
    posix.normalize(configDir) !== configDir ||
    configDir.endsWith('/') ||
    configDir.includes('\n')
  ) {
    throw new Error(`configDir must be a normalized absolute path, got ${JSON.stringify(configDir)}`);
  }
  const root = posix.join(configDir, 'relayplane');
  const releases = posix.join(root, 'releases');
  const current = posix.join(root, 'current');
  return {
    configDir,
    root,
    releases,
    current,
    liveDir: current,
    release: (version) => posix.join(releases, version),
    linkTarget: (version) => `releases/${version}`,
  };
}

/** The version a `current` symlink target names, or null when it is not one of ours. */
export function versionOfTarget(target: string | null): string | null {
  const m = target === null ? null : /^releases\/([0-9a-f]{64})$/.exec(target);
  return m?.[1] ?? null;
}

/**
 * The command listing the release directories with their mtimes (`<seconds.fraction> <name>` a
 * line), for pruneReleases (read with read-node, or with a verify): its arguments, as a Perl body
 * runs it (capture), and releasesListing, as a shell runs it.
 */
export function releasesListingArgs(layout: NodeLayout): string[] {
  return ['find', layout.releases, '-mindepth', '1', '-maxdepth', '1', '-type', 'd', '-printf', '%T@ %f\\n'];
}

export function releasesListing(layout: NodeLayout): string {
  return sh(...releasesListingArgs(layout));
}
