/**
 * The check that a domain's SPF record (RFC 7208) reaches its relays' includes: exactly one record,
 * valid, its include: and redirect= followed through DNS within the limit of 10 DNS-querying terms
 * (§4.6.4), loops and dead ends reported. Only what needs no message is expanded (`%{d}`, the
 * escapes); a term needing the sender or the client address is counted but not followed.
 */
import type { DnsResolver, LookupResult } from './resolver.js';
import { normalizeName } from './resolver.js';
import {
  expandDomainSpec,
  isSpfRecord,
  parseSpf,
  validDnsName,
  type SpfModifier,
  type SpfQualifier,
  type SpfTerm,
} from './spf.js';

/** RFC 7208 §4.6.4. */
export const SPF_LOOKUP_LIMIT = 10;
/** RFC 7208 §4.6.4: DNS-querying terms whose query finds nothing (NXDOMAIN or no records). */
export const SPF_VOID_LOOKUP_LIMIT = 2;

export interface SpfCheck {
  /** null: a temporary DNS failure left the answer unknown. */
  valid: boolean | null;
  reason: string | null;
  /** The domain's SPF record(s) as published. */
  observed: string[];
  /** DNS-querying terms counted (§4.6.4); a lower bound when the walk stopped early. */
  lookups: number;
  /** Every include/redirect target reached, lower case, sorted. */
  reached: string[];
  /** Names an `a`, `mx` or `exists` term queried and found nothing at (void lookups, §4.6.4). */
  voids: string[];
}

/** Most TXT queries one check makes (a diamond of includes could otherwise multiply them). */
const QUERY_CAP = 40;
const DNS_MECHANISMS = new Set(['include', 'a', 'mx', 'ptr', 'exists']);

interface Walk {
  resolver: DnsResolver;
  cache: Map<string, Promise<LookupResult<string[]>>>;
  queries: number;
  capped: boolean;
  lookups: number;
  /** target → '+' when some path to it is all pass, else the first qualifier that stops a pass. */
  reached: Map<string, SpfQualifier>;
  voids: string[];
  problem: string | null;
  temporary: string | null;
}

function spfRecordsOf(txt: string[][]): string[] {
  return txt.map((strings) => strings.join('')).filter(isSpfRecord);
}

async function walk(w: Walk, domain: string, terms: SpfTerm[], path: string[], blocking: SpfQualifier): Promise<void> {
  const hasAll = terms.some((t) => t.kind === 'mechanism' && t.name === 'all');
  for (const term of terms) {
    if (w.problem !== null) return;
    if (term.kind === 'modifier') continue;
    // §5.1: mechanisms after "all" are never evaluated.
    if (term.name === 'all') break;
    if (DNS_MECHANISMS.has(term.name)) w.lookups++;
    if (term.name === 'a' || term.name === 'mx' || term.name === 'exists')
      await probe(w, term.name, term.domain ?? domain, domain);
    if (term.name === 'include')
      await follow(w, term.domain, domain, 'included by', path, blocking === '+' ? term.qualifier : blocking);
  }
  // §6.1: redirect is ignored when the record has an "all" mechanism.
  const redirect = terms.find((t): t is SpfModifier => t.kind === 'modifier' && t.name === 'redirect');
  if (redirect !== undefined && !hasAll && w.problem === null) {
    w.lookups++;
    await follow(w, redirect.value, domain, 'redirect from', path, blocking);
  }
}

/**
 * Queries the name an `a`, `mx` or `exists` term looks up, to count void lookups (§4.6.4). Without
 * a client address, `a` and `exists` count as void when the name has neither A nor AAAA records
 * (a receiver asks for one family only: a name with only AAAA records is void to an IPv4 client).
 */
async function probe(w: Walk, mechanism: 'a' | 'mx' | 'exists', spec: string, current: string): Promise<void> {
  const expanded = expandDomainSpec(spec, current);
  if (expanded === null) return; // depends on the message
  const name = normalizeName(expanded);
  if (!validDnsName(name)) return;
  if (w.queries >= QUERY_CAP) {
    w.capped = true;
    return;
  }
  w.queries++;
  const answer = await (mechanism === 'mx' ? w.resolver.mx(name) : w.resolver.addresses(name));
  if (answer.kind === 'error')
    w.temporary ??= `DNS lookup of ${mechanism === 'mx' ? 'MX' : 'A/AAAA'} ${name} (${mechanism} in the SPF record of ${current}) failed: ${answer.reason}`;
  else if (answer.kind === 'absent') w.voids.push(`${mechanism}:${name}`);
}

