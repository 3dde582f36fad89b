/**
 * The DNS records a sending domain must publish, derived from its relays' declarations. Pure.
 */
export type RecordPurpose = 'ownership' | 'spf' | 'dkim' | 'dmarc' | 'return_path';

export interface ExpectedRecord {
  purpose: RecordPurpose;
  type: 'TXT' | 'CNAME';
  /** Fully qualified name, no trailing dot. */
  host: string;
  value: string;
  /** A TXT value cut into character-strings of at most 255 bytes (only when it needs cutting). */
  strings?: string[];
  /** Verification needs this record (return-path is advice). */
  required: boolean;
  /** SPF: the includes the record must reach (the relays'). */
  includes?: string[];
}

export interface RelayDnsDeclaration {
  spfInclude: string | null;
  dkim: { selector: string; type: 'CNAME' | 'TXT'; value: string }[];
  returnPath: { host: string; value: string } | null;
}

export const OWNERSHIP_LABEL = '_relayplane';
export const OWNERSHIP_PREFIX = 'relayplane-verification=';
export const DEFAULT_DMARC = 'v=DMARC1; p=none';

/** Cuts a TXT value into character-strings of ≤ 255 bytes without splitting a UTF-8 character. */
export function splitTxt(value: string, max = 255): string[] {
  const out: string[] = [];
  let current = '';
  let bytes = 0;
  for (const ch of value) {
    const size = Buffer.byteLength(ch, 'utf8');
    if (bytes + size > max) {
      out.push(current);
      current = '';
      bytes = 0;
    }
    current += ch;
    bytes += size;
  }
  if (current !== '' || out.length === 0) out.push(current);
  return out;
}

function txt(purpose: RecordPurpose, host: string, value: string, required: boolean, extra: Partial<ExpectedRecord> = {}): ExpectedRecord {
  return { purpose, type: 'TXT', host, value, ...(Buffer.byteLength(value, 'utf8') > 255 ? { strings: splitTxt(value) } : {}), required, ...extra };
}

export function expectedRecords(input: {
  domain: string;
  verificationToken: string;
  relay: RelayDnsDeclaration | null;
  fallbackRelay: RelayDnsDeclaration | null;
}): ExpectedRecord[] {
  const { domain } = input;
  const relays = [input.relay, input.fallbackRelay].filter((r): r is RelayDnsDeclaration => r !== null);
  const records: ExpectedRecord[] = [txt('ownership', `${OWNERSHIP_LABEL}.${domain}`, `${OWNERSHIP_PREFIX}${input.verificationToken}`, true)];
  const includes = [...new Set(relays.map((r) => r.spfInclude).filter((i): i is string => i !== null))];
  if (includes.length > 0) {
    records.push(txt('spf', domain, `v=spf1 ${includes.map((i) => `include:${i}`).join(' ')} ~all`, true, { includes }));
  }
  const seen = new Set<string>();
  for (const relay of relays) {
    for (const d of relay.dkim) {
      const host = `${d.selector}._domainkey.${domain}`;
      if (seen.has(host)) continue;
      seen.add(host);
      records.push(d.type === 'CNAME' ? { purpose: 'dkim', type: 'CNAME', host, value: d.value, required: true } : txt('dkim', host, d.value, true));
    }
  }
  records.push(txt('dmarc', `_dmarc.${domain}`, DEFAULT_DMARC, true));
  const returnPath = relays.find((r) => r.returnPath !== null)?.returnPath;
  if (returnPath !== undefined && returnPath !== null) {
    records.push({ purpose: 'return_path', type: 'CNAME', host: `${returnPath.host}.${domain}`, value: returnPath.value, required: false });
  }
  return records;
}
