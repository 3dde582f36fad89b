/**
 * Per-domain authentication records from a provider template. Providers issue DKIM and custom
 * MAIL FROM records per sending domain (SES: three CNAMEs `<token>._domainkey` →
 * `<token>.dkim.amazonses.com`; SendGrid: s1/s2 CNAMEs to account-specific targets; Mailgun and
 * Postmark: a TXT key per domain): a relay declares the shape once, with `{variable}` placeholders,
 * and each domain carries its values. Pure: validation and expansion only.
 */
import { parseDkimKey } from './dkim.js';
import { normalizeName } from './resolver.js';
import type { ExpectedRecord } from './record-types.js';

export type TemplateVariableKind = 'label' | 'hostname' | 'dkimKey';

export interface AuthTemplate {
  variables: { name: string; kind: TemplateVariableKind; description?: string }[];
  records: {
    purpose: 'dkim' | 'return_path';
    type: 'TXT' | 'CNAME' | 'MX';
    /** Relative to the sending domain, `@` for the domain itself; placeholders allowed. */
    name: string;
    /** CNAME/MX: a host name; TXT: the text; placeholders allowed. */
    value: string;
    /** MX only. */
    priority?: number;
    required: boolean;
  }[];
}

/** A domain's values for its relays' template variables. */
export type AuthValues = Record<string, string>;

const VARIABLE = /^[a-z][a-z0-9_]{0,31}$/;
const PLACEHOLDER = /\{([^{}]*)\}/g;
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const labels = (name: string) => name.split('.').every((l) => LABEL.test(l)) && name.length <= 253;

/** Why a value is not acceptable for its kind (null: it is). Never whitespace (but single spaces in a key) or NUL. */
export function valueError(kind: TemplateVariableKind, value: string): string | null {
  if (kind === 'dkimKey') {
    if (!/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value))
      return 'must be printable ASCII (spaces only between tags)';
    const parsed = parseDkimKey(value);
    if (!parsed.ok) return `must be a DKIM key record: ${parsed.error}`;
    return parsed.key.p === '' ? 'must be a DKIM key record with a key (p= is empty)' : null;
  }
  const v = kind === 'hostname' ? value.toLowerCase().replace(/\.$/, '') : value.toLowerCase();
  if (kind === 'label') return LABEL.test(v) ? null : 'must be one DNS label (letters, digits, "-", "_"; at most 63)';
  return labels(v) && v.includes('.') ? null : 'must be a host name (DNS labels separated by dots)';
}

/** Every problem of a template, as (field, message) pairs under `base` (empty: valid). */
export function templateErrors(t: AuthTemplate, base = 'body/authTemplate'): { field: string; message: string }[] {
  const errors: { field: string; message: string }[] = [];
  const names = new Set<string>();
  t.variables.forEach((v, i) => {
    if (!VARIABLE.test(v.name))
      errors.push({ field: `${base}/variables/${i}/name`, message: 'must be a lower-case identifier (a-z, 0-9, _)' });
    else if (names.has(v.name)) errors.push({ field: `${base}/variables/${i}/name`, message: 'is declared twice' });
    names.add(v.name);
  });
  const kinds = new Map<string, TemplateVariableKind>();
  for (const v of t.variables) if (!kinds.has(v.name)) kinds.set(v.name, v.kind); // the first declaration counts
  const hosts = new Map<string, string>();
  t.records.forEach((r, i) => {
    const at = `${base}/records/${i}`;
    for (const field of ['name', 'value'] as const) {
      for (const m of r[field].matchAll(PLACEHOLDER)) {
        const kind = kinds.get(m[1]!);
        if (kind === undefined)
          errors.push({ field: `${at}/${field}`, message: `uses {${m[1]!}}, which is not a declared variable` });
        else if (kind === 'dkimKey' && (field === 'name' || r.type !== 'TXT'))
          errors.push({ field: `${at}/${field}`, message: `{${m[1]!}} is a DKIM key: only a TXT value may use it` });
      }
    }
    const sample = (s: string) => s.replace(PLACEHOLDER, 'x');
    if (r.name !== '@' && !labels(sample(r.name).toLowerCase()))
      errors.push({ field: `${at}/name`, message: 'must be "@" or DNS labels (placeholders allowed)' });
    if (r.type !== 'TXT' && !labels(sample(r.value).toLowerCase()))
      errors.push({ field: `${at}/value`, message: 'must be a host name (placeholders allowed)' });
    if (r.type === 'TXT' && !/^[\x20-\x7e]+$/.test(r.value))
      errors.push({ field: `${at}/value`, message: 'must be printable ASCII' });
    if (r.type === 'MX' && (r.priority === undefined || r.priority < 0 || r.priority > 65535))
      errors.push({ field: `${at}/priority`, message: 'an MX record needs a priority (0-65535)' });
    const key = `${r.name.toLowerCase()}`;
    const before = hosts.get(key);
    // A name holds one CNAME and nothing else (RFC 1034 §3.6.2).
    if (before !== undefined && (before === 'CNAME' || r.type === 'CNAME'))
      errors.push({ field: `${at}/name`, message: 'a CNAME name cannot hold another record' });
    hosts.set(key, r.type);
  });
  return errors;
}

const fill = (pattern: string, values: AuthValues, missing: Set<string>) =>
  pattern.replace(PLACEHOLDER, (whole, name: string) => {
    const v = values[name];
    if (v === undefined) {
      missing.add(name);
      return whole;
    }
    return v;
  });

/**
 * The records a template asks of `domain` with its values; a record whose variables are not all
 * set keeps its placeholders and lists them in `unset` (it cannot verify until they are).
 */
export function templateRecords(domain: string, template: AuthTemplate, values: AuthValues): ExpectedRecord[] {
  const d = normalizeName(domain);
  return template.records.map((r) => {
    const missing = new Set<string>();
    const name = fill(r.name, values, missing);
    const value = fill(r.value, values, missing);
    const host = r.name === '@' ? d : `${normalizeName(name)}.${d}`;
    return {
      purpose: r.purpose,
      type: r.type,
      host,
      value: r.type === 'TXT' ? value : normalizeName(value),
      ...(r.type === 'MX' ? { priority: r.priority ?? 10 } : {}),
      required: r.required,
      ...(missing.size > 0 ? { unset: [...missing].sort() } : {}),
    };
  });
}
