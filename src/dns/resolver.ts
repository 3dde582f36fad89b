/**
 * DNS lookups for domain verification and node checks, through configured servers
 * (RELAYPLANE_DNS_SERVERS). Every answer says whether the record is definitively absent or the
 * lookup failed: a timeout or SERVFAIL says nothing about a record and must never fail a domain.
 */
import { Resolver } from 'node:dns/promises';

export type LookupResult<T> =
  | { kind: 'found'; values: T[] }
  /** The name or the record type does not exist (NXDOMAIN / NODATA): a definitive answer. */
  | { kind: 'absent'; reason: 'NXDOMAIN' | 'NODATA' }
  /** Temporary: the server failed, refused or did not answer. */
  | { kind: 'error'; reason: string };

export interface DnsResolver {
  /** TXT records, each as its character-strings. */
  txt(name: string): Promise<LookupResult<string[]>>;
  cname(name: string): Promise<LookupResult<string>>;
  /** A and AAAA addresses. */
  addresses(name: string): Promise<LookupResult<string>>;
  /** PTR names of an address. */
  ptr(address: string): Promise<LookupResult<string>>;
}

export interface ResolverOptions {
  /** `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:53`. */
  servers: string[];
  timeoutMs?: number;
  tries?: number;
}

const ERROR_NAMES: Record<string, string> = {
  ESERVFAIL: 'SERVFAIL',
  ETIMEOUT: 'TIMEOUT',
  EREFUSED: 'REFUSED',
  ECONNREFUSED: 'CONNECTION REFUSED',
  EFORMERR: 'FORMERR',
  EBADRESP: 'BAD RESPONSE',
  ECANCELLED: 'CANCELLED',
};

async function lookup<T>(run: () => Promise<T[]>): Promise<LookupResult<T>> {
  try {
    const values = await run();
    return values.length === 0 ? { kind: 'absent', reason: 'NODATA' } : { kind: 'found', values };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'ERROR';
    if (code === 'ENOTFOUND') return { kind: 'absent', reason: 'NXDOMAIN' };
    if (code === 'ENODATA') return { kind: 'absent', reason: 'NODATA' };
    return { kind: 'error', reason: ERROR_NAMES[code] ?? code };
  }
}

export function createDnsResolver(options: ResolverOptions): DnsResolver {
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 3000, tries: options.tries ?? 2 });
  resolver.setServers(options.servers);
  return {
    txt: (name) => lookup(() => resolver.resolveTxt(name)),
    cname: (name) => lookup(() => resolver.resolveCname(name)),
    async addresses(name) {
      const [v4, v6] = await Promise.all([lookup(() => resolver.resolve4(name)), lookup(() => resolver.resolve6(name))]);
      const values = [...(v4.kind === 'found' ? v4.values : []), ...(v6.kind === 'found' ? v6.values : [])];
      if (values.length > 0) return { kind: 'found', values };
      if (v4.kind === 'error') return v4;
      if (v6.kind === 'error') return v6;
      return v4.kind === 'absent' && v4.reason === 'NXDOMAIN' ? v4 : { kind: 'absent', reason: 'NODATA' };
    },
    ptr: (address) => lookup(() => resolver.reverse(address)),
  };
}

/** Lower case, no trailing dot. */
export function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}
