/** DMARC (RFC 7489 §6.3): one `v=DMARC1` record at `_dmarc.<domain>` with a valid policy. */
import type { DnsResolver } from './resolver.js';

export type DmarcParse = { ok: true; tags: Record<string, string> } | { ok: false; error: string };

const POLICIES = new Set(['none', 'quarantine', 'reject']);

export function parseDmarc(record: string): DmarcParse {
  const parts = record.split(';').map((p) => p.trim()).filter((p) => p !== '');
  const tags: Record<string, string> = {};
  for (const [i, part] of parts.entries()) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, error: `"${part}" is not a tag=value pair` };
    const name = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim();
    if (i === 0 && (name !== 'v' || value !== 'DMARC1')) return { ok: false, error: 'does not start with v=DMARC1' };
    if (!(name in tags)) tags[name] = value;
  }
  if (parts.length === 0) return { ok: false, error: 'does not start with v=DMARC1' };
  if (tags.p === undefined) return { ok: false, error: 'has no p= policy (RFC 7489 §6.3: required)' };
  if (!POLICIES.has(tags.p.toLowerCase())) return { ok: false, error: `p=${tags.p} is not none, quarantine or reject` };
  if (tags.sp !== undefined && !POLICIES.has(tags.sp.toLowerCase())) return { ok: false, error: `sp=${tags.sp} is not none, quarantine or reject` };
  if (tags.pct !== undefined && !(/^\d{1,3}$/.test(tags.pct) && Number(tags.pct) <= 100)) return { ok: false, error: `pct=${tags.pct} is not 0-100` };
  for (const t of ['adkim', 'aspf']) {
    if (tags[t] !== undefined && !/^[rs]$/i.test(tags[t]!)) return { ok: false, error: `${t}=${tags[t]} is not r or s` };
  }
  for (const t of ['rua', 'ruf']) {
    if (tags[t] === undefined) continue;
    for (const uri of tags[t]!.split(',').map((u) => u.trim())) {
      if (!/^mailto:[^\s@]+@[^\s@!]+(![0-9]+[kmgt]?)?$/i.test(uri)) return { ok: false, error: `${t} has an invalid report address "${uri}" (mailto:… expected)` };
    }
  }
  if (tags.ri !== undefined && !/^\d+$/.test(tags.ri)) return { ok: false, error: `ri=${tags.ri} is not a number of seconds` };
  if (tags.fo !== undefined && !/^[01ds](:[01ds])*$/i.test(tags.fo)) return { ok: false, error: `fo=${tags.fo} is not a list of 0, 1, d, s` };
  return { ok: true, tags };
}

export interface DmarcCheck {
  valid: boolean | null;
  reason: string | null;
  observed: string[];
}

export async function checkDmarc(domain: string, resolver: DnsResolver): Promise<DmarcCheck> {
  const host = `_dmarc.${domain}`;
  const answer = await resolver.txt(host);
  if (answer.kind === 'error') return { valid: null, reason: `DNS lookup of TXT ${host} failed: ${answer.reason}`, observed: [] };
  const records = answer.kind === 'found' ? answer.values.map((s) => s.join('')).filter((r) => /^v\s*=\s*DMARC1/i.test(r)) : [];
  if (records.length === 0) return { valid: false, reason: `no DMARC record at ${host}`, observed: [] };
  if (records.length > 1) return { valid: false, reason: `${records.length} DMARC records at ${host} (RFC 7489 §6.6.3: none applies)`, observed: records };
  const parsed = parseDmarc(records[0]!);
  return parsed.ok ? { valid: true, reason: null, observed: records } : { valid: false, reason: `DMARC record at ${host} ${parsed.error}`, observed: records };
}
