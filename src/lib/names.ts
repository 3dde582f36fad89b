import { isIP } from 'node:net';
import { domainToASCII, domainToUnicode } from 'node:url';
import { ValidationError } from './errors.js';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function invalid(field: string, message: string): never {
  throw new ValidationError(`${field} ${message}`, [{ field, message }]);
}

/** Whitespace and control characters can never be carried by a Postfix lookup table: refuse them first. */
export function assertPrintable(field: string, value: string): void {
  if (/[\u0000-\u0020\u007f-\u009f\u2028\u2029]/u.test(value)) {
    invalid(field, 'must not contain whitespace or control characters');
  }
}

/**
 * A DNS name as Postfix tables and SMTP expect it: IDNA ASCII form, lower-case, labels of
 * letters/digits/inner hyphens, at most 253 characters, no trailing dot.
 */
export function normalizeDomainName(field: string, input: string, options: { minLabels?: number } = {}): { ascii: string; unicode: string } {
  assertPrintable(field, input);
  if (input.endsWith('.')) invalid(field, 'must not end with a dot');
  const ascii = domainToASCII(input);
  if (ascii === '') invalid(field, 'is not a valid domain name');
  if (ascii.length > 253) invalid(field, 'is longer than 253 characters');
  const labels = ascii.split('.');
  if (labels.length < (options.minLabels ?? 2)) invalid(field, 'must have at least two labels (e.g. example.com)');
  for (const label of labels) {
    if (!LABEL.test(label)) invalid(field, `has an invalid label "${label}"`);
  }
  if (/^\d+$/.test(labels.at(-1)!)) invalid(field, 'must not end in a numeric label');
  return { ascii, unicode: domainToUnicode(ascii) };
}

/** A relay host: an IP literal (IPv6 without brackets) or a DNS name (one label allowed, e.g. an internal host). */
export function normalizeHost(field: string, input: string): string {
  assertPrintable(field, input);
  if (input.startsWith('[') || input.endsWith(']')) invalid(field, 'must be given without brackets');
  if (isIP(input) !== 0) return input.toLowerCase();
  return normalizeDomainName(field, input, { minLabels: 1 }).ascii;
}

/** A destination policy pattern: `example.com` or `.example.com` (every subdomain). */
export function normalizeDestinationPattern(field: string, input: string): string {
  const suffix = input.startsWith('.');
  const name = normalizeDomainName(field, suffix ? input.slice(1) : input).ascii;
  return suffix ? `.${name}` : name;
}