async function follow(
  w: Walk,
  spec: string,
  parent: string,
  how: string,
  path: string[],
  blocking: SpfQualifier,
): Promise<void> {
  const expanded = expandDomainSpec(spec, parent);
  if (expanded === null) return; // depends on the message: counted, not followed
  const name = normalizeName(expanded);
  const where = `${name} (${how} ${parent})`;
  if (!validDnsName(name)) {
    w.problem = `${where} is not a valid domain name`;
    return;
  }
  const before = w.reached.get(name);
  if (before === undefined || (before !== '+' && blocking === '+')) w.reached.set(name, blocking);
  if (path.includes(name)) {
    w.problem = `SPF include loop: ${[...path, name].join(' → ')}`;
    return;
  }
  if (w.queries >= QUERY_CAP) {
    w.capped = true;
    return;
  }
  w.queries++;
  let pending = w.cache.get(name);
  if (pending === undefined) {
    pending = w.resolver.txt(name);
    w.cache.set(name, pending);
  }
  const answer = await pending;
  if (answer.kind === 'error') {
    w.temporary ??= `DNS lookup of TXT ${where} failed: ${answer.reason}`;
    return;
  }
  const records = answer.kind === 'found' ? spfRecordsOf(answer.values) : [];
  if (records.length !== 1) {
    const what =
      records.length > 1
        ? `has ${records.length} SPF records (RFC 7208 §4.5: permerror)`
        : answer.kind === 'absent' && answer.reason === 'NXDOMAIN'
          ? 'does not exist (NXDOMAIN; RFC 7208 §5.2: permerror)'
          : 'has no SPF record (RFC 7208 §5.2: permerror)';
    w.problem = `${where} ${what}`;
    return;
  }
  const parsed = parseSpf(records[0]!);
  if (!parsed.ok) {
    w.problem = `SPF record at ${where} is invalid: ${parsed.error}`;
    return;
  }
  await walk(w, name, parsed.terms, [...path, name], blocking);
}

const QUALIFIER_NAMES: Record<SpfQualifier, string> = { '+': 'pass', '-': 'fail', '~': 'softfail', '?': 'neutral' };

/**
 * The domain's SPF record must exist once, parse, stay within 10 DNS lookups and reach every wanted
 * include with a pass qualifier all the way. A definitive problem wins over a temporary DNS failure
 * (valid: false); a temporary failure with nothing definitive leaves the answer unknown (null).
 */
export async function checkSpf(domain: string, wantedIncludes: string[], resolver: DnsResolver): Promise<SpfCheck> {
  const name = normalizeName(domain);
  const top = await resolver.txt(name);
  if (top.kind === 'error')
    return {
      valid: null,
      reason: `DNS lookup of TXT ${name} failed: ${top.reason}`,
      observed: [],
      lookups: 0,
      reached: [],
      voids: [],
    };
  const observed = top.kind === 'found' ? spfRecordsOf(top.values) : [];
  const result = (valid: boolean | null, reason: string | null, w?: Walk): SpfCheck => ({
    valid,
    reason,
    observed,
    lookups: w?.lookups ?? 0,
    reached: [...(w?.reached.keys() ?? [])].sort(),
    voids: w?.voids ?? [],
  });
  if (observed.length === 0) return result(false, `no SPF record at ${name}`);
  if (observed.length > 1) return result(false, `${observed.length} SPF records at ${name} (RFC 7208 §4.5: permerror)`);
  const parsed = parseSpf(observed[0]!);
  if (!parsed.ok) return result(false, `SPF record at ${name} is invalid: ${parsed.error}`);

  const w: Walk = {
    resolver,
    cache: new Map(),
    queries: 0,
    capped: false,
    lookups: 0,
    reached: new Map(),
    voids: [],
    problem: null,
    temporary: null,
  };
  await walk(w, name, parsed.terms, [name], '+');
  if (w.problem !== null) return result(false, w.problem, w);
  if (w.lookups > SPF_LOOKUP_LIMIT) {
    const needs = w.capped
      ? `more than ${w.lookups}`
      : w.temporary !== null
        ? `at least ${w.lookups}`
        : String(w.lookups);
    return result(false, `SPF needs ${needs} DNS lookups; RFC 7208 §4.6.4 allows ${SPF_LOOKUP_LIMIT}`, w);
  }
  if (w.voids.length > SPF_VOID_LOOKUP_LIMIT) {
    return result(
      false,
      `SPF makes ${w.voids.length} void lookups (${w.voids.join(', ')} found nothing); RFC 7208 §4.6.4 allows ${SPF_VOID_LOOKUP_LIMIT} (permerror)`,
      w,
    );
  }
  if (w.temporary !== null) return result(null, w.temporary, w);
  const wanted = [...new Set(wantedIncludes.map(normalizeName))];
  const missing = wanted.filter((i) => !w.reached.has(i));
  if (missing.length > 0) {
    const whose = missing.length === 1 ? "the relay's SPF include" : "the relays' SPF includes";
    return result(false, `does not include ${missing.join(', ')} (${whose})`, w);
  }
  const blocked = wanted.find((i) => w.reached.get(i) !== '+');
  if (blocked !== undefined) {
    const q = w.reached.get(blocked)!;
    return result(
      false,
      `includes ${blocked} only with qualifier "${q}" (${QUALIFIER_NAMES[q]}): the relay's mail would not pass SPF`,
      w,
    );
  }
  return result(true, null, w);
}
