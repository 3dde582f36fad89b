/**
 * DKIM key records (RFC 6376 §3.6.1): a tag list in which `v=DKIM1` is optional (when present it
 * must come first), `p=` is the key (base64, whitespace ignored; empty: revoked) and `k=` the key
 * type (default rsa). Mailgun and others publish `k=rsa; p=…` without the version tag. Pure.
 */

export interface DkimKey {
  /** Key type, lower case (`rsa` when absent). */
  k: string;
  /** The public key (base64) without whitespace; '' when revoked. */
  p: string;
}

export type DkimParse = { ok: true; key: DkimKey } | { ok: false; error: string };

const TAG_NAME = /^[a-z][a-z0-9_]*$/i;

/** Parses a DKIM key record; the error says what is wrong. */
export function parseDkimKey(text: string): DkimParse {
  const tags = new Map<string, string>();
  const parts = text.split(';');
  for (const [i, raw] of parts.entries()) {
    const part = raw.trim();
    if (part === '') {
      if (i === parts.length - 1) continue; // a trailing ";" is allowed (tag-list)
      return { ok: false, error: 'empty tag' };
    }
    const eq = part.indexOf('=');
    const name = eq < 0 ? '' : part.slice(0, eq).trim();
    if (!TAG_NAME.test(name)) return { ok: false, error: `"${part}" is not a tag=value pair` };
    if (tags.has(name)) return { ok: false, error: `tag ${name} appears more than once` };
    if (name === 'v' && tags.size > 0) return { ok: false, error: 'v= must be the first tag' };
    tags.set(name, part.slice(eq + 1).trim());
  }
  const v = tags.get('v');
  if (v !== undefined && v !== 'DKIM1') return { ok: false, error: `v=${v} is not DKIM1` };
  const p = tags.get('p');
  if (p === undefined) return { ok: false, error: 'has no p= key (RFC 6376 §3.6.1: required)' };
  // The key's base64 is not checked here: a relay's declaration is stored as given, and DNS
  // answers are compared with it key for key.
  const key = p.replace(/[ \t\r\n]+/g, '');
  return { ok: true, key: { k: (tags.get('k') ?? 'rsa').toLowerCase(), p: key } };
}

/** Whether a published record carries the same key as the declared one (same type, same key bits). */
export function sameDkimKey(published: string, declared: string): boolean {
  const a = parseDkimKey(published);
  const b = parseDkimKey(declared);
  if (!a.ok || !b.ok) return published.replace(/\s+/g, '') === declared.replace(/\s+/g, '');
  return a.key.p !== '' && a.key.k === b.key.k && a.key.p === b.key.p;
}
