/**
 * Checks each expected record against DNS: valid, what was observed, and why not. A temporary DNS
 * failure gives `valid: null` (unknown), never `false`.
 */
import { sameDkimKey } from './dkim.js';
import { checkDmarc, type DmarcEffective } from './dmarc.js';
import { OWNERSHIP_PREFIX, TXT_STRING_MAX_BYTES, splitTxt, type ExpectedRecord } from './records.js';
import { normalizeName, type DnsResolver } from './resolver.js';
import { checkSpf } from './spf-check.js';
import { mergeSpf } from './spf-merge.js';
import { isSpfRecord, parseSpf } from './spf.js';

export interface RecordCheck extends ExpectedRecord {
  /** null: a temporary DNS failure (timeout, SERVFAIL…) left the answer unknown. */
  valid: boolean | null;
  /** What DNS answered at the record's name (the relevant records). */
  observed: string[];
  reason: string | null;
  checkedAt: string;
  /**
   * The value the record was checked for when `value` was rewritten to fit what is published
   * (SPF merged into the existing record, DMARC never weaker than the published policy).
   */
  declared?: string;
  /** DMARC: the policy observed to apply and the record it comes from. */
  dmarcPolicy?: DmarcEffective | null;
  /** SPF: risky terms in the published record (`+all`, `?all`, `ptr`). */
  warnings?: string[];
}

export interface CheckOptions {
  now?: () => Date;
  /** Suggested as DMARC `rua=mailto:` where a record has none. */
  dmarcReportAddress?: string | null;
}

type Verdict = Pick<RecordCheck, 'valid' | 'observed' | 'reason'> & {
  /** The value to publish given what DNS holds, when it differs from the declared one. */
  advice?: string;
  dmarcPolicy?: DmarcEffective | null;
  warnings?: string[];
};

