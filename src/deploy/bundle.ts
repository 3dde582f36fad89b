/**
 * The config bundle the compiler (src/postfix/) produces and the deployer pushes to a node.
 * Declared here so the deployer does not depend on the compiler's internals; the compiler's output
 * must be assignable to `Bundle`.
 */

import { DIR_PLACEHOLDER, SERVICE_PREFIX, type BundleFile } from '../postfix/bundle.js';

// Files are exactly the compiler's; services and the bundle are declared structurally (looser than
// the compiler's literal types) so hand-built bundles in tests and future producers fit too.
export { DIR_PLACEHOLDER, type BundleFile };

export interface MasterService {
  /** Service name; must start with MANAGED_SERVICE_PREFIX (the deployer owns those entries). */
  name: string;
  type: 'unix';
  private: string;
  unpriv: string;
  chroot: string;
  wakeup: string;
  maxproc: string;
  /** Daemon in Postfix's daemon_directory, e.g. `smtp`. */
  command: string;
  /** Parameter overrides: `['-o', 'k=v', ...]` or `['k=v', ...]`. Values may contain {{dir}}. */
  args: string[];
}

export interface Bundle {
  /** sha256 hex of the bundle contents. */
  version: string;
  files: Record<string, BundleFile>;
  /** main.cf parameters; values may contain DIR_PLACEHOLDER. */
  mainCf: Record<string, string>;
  masterCf: MasterService[];
  warnings: string[];
}

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

/** The `-o name=value` overrides of a service in order, or the first malformed argument. */
export function serviceParams(service: MasterService): { params: Array<[string, string]>; problem?: string } {
  const params: Array<[string, string]> = [];
  const args = service.args;
  for (let i = 0; i < args.length; i++) {
    let arg = args[i]!;
    if (arg === '-o') {
      const next = args[i + 1];
      if (next === undefined) return { params, problem: `service ${service.name}: '-o' without a value` };
      arg = next;
      i++;
    }
    const eq = arg.indexOf('=');
    if (eq <= 0) return { params, problem: `service ${service.name}: unsupported argument ${JSON.stringify(arg)} (only -o name=value)` };
    params.push([arg.slice(0, eq), arg.slice(eq + 1)]);
  }
  return { params };
}

export function hashMaps(bundle: Bundle): Array<[string, BundleFile]> {
  return Object.entries(bundle.files)
    .filter(([, f]) => f.mapType === 'hash')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
