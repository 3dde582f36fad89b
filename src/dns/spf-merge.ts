/**
 * The SPF record to publish given what a domain publishes already (RFC 7208): a domain may have one
 * SPF record only (§4.5, two are a permerror), so the relays' includes go into the existing record,
 * before its `all` (terms after `all` are never evaluated, §5.1) or its `redirect=` (used only when
 * no mechanism matches, §6.1), everything else kept as written. Pure.
 */
import { normalizeName } from './resolver.js';
import { isSpfRecord, parseSpf, type SpfTerm } from './spf.js';

export interface SpfMerge {
  /** The one SPF record to publish. */
  value: string;
  /** False: the published record already has the includes where they count (publish nothing new). */
  changed: boolean;
  /** Risky terms in the published record (`+all`, `?all`, `ptr`), each one sentence. */
  warnings: string[];
  /** Why the published record(s) could not be kept as they are, when they could not. */
  note: string | null;
}

/** A new record: the includes and `~all` (softfail: mail from elsewhere is marked, not refused). */
export function newSpfRecord(includes: string[]): string {
  return ['v=spf1', ...includes.map((i) => `include:${i}`), '~all'].join(' ');
}

/** The warnings for a record's terms that are evaluated (up to the first `all`). */
export function spfWarnings(terms: SpfTerm[]): string[] {
  const warnings: string[] = [];
  for (const t of terms) {
    if (t.kind !== 'mechanism') continue;
    if (t.name === 'ptr' && !warnings.some((w) => w.startsWith('"ptr"'))) {
      warnings.push(
        '"ptr" is slow, unreliable and deprecated (RFC 7208 §5.5: SHOULD NOT be used); list the addresses with ip4:/ip6: or a:',
      );
    }
    if (t.name !== 'all') continue;
    if (t.qualifier === '+')
      warnings.push(
        '"+all" lets every host on the Internet pass SPF as this domain; end the record with "~all" or "-all"',
      );
    if (t.qualifier === '?')
      warnings.push(
        '"?all" makes mail from any other host neutral: SPF then protects nothing; end the record with "~all" or "-all"',
      );
    break;
  }
  return warnings;
}

/** Each term of a record with its text as written (the `v=spf1` prefix excluded). */
function termsAsWritten(record: string): { text: string; term: SpfTerm }[] | null {
  const texts = record
    .slice('v=spf1'.length)
    .split(' ')
    .filter((t) => t !== '');
  const out: { text: string; term: SpfTerm }[] = [];
  for (const text of texts) {
    const parsed = parseSpf(`v=spf1 ${text}`);
    if (!parsed.ok || parsed.terms.length !== 1) return null;
    out.push({ text, term: parsed.terms[0]! });
  }
  return out;
}

const includeOf = (t: SpfTerm): string | null =>
  t.kind === 'mechanism' && t.name === 'include' ? normalizeName(t.domain) : null;

/**
 * The one record to publish so that `includes` pass: `published` (the TXT records at the domain)
 * with the includes added before its `all` or `redirect=`, an include already there with another
 * qualifier made a pass, an include after `all` moved before it; or a new record where there is
 * none (or none that can be kept).
 */
export function mergeSpf(published: string[], includes: string[]): SpfMerge {
  const wanted = [...new Set(includes.map(normalizeName))];
  const records = published.filter(isSpfRecord);
  if (records.length === 0) return { value: newSpfRecord(wanted), changed: true, warnings: [], note: null };
  const base = records[0]!;
  const note =
    records.length > 1
      ? `${records.length} SPF records are published (a permerror): publish this one in their place`
      : null;
  const terms = termsAsWritten(base);
  const parsed = parseSpf(base);
  if (terms === null || !parsed.ok) {
    return {
      value: newSpfRecord(wanted),
      changed: true,
      warnings: [],
      note: `the published SPF record is invalid${parsed.ok ? '' : ` (${parsed.error})`}: publish this one in its place`,
    };
  }
  const warnings = spfWarnings(parsed.terms);
  const allAt = terms.findIndex(({ term }) => term.kind === 'mechanism' && term.name === 'all');
  const evaluated = (i: number) => allAt < 0 || i < allAt;
  let changed = false;
  const missing: string[] = [];
  for (const name of wanted) {
    const at = terms.findIndex(({ term }, i) => evaluated(i) && includeOf(term) === name);
    if (at >= 0) {
      const t = terms[at]!;
      if (t.term.kind === 'mechanism' && t.term.qualifier !== '+') {
        terms[at] = { text: `include:${name}`, term: { ...t.term, qualifier: '+' } };
        changed = true;
      }
      continue;
    }
    missing.push(name);
  }
  // An include of the relay after "all" is never evaluated: it moves before "all".
  const kept = terms.filter(({ term }, i) => evaluated(i) || !missing.includes(includeOf(term) ?? ''));
  if (kept.length !== terms.length) changed = true;
  if (missing.length > 0) {
    const allIndex = kept.findIndex(({ term }) => term.kind === 'mechanism' && term.name === 'all');
    const redirectIndex = kept.findIndex(({ term }) => term.kind === 'modifier' && term.name === 'redirect');
    const at = allIndex >= 0 ? allIndex : redirectIndex >= 0 ? redirectIndex : kept.length;
    kept.splice(
      at,
      0,
      ...missing.map((name) => ({
        text: `include:${name}`,
        term: { kind: 'mechanism', qualifier: '+', name: 'include', domain: name } as SpfTerm,
      })),
    );
    changed = true;
  }
  const value = [base.slice(0, 'v=spf1'.length), ...kept.map((t) => t.text)].join(' ');
  return { value, changed: changed || note !== null, warnings, note };
}
