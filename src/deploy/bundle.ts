/**
 * What the deployer needs of the config bundle the compiler (src/postfix/) produces. The bundle's
 * types are the compiler's own (src/postfix/bundle.ts), declared once.
 */

import {
  chunkedDigest,
  chunkedFile,
  chunksOf,
  DIR_PLACEHOLDER,
  knownDigest,
  SERVICE_PREFIX,
  type Bundle,
  type BundleFile,
  type MasterService,
} from '../postfix/bundle.js';
import { derivedOnce } from '../lib/derived-once.js';

export {
  chunkedDigest,
  chunkedFile,
  chunksOf,
  DIR_PLACEHOLDER,
  knownDigest,
  type Bundle,
  type BundleFile,
  type MasterService,
};

/** master.cf entries whose name starts with this belong to Relayplane: it creates, rewrites and removes them. */
export const MANAGED_SERVICE_PREFIX = SERVICE_PREFIX;

export function renderValue(value: string, liveDir: string): string {
  return value.split(DIR_PLACEHOLDER).join(liveDir);
}

/** `name/type`, the key `postconf -M` and `postconf -P` use. */
export function serviceKey(service: Pick<MasterService, 'name' | 'type'>): string {
  return `${service.name}/${service.type}`;
}

/** The eight master.cf columns, as `postconf -M name/type=...` takes them. */
export function serviceFields(s: MasterService): string {
  return [s.name, s.type, s.private, s.unpriv, s.chroot, s.wakeup, s.maxproc, s.command].join(' ');
}

// Each node's deploy asks for these again; at 100,000 domains a table is hundreds of chunks and a
// release hundreds of files.
/** A file's text length (UTF-16 units), without joining a chunked file. */
export const textLength: (file: BundleFile) => number = derivedOnce((file: BundleFile) =>
  (chunksOf(file) ?? [file.content]).reduce((n, chunk) => n + chunk.length, 0),
);

/** The bundle's hash maps, sorted by name. */
export const hashMaps: (bundle: Bundle) => ReadonlyArray<readonly [string, BundleFile]> = derivedOnce(
  (bundle: Bundle) =>
    Object.entries(bundle.files)
      .filter(([, f]) => f.mapType === 'hash')
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
);

/** Every file a release of `bundle` holds besides its metadata: each file and, for a hash map, its `.db`; sorted. */
export const releaseFiles: (bundle: Bundle) => readonly string[] = derivedOnce((bundle: Bundle) =>
  Object.entries(bundle.files)
    .flatMap(([name, f]) => (f.mapType === 'hash' ? [name, `${name}.db`] : [name]))
    .sort(),
);
