/**
 * The DNS records a sending domain must publish, derived from its relays' declarations. Pure.
 */
import { templateRecords, type AuthTemplate, type AuthValues } from './auth-template.js';
import type { ExpectedRecord, RecordPurpose } from './record-types.js';
import { normalizeName } from './resolver.js';

export type { ExpectedRecord, RecordPurpose } from './record-types.js';

/** What a relay asks its senders to publish. */
export interface RelayDnsDeclaration {
  spfInclude: string | null;
  dkim: { selector: string; type: 'CNAME' | 'TXT'; value: string }[];
  /** `host` is a label under the sending domain (`bounces` → `bounces.<domain>`). */
  returnPath: { host: string; value: string } | null;
  /** Per-domain records (DKIM, custom MAIL FROM) with the domain's values (authValues). */
  template?: AuthTemplate | null;
}

export const OWNERSHIP_LABEL = '_relayplane';
export const OWNERSHIP_PREFIX = 'relayplane-verification=';
/** A policy to start with: reports nothing, rejects nothing. Any valid DMARC record passes. */
export const DEFAULT_DMARC = 'v=DMARC1; p=none';
/** RFC 1035 §3.3: a character-string is at most 255 bytes. */
export const TXT_STRING_MAX_BYTES = 255;

/** Cuts a TXT value into character-strings of at most `max` bytes, never inside a UTF-8 character. */
export function splitTxt(value: string, max = TXT_STRING_MAX_BYTES): string[] {
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

function txt(purpose: RecordPurpose, host: string, value: string): ExpectedRecord {
  const long = Buffer.byteLength(value, 'utf8') > TXT_STRING_MAX_BYTES;
  return { purpose, type: 'TXT', host, value, ...(long ? { strings: splitTxt(value) } : {}), required: true };
}

/**
 * Ownership token, SPF (the relays' includes), DKIM and return-path as the relays declare them,
 * DMARC; in that order. Where the relay and the fallback relay declare the same name (a DKIM
 * selector, a return-path host), the relay's declaration wins: a name can hold one CNAME.
 */
export function expectedRecords(input: {
  domain: string;
  verificationToken: string;
  relay: RelayDnsDeclaration | null;
  fallbackRelay: RelayDnsDeclaration | null;
  /** Suggested as the DMARC record's `rua=mailto:` (aggregate reports). */
  dmarcReportAddress?: string | null;
  /** The domain's values for its relays' template variables. */
  authValues?: AuthValues;
}): ExpectedRecord[] {
  const domain = normalizeName(input.domain);
  const relays = [input.relay, input.fallbackRelay].filter((r): r is RelayDnsDeclaration => r !== null);
  const records = [txt('ownership', `${OWNERSHIP_LABEL}.${domain}`, `${OWNERSHIP_PREFIX}${input.verificationToken}`)];

  const includes = [...new Set(relays.flatMap((r) => (r.spfInclude === null ? [] : [normalizeName(r.spfInclude)])))];
  if (includes.length > 0)
    records.push(txt('spf', domain, `v=spf1 ${includes.map((i) => `include:${i}`).join(' ')} ~all`));

  const seen = new Set<string>();
  const claim = (host: string) => {
    if (seen.has(host)) return false;
    seen.add(host);
    return true;
  };
  for (const d of relays.flatMap((r) => r.dkim)) {
    const host = `${normalizeName(d.selector)}._domainkey.${domain}`;
    if (!claim(host)) continue;
    records.push(
      d.type === 'CNAME'
        ? { purpose: 'dkim', type: 'CNAME', host, value: normalizeName(d.value), required: true }
        : txt('dkim', host, d.value),
    );
  }

  const rua = input.dmarcReportAddress ?? null;
  records.push(txt('dmarc', `_dmarc.${domain}`, rua === null ? DEFAULT_DMARC : `${DEFAULT_DMARC}; rua=mailto:${rua}`));

  for (const rp of relays.flatMap((r) => (r.returnPath === null ? [] : [r.returnPath]))) {
    const host = `${normalizeName(rp.host)}.${domain}`;
    if (claim(host))
      records.push({ purpose: 'return_path', type: 'CNAME', host, value: normalizeName(rp.value), required: false });
  }
  for (const relay of relays) {
    if (relay.template === undefined || relay.template === null) continue;
    const fromTemplate = templateRecords(domain, relay.template, input.authValues ?? {});
    // A host name a static declaration holds already is the relay's, as above; records of one
    // template may share a name (MAIL FROM: MX and TXT), so only other sources' names count.
    const taken = new Set(seen);
    for (const r of fromTemplate) {
      if (taken.has(r.host)) continue;
      seen.add(r.host);
      records.push(
        r.type === 'TXT'
          ? {
              ...txt(r.purpose, r.host, r.value),
              required: r.required,
              ...(r.unset === undefined ? {} : { unset: r.unset }),
            }
          : r,
      );
    }
  }
  return records;
}
