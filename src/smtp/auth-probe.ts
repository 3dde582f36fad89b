/**
 * A real SMTP AUTH against a relay, the way the nodes will speak to it: TLS on connect for
 * `implicit`, STARTTLS required for `starttls`, STARTTLS when offered for `opportunistic`; the
 * certificate judged as the compiled tls_policy level says, against the CA the nodes trust:
 * `secure` (a host name) matches the name or a subdomain of it (Postfix's nexthop, dot-nexthop),
 * `verify` (an IP literal) the address as IP subjectAltName, `may`/`encrypt` check nothing.
 * Built on nodemailer's SMTP connection. Runs
 * from the control plane (not from a node): it proves the credential, not the node's network path.
 * The secret is never part of a result or an error: the answer is redacted of the secret in every
 * form AUTH carries it (secret-forms.ts).
 */
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { redactSecret } from './secret-forms.js';

export interface SmtpAuthTarget {
  host: string;
  port: number;
  tls: 'starttls' | 'implicit' | 'opportunistic';
  /** The tls_policy level the compiler gives this relay (relayTlsPolicy). */
  level: 'may' | 'encrypt' | 'verify' | 'secure';
  /** PEM of the CA certificates the nodes trust; undefined: Node's built-in store (the system's). */
  ca?: string | undefined;
  username: string;
  secret: string;
  /** Name to greet with (EHLO). */
  heloName?: string;
  timeoutMs?: number;
}

export interface SmtpAuthResult {
  ok: boolean;
  /** Where it ended: connect, tls, auth, or done. */
  stage: 'connect' | 'tls' | 'auth' | 'done';
  /** The server's answer or the network error (never the secret, nor its base64 forms). */
  detail: string;
  /** TLS protocol of the session, null without TLS. */
  tlsProtocol: string | null;
  durationMs: number;
}

/** The first `max` UTF-16 units of `text`, never ending in half a surrogate pair. */
function head(text: string, max: number): string {
  const cut = text.slice(0, max);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}

/** The DNS names a certificate claims: its DNS subjectAltNames, else its CN (as Postfix reads them). */
function dnsNames(cert: PeerCertificate): string[] {
  const sans = (cert.subjectaltname ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase());
  const cn = cert.subject?.CN;
  return sans.length > 0 ? sans : typeof cn === 'string' ? [cn.toLowerCase()] : [];
}

/** Postfix `secure` with smtp_tls_secure_cert_match = nexthop, dot-nexthop: the name, or a name under it. */
function secureMatch(host: string) {
  return (_servername: string, cert: PeerCertificate): Error | undefined => {
    const standard = checkServerIdentity(host, cert);
    if (standard === undefined) return undefined;
    return dnsNames(cert).some((name) => name.endsWith(`.${host.toLowerCase()}`)) ? undefined : standard;
  };
}

/** TLS options for the level: the chain and the name or address only where Postfix checks them. */
function tlsOptions(target: SmtpAuthTarget) {
  const ip = isIP(target.host) !== 0;
  // An IP address is no SNI name (RFC 6066); Postfix sends none for a literal either.
  const base = { minVersion: 'TLSv1.2' as const, ...(ip ? {} : { servername: target.host }) };
  if (target.level === 'may' || target.level === 'encrypt') return { ...base, rejectUnauthorized: false };
  return {
    ...base,
    rejectUnauthorized: true,
    ...(target.ca !== undefined ? { ca: target.ca } : {}),
    ...(target.level === 'secure' ? { checkServerIdentity: secureMatch(target.host) } : {}),
  };
}

type Connection = InstanceType<typeof SMTPConnection> & {
  secure?: boolean;
  _socket?: { getProtocol?: () => string | null };
};

export async function probeSmtpAuth(target: SmtpAuthTarget): Promise<SmtpAuthResult> {
  const started = Date.now();
  const timeout = target.timeoutMs ?? 10_000;
  const conn = new SMTPConnection({
    host: target.host,
    port: target.port,
    secure: target.tls === 'implicit',
    requireTLS: target.tls === 'starttls',
    opportunisticTLS: target.tls === 'opportunistic',
    ignoreTLS: false,
    name: target.heloName ?? 'relayplane.invalid',
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    tls: tlsOptions(target),
  }) as Connection;
  const result = (ok: boolean, stage: SmtpAuthResult['stage'], detail: string): SmtpAuthResult => ({
    ok,
    stage,
    // Redacted before it is cut: a cut could leave a fragment no form matches.
    detail: head(redactSecret(detail, target.username, target.secret), 500),
    tlsProtocol: conn.secure === true ? (conn._socket?.getProtocol?.() ?? 'TLS') : null,
    durationMs: Date.now() - started,
  });
  // nodemailer reports some failures (a TLS upgrade refused mid-handshake, a dropped socket) only
  // as 'error'/'end' events, not through the pending callback: every step also listens for them.
  let failed: ((err: Error) => void) | undefined;
  conn.on('error', (err: Error) => failed?.(err));
  conn.on('end', () => failed?.(new Error('the relay closed the connection')));
  const step = (run: (done: (err?: Error | null) => void) => void) =>
    new Promise<void>((resolve, reject) => {
      failed = reject;
      run((err) => (err ? reject(err) : resolve()));
    });
  try {
    await step((done) => conn.connect(done));
  } catch (error) {
    const e = error as Error & { code?: string };
    const tlsFailure = e.code === 'ETLS' || /certificate|TLS|SSL|STARTTLS/i.test(e.message);
    conn.close();
    return result(false, tlsFailure ? 'tls' : 'connect', e.message);
  }
  try {
    await step((done) => conn.login({ user: target.username, pass: target.secret }, done));
  } catch (error) {
    const e = error as Error & { response?: string };
    conn.close();
    return result(false, 'auth', e.response ?? e.message);
  }
  const done = result(true, 'done', 'authenticated');
  failed = undefined;
  conn.quit();
  return done;
}
