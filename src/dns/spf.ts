/**
 * SPF record syntax (RFC 7208 §4.6, §12), with macros (§7) accepted wherever the grammar allows
 * them. Pure; the DNS walk is in spf-check.ts.
 */
import { isIPv6 } from 'node:net';

export type SpfQualifier = '+' | '-' | '~' | '?';

export type SpfMechanism =
  | { kind: 'mechanism'; qualifier: SpfQualifier; name: 'all' }
  | { kind: 'mechanism'; qualifier: SpfQualifier; name: 'include' | 'exists'; domain: string }
  | {
      kind: 'mechanism';
      qualifier: SpfQualifier;
      name: 'a' | 'mx';
      domain: string | null;
      cidr4: number | null;
      cidr6: number | null;
    }
  | { kind: 'mechanism'; qualifier: SpfQualifier; name: 'ptr'; domain: string | null }
  | { kind: 'mechanism'; qualifier: SpfQualifier; name: 'ip4' | 'ip6'; network: string; prefix: number | null };

/** `redirect`, `exp` or an unknown modifier (ignored by evaluators, §6); the name in lower case. */
export interface SpfModifier {
  kind: 'modifier';
  name: string;
  value: string;
}

export type SpfTerm = SpfMechanism | SpfModifier;

export type SpfParse = { ok: true; terms: SpfTerm[] } | { ok: false; error: string };

/** §4.5: a record is an SPF record when it starts with "v=spf1" followed by a space or its end. */
export function isSpfRecord(text: string): boolean {
  return /^v=spf1(?: |$)/i.test(text);
}

const TOPLABEL = /^(?:[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])$/i;
const MACRO_BODY = /^([a-z])(\d*)(r?)([.\-+,/_=]*)$/i;
const QNUM = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
const IP4_NETWORK = new RegExp(`^${QNUM}(?:\\.${QNUM}){3}$`);
const IP6_CHARS = /^[0-9a-f:.]+$/i;
const MODIFIER_NAME = /^[a-z][a-z0-9\-_.]*$/i;

type MacroToken =
  { literal: string } | { macro: string; letter: string; digits: number | null; reverse: boolean; delimiters: string };

/** Splits a macro-string (§7.1) into literals and macros, or says what is wrong. */
function tokenizeMacroString(text: string, expLetters: boolean): MacroToken[] | string {
  const tokens: MacroToken[] = [];
  let literal = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch !== '%') {
      const code = ch.charCodeAt(0);
      if (code < 0x21 || code > 0x7e) return `invalid character ${JSON.stringify(ch)}`;
      literal += ch;
      continue;
    }
    if (literal !== '') tokens.push({ literal });
    literal = '';
    const next = text[i + 1];
    if (next === '%' || next === '_' || next === '-') {
      tokens.push({ macro: `%${next}`, letter: next, digits: null, reverse: false, delimiters: '' });
      i++;
      continue;
    }
    const end = next === '{' ? text.indexOf('}', i) : -1;
    if (end < 0) return `invalid macro "${text.slice(i, i + 3)}"`;
    const macro = text.slice(i, end + 1);
    const m = MACRO_BODY.exec(text.slice(i + 2, end));
    if (m === null || !'slodiphcrtv'.includes(m[1]!.toLowerCase())) return `invalid macro "${macro}"`;
    if (!expLetters && 'crt'.includes(m[1]!.toLowerCase()))
      return `macro "${macro}" is only allowed in exp= text (RFC 7208 §7.1)`;
    if (m[2] !== '' && Number(m[2]) === 0) return `invalid macro "${macro}" (the number of parts must be nonzero)`;
    tokens.push({
      macro,
      letter: m[1]!.toLowerCase(),
      digits: m[2] === '' ? null : Number(m[2]),
      reverse: m[3] !== '',
      delimiters: m[4]!,
    });
    i = end;
  }
  if (literal !== '') tokens.push({ literal });
  return tokens;
}

/** A DNS name as queried: labels of 1-63 octets, 253 in all, at least two labels. */
export function validDnsName(name: string): boolean {
  const bare = name.replace(/\.$/, '');
  const labels = bare.split('.');
  return labels.length >= 2 && bare.length <= 253 && labels.every((l) => /^[\x21-\x7e]{1,63}$/.test(l));
}

