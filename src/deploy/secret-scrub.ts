/**
 * Text a node sends back (a command's stderr, and problems and errors built from it) leaves the
 * deployer without the bundle's secrets: it becomes a step's detail, a node's lastError, a log
 * line. What is secret is known from the bundle's structure: every entry of a file marked secret.
 */
import { REDACTED, redactAll } from '../lib/redact.js';
import type { Bundle } from './bundle.js';
import { parsedFile } from './map-source.js';

/** Shorter passwords are not redacted on their own (they are ordinary text): their `user:password` entry still is. */
const MIN_PASSWORD = 4;

const known = new WeakMap<Bundle, string[]>();

/** Each secret file's values (`user:password`) and the password after the first `:`; parsed once per bundle. */
export function secretValues(bundle: Bundle): string[] {
  let values = known.get(bundle);
  if (values === undefined) {
    const found = new Set<string>();
    for (const file of Object.values(bundle.files)) {
      if (!file.secret) continue;
      for (const { value } of parsedFile(file).entries) {
        found.add(value);
        const password = value.slice(value.indexOf(':') + 1);
        if (password.length >= MIN_PASSWORD) found.add(password);
      }
    }
    known.set(bundle, (values = [...found]));
  }
  return values;
}

/** `text` with every secret value of the bundle replaced by `[redacted]`. */
export function redactBundleSecrets(text: string, bundle: Bundle): string {
  return text === '' ? text : redactAll(text, secretValues(bundle));
}

/** What a map key can be (printable ASCII, no space or quote): Postfix quotes one in `duplicate entry: "<key>"`. */
const KEY_LIKE = /^[!#-~]{1,1024}$/;

/**
 * postmap's stderr, fit to quote in a problem. Postfix puts table data between double quotes
 * (`non-UTF-8 input "<the whole line>" -- ignoring this line`, `duplicate entry: "<key>"`), and
 * replaces bytes it cannot show, so a quoted secret need not match the secret. On a line that
 * names a secret table, or no table of the bundle, everything from the first to the last quote
 * is dropped unless it is one key-like token; then every secret value left is redacted.
 */
export function postmapStderr(stderr: string, bundle: Bundle): string {
  const names = Object.entries(bundle.files);
  const secretNames = names.filter(([, f]) => f.secret).map(([name]) => name);
  const publicNames = names.filter(([, f]) => !f.secret).map(([name]) => name);
  const lines = stderr.split('\n').map((line) => {
    const aboutPublic =
      !secretNames.some((name) => line.includes(name)) && publicNames.some((name) => line.includes(name));
    const first = line.indexOf('"');
    if (aboutPublic || first === -1) return line;
    const last = line.lastIndexOf('"');
    const quoted = last > first ? line.slice(first + 1, last) : line.slice(first + 1);
    if (last > first && KEY_LIKE.test(quoted)) return line;
    return `${line.slice(0, first)}"${REDACTED}"${last > first ? line.slice(last + 1) : ''}`;
  });
  return redactBundleSecrets(lines.join('\n'), bundle);
}
