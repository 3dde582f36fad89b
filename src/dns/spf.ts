/**
 * SPF (RFC 7208): syntax of a record (§4.6, §12) and the check that a domain's record reaches its
 * relays' includes within the limit of 10 DNS-querying terms (§4.6.4). Macros (§7) are accepted
 * in domain-specs; a term whose target needs macro expansion is counted but not followed (it
 * depends on the sender of each message).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { normalizeName, type DnsResolver } from './resolver.js';

export type SpfTerm =
  | { kind: 'mechanism'; qualifier: '+' | '-' | '~' | '?'; name: 'all' | 'include' | 'a' | 'mx' | 'ptr' | 'ip4' | 'ip6' | 'exists'; value: string | null }
  | { kind: 'modifier'; name: string; value: string };

export type SpfParse = { ok: true; terms: SpfTerm[] } | { ok: false; error: string };

export const SPF_LOOKUP_LIMIT = 10;
/** How far the check walks past the limit to say how many lookups the record needs (bounded work). */
const WALK_CAP = 50;

const DOMAIN_SPEC = /^(?:%\{[slodiphcrtv]\d*r?[.\-+,/_=]*\}|%%|%_|%-|[\x21-\x24\x26-\x7e])+$/i;
const MODIFIER_NAME = /^[a-z][a-z0-9\-_.]*$/i;

function validDomainSpec(spec: string): boolean {
  if (!DOMAIN_SPEC.test(spec)) return false;
  if (spec.includes('%')) return true; // expanded per message
  const name = spec.replace(/\.$/, '');
  const labels = name.split('.');
  return labels.length >= 2 && labels.every((l) => l.length > 0 && l.length <= 63) && name.length <= 253;
}

function validCidr(text: string, max: number): boolean {
  return /^\d{1,3}$/.test(text) && Number(text) <= max && !(text.length > 1 && text.startsWith('0'));
}

/** Parses `v=spf1 …`; the error names the offending term. */
export function parseSpf(record: string): SpfParse {
  const parts = record.trim().split(/ +/);
  if (parts[0]?.toLowerCase() !== 'v=spf1') return { ok: false, error: 'does not start with v=spf1' };
  const terms: SpfTerm[] = [];
  let redirects = 0;
  let exps = 0;
  for (const term of parts.slice(1)) {
    const modifier = /^([^:/=]+)=(.*)$/.exec(term);
    if (modifier !== null) {
      const name = modifier[1]!.toLowerCase();
      const value = modifier[2]!;
      if (!MODIFIER_NAME.test(name)) return { ok: false, error: `invalid modifier name in "${term}"` };
      if (name === 'redirect' || name === 'exp') {
        if (!validDomainSpec(value)) return { ok: false, error: `invalid domain in "${term}"` };
        if (name === 'redirect' && ++redirects > 1) return { ok: false, error: 'more than one redirect modifier' };
        if (name === 'exp' && ++exps > 1) return { ok: false, error: 'more than one exp modifier' };
      }
      terms.push({ kind: 'modifier', name, value });
      continue;
    }
    let rest = term;
    let qualifier: '+' | '-' | '~' | '?' = '+';
    if ('+-~?'.includes(rest[0] ?? '')) {
      qualifier = rest[0] as '+' | '-' | '~' | '?';
      rest = rest.slice(1);
    }
    const m = /^([a-z0-9]+)(?::(.*))?$/i.exec(rest.includes('/') && !rest.includes(':') ? rest.replace(/\/.*$/, '') : rest);
    const cidrPart = rest.includes('/') && !rest.includes(':') ? rest.slice(rest.indexOf('/')) : '';
    const name = m?.[1]?.toLowerCase();
    const arg = m?.[2] ?? null;
    switch (name) {
      case 'all':
        if (arg !== null || cidrPart !== '') return { ok: false, error: `"all" takes no argument: "${term}"` };
        terms.push({ kind: 'mechanism', qualifier, name, value: null });
        break;
      case 'include':
      case 'exists':
        if (arg === null || !validDomainSpec(arg)) return { ok: false, error: `${name} needs a domain: "${term}"` };
        terms.push({ kind: 'mechanism', qualifier, name, value: arg });
        break;
      case 'a':
      case 'mx': {
        // a[:domain][/cidr4][//cidr6]
        let spec = arg;
        let cidr = cidrPart;
        if (spec !== null && spec.includes('/')) {
          cidr = spec.slice(spec.indexOf('/'));
          spec = spec.slice(0, spec.indexOf('/'));
        }
        if (spec !== null && !validDomainSpec(spec)) return { ok: false, error: `invalid domain in "${term}"` };
        if (cidr !== '') {
          const c = /^(?:\/(\d+))?(?:\/\/(\d+))?$/.exec(cidr);
          if (c === null || (c[1] !== undefined && !validCidr(c[1], 32)) || (c[2] !== undefined && !validCidr(c[2], 128))) {
            return { ok: false, error: `invalid prefix length in "${term}"` };
          }
        }
        terms.push({ kind: 'mechanism', qualifier, name, value: spec });
        break;
      }
      case 'ptr':
        if (arg !== null && !validDomainSpec(arg)) return { ok: false, error: `invalid domain in "${term}"` };
        terms.push({ kind: 'mechanism', qualifier, name, value: arg });
        break;
      case 'ip4': {
        const [ip, cidr, extra] = (arg ?? '').split('/');
        if (ip === undefined || !isIPv4(ip) || extra !== undefined || (cidr !== undefined && !validCidr(cidr, 32))) {
          return { ok: false, error: `invalid ip4 network "${arg ?? ''}"` };
        }
        terms.push({ kind: 'mechanism', qualifier, name, value: arg });
        break;
      }
      case 'ip6': {
        const slash = (arg ?? '').lastIndexOf('/');
        const ip = slash < 0 ? (arg ?? '') : (arg ?? '').slice(0, slash);
        const cidr = slash < 0 ? undefined : (arg ?? '').slice(slash + 1);
        if (!isIPv6(ip) || (cidr !== undefined && !validCidr(cidr, 128))) return { ok: false, error: `invalid ip6 network "${arg ?? ''}"` };
        terms.push({ kind: 'mechanism', qualifier, name, value: arg });
        break;
      }
      default:
        return { ok: false, error: `unknown mechanism "${term}"` };
    }
  }
  return { ok: true, terms };
}

