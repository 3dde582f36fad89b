/**
 * Encoding of keys and values for Postfix lookup-table source files, and the validators the API
 * layer calls to refuse input that no table could carry byte for byte.
 *
 * What `postmap` does with a source line (measured on 3.7, proven again by test/postfix):
 * - the key ends at the first whitespace not escaped by `\` or inside `"` quotes; the value is
 *   the rest after the following whitespace (taken literally: quotes and backslashes kept);
 * - a line that starts with whitespace continues the previous entry (so a newline + space in a
 *   value, or a domain `a.example\n evil.example`, would splice text into another entry);
 * - a line whose first character is `#` is a comment; an empty line is skipped;
 * - keys are folded to lower case; CR and trailing ASCII whitespace are stripped;
 * - only the first `:` of a smtp_sasl_password_maps value splits user from password, so a
 *   password may contain `:` and a username may not;
 * - in values, quotes and backslashes are literal; non-ASCII UTF-8 survives (smtputf8_enable yes
 *   or no); a NUL ends the value.
 * So: keys are printable ASCII without upper case, quotes or backslashes, never starting with
 * `#`; values have no control characters (tab included: invisible, and stripped at the end), no
 * unpaired surrogates (JS would write them as U+FFFD) and no whitespace at either end (trailing
 * whitespace is stripped; leading is refused too: almost always a paste error, and stripped
 * whenever it would start the value).
 */
import { isIPv6 } from 'node:net';

const MAX_KEY = 1024;
const MAX_VALUE = 4096;
const MAX_SECRET = 1024;
const MAX_USERNAME = 255;

/**
 * Printable ASCII (0x21-0x7e) without A-Z, `"` and `\`, not starting with `#`. postmap reads keys
 * with quoting: `\` escapes the next character (so `@a\ b` is one key and no value) and `"`
 * toggles quoting (an unbalanced one makes postmap skip the whole line). Not ending in `:` either:
 * postmap then warns "is this an alias file?".
 */
export function isMapSafeKey(key: string): boolean {
  if (key.length === 0 || key.length > MAX_KEY || key.charCodeAt(0) === 0x23 || key.charCodeAt(key.length - 1) === 0x3a)
    return false;
  // A loop, not a regular expression: every key of every table passes here (300,000 at 100,000 domains).
  for (let i = 0; i < key.length; i += 1) {
    const c = key.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x22 || c === 0x5c || (c >= 0x41 && c <= 0x5a)) return false;
  }
  return true;
}

