/**
 * DNS lookups for domain verification and node checks, through the configured servers
 * (RELAYPLANE_DNS_SERVERS). Every answer says whether the record definitively does not exist
 * (NXDOMAIN, NODATA) or the lookup failed: a timeout or SERVFAIL says nothing about a record and
 * must never fail a domain on its own.
 */
import { Resolver } from 'node:dns/promises';
import { isIP, isIPv4, isIPv6 } from 'node:net';

/** Why a lookup failed; temporary, it says nothing about the record. */
export type DnsFailure =
  | 'SERVFAIL'
  | 'TIMEOUT'
  | 'REFUSED'
  | 'CONNREFUSED'
  | 'FORMERR'
  | 'NOTIMP'
  | 'BADRESP'
  | 'BADNAME'
  | 'CANCELLED'
  | 'ERROR';

export type LookupResult<T> =
  | { kind: 'found'; values: T[] }
  /** The name (NXDOMAIN) or the record type at that name (NODATA) does not exist: definitive. */
  | { kind: 'absent'; reason: 'NXDOMAIN' | 'NODATA' }
  /** Temporary: the server failed, refused or did not answer. */
  | { kind: 'error'; reason: DnsFailure };

export interface DnsResolver {
  /** TXT records, each as its character-strings (decoded as UTF-8 where they are valid UTF-8). */
  txt(name: string): Promise<LookupResult<string[]>>;
  /** The CNAME target of a name (no trailing dot). */
  cname(name: string): Promise<LookupResult<string>>;
  /** The MX exchanges of a name (no trailing dot), most preferred first. */
  mx(name: string): Promise<LookupResult<string>>;
  /** A and AAAA addresses, IPv4 first. */
  addresses(name: string): Promise<LookupResult<string>>;
  /** PTR names of an IPv4 or IPv6 address. */
  ptr(address: string): Promise<LookupResult<string>>;
}

export interface ResolverOptions {
  /** `10.0.0.1`, `127.0.0.1:5353`, `::1`, `[::1]:53`. */
  servers: string[];
  /** Per try, default 2000. c-ares backs off, so an unanswered lookup takes a few times this. */
  timeoutMs?: number;
  /** Tries per server. Default 2. */
  tries?: number;
}

const FAILURES: Record<string, DnsFailure> = {
  ESERVFAIL: 'SERVFAIL',
  ETIMEOUT: 'TIMEOUT',
  EREFUSED: 'REFUSED',
  ECONNREFUSED: 'CONNREFUSED',
  EFORMERR: 'FORMERR',
  ENOTIMP: 'NOTIMP',
  EBADRESP: 'BADRESP',
  EBADNAME: 'BADNAME',
  EBADQUERY: 'BADNAME',
  ECANCELLED: 'CANCELLED',
  EDESTRUCTION: 'CANCELLED',
};

async function lookup<T>(run: () => Promise<T[]>): Promise<LookupResult<T>> {
  try {
    const values = await run();
    // c-ares answers an empty list when the answer holds only a CNAME to a name without that type.
    return values.length === 0 ? { kind: 'absent', reason: 'NODATA' } : { kind: 'found', values };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (code === 'ENOTFOUND') return { kind: 'absent', reason: 'NXDOMAIN' };
    if (code === 'ENODATA') return { kind: 'absent', reason: 'NODATA' };
    return { kind: 'error', reason: FAILURES[code] ?? 'ERROR' };
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Node hands TXT character-strings over as Latin-1 (one char per byte); DNS carries bytes. */
function decodeTxt(latin1: string): string {
  if (/^[\x00-\x7f]*$/.test(latin1)) return latin1;
  try {
    return utf8.decode(Buffer.from(latin1, 'latin1'));
  } catch {
    return latin1;
  }
}

/** Combines the A and AAAA answers: any failure makes the set unknown. */
function combine(v4: LookupResult<string>, v6: LookupResult<string>): LookupResult<string> {
  if (v4.kind === 'error') return v4;
  if (v6.kind === 'error') return v6;
  const values = [...(v4.kind === 'found' ? v4.values : []), ...(v6.kind === 'found' ? v6.values : [])];
  if (values.length > 0) return { kind: 'found', values };
  const nxdomain =
    (v4.kind === 'absent' && v4.reason === 'NXDOMAIN') || (v6.kind === 'absent' && v6.reason === 'NXDOMAIN');
  return { kind: 'absent', reason: nxdomain ? 'NXDOMAIN' : 'NODATA' };
}

/**
 * A resolver that asks only `servers`. Throws on an empty list or a malformed server address (a
 * configuration error, not a DNS failure).
 */
export function createDnsResolver(options: ResolverOptions): DnsResolver {
  if (options.servers.length === 0) throw new TypeError('createDnsResolver: no DNS servers given');
  const resolver = new Resolver({ timeout: options.timeoutMs ?? 2000, tries: options.tries ?? 2 });
  resolver.setServers(options.servers);
  return {
    async txt(name) {
      const answer = await lookup(() => resolver.resolveTxt(name));
      return answer.kind === 'found'
        ? { kind: 'found', values: answer.values.map((strings) => strings.map(decodeTxt)) }
        : answer;
    },
    cname: (name) => lookup(() => resolver.resolveCname(name)),
    async mx(name) {
      const answer = await lookup(() => resolver.resolveMx(name));
      return answer.kind === 'found'
        ? { kind: 'found', values: answer.values.sort((a, b) => a.priority - b.priority).map((r) => r.exchange) }
        : answer;
    },
    async addresses(name) {
      const [v4, v6] = await Promise.all([
        lookup(() => resolver.resolve4(name)),
        lookup(() => resolver.resolve6(name)),
      ]);
      return combine(v4, v6);
    },
    async ptr(address) {
      if (isIP(address) === 0) throw new TypeError(`ptr: ${JSON.stringify(address)} is not an IP address`);
      // Not resolver.reverse(): c-ares' gethostbyaddr reports a SERVFAIL as ENOTFOUND.
      return lookup(() => resolver.resolvePtr(reverseName(address)));
    },
  };
}

/** Lower case, no trailing dot: how names are compared. */
export function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/** The name a PTR record of an address lives at: `4.3.2.1.in-addr.arpa`, or nibbles under ip6.arpa. */
export function reverseName(address: string): string {
  if (isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  if (!isIPv6(address)) throw new TypeError(`${JSON.stringify(address)} is not an IP address`);
  let text = address.replace(/%.*$/, '');
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const full =
    tail === undefined
      ? groups(head)
      : [...groups(head), ...Array<string>(8 - groups(head).length - groups(tail).length).fill('0'), ...groups(tail)];
  return `${[...full.map((g) => g.padStart(4, '0')).join('')].reverse().join('.')}.ip6.arpa`;
}
