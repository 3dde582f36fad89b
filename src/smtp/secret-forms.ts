/**
 * Removing a SASL secret from text a relay sent back, in every form the AUTH exchange carries it:
 * AUTH PLAIN sends base64(`authzid NUL user NUL secret`), AUTH LOGIN base64(secret), and a relay
 * may echo either, or decode it and echo the secret itself.
 *
 * A secret inside any base64 text (whatever precedes it: an authzid, another encoding's prefix)
 * leaves a run of base64 characters that depends on its bytes and on their offset modulo 3 only.
 * Those runs, for the three offsets, are redacted too: what is left of a secret of 4 bytes or more
 * in any base64 text is at most a few bits at each end, in a character shared with its neighbours.
 */

import { redactAll } from '../lib/redact.js';

const base64Forms = (bytes: Buffer): string[] => {
  const standard = bytes.toString('base64');
  const unpadded = standard.replace(/=+$/, '');
  return [standard, unpadded, bytes.toString('base64url')];
};

/**
 * Runs shorter than this are not redacted, being ordinary text as often as not: a secret of under
 * 4 bytes stays readable inside base64 text other than the exact forms listed below.
 */
const MIN_RUN = 4;

/**
 * For each offset modulo 3 the secret may start at in some base64 text: the longest run of base64
 * characters every bit of which comes from the secret (character i holds bits 6i..6i+5; the
 * secret's bits start at 8 × offset), in the standard and the URL-safe alphabet.
 */
function alignedRuns(secret: Buffer): string[] {
  const runs: string[] = [];
  for (let offset = 0; offset < 3; offset += 1) {
    const bits = 8 * secret.length;
    const padded = Buffer.concat([Buffer.alloc(offset), secret, Buffer.alloc(2)]);
    const from = Math.ceil((8 * offset) / 6);
    const to = Math.floor((8 * offset + bits) / 6);
    if (to - from < MIN_RUN) continue;
    runs.push(padded.toString('base64').slice(from, to), padded.toString('base64url').slice(from, to));
  }
  return runs;
}

/** Every string to remove from a relay's answer for this credential, longest first; never an empty one. */
export function secretForms(username: string, secret: string): string[] {
  if (secret === '') return [];
  const bytes = (text: string) => Buffer.from(text, 'utf8');
  const forms = new Set<string>([
    secret,
    ...base64Forms(bytes(`\0${username}\0${secret}`)),
    ...base64Forms(bytes(`${username}\0${username}\0${secret}`)),
    ...base64Forms(bytes(secret)),
    ...alignedRuns(bytes(secret)),
  ]);
  forms.delete('');
  return [...forms].sort((a, b) => b.length - a.length);
}

/**
 * An SMTP answer as text. nodemailer hands replies over as 'binary' strings (one character per
 * byte), in which a secret echoed as UTF-8 is not the secret's string: such text is decoded as
 * UTF-8 first. Text already holding characters above U+00FF is not a byte string and stays as is.
 */
export function replyText(text: string): string {
  for (let i = 0; i < text.length; i += 1) if (text.charCodeAt(i) > 0xff) return text;
  return Buffer.from(text, 'latin1').toString('utf8');
}

/** `text` without any form of the secret (see secretForms), each stretch replaced by `[redacted]`. */
export function redactSecret(text: string, username: string, secret: string): string {
  return redactAll(replyText(text), secretForms(username, secret));
}
