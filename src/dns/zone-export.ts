/**
 * The records to publish as a BIND zone fragment (RFC 1035 §5 master-file syntax) and as CSV, for
 * pasting into a zone file or a DNS panel's import. Pure.
 */
import type { ExpectedRecord } from './records.js';
import { splitTxt } from './records.js';
import { normalizeName } from './resolver.js';

/** TTL of the exported records: an hour, short enough to correct a mistake the same day. */
export const EXPORT_TTL = 3600;

/** A record's name relative to the zone of `domain`: `@` for the domain itself. */
export function relativeName(host: string, domain: string): string {
  const h = normalizeName(host);
  const d = normalizeName(domain);
  if (h === d) return '@';
  return h.endsWith(`.${d}`) ? h.slice(0, -(d.length + 1)) : `${h}.`;
}

/** A master-file character-string: quoted, `"` and `\` escaped, other non-printable bytes as \DDD. */
function characterString(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
    else if (byte < 0x20 || byte > 0x7e) out += `\\${String(byte).padStart(3, '0')}`;
    else out += String.fromCharCode(byte);
  }
  return `"${out}"`;
}

const absolute = (name: string) => `${normalizeName(name)}.`;

export type ExportRecord = Pick<ExpectedRecord, 'purpose' | 'type' | 'host' | 'value' | 'required' | 'priority'>;

/** One line per record, absolute names with trailing dots, TXT values cut into ≤255-byte strings. */
export function toBindZone(domain: string, records: ExportRecord[]): string {
  const lines = [
    `; DNS records for ${normalizeName(domain)}, from Relayplane (TTL ${EXPORT_TTL} s; change it as you like)`,
  ];
  for (const r of records) {
    const rdata =
      r.type === 'TXT'
        ? splitTxt(r.value).map(characterString).join(' ')
        : r.type === 'MX'
          ? `${r.priority ?? 10} ${absolute(r.value)}`
          : absolute(r.value);
    lines.push(`; ${r.purpose}${r.required ? '' : ' (optional)'}`);
    lines.push(`${absolute(r.host)}\t${EXPORT_TTL}\tIN\t${r.type}\t${rdata}`);
  }
  return `${lines.join('\n')}\n`;
}

export const EXPORT_CSV_COLUMNS = ['purpose', 'type', 'host', 'name', 'value', 'required', 'valid', 'reason'] as const;

function csvField(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** RFC 4180 CSV: a header row, then one row per record (`name` relative to the zone). */
export function toCsv(
  domain: string,
  records: (ExportRecord & { valid?: boolean | null; reason?: string | null })[],
): string {
  const rows = records.map((r) =>
    [
      r.purpose,
      r.type,
      normalizeName(r.host),
      relativeName(r.host, domain),
      r.type === 'MX' ? `${r.priority ?? 10} ${r.value}` : r.value,
      r.required,
      r.valid ?? null,
      r.reason ?? null,
    ]
      .map(csvField)
      .join(','),
  );
  return `${[EXPORT_CSV_COLUMNS.join(','), ...rows].join('\r\n')}\r\n`;
}
