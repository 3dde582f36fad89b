/**
 * DMARC (RFC 7489): the syntax of a policy record (§6.3, §6.4) and the check that `_dmarc.<domain>`
 * holds exactly one valid record (§6.6.3: with two or more, no policy applies).
 */
import { getDomain } from 'tldts';
import type { DnsResolver } from './resolver.js';
import { normalizeName } from './resolver.js';

export type DmarcPolicy = 'none' | 'quarantine' | 'reject';

export interface DmarcRecord {
  p: DmarcPolicy;
  sp: DmarcPolicy | null;
  pct: number | null;
  adkim: 'r' | 's' | null;
  aspf: 'r' | 's' | null;
  /** Report URIs as written (`mailto:…`, with an optional `!size` limit). */
  rua: string[];
  ruf: string[];
  fo: ('0' | '1' | 'd' | 's')[] | null;
  rf: string[] | null;
  ri: number | null;
  /** Tags this version does not know, lower-case names: receivers ignore them (§6.3). */
  unknown: Record<string, string>;
}

/** A record with policy `p` and every other tag absent (its defaults apply). */
export function dmarcRecord(p: DmarcPolicy): DmarcRecord {
  return {
    p,
    sp: null,
    pct: null,
    adkim: null,
    aspf: null,
    rua: [],
    ruf: [],
    fo: null,
    rf: null,
    ri: null,
    unknown: {},
  };
}

export type DmarcParse = { ok: true; record: DmarcRecord } | { ok: false; error: string };

const POLICIES: readonly string[] = ['none', 'quarantine', 'reject'];
const WSP = /^[ \t]*|[ \t]*$/g;
const TAG_NAME = /^[a-z][a-z0-9_]*$/i;
/** dmarc-uri restricted to what receivers send reports to: mailto, with an optional size limit. */
const MAILTO = /^mailto:[^\s@,;!]+@[a-z0-9_-]+(?:\.[a-z0-9_-]+)+(?:![0-9]+[kmgt]?)?$/i;
const KEYWORD = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/i;

/** §6.6.3: TXT records at `_dmarc.<domain>` that do not start with this are not DMARC records. */
export function isDmarcRecord(text: string): boolean {
  // "v" is case-insensitive (ABNF), "DMARC1" is not (%x44 %x4d %x41 %x52 %x43 %x31).
  return /^[vV][ \t]*=[ \t]*DMARC1(?![0-9A-Za-z])/.test(text);
}

const trim = (s: string) => s.replace(WSP, '');

function uris(tag: string, value: string): string[] | string {
  const list = value.split(',').map(trim);
  for (const uri of list) {
    if (uri === '') return `${tag} has an empty URI`;
    if (!/^mailto:/i.test(uri)) return `${tag}: "${uri}" is not a mailto: URI`;
    if (!MAILTO.test(uri)) return `${tag}: "${uri}" is not a valid mailto: address`;
  }
  return list;
}

