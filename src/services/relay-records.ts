/**
 * What a relay declares that each sending domain must publish for it (the provider's DKIM records,
 * SPF include, return-path CNAME and authentication template): read from a relay row, and checked
 * and normalised as a request gives them. Domain verification builds the expected records from
 * these.
 */
import type { Relay } from '../generated/prisma/client.js';
import { ValidationError } from '../lib/errors.js';
import { parseDkimKey, templateErrors, type AuthTemplate } from '../dns/index.js';

/** A DKIM record the provider asks each sending domain to publish at `<selector>._domainkey.<domain>`. */
export interface RelayDkim {
  selector: string;
  type: 'CNAME' | 'TXT';
  value: string;
}

/** The provider's bounce (return-path) domain: CNAME `<host>.<domain>` → value. */
export interface RelayReturnPath {
  host: string;
  value: string;
}

export function relayDkim(relay: Relay): RelayDkim[] {
  return Array.isArray(relay.dkim) ? (relay.dkim as unknown as RelayDkim[]) : [];
}

export function relayReturnPath(relay: Relay): RelayReturnPath | null {
  return relay.returnPath === null || typeof relay.returnPath !== 'object'
    ? null
    : (relay.returnPath as unknown as RelayReturnPath);
}

const DNS_LABELS = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

export function normalizeDkim(input: RelayDkim[]): RelayDkim[] {
  const seen = new Set<string>();
  return input.map((d, i) => {
    const field = `body/dkim/${i}`;
    const selector = d.selector.toLowerCase();
    if (!DNS_LABELS.test(selector))
      throw new ValidationError(`${field}/selector must be DNS labels`, [
        { field: `${field}/selector`, message: 'must be DNS labels' },
      ]);
    if (seen.has(selector))
      throw new ValidationError(`${field}/selector is listed twice`, [
        { field: `${field}/selector`, message: 'is listed twice' },
      ]);
    seen.add(selector);
    if (d.type === 'CNAME') {
      const value = d.value.toLowerCase().replace(/\.$/, '');
      if (!DNS_LABELS.test(value))
        throw new ValidationError(`${field}/value must be a host name for a CNAME`, [
          { field: `${field}/value`, message: 'must be a host name' },
        ]);
      return { selector, type: 'CNAME', value };
    }
    // v=DKIM1 is optional (RFC 6376 §3.6.1): Mailgun-style `k=rsa; p=…` is a key record too.
    const parsed = parseDkimKey(d.value);
    const problem = /[^\x20-\x7e]/.test(d.value)
      ? 'must be printable ASCII'
      : !parsed.ok
        ? parsed.error
        : parsed.key.p === ''
          ? 'has an empty p= (a revoked key)'
          : null;
    if (problem !== null) {
      throw new ValidationError(`${field}/value must be a DKIM key record ([v=DKIM1; ]k=…; p=…): ${problem}`, [
        { field: `${field}/value`, message: `must be a DKIM key record: ${problem}` },
      ]);
    }
    return { selector, type: 'TXT', value: d.value.trim() };
  });
}

/** SPF include targets are DNS names, not host names: `_spf.google.com` is the usual shape. */
export function normalizeSpfInclude(input: string): string {
  const value = input.toLowerCase().replace(/\.$/, '');
  if (!DNS_LABELS.test(value) || !value.includes('.')) {
    throw new ValidationError('body/spfInclude must be a DNS name (letters, digits, "-", "_")', [
      { field: 'body/spfInclude', message: 'must be a DNS name' },
    ]);
  }
  return value;
}

export function normalizeReturnPath(input: RelayReturnPath): RelayReturnPath {
  const host = input.host.toLowerCase();
  const value = input.value.toLowerCase().replace(/\.$/, '');
  if (!DNS_LABELS.test(host))
    throw new ValidationError('body/returnPath/host must be DNS labels', [
      { field: 'body/returnPath/host', message: 'must be DNS labels' },
    ]);
  if (!DNS_LABELS.test(value))
    throw new ValidationError('body/returnPath/value must be a host name', [
      { field: 'body/returnPath/value', message: 'must be a host name' },
    ]);
  return { host, value };
}

export function relayAuthTemplate(relay: Relay): AuthTemplate | null {
  return relay.authTemplate === null || typeof relay.authTemplate !== 'object'
    ? null
    : (relay.authTemplate as unknown as AuthTemplate);
}

export function normalizeAuthTemplate(input: AuthTemplate): AuthTemplate {
  const errors = templateErrors(input);
  if (errors.length > 0) throw new ValidationError(`${errors[0]!.field} ${errors[0]!.message}`, errors);
  return {
    variables: input.variables.map((v) => ({
      name: v.name,
      kind: v.kind,
      ...(v.description === undefined ? {} : { description: v.description }),
    })),
    records: input.records.map((r) => ({
      purpose: r.purpose,
      type: r.type,
      name: r.name,
      value: r.type === 'TXT' ? r.value : r.value.replace(/\.$/, ''),
      ...(r.type === 'MX' ? { priority: r.priority! } : {}),
      required: r.required,
    })),
  };
}
