/**
 * A scriptable smart host (the provider a Postfix node relays to) for end-to-end tests, built on
 * the npm `smtp-server` package. Listens on a loopback address only and never resolves names.
 *
 * - TLS: 'starttls' (plain listener offering STARTTLS), 'implicit' (TLS from the first byte,
 *   what `smtp_tls_wrappermode = yes` speaks) or 'none' (neither STARTTLS nor AUTH is offered: an
 *   MX without TLS; mail is accepted without AUTH). The certificate is self-signed, generated at start
 *   with the openssl CLI, CN `<name>.lab.test`, SAN IP:127.0.0.1, IP:::1, DNS:<name>.lab.test and
 *   DNS:localhost (a relay named by a host name that resolves without DNS); `caCertPem` is that certificate.
 *   `host: '::1'` listens on the IPv6 loopback instead (nexthop `[::1]:PORT`), another 127.x.y.z
 *   address on that one; startMxHost() takes port 25 of a free one (a recipient domain's MX).
 * - AUTH PLAIN/LOGIN against `users`, only after TLS (smtp-server answers 538 before STARTTLS),
 *   and required before MAIL FROM (530) unless `authOptional` (used for the catch-all sink).
 *   Bad credentials get `535 5.7.8`.
 * - Every accepted message is replied to with `250 2.0.0 Ok: queued as <name>-000001` (a counter),
 *   so Postfix's `status=sent (...)` log line names the message the smart host recorded.
 *
 * Behaviour switches:
 * - `setMode('accept')` (default) accepts everything else.
 * - `setMode('reject', stage = 'rcpt')`: 550 5.7.1 at RCPT TO; stage 'mail' → 550 at MAIL FROM;
 *   stage 'data' → 554 5.6.0 after the message content.
 * - `setMode('defer', stage = 'rcpt')`: 451 4.3.0 at the same points (4xx).
 * - `setMode('drop', stage = 'mail')`: the TCP connection is closed without a reply when the client
 *   sends MAIL FROM ('rcpt': at RCPT TO; 'data': after the message content was read, before the
 *   reply, the classic "lost connection after end of data" that leads to duplicates).
 * - Per-recipient rules, in 'accept' mode: a recipient whose local part starts with `reject-` gets
 *   `550 5.1.1` at RCPT, `defer-` gets `451 4.2.0`, `drop-` closes the connection at RCPT.
 */
import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { LOOPBACK, runOk } from './util.js';

export type SmartHostTls = 'starttls' | 'implicit' | 'none';
export type SmartHostMode = 'accept' | 'reject' | 'defer' | 'drop';
export type SmartHostStage = 'mail' | 'rcpt' | 'data';

export interface SmartHostOptions {
  name: string;
  /** 0 or omitted: a free port picked by the kernel. */
  port?: number;
  tls: SmartHostTls;
  /** username → password. The object is kept: changes made later take effect for new AUTHs. */
  users: Record<string, string>;
  /** Accept MAIL FROM without AUTH (a catch-all sink). AUTH is still offered after TLS. */
  authOptional?: boolean;
  /** Loopback address to listen on: 127.0.0.1 (default), another 127.x.y.z, or ::1 (an IPv6 relay). */
  host?: string;
}

export interface ReceivedMessage {
  /** The id the smart host gave it in its 250 reply, `<name>-000001`. */
  id: string;
  /** SASL username of the session, undefined if the session did not authenticate. */
  authUser: string | undefined;
  /** Envelope sender ('' for the null sender). */
  mailFrom: string;
  rcptTo: string[];
  /** Raw message as received (CRLF line ends, dot-unstuffed). */
  data: string;
  receivedAt: Date;
  /** Message-ID header value including the angle brackets, if present. */
  messageId: string | undefined;
  subject: string | undefined;
  /** TLS protocol of the session, e.g. 'TLSv1.3'; undefined for a cleartext session. */
  tlsProtocol: string | undefined;
  sessionId: string;
}

export interface AuthAttempt {
  user: string;
  ok: boolean;
  method: string;
  at: Date;
}

