/**
 * Redacting a SASL secret from a relay's answer in every form AUTH carries it. The criterion: after
 * redaction the secret does not appear, and for a secret of 4 bytes or more no 4 consecutive bytes
 * of it can be decoded from any run of base64 characters left in the answer (at any of the 4
 * character offsets, standard or URL-safe alphabet), whatever base64 text held it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { redactSecret, replyText, secretForms } from '../../src/smtp/secret-forms.js';

const WINDOW = 4;

/**
 * Whether `out` still gives away the secret: whole, or WINDOW of its bytes decoded from base64.
 * The markers are not looked at: `[redacted]` holds a one-character secret like `r` by itself.
 */
function recoverable(out: string, secret: string): boolean {
  const text = out.replaceAll('[redacted]', '\0');
  if (text.includes(secret)) return true;
  const bytes = Buffer.from(secret, 'utf8');
  if (bytes.length < WINDOW) return false;
  const windows = Array.from({ length: bytes.length - WINDOW + 1 }, (_, i) => bytes.subarray(i, i + WINDOW));
  for (const run of text.match(/[A-Za-z0-9+/_-]{2,}/g) ?? []) {
    for (let offset = 0; offset < 4; offset += 1) {
      const piece = run.slice(offset);
      for (const decoded of [
        Buffer.from(piece.replace(/[-_]/g, ''), 'base64'),
        Buffer.from(piece.replace(/[+/]/g, ''), 'base64url'),
      ]) {
        if (windows.some((w) => decoded.includes(w))) return true;
      }
    }
  }
  return false;
}

const b64 = (text: string, url = false) => Buffer.from(text, 'utf8').toString(url ? 'base64url' : 'base64');

// Every kind of character a secret may hold, and those a masking pattern once tripped on.
const hostile = fc
  .string({
    unit: fc.oneof(
      fc.constantFrom(':', '#', ' ', '\\', '"', "'", '\u2028', '\u2029', '😀', '𝔘', 'é', '='),
      fc.string({ unit: 'grapheme', maxLength: 1 }),
    ),
    minLength: 1,
    maxLength: 40,
  })
  .filter((secret) => secret !== '');

describe('redactSecret', () => {
  it('removes the secret as sent by AUTH PLAIN (with or without an authzid) and AUTH LOGIN, and as decoded', () => {
    const user = 'panel-user';
    const secret = 'pa ss:wo#rd "é" \u2028 😀';
    const sent = [
      secret,
      b64(`\0${user}\0${secret}`),
      b64(`${user}\0${user}\0${secret}`),
      b64(`admin@example\0${user}\0${secret}`),
      b64(`x\0${user}\0${secret}`, true),
      b64(secret),
      b64(secret).replace(/=+$/, ''),
      b64(secret, true),
    ];
    for (const form of sent) {
      const out = redactSecret(`535 5.7.8 refused: you sent AUTH PLAIN ${form} (try again)`, user, secret);
      expect(out).toContain('[redacted]');
      expect(out.startsWith('535 5.7.8 refused: you sent AUTH PLAIN ')).toBe(true);
      expect(recoverable(out, secret), form).toBe(false);
    }
  });

  it('reads a relay answer as the bytes it was (nodemailer gives them one character per byte) before redacting', () => {
    const secret = 'ünï€ødé\u2029😀';
    const asNodemailerGivesIt = Buffer.from(`535 echo ${secret}`, 'utf8').toString('latin1');
    expect(asNodemailerGivesIt).not.toContain(secret);
    expect(replyText(asNodemailerGivesIt)).toBe(`535 echo ${secret}`);
    expect(redactSecret(asNodemailerGivesIt, 'u', secret)).toBe('535 echo [redacted]');
    // Text that is not a byte string is left as it is.
    expect(replyText('connect ECONNREFUSED 𝔘')).toBe('connect ECONNREFUSED 𝔘');
  });

  it('never lists an empty form, and lists the longest first', () => {
    expect(secretForms('u', '')).toEqual([]);
    const forms = secretForms('u', 'ab');
    expect(forms).not.toContain('');
    expect(forms.map((f) => f.length)).toEqual([...forms.map((f) => f.length)].sort((a, b) => b - a));
  });

  it('leaves nothing of any secret recoverable, inside any base64 text around it (property)', () => {
    fc.assert(
      fc.property(
        hostile,
        fc.stringMatching(/^[A-Za-z0-9@._+-]{1,20}$/),
        fc.string({ maxLength: 12 }),
        fc.string({ maxLength: 12 }),
        fc.boolean(),
        (secret, user, before, after, url) => {
          for (const encoded of [
            b64(`${before}\0${user}\0${secret}`, url),
            b64(`${before}${secret}${after}`, url),
            b64(secret, url),
            secret,
          ]) {
            const out = redactSecret(`535 5.7.8 ${before} ${encoded} ${after}`, user, secret);
            expect(recoverable(out, secret), JSON.stringify({ encoded, out })).toBe(false);
          }
        },
      ),
      { numRuns: 300, seed: 4 },
    );
  });
});