export interface SpfCheck {
  /** null: a temporary DNS failure, nothing known. */
  valid: boolean | null;
  reason: string | null;
  /** The domain's SPF record(s) as published. */
  observed: string[];
  lookups: number;
  /** Every include target reached (lower case). */
  reached: string[];
}

const DNS_TERMS = new Set(['include', 'a', 'mx', 'ptr', 'exists']);

function spfRecords(txt: string[][]): string[] {
  return txt.map((strings) => strings.join('')).filter((r) => /^v=spf1(\s|$)/i.test(r));
}

/** The domain's SPF record must exist once, parse, stay within 10 lookups, and reach every wanted include. */
export async function checkSpf(domain: string, wantedIncludes: string[], resolver: DnsResolver): Promise<SpfCheck> {
  const top = await resolver.txt(domain);
  if (top.kind === 'error') return { valid: null, reason: `DNS lookup of TXT ${domain} failed: ${top.reason}`, observed: [], lookups: 0, reached: [] };
  const records = top.kind === 'found' ? spfRecords(top.values) : [];
  if (records.length === 0) return { valid: false, reason: `no SPF record at ${domain}`, observed: [], lookups: 0, reached: [] };
  if (records.length > 1) {
    return { valid: false, reason: `${records.length} SPF records at ${domain} (RFC 7208 §4.5: permerror)`, observed: records, lookups: 0, reached: [] };
  }
  const state = { lookups: 0, reached: new Set<string>(), visiting: new Set<string>([normalizeName(domain)]) };
  const result = await walk(domain, records[0]!, resolver, state);
  const base = { observed: records, lookups: state.lookups, reached: [...state.reached].sort() };
  if (result !== null) return { ...base, ...result };
  if (state.lookups > SPF_LOOKUP_LIMIT) {
    const needs = state.lookups > WALK_CAP ? `more than ${WALK_CAP}` : String(state.lookups);
    return { ...base, valid: false, reason: `SPF needs ${needs} DNS lookups; RFC 7208 §4.6.4 allows ${SPF_LOOKUP_LIMIT}` };
  }
  const missing = wantedIncludes.map(normalizeName).filter((i) => !state.reached.has(i));
  if (missing.length > 0) {
    return { ...base, valid: false, reason: `does not include ${missing.join(', ')} (the relay's SPF include)` };
  }
  return { ...base, valid: true, reason: null };
}

/** Follows includes and redirect; returns a verdict when the walk itself fails, null when it completes. */
async function walk(
  domain: string,
  record: string,
  resolver: DnsResolver,
  state: { lookups: number; reached: Set<string>; visiting: Set<string> },
): Promise<{ valid: boolean | null; reason: string } | null> {
  const parsed = parseSpf(record);
  if (!parsed.ok) return { valid: false, reason: `SPF record at ${domain} is invalid: ${parsed.error}` };
  const follow: string[] = [];
  for (const term of parsed.terms) {
    if (term.kind === 'mechanism' && DNS_TERMS.has(term.name)) {
      state.lookups++;
      if (term.name === 'include' && term.value !== null && !term.value.includes('%')) follow.push(term.value);
    } else if (term.kind === 'modifier' && term.name === 'redirect') {
      // RFC 7208 §6.1: redirect is ignored when the record has an "all" mechanism.
      if (!parsed.terms.some((t) => t.kind === 'mechanism' && t.name === 'all')) {
        state.lookups++;
        if (!term.value.includes('%')) follow.push(term.value);
      }
    }
  }
  for (const target of follow) {
    if (state.lookups > WALK_CAP) return null;
    const name = normalizeName(target);
    state.reached.add(name);
    if (state.visiting.has(name)) return { valid: false, reason: `SPF include loop at ${name}` };
    const answer = await resolver.txt(name);
    if (answer.kind === 'error') return { valid: null, reason: `DNS lookup of TXT ${name} (included by ${domain}) failed: ${answer.reason}` };
    const records = answer.kind === 'found' ? spfRecords(answer.values) : [];
    if (records.length !== 1) {
      return { valid: false, reason: `${name}, included by ${domain}, has ${records.length === 0 ? 'no SPF record' : `${records.length} SPF records`} (RFC 7208 permerror)` };
    }
    state.visiting.add(name);
    const verdict = await walk(name, records[0]!, resolver, state);
    state.visiting.delete(name);
    if (verdict !== null) return verdict;
  }
  return null;
}