/** Parses a record (`v=DMARC1; p=…`); the error names the offending tag. */
export function parseDmarc(text: string): DmarcParse {
  if (!isDmarcRecord(text)) return { ok: false, error: 'does not start with v=DMARC1' };
  const [version, ...parts] = text.split(';');
  if (!/^[vV][ \t]*=[ \t]*DMARC1[ \t]*$/.test(version!)) return { ok: false, error: `expected ";" after v=DMARC1` };
  const tags = new Map<string, string>();
  for (const raw of parts) {
    const part = trim(raw);
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = trim(part.slice(0, Math.max(eq, 0))).toLowerCase();
    if (eq < 0 || !TAG_NAME.test(name)) return { ok: false, error: `"${part}" is not a tag=value pair` };
    if (name === 'v') return { ok: false, error: 'v= must be the first tag, and only once' };
    if (tags.has(name)) return { ok: false, error: `tag ${name} appears more than once` };
    const value = trim(part.slice(eq + 1));
    if (value === '') return { ok: false, error: `${name}= has no value` };
    tags.set(name, value);
  }
  const fail = (error: string): DmarcParse => ({ ok: false, error });
  const p = tags.get('p');
  if (p === undefined) return fail('has no p= policy (RFC 7489 §6.3: required)');
  const record = dmarcRecord('none');
  for (const [name, value] of tags) {
    switch (name) {
      case 'p':
      case 'sp': {
        const v = value.toLowerCase();
        if (!POLICIES.includes(v)) return fail(`${name}=${value} is not none, quarantine or reject`);
        record[name] = v as DmarcPolicy;
        break;
      }
      case 'pct':
        if (!/^[0-9]{1,3}$/.test(value) || Number(value) > 100) return fail(`pct=${value} is not 0-100`);
        record.pct = Number(value);
        break;
      case 'adkim':
      case 'aspf':
        if (!/^[rs]$/i.test(value)) return fail(`${name}=${value} is not r or s`);
        record[name] = value.toLowerCase() as 'r' | 's';
        break;
      case 'rua':
      case 'ruf': {
        const list = uris(name, value);
        if (typeof list === 'string') return fail(list);
        record[name] = list;
        break;
      }
      case 'fo': {
        const options = value.split(':').map((o) => trim(o).toLowerCase());
        if (!options.every((o) => /^[01ds]$/.test(o))) return fail(`fo=${value} is not a list of 0, 1, d, s`);
        record.fo = options as DmarcRecord['fo'];
        break;
      }
      case 'rf': {
        const formats = value.split(':').map(trim);
        if (!formats.every((f) => KEYWORD.test(f))) return fail(`rf=${value} is not a list of report formats`);
        record.rf = formats.map((f) => f.toLowerCase());
        break;
      }
      case 'ri':
        if (!/^[0-9]{1,10}$/.test(value) || Number(value) > 0xffffffff)
          return fail(`ri=${value} is not a number of seconds`);
        record.ri = Number(value);
        break;
      default:
        record.unknown[name] = value;
    }
  }
  return { ok: true, record };
}