/** domain-spec = macro-string domain-end (§7.1); null when valid, else why not. */
function domainSpecError(spec: string): string | null {
  if (spec === '') return 'empty domain';
  const tokens = tokenizeMacroString(spec, false);
  if (typeof tokens === 'string') return tokens;
  const last = tokens[tokens.length - 1]!;
  if ('literal' in last) {
    // domain-end = "." toplabel [ "." ]
    const tail = last.literal.replace(/\.$/, '');
    const dot = tail.lastIndexOf('.');
    if (dot < 0 || !TOPLABEL.test(tail.slice(dot + 1))) return `invalid domain "${spec}"`;
  }
  if (tokens.every((t) => 'literal' in t) && !validDnsName(spec)) return `invalid domain "${spec}"`;
  return null;
}

/** Why a relay's SPF include cannot be published as `include:<name>` (null: it can). For input validation. */
export function spfIncludeError(name: string): string | null {
  return name.includes('%') ? `invalid domain "${name}" (no macros in a relay's include)` : domainSpecError(name);
}

function cidrError(text: string | undefined, max: number): boolean {
  return text !== undefined && (!/^(?:0|[1-9][0-9]{0,2})$/.test(text) || Number(text) > max);
}

function parseMechanism(term: string): SpfMechanism | string {
  const explicit = '+-~?'.includes(term[0]!);
  const qualifier = explicit ? (term[0] as SpfQualifier) : '+';
  const body = explicit ? term.slice(1) : term;
  const raw = /^[^:/]*/.exec(body)![0];
  const name = raw.toLowerCase();
  const arg = body.slice(raw.length);
  const domainIn = (spec: string) => {
    const error = domainSpecError(spec);
    return error === null ? null : `${error} in "${term}"`;
  };
  switch (name) {
    case 'all':
      return arg === '' ? { kind: 'mechanism', qualifier, name } : `"all" takes no argument: "${term}"`;
    case 'include':
    case 'exists': {
      if (!arg.startsWith(':') || arg === ':') return `${name} needs a domain: "${term}"`;
      const domain = arg.slice(1);
      return domainIn(domain) ?? { kind: 'mechanism', qualifier, name, domain };
    }
    case 'a':
    case 'mx': {
      const m = /^(?::(.*?))?(?:\/([0-9]+))?(?:\/\/([0-9]+))?$/.exec(arg);
      if (m === null) return `invalid prefix length in "${term}"`;
      if (cidrError(m[2], 32)) return `invalid IPv4 prefix length "/${m[2]!}" in "${term}"`;
      if (cidrError(m[3], 128)) return `invalid IPv6 prefix length "//${m[3]!}" in "${term}"`;
      const domain = m[1] ?? null;
      const cidr = (t: string | undefined) => (t === undefined ? null : Number(t));
      return (
        (domain === null ? null : domainIn(domain)) ?? {
          kind: 'mechanism',
          qualifier,
          name,
          domain,
          cidr4: cidr(m[2]),
          cidr6: cidr(m[3]),
        }
      );
    }
    case 'ptr': {
      if (arg === '') return { kind: 'mechanism', qualifier, name, domain: null };
      if (!arg.startsWith(':')) return `invalid ptr mechanism "${term}"`;
      return domainIn(arg.slice(1)) ?? { kind: 'mechanism', qualifier, name, domain: arg.slice(1) };
    }
    case 'ip4':
    case 'ip6': {
      if (!arg.startsWith(':') || arg === ':') return `${name} needs a network: "${term}"`;
      const value = arg.slice(1);
      const slash = value.indexOf('/');
      const network = slash < 0 ? value : value.slice(0, slash);
      const prefix = slash < 0 ? undefined : value.slice(slash + 1);
      const ok =
        name === 'ip4'
          ? IP4_NETWORK.test(network) && !cidrError(prefix, 32)
          : validIp6(network) && !cidrError(prefix, 128);
      if (!ok) return `invalid ${name} network "${value}"`;
      return { kind: 'mechanism', qualifier, name, network, prefix: prefix === undefined ? null : Number(prefix) };
    }
    default:
      return `unknown mechanism "${term}"`;
  }
}