export interface SmartHost {
  name: string;
  host: string;
  port: number;
  tls: SmartHostTls;
  /** The Postfix nexthop for this host: `[127.0.0.1]:PORT`. */
  nexthop: string;
  /** PEM of the self-signed certificate (trust anchor for smtp_tls_CAfile). */
  caCertPem: string;
  users: Record<string, string>;
  readonly mode: SmartHostMode;
  readonly stage: SmartHostStage;
  /** Accepted messages, oldest first. */
  readonly received: ReceivedMessage[];
  readonly authAttempts: AuthAttempt[];
  /** Number of TCP connections that reached the SMTP greeting. */
  readonly connectionCount: number;
  /** Errors the server reported (TLS handshake failures, resets). For diagnostics. */
  readonly errors: Error[];
  setMode(mode: SmartHostMode, stage?: SmartHostStage): void;
  /** Resolves with the first received message (already there or arriving) that matches. */
  waitFor(predicate: (m: ReceivedMessage) => boolean, timeoutMs?: number): Promise<ReceivedMessage>;
  /** Clears received/authAttempts/errors/counters and goes back to 'accept'. */
  reset(): void;
  close(): Promise<void>;
}

/** A self-signed EC certificate for 127.0.0.1 made with the openssl CLI. */
export async function selfSignedCert(commonName: string): Promise<{ key: string; cert: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-lab-cert-'));
  try {
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    await runOk('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '7',
      '-subj',
      `/CN=${commonName}`,
      '-addext',
      `subjectAltName=IP:127.0.0.1,IP:::1,DNS:${commonName},DNS:localhost`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    ]);
    return { key: await readFile(keyFile, 'utf8'), cert: await readFile(certFile, 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function smtpError(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

function headerValue(raw: string, name: string): string | undefined {
  const end = raw.search(/\r?\n\r?\n/);
  const head = (end >= 0 ? raw.slice(0, end) : raw).replace(/\r?\n[ \t]+/g, ' ');
  const re = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im');
  return re.exec(head)?.[1]?.trim();
}

function localPart(address: string): string {
  const at = address.lastIndexOf('@');
  return (at >= 0 ? address.slice(0, at) : address).toLowerCase();
}

export async function startSmartHost(opts: SmartHostOptions): Promise<SmartHost> {
  const host = opts.host ?? LOOPBACK;
  if (host !== '::1' && !/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) {
    throw new Error(`smart host ${opts.name}: ${host} is not a loopback address`);
  }
  // Without TLS there is no AUTH (smtp-server offers it only after TLS): such a host takes anyone.
  const authOptional = opts.authOptional === true || opts.tls === 'none';
  const { key, cert } = await selfSignedCert(`${opts.name}.lab.test`);
  const events = new EventEmitter();
  events.setMaxListeners(0);
  let received: ReceivedMessage[] = [];
  let authAttempts: AuthAttempt[] = [];
  let errors: Error[] = [];
  let connectionCount = 0;
  let seq = 0;
  let mode: SmartHostMode = 'accept';
  let stage: SmartHostStage = 'rcpt';

  const dropSession = (session: SMTPServerSession) => {
    for (const conn of server.connections) {
      const c = conn as unknown as { id: string; _socket?: { destroy(): void } };
      if (c.id === session.id) c._socket?.destroy();
    }
  };
  /** Applies the global mode at a stage; returns true when it handled the callback. */
  const applyMode = (at: SmartHostStage, session: SMTPServerSession, cb: (err?: Error | null) => void): boolean => {
    if (mode === 'accept' || stage !== at) return false;
    if (mode === 'drop') {
      dropSession(session);
      return true; // never answered
    }
    if (mode === 'reject') {
      cb(
        at === 'data'
          ? smtpError(554, '5.6.0 Message rejected by lab smart host')
          : smtpError(550, '5.7.1 Rejected by lab smart host'),
      );
    } else {
      cb(smtpError(451, '4.3.0 Try again later (lab smart host)'));
    }
    return true;
  };

  const server = new SMTPServer({
    secure: opts.tls === 'implicit',
    key,
    cert,
    name: `${opts.name}.lab.test`,
    banner: `lab smart host ${opts.name}`,
    logger: false,
    disableReverseLookup: true, // a PTR lookup of 127.0.0.1 would go to the DNS server
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional,
    ...(opts.tls === 'none' ? { disabledCommands: ['STARTTLS', 'AUTH'] } : {}),
    allowInsecureAuth: false,
    size: 20 * 1024 * 1024,
    closeTimeout: 500,
    socketTimeout: 30_000,
    onConnect(_session, cb) {
      connectionCount++;
      cb();
    },
    onAuth(auth, _session, cb) {
      const user = auth.username ?? '';
      const ok =
        (auth.method === 'PLAIN' || auth.method === 'LOGIN') &&
        Object.prototype.hasOwnProperty.call(opts.users, user) &&
        opts.users[user] === auth.password;
      authAttempts.push({ user, ok, method: auth.method, at: new Date() });
      if (!ok) return cb(smtpError(535, '5.7.8 Authentication credentials invalid'));
      cb(null, { user });
    },
    onMailFrom(_address, session, cb) {
      if (!authOptional && !session.secure) return cb(smtpError(530, '5.7.0 Must issue a STARTTLS command first'));
      if (applyMode('mail', session, cb)) return;
      cb();
    },
    onRcptTo(address, session, cb) {
      if (applyMode('rcpt', session, cb)) return;
      const local = localPart(address.address);
      if (local.startsWith('reject-')) return cb(smtpError(550, '5.1.1 Recipient rejected by lab rule'));
      if (local.startsWith('defer-')) return cb(smtpError(451, '4.2.0 Recipient deferred by lab rule'));
      if (local.startsWith('drop-')) {
        dropSession(session);
        return;
      }
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (applyMode('data', session, cb)) return;
        const data = Buffer.concat(chunks).toString('utf8');
        seq++;
        const id = `${opts.name}-${String(seq).padStart(6, '0')}`;
        const tlsProtocol = session.tlsOptions === false ? undefined : session.tlsOptions.version;
        const mailFrom = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
        const msg: ReceivedMessage = {
          id,
          authUser: typeof session.user === 'string' ? session.user : undefined,
          mailFrom,
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          data,
          receivedAt: new Date(),
          messageId: headerValue(data, 'Message-ID'),
          subject: headerValue(data, 'Subject'),
          tlsProtocol,
          sessionId: session.id,
        };
        received.push(msg);
        cb(null, `2.0.0 Ok: queued as ${id}`);
        events.emit('message', msg);
      });
    },
  });
  server.on('error', (err: Error) => {
    errors.push(err);
  });

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  let closed = false;

  return {
    name: opts.name,
    host,
    port,
    tls: opts.tls,
    nexthop: `[${host}]:${port}`,
    caCertPem: cert,
    users: opts.users,
    get mode() {
      return mode;
    },
    get stage() {
      return stage;
    },
    get received() {
      return received;
    },
    get authAttempts() {
      return authAttempts;
    },
    get connectionCount() {
      return connectionCount;
    },
    get errors() {
      return errors;
    },
    setMode(m, s) {
      mode = m;
      stage = s ?? (m === 'drop' ? 'mail' : 'rcpt');
    },
    waitFor(predicate, timeoutMs = 10_000) {
      const hit = received.find(predicate);
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const onMessage = (m: ReceivedMessage) => {
          if (!predicate(m)) return;
          clearTimeout(timer);
          events.off('message', onMessage);
          resolve(m);
        };
        const timer = setTimeout(() => {
          events.off('message', onMessage);
          reject(
            new Error(
              `smart host ${opts.name}: no matching message within ${timeoutMs} ms ` +
                `(${received.length} received, ${authAttempts.length} AUTH attempts, ${connectionCount} connections)`,
            ),
          );
        }, timeoutMs);
        events.on('message', onMessage);
      });
    },
    reset() {
      received = [];
      authAttempts = [];
      errors = [];
      connectionCount = 0;
      mode = 'accept';
      stage = 'rcpt';
    },
    async close() {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const conn of server.connections) {
          (conn as unknown as { _socket?: { destroy(): void } })._socket?.destroy();
        }
      });
    },
  };
}

/**
 * A smart host standing for a recipient domain's MX: port 25 (where Postfix's smtp client connects
 * for a domain nexthop) of the first free address in 127.0.25.1–127.0.25.200, so parallel runs
 * each get their own. List its `host` under the domain in the node's privateHosts.
 */
export async function startMxHost(opts: Omit<SmartHostOptions, 'host' | 'port'>): Promise<SmartHost> {
  for (let last = 1; last <= 200; last++) {
    try {
      return await startSmartHost({ ...opts, host: `127.0.25.${last}`, port: 25 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
  throw new Error(`smart host ${opts.name}: port 25 is taken on every address of 127.0.25.1-200`);
}