/** Printable ASCII (0x20-0x7e) throughout: no control characters, no surrogates, no whitespace but the space. */
function isPrintableAscii(text: string): boolean {
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * No control characters (C0, DEL, C1), no unpaired surrogates, no whitespace at either end.
 * Inner spaces, `:`, `#`, quotes and any other Unicode survive postmap unchanged.
 */
export function isMapSafeValue(value: string): boolean {
  if (value.length === 0 || value.length > MAX_VALUE) return false;
  // The usual value is printable ASCII, where the Unicode classes below reduce to "no space at either end".
  if (isPrintableAscii(value)) return value.charCodeAt(0) !== 0x20 && value.charCodeAt(value.length - 1) !== 0x20;
  return !/[\p{Cc}\p{Cs}]/u.test(value) && !/^\s|\s$/u.test(value);
}

/**
 * 1..255 characters without `:` (the first `:` of the map value ends the username), without any
 * whitespace (Unicode included) and without control characters or unpaired surrogates.
 */
export function isValidSaslUsername(username: string): boolean {
  if (username.length === 0 || username.length > MAX_USERNAME) return false;
  if (isPrintableAscii(username)) return !username.includes(' ') && !username.includes(':');
  return !/[\s:\p{Cc}\p{Cs}]/u.test(username);
}

/** Any Unicode text a map value can carry (see isMapSafeValue), 1..1024 UTF-16 units. */
export function isValidSaslSecret(secret: string): boolean {
  return secret.length <= MAX_SECRET && isMapSafeValue(secret);
}

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const ALL_DIGITS = /^\d+$/;
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function isDnsName(name: string, minLabels: number): boolean {
  if (name.length === 0 || name.length > 253 || !HOSTNAME.test(name)) return false;
  // Counted, not split: every domain name passes here twice per compile.
  let labels = 1;
  let lastDot = -1;
  for (let i = name.indexOf('.'); i !== -1; i = name.indexOf('.', i + 1)) {
    labels += 1;
    lastDot = i;
  }
  // A numeric last label would make `1.2.3.4`-like names ambiguous with IP literals.
  return labels >= minLabels && !ALL_DIGITS.test(lastDot === -1 ? name : name.slice(lastDot + 1));
}

/** A sender domain: lower-case ASCII (IDNA A-labels), at least two labels, no trailing dot. */
export function isValidDomainName(name: string): boolean {
  return isDnsName(name, 2);
}

/** A destination policy pattern: `example.com` or `.example.com` (subdomains only). */
export function isValidDestinationPattern(pattern: string): boolean {
  return isValidDomainName(pattern.startsWith('.') ? pattern.slice(1) : pattern);
}

/** A relay host: lower-case DNS name (one label allowed), IPv4 literal, or IPv6 literal without brackets or zone. */
export function isValidRelayHost(host: string): boolean {
  if (IPV4.test(host)) return true;
  if (host.includes(':')) return isIPv6(host) && !host.includes('%') && host === host.toLowerCase();
  return isDnsName(host, 1);
}

export function isValidPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

/**
 * `[host]:port`, always bracketed: an unbracketed nexthop triggers MX lookups and no longer matches
 * the bracketed keys of the TLS policy table.
 */
export function formatNexthop(host: string, port: number): string {
  return `[${host}]:${port}`;
}

export function saslPasswordValue(username: string, secret: string): string {
  return `${username}:${secret}`;
}

/**
 * The same entry as shown and stored: the password column replaced whole by the secret's keyed
 * fingerprint. Built from the username and the fingerprint alone, so no character of the secret
 * can reach it, whatever the secret holds.
 */
export function maskedSaslPasswordValue(username: string, fingerprint: string): string {
  return `${username}:sha:${fingerprint}`;
}

export class MapEncodingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MapEncodingError';
  }
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Strictly ascending keys: the plan's tables usually arrive so (it walks domains in order), and then need no sort. */
function isSortedByKey(entries: ReadonlyArray<readonly [string, string]>): boolean {
  for (let i = 1; i < entries.length; i += 1) {
    if (!((entries[i - 1]?.[0] ?? '') < (entries[i]?.[0] ?? ''))) return false;
  }
  return true;
}

/**
 * A hash: source file, one `key value` line per entry, sorted by key. Throws on any key or value
 * postmap would not read back exactly, and on duplicate keys (postmap would keep only the first).
 */
export function renderHashMap(entries: ReadonlyArray<readonly [string, string]>): string {
  const sorted = isSortedByKey(entries) ? entries : [...entries].sort((a, b) => byCodeUnits(a[0], b[0]));
  // One string per line in a preallocated array, joined once: a third of the time of pushing key,
  // space, value and newline as four parts (measured at 100,000 lines), and `out += line` would
  // leave a rope of 100,000 cons strings to flatten when the text is first read.
  const lines = new Array<string>(sorted.length);
  let previous: string | undefined;
  for (let i = 0; i < sorted.length; i += 1) {
    const [key, value] = sorted[i]!;
    if (!isMapSafeKey(key)) throw new MapEncodingError(`unsafe map key ${JSON.stringify(key)}`);
    if (!isMapSafeValue(value)) throw new MapEncodingError(`unsafe map value for key ${JSON.stringify(key)}`);
    if (key === previous) throw new MapEncodingError(`duplicate map key ${JSON.stringify(key)}`);
    previous = key;
    lines[i] = `${key} ${value}\n`;
  }
  return lines.join('');
}

const TIME_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** A Postfix time value: digits plus an optional unit s|m|h|d|w (`5d`, `300s`, `300`). */
export function isPostfixTime(value: string): boolean {
  return /^(?:0|[1-9]\d{0,8})[smhdw]?$/.test(value);
}

/** Seconds of a Postfix time value (call isPostfixTime first). */
export function postfixTimeSeconds(value: string): number {
  const m = /^(\d+)([smhdw]?)$/.exec(value);
  if (m === null) throw new MapEncodingError(`not a Postfix time: ${JSON.stringify(value)}`);
  return Number(m[1]) * (TIME_UNITS[m[2] === '' || m[2] === undefined ? 's' : m[2]] ?? 1);
}
