/**
 * Checks each expected record against DNS: valid, what was observed, and why not. A temporary DNS
 * failure gives `valid: null` (unknown), never `false`.
 */
import { checkDmarc } from './dmarc.js';
import type { ExpectedRecord } from './records.js';
import { normalizeName, type DnsResolver } from './resolver.js';
import { checkSpf } from './spf.js';

export interface RecordCheck extends ExpectedRecord {
  valid: boolean | null;
  observed: string[];
  reason: string | null;
  checkedAt: string;
}

type Verdict = Pick<RecordCheck, 'valid' | 'observed' | 'reason'>;

const squash = (s: string) => s.replace(/\s+/g, '');

async function checkTxt(record: ExpectedRecord, resolver: DnsResolver, what: string): Promise<Verdict> {
  const answer = await resolver.txt(record.host);
  if (answer.kind === 'error') return { valid: null, observed: [], reason: `DNS lookup of TXT ${record.host} failed: ${answer.reason}` };
  if (answer.kind === 'absent') return { valid: false, observed: [], reason: `no TXT record at ${record.host}` };
  const observed = answer.values.map((s) => s.join(''));
  // DKIM keys are compared without whitespace (providers and DNS panels wrap them differently).
  const same = record.purpose === 'dkim' ? (o: string) => squash(o) === squash(record.value) : (o: string) => o === record.value;
  return observed.some(same) ? { valid: true, observed, reason: null } : { valid: false, observed, reason: `the TXT record at ${record.host} is not ${what}` };
}

async function checkCname(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict> {
  const answer = await resolver.cname(record.host);
  if (answer.kind === 'error') return { valid: null, observed: [], reason: `DNS lookup of CNAME ${record.host} failed: ${answer.reason}` };
  if (answer.kind === 'absent') return { valid: false, observed: [], reason: `no CNAME record at ${record.host}` };
  const observed = answer.values.map(normalizeName);
  return observed.includes(normalizeName(record.value))
    ? { valid: true, observed, reason: null }
    : { valid: false, observed, reason: `the CNAME at ${record.host} points to ${observed.join(', ')}, not ${record.value}` };
}

async function checkOne(record: ExpectedRecord, resolver: DnsResolver): Promise<Verdict> {
  switch (record.purpose) {
    case 'ownership':
      return checkTxt(record, resolver, 'the verification token');
    case 'spf': {
      const r = await checkSpf(record.host, record.includes ?? [], resolver);
      return { valid: r.valid, observed: r.observed, reason: r.reason };
    }
    case 'dmarc': {
      const r = await checkDmarc(record.host.replace(/^_dmarc\./, ''), resolver);
      return { valid: r.valid, observed: r.observed, reason: r.reason };
    }
    case 'dkim':
      return record.type === 'CNAME' ? checkCname(record, resolver) : checkTxt(record, resolver, 'the DKIM key the relay declares');
    case 'return_path':
      return checkCname(record, resolver);
  }
}

export async function checkRecords(expected: ExpectedRecord[], resolver: DnsResolver, now: () => Date = () => new Date()): Promise<RecordCheck[]> {
  return Promise.all(
    expected.map(async (record) => {
      const verdict = await checkOne(record, resolver);
      return { ...record, ...verdict, checkedAt: now().toISOString() };
    }),
  );
}