async function txtAt(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict | string[]> {
  const answer = await resolver.txt(record.host);
  if (answer.kind === 'error')
    return { valid: null, observed: [], reason: `DNS lookup of TXT ${record.host} failed: ${answer.reason}` };
  if (answer.kind === 'absent') return { valid: false, observed: [], reason: `no TXT record at ${record.host}` };
  return answer.values.map((strings) => strings.join('')).sort();
}

async function checkOwnership(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict> {
  const observed = await txtAt(record, resolver);
  if (!Array.isArray(observed)) return observed;
  if (observed.includes(record.value)) return { valid: true, observed, reason: null };
  const tokens = observed.filter((o) => o.startsWith(OWNERSHIP_PREFIX)).map((o) => o.slice(OWNERSHIP_PREFIX.length));
  const reason =
    tokens.length > 0
      ? `the verification token at ${record.host} is ${tokens.map((t) => JSON.stringify(t)).join(', ')}, not ${JSON.stringify(record.value.slice(OWNERSHIP_PREFIX.length))}`
      : `no ${OWNERSHIP_PREFIX}… record among the TXT records at ${record.host}`;
  return { valid: false, observed, reason };
}

async function checkDkimTxt(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict> {
  const observed = await txtAt(record, resolver);
  if (!Array.isArray(observed)) return observed;
  // Compared as keys (RFC 6376 §3.6.1): v=DKIM1 is optional, tags and whitespace may differ.
  return observed.some((o) => sameDkimKey(o, record.value))
    ? { valid: true, observed, reason: null }
    : { valid: false, observed, reason: `the TXT record at ${record.host} is not the DKIM key the relay declares` };
}

/** A record whose value is a name (CNAME target, MX exchange): valid when the published names include it. */
async function checkNameRecord(
  type: 'CNAME' | 'MX',
  record: ExpectedRecord,
  lookup: (host: string) => ReturnType<DnsResolver['cname']>,
  mismatch: (observed: string[]) => string,
): Promise<Verdict> {
  const answer = await lookup(record.host);
  if (answer.kind === 'error')
    return { valid: null, observed: [], reason: `DNS lookup of ${type} ${record.host} failed: ${answer.reason}` };
  if (answer.kind === 'absent') return { valid: false, observed: [], reason: `no ${type} record at ${record.host}` };
  const observed = answer.values.map(normalizeName);
  return observed.includes(normalizeName(record.value))
    ? { valid: true, observed, reason: null }
    : { valid: false, observed, reason: mismatch(observed) };
}

function checkCname(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict> {
  return checkNameRecord(
    'CNAME',
    record,
    (host) => resolver.cname(host),
    (observed) => `the CNAME at ${record.host} points to ${observed.join(', ')}, not ${normalizeName(record.value)}`,
  );
}

async function checkSpfRecord(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict> {
  // The includes the expected record asks for are what the published record must reach.
  const parsed = parseSpf(record.value);
  if (!parsed.ok)
    return {
      valid: false,
      observed: [],
      reason: `the SPF record to publish is itself invalid (check the relay's SPF include): ${parsed.error}`,
    };
  const wanted = parsed.terms.flatMap((t) => (t.kind === 'mechanism' && t.name === 'include' ? [t.domain] : []));
  const r = await checkSpf(record.host, wanted, resolver);
  const verdict: Verdict = { valid: r.valid, observed: r.observed, reason: r.reason };
  if (r.valid === null) return verdict;
  // One SPF record per domain (§4.5): what to publish is the existing record with the includes
  // merged in, never a second record; a valid one is kept as it is.
  const merged = mergeSpf(r.observed, wanted);
  const advice = r.valid && r.observed.length === 1 ? r.observed[0]! : merged.value;
  return { ...verdict, advice, ...(merged.warnings.length > 0 ? { warnings: merged.warnings } : {}) };
}

async function checkDmarcRecord(
  record: ExpectedRecord,
  resolver: DnsResolver,
  options: CheckOptions,
): Promise<Verdict> {
  const r = await checkDmarc(record.host.replace(/^_dmarc\./, ''), resolver, {
    reportAddress: options.dmarcReportAddress ?? null,
  });
  return { valid: r.valid, observed: r.observed, reason: r.reason, advice: r.advice, dmarcPolicy: r.effective };
}

function checkMx(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict> {
  return checkNameRecord(
    'MX',
    record,
    (host) => resolver.mx(host),
    (observed) => `the MX records at ${record.host} are ${observed.join(', ')}, not ${normalizeName(record.value)}`,
  );
}

/** A template's TXT that is not a DKIM key: an SPF record (custom MAIL FROM) is checked as SPF, other text as written. */
async function checkTemplateTxt(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict> {
  if (isSpfRecord(record.value)) return checkSpfRecord(record, resolver);
  const observed = await txtAt(record, resolver);
  if (!Array.isArray(observed)) return observed;
  return observed.includes(record.value)
    ? { valid: true, observed, reason: null }
    : { valid: false, observed, reason: `no TXT record at ${record.host} reads ${JSON.stringify(record.value)}` };
}

async function checkOne(record: ExpectedRecord, resolver: DnsResolver, options: CheckOptions): Promise<Verdict> {
  if (record.unset !== undefined) {
    const names = record.unset.map((u) => `{${u}}`).join(', ');
    return {
      valid: false,
      observed: [],
      reason: `the domain has no value for ${names} yet (PUT /v1/domains/{domainId}/authentication)`,
    };
  }
  if (record.type === 'MX') return checkMx(record, resolver);
  switch (record.purpose) {
    case 'ownership':
      return checkOwnership(record, resolver);
    case 'spf':
      return checkSpfRecord(record, resolver);
    case 'dmarc':
      return checkDmarcRecord(record, resolver, options);
    case 'dkim':
      return record.type === 'CNAME' ? checkCname(record, resolver) : checkDkimTxt(record, resolver);
    case 'return_path':
      return record.type === 'TXT' ? checkTemplateTxt(record, resolver) : checkCname(record, resolver);
  }
}

/** The check with `value` (and `strings`) rewritten to the advice, the declared value kept. */
function advised(check: RecordCheck, advice: string): RecordCheck {
  const { strings: _strings, ...rest } = check;
  const long = Buffer.byteLength(advice, 'utf8') > TXT_STRING_MAX_BYTES;
  return { ...rest, value: advice, ...(long ? { strings: splitTxt(advice) } : {}), declared: check.value };
}

/** Checks the records concurrently; each result carries its record and when it was checked. */
export async function checkRecords(
  expected: ExpectedRecord[],
  resolver: DnsResolver,
  options: CheckOptions = {},
): Promise<RecordCheck[]> {
  const now = options.now ?? (() => new Date());
  return Promise.all(
    expected.map(async (record) => {
      const { advice, ...verdict } = await checkOne(record, resolver, options);
      const checked: RecordCheck = { ...record, ...verdict, checkedAt: now().toISOString() };
      return advice === undefined || advice === record.value ? checked : advised(checked, advice);
    }),
  );
}