/** The record text (tags in RFC order); parseDmarc(formatDmarc(r)) gives r back. */
export function formatDmarc(r: DmarcRecord): string {
  const tags: [string, string | null][] = [
    ['p', r.p],
    ['sp', r.sp],
    ['pct', r.pct === null ? null : String(r.pct)],
    ['adkim', r.adkim],
    ['aspf', r.aspf],
    ['rua', r.rua.length === 0 ? null : r.rua.join(',')],
    ['ruf', r.ruf.length === 0 ? null : r.ruf.join(',')],
    ['fo', r.fo === null ? null : r.fo.join(':')],
    ['rf', r.rf === null ? null : r.rf.join(':')],
    ['ri', r.ri === null ? null : String(r.ri)],
    ...Object.entries(r.unknown),
  ];
  return ['v=DMARC1', ...tags.filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`)].join('; ');
}

/** The policy that applies to a domain's mail, and the record it comes from. */
export interface DmarcEffective {
  policy: DmarcPolicy;
  /** The `_dmarc.` name whose record gives the policy. */
  source: string;
  /** True: the domain has no record of its own; its organisational domain's `sp=` (else `p=`) applies. */
  inherited: boolean;
}

export interface DmarcCheck {
  /** null: a temporary DNS failure left the answer unknown. */
  valid: boolean | null;
  reason: string | null;
  /** The TXT records at `_dmarc.<domain>`. */
  observed: string[];
  /** The policy observed to apply, or null when none does. */
  effective: DmarcEffective | null;
  /** The record to publish at `_dmarc.<domain>` given what is published: never weaker than the policy observed. */
  advice: string;
}

export interface DmarcOptions {
  /** Suggested as `rua=mailto:<address>` where a record has no `rua`. */
  reportAddress?: string | null;
}

const STRENGTH: Record<DmarcPolicy, number> = { none: 0, quarantine: 1, reject: 2 };

/**
 * RFC 7489 §3.2: the organisational domain, found with the Public Suffix List (tldts, private
 * section included as most receivers' lists do). A name under no known suffix is its own.
 */
export function organizationalDomain(domain: string): string {
  const name = normalizeName(domain);
  return getDomain(name, { allowPrivateDomains: true }) ?? name;
}

/** The DMARC records among the TXT records at `host` ('error' on a temporary failure). */
async function dmarcAt(
  host: string,
  resolver: DnsResolver,
): Promise<{ observed: string[]; records: string[] } | { error: string }> {
  const answer = await resolver.txt(host);
  if (answer.kind === 'error') return { error: `DNS lookup of TXT ${host} failed: ${answer.reason}` };
  const observed = answer.kind === 'found' ? answer.values.map((s) => s.join('')) : [];
  return { observed, records: observed.filter(isDmarcRecord) };
}

/** A record like `text` with `rua=mailto:<address>` added when it has none (the rest as written). */
function withReports(text: string, record: DmarcRecord, address: string | null | undefined): string {
  if (address === null || address === undefined || address === '' || record.rua.length > 0) return text;
  return `${text.replace(/[ \t;]+$/, '')}; rua=mailto:${address}`;
}

/** What to advise at `_dmarc.<domain>`: the published record kept, or a new one at least as strict as `floor`. */
function adviceFor(
  own: DmarcRecord | null,
  ownText: string | null,
  floor: DmarcPolicy,
  address: string | null | undefined,
): string {
  if (own !== null && ownText !== null && STRENGTH[own.p] >= STRENGTH[floor]) return withReports(ownText, own, address);
  const fresh = dmarcRecord(floor);
  return withReports(formatDmarc(fresh), fresh, address);
}

/**
 * RFC 7489 §6.6.3: exactly one valid record at `_dmarc.<domain>`, or, when there is none there, at
 * the organisational domain's `_dmarc.` name (its `sp=`, else `p=`, then applies).
 */
export async function checkDmarc(
  domain: string,
  resolver: DnsResolver,
  options: DmarcOptions = {},
): Promise<DmarcCheck> {
  const name = normalizeName(domain);
  const host = `_dmarc.${name}`;
  const org = organizationalDomain(name);
  const orgHost = `_dmarc.${org}`;
  const address = options.reportAddress;
  const own = await dmarcAt(host, resolver);
  const advice = (floor: DmarcPolicy) => adviceFor(null, null, floor, address);
  if ('error' in own) return { valid: null, reason: own.error, observed: [], effective: null, advice: advice('none') };
  const { observed, records } = own;

  /** The organisational record's policy for subdomains, when it has exactly one valid record. */
  const inherited = async (): Promise<{ effective: DmarcEffective | null; error: string | null; why: string }> => {
    if (org === name) return { effective: null, error: null, why: '' };
    const up = await dmarcAt(orgHost, resolver);
    if ('error' in up) return { effective: null, error: up.error, why: '' };
    if (up.records.length === 0)
      return { effective: null, error: null, why: `, nor at the organisational domain's ${orgHost}` };
    if (up.records.length > 1)
      return {
        effective: null,
        error: null,
        why: `; ${up.records.length} DMARC records at the organisational domain's ${orgHost} (none applies)`,
      };
    const parsed = parseDmarc(up.records[0]!);
    if (!parsed.ok)
      return {
        effective: null,
        error: null,
        why: `; the organisational domain's record at ${orgHost} is invalid: ${parsed.error}`,
      };
    return {
      effective: { policy: parsed.record.sp ?? parsed.record.p, source: orgHost, inherited: true },
      error: null,
      why: '',
    };
  };

  if (records.length === 0) {
    const up = await inherited();
    if (up.effective !== null)
      return { valid: true, reason: null, observed, effective: up.effective, advice: advice(up.effective.policy) };
    if (up.error !== null) return { valid: null, reason: up.error, observed, effective: null, advice: advice('none') };
    const lower = observed.find((o) => /^v[ \t]*=[ \t]*dmarc1(?![0-9a-z])/i.test(o));
    const hint = lower === undefined ? '' : ` ("${lower}" is not one: the version tag is case-sensitive, v=DMARC1)`;
    return {
      valid: false,
      reason: `no DMARC record at ${host}${hint}${up.why}`,
      observed,
      effective: null,
      advice: advice('none'),
    };
  }
  // A broken or duplicated record here stops policy discovery (§6.6.3): the organisational
  // record does not apply, but its policy is the floor of what to advise.
  const floor = async () => (await inherited()).effective?.policy ?? 'none';
  if (records.length > 1) {
    return {
      valid: false,
      reason: `${records.length} DMARC records at ${host} (RFC 7489 §6.6.3: none applies)`,
      observed,
      effective: null,
      advice: advice(await floor()),
    };
  }
  const parsed = parseDmarc(records[0]!);
  if (!parsed.ok)
    return {
      valid: false,
      reason: `DMARC record at ${host} is invalid: ${parsed.error}`,
      observed,
      effective: null,
      advice: advice(await floor()),
    };
  return {
    valid: true,
    reason: null,
    observed,
    effective: { policy: parsed.record.p, source: host, inherited: false },
    advice: adviceFor(parsed.record, records[0]!, 'none', address),
  };
}