/** RFC 4291 §2.2 text forms, without a zone index. */
function validIp6(text: string): boolean {
  return IP6_CHARS.test(text) && isIPv6(text);
}

/** Parses a whole record (`v=spf1 …`); the error names the offending term. */
export function parseSpf(record: string): SpfParse {
  if (!isSpfRecord(record)) return { ok: false, error: 'does not start with v=spf1' };
  const terms: SpfTerm[] = [];
  const seen = { redirect: 0, exp: 0 };
  for (const term of record.slice('v=spf1'.length).split(' ')) {
    if (term === '') continue;
    const bad = [...term].find((ch) => ch.charCodeAt(0) < 0x21 || ch.charCodeAt(0) > 0x7e);
    if (bad !== undefined) return { ok: false, error: `invalid character ${JSON.stringify(bad)} in "${term}"` };
    const eq = term.search(/[=:/]/);
    if (eq > 0 && term[eq] === '=') {
      const name = term.slice(0, eq).toLowerCase();
      const value = term.slice(eq + 1);
      if (!MODIFIER_NAME.test(name))
        return { ok: false, error: `invalid modifier name "${term.slice(0, eq)}" in "${term}"` };
      if (name === 'redirect' || name === 'exp') {
        const error = domainSpecError(value);
        if (error !== null) return { ok: false, error: `${error} in "${term}"` };
        if (++seen[name] > 1) return { ok: false, error: `more than one ${name} modifier` };
      } else {
        const tokens = tokenizeMacroString(value, true);
        if (typeof tokens === 'string') return { ok: false, error: `${tokens} in "${term}"` };
      }
      terms.push({ kind: 'modifier', name, value });
      continue;
    }
    const mechanism = parseMechanism(term);
    if (typeof mechanism === 'string') return { ok: false, error: mechanism };
    terms.push(mechanism);
  }
  return { ok: true, terms };
}

/** The record text of parsed terms (`+` left implicit); parseSpf(formatSpf(t)) gives t back. */
export function formatSpf(terms: SpfTerm[]): string {
  const text = terms.map((t) => {
    if (t.kind === 'modifier') return `${t.name}=${t.value}`;
    const q = t.qualifier === '+' ? '' : t.qualifier;
    switch (t.name) {
      case 'all':
        return `${q}all`;
      case 'include':
      case 'exists':
        return `${q}${t.name}:${t.domain}`;
      case 'a':
      case 'mx':
        return `${q}${t.name}${t.domain === null ? '' : `:${t.domain}`}${t.cidr4 === null ? '' : `/${t.cidr4}`}${t.cidr6 === null ? '' : `//${t.cidr6}`}`;
      case 'ptr':
        return `${q}ptr${t.domain === null ? '' : `:${t.domain}`}`;
      case 'ip4':
      case 'ip6':
        return `${q}${t.name}:${t.network}${t.prefix === null ? '' : `/${t.prefix}`}`;
    }
  });
  return ['v=spf1', ...text].join(' ');
}

/**
 * Expands a domain-spec as far as possible without a message: `%{d}` is the current domain (§7.3);
 * null when it needs the sender, the client address or the HELO name.
 */
export function expandDomainSpec(spec: string, currentDomain: string): string | null {
  const tokens = tokenizeMacroString(spec, false);
  if (typeof tokens === 'string') return null;
  let out = '';
  for (const t of tokens) {
    if ('literal' in t) out += t.literal;
    else if (t.macro === '%%') out += '%';
    else if (t.macro === '%_') out += ' ';
    else if (t.macro === '%-') out += '%20';
    else if (t.letter !== 'd') return null;
    else {
      const parts = currentDomain.split(new RegExp(`[${(t.delimiters || '.').replace(/[-\\\]^]/g, '\\$&')}]`));
      const ordered = t.reverse ? parts.reverse() : parts;
      out += (t.digits === null ? ordered : ordered.slice(-t.digits)).join('.');
    }
  }
  return out.replace(/\.$/, '');
}
