import { isIP } from 'node:net';
import { toASCII, toUnicode } from 'tr46';
import { isValidRelayHost } from '../postfix/map-encoding.js';
import { ValidationError } from './errors.js';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * UTS #46 processing as browsers do it (nontransitional, bidi and joiner rules), but never a URL
 * parser: `smtp.example.com#x` must be refused, not read as the host `smtp.example.com`.
 */
const IDNA = {
  checkBidi: true,
  checkJoiners: true,
  checkHyphens: false,
  useSTD3ASCIIRules: false,
  transitionalProcessing: false,
} as const;

function invalid(field: string, message: string): never {
  throw new ValidationError(`${field} ${message}`, [{ field, message }]);
}

/** Whitespace and control characters can never be carried by a Postfix lookup table: refuse them first. */
export function assertPrintable(field: string, value: string): void {
  if (/[\u0000-\u0020\u007f-\u009f\u2028\u2029]/u.test(value)) {
    invalid(field, 'must not contain whitespace or control characters');
  }
}

/** ASCII other than letters, digits, dot, hyphen (underscore is left to the label check): URL and address syntax. */
function assertNoDelimiters(field: string, input: string): void {
  const found = /[\u0021-\u002c\u002f\u003a-\u0040\u005b-\u005e\u0060\u007b-\u007e]/.exec(input);
  if (found !== null)
    invalid(field, `must not contain "${found[0]}" (a name holds only letters, digits, hyphens and dots)`);
}

/**
 * A DNS name as Postfix tables and SMTP expect it: IDNA ASCII form, lower-case, labels of
 * letters/digits/inner hyphens, at most 253 characters, no trailing dot. The stored name is the
 * name given: a label the IDNA mapping would change other than by case (a character dropped, such
 * as a soft hyphen, or replaced, such as a full-width letter) is refused, naming the canonical form.
 */
export function normalizeDomainName(
  field: string,
  input: string,
  options: { minLabels?: number } = {},
): { ascii: string; unicode: string } {
  assertPrintable(field, input);
  assertNoDelimiters(field, input);
  if (input.endsWith('.')) invalid(field, 'must not end with a dot');
  const ascii = toASCII(input, IDNA);
  if (ascii === null || ascii === '') invalid(field, 'is not a valid domain name');
  if (ascii.length > 253) invalid(field, 'is longer than 253 characters');
  const labels = ascii.split('.');
  if (labels.length < (options.minLabels ?? 2)) invalid(field, 'must have at least two labels (e.g. example.com)');
  for (const label of labels) {
    if (!LABEL.test(label)) invalid(field, `has an invalid label "${label}"`);
  }
  if (/^\d+$/.test(labels.at(-1)!)) invalid(field, 'must not end in a numeric label');
  const unicode = toUnicode(ascii, IDNA);
  if (unicode.error) invalid(field, 'is not a valid domain name');
  const given = input.normalize('NFC').toLowerCase().split('.');
  const unicodeLabels = unicode.domain.split('.');
  if (given.length !== labels.length || given.some((label, i) => label !== labels[i] && label !== unicodeLabels[i])) {
    const canonical = unicode.domain === ascii ? `"${ascii}"` : `"${unicode.domain}" or "${ascii}"`;
    invalid(field, `changes under IDNA mapping (a character would be dropped or replaced): send ${canonical}`);
  }
  return { ascii, unicode: unicode.domain };
}

/** A relay host: an IP literal (IPv6 without brackets) or a DNS name (one label allowed, e.g. an internal host). */
export function normalizeHost(field: string, input: string): string {
  assertPrintable(field, input);
  if (input.startsWith('[') || input.endsWith(']')) invalid(field, 'must be given without brackets');
  if (isIP(input) !== 0) {
    const address = input.toLowerCase();
    // The compiler's own check: Node accepts `::1%lo` as an IPv6 address; no nexthop can carry a zone.
    if (!isValidRelayHost(address)) invalid(field, 'must be an IP address without a zone (%…) or a DNS name');
    return address;
  }
  return normalizeDomainName(field, input, { minLabels: 1 }).ascii;
}

/** A destination policy pattern: `example.com` or `.example.com` (every subdomain). */
export function normalizeDestinationPattern(field: string, input: string): string {
  const suffix = input.startsWith('.');
  const name = normalizeDomainName(field, suffix ? input.slice(1) : input).ascii;
  return suffix ? `.${name}` : name;
}
