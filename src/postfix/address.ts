/**
 * What Postfix does to an envelope address before any table sees it, in one place: the compiler
 * writes its keys in the form computed here and the explanation looks routes up with it, so the
 * two cannot disagree about which entry an address reaches.
 *
 * smtpd hands MAIL FROM / RCPT TO to cleanup, which canonicalises them through trivial-rewrite
 * (rewrite.c, tok822): the source route `@hop,@hop:` is dropped, quoted strings in the local part
 * are unquoted (internal form), and ONE trailing dot of the domain is stripped ("but not dot-dot
 * or @-dot"): `MAIL FROM:<x@a.test.>` is answered 250 and routed as a.test. Table lookups then
 * fold the key to lower case (the domain: `X@E5O.TEST.` reaches `@e5o.test`), while the address
 * itself keeps its case and leaves the node as `X@E5O.TEST`. An address literal (`[1.2.3.4]`,
 * `[IPv6:::1]`) is one opaque domain. A `+tag` stays in the local part: every key we write is
 * `@domain`, which an extension never changes.
 */

export interface EnvelopeAddress {
  /** The address as Postfix passes it on (external form): local part quoted where needed, case kept. */
  address: string;
  /** Local part in Postfix's internal (unquoted) form, case kept. */
  localPart: string;
  /** The domain as the tables look it up (lower case, trailing dot stripped); null without one. */
  domain: string | null;
}

/** One trailing dot of a domain is stripped, but not of `..` or a lone `.` (trivial-rewrite). */
function stripTrailingDot(domain: string): string {
  if (domain.length < 2 || !domain.endsWith('.') || domain.endsWith('..')) return domain;
  return domain.slice(0, -1);
}

/** The form of a domain (or table key domain) that Postfix's lookups compare: dot stripped, folded. */
export function lookupDomain(domain: string): string {
  const stripped = stripTrailingDot(domain);
  // Every key of every compile passes here: a stored name is already in this form, keep it as is.
  return /[A-Z]/.test(stripped) ? stripped.toLowerCase() : stripped;
}

/** Index of the last `@` outside a quoted string, or -1. */
function lastUnquotedAt(text: string): number {
  let quoted = false;
  let at = -1;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '\\') i += 1;
    else if (c === '"') quoted = !quoted;
    else if (c === '@' && !quoted) at = i;
  }
  return at;
}

/** `@a,@b:user@d` → `user@d` (rewrite.c strips the source route before anything else). */
function stripSourceRoute(text: string): string {
  if (!text.startsWith('@')) return text;
  const colon = text.indexOf(':');
  return colon < 0 || colon === text.length - 1 ? text : text.slice(colon + 1);
}

/** Internal form: quotes removed, backslash escapes resolved (tok822 internalisation). */
function unquoteLocal(local: string): string {
  let out = '';
  for (let i = 0; i < local.length; i += 1) {
    const c = local[i]!;
    if (c === '\\' && i + 1 < local.length) {
      i += 1;
      out += local[i];
    } else if (c !== '"') out += c;
  }
  return out;
}

/** quote_821_local(): a local part that is not a plain dot-atom goes out quoted. */
function quoteLocal(local: string): string {
  const plain =
    local.length > 0 &&
    !local.startsWith('.') &&
    !local.endsWith('.') &&
    !local.includes('..') &&
    !/[\u0000-\u0020\u007f"<>()[\]\\,;:@]/.test(local);
  return plain ? local : `"${local.replace(/(["\\])/g, '\\$1')}"`;
}

/**
 * The envelope address as Postfix sees it. `<>`, `''` and `<>`-wrapped forms are accepted; the null
 * sender gives an empty address without domain.
 */
export function normaliseAddress(raw: string): EnvelopeAddress {
  const bare = raw.startsWith('<') && raw.endsWith('>') ? raw.slice(1, -1) : raw;
  if (bare === '') return { address: '', localPart: '', domain: null };
  const text = stripSourceRoute(bare);
  const at = lastUnquotedAt(text);
  const localPart = unquoteLocal(at < 0 ? text : text.slice(0, at));
  const rawDomain = at < 0 ? '' : text.slice(at + 1);
  if (rawDomain === '') return { address: quoteLocal(localPart) + (at < 0 ? '' : '@'), localPart, domain: null };
  const domain = stripTrailingDot(rawDomain);
  return { address: `${quoteLocal(localPart)}@${domain}`, localPart, domain: domain.toLowerCase() };
}
