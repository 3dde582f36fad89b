/**
 * SSH to a Postfix node with the host key pinned: a thin wrapper over node-ssh (ssh2). Commands run
 * in the login shell of the node user (root, with MAIL_CONFIG set by the node's sshd when the node
 * runs a non-default instance), so `postconf`, `postmap` and `postfix` act on that node's Postfix.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { NodeSSH } from 'node-ssh';
import { HostKeyMismatchError, RemoteCommandError, excerpt } from './errors.js';
import { sh, shellQuote } from './shell-quote.js';

export interface NodeTarget {
  host: string;
  port: number;
  username: string;
  /** OpenSSH/PEM private key. Never logged, never put into an error. */
  privateKey: string | Buffer;
  /** Pinned host key: an OpenSSH public key line (`ssh-ed25519 AAAA…`) or a `SHA256:…` fingerprint. */
  hostKey: string;
  readyTimeoutMs?: number;
  /** Default limit for one remote command (default 60 s). */
  commandTimeoutMs?: number;
}

export interface ExecOptions {
  stdin?: string | Buffer;
  cwd?: string;
  timeoutMs?: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface NodeConnection {
  readonly host: string;
  /** Runs a shell command line; never rejects on a non-zero exit (only on a timeout or lost connection). */
  exec(command: string, options?: ExecOptions): Promise<ExecResult>;
  /**
   * Writes a file that has its final mode from its first byte: created under `umask 077` with a
   * temporary name in the same directory, chmod'ed, then renamed over `path`.
   */
  writeFile(path: string, content: string, mode: number): Promise<void>;
  /**
   * Runs a command and returns its stdout as raw bytes (a log read by byte offset must not go
   * through a text decoder: a multi-byte character split between two packets would change its
   * length). Never rejects on a non-zero exit.
   */
  execBytes(command: string, options?: { timeoutMs?: number }): Promise<{ code: number; stdout: Buffer; stderr: string }>;
  /** False once the transport is closed (by either side); absent when the implementation cannot tell. */
  isOpen?(): boolean;
  close(): void;
}

/** `SHA256:` + unpadded base64 of sha256(raw key blob), as `ssh-keygen -lf` prints it. */
export function sshFingerprint(rawKey: Buffer): string {
  return `SHA256:${createHash('sha256').update(rawKey).digest('base64').replace(/=+$/, '')}`;
}

/** The fingerprint a pinned host key (key line or fingerprint) stands for. */
export function pinnedFingerprint(hostKey: string): string {
  const pinned = hostKey.trim();
  if (pinned.startsWith('SHA256:')) return pinned.replace(/=+$/, '');
  const blob = pinned.split(/\s+/)[1];
  if (blob === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) {
    throw new Error('hostKey must be an OpenSSH public key line or a SHA256: fingerprint');
  }
  return sshFingerprint(Buffer.from(blob, 'base64'));
}

export async function connectNode(target: NodeTarget): Promise<NodeConnection> {
  const expected = pinnedFingerprint(target.hostKey);
  let presented: string | undefined;
  const ssh = new NodeSSH();
  // Our own socket, so that Nagle is off from the first packet (ssh2 leaves it on): with it, a
  // command's small trailing packets waited for the node's delayed ACK, ~40 ms per command and a
  // few times during the handshake (on loopback a command went from ~45 ms to ~2 ms, a connect from
  // ~80 ms to ~40 ms). ssh2's readyTimeout still covers the TCP connect.
  const sock = net.connect({ host: target.host, port: target.port, noDelay: true });
  try {
    await ssh.connect({
      sock,
      username: target.username,
      privateKey: typeof target.privateKey === 'string' ? target.privateKey : target.privateKey.toString('utf8'),
      readyTimeout: target.readyTimeoutMs ?? 10_000,
      // Runs during key exchange, before user authentication: on a mismatch nothing is sent.
      hostVerifier: (key: Buffer) => {
        presented = sshFingerprint(key);
        return presented === expected;
      },
      tryKeyboard: false,
    });
  } catch (err) {
    ssh.dispose();
    sock.destroy();
    if (presented !== undefined && presented !== expected) {
      throw new HostKeyMismatchError(target.host, target.port, expected, presented);
    }
    // ssh2's messages name the failure, never the key; keep only the message.
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`ssh ${target.username}@${target.host}:${target.port}: ${message}`);
  }
  return new SshNodeConnection(ssh, target.host, target.commandTimeoutMs ?? 60_000);
}

export interface ScannedHostKey {
  /** `type base64`, as in known_hosts / ssh-keyscan (without the host name). */
  hostKey: string;
  fingerprint: string;
}

/**
 * The host key a server presents, read during key exchange; the connection is then dropped before
 * any authentication (nothing is trusted or sent). For an administrator to compare with the
 * node's console (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) before pinning it.
 */
export async function scanHostKey(host: string, port: number, timeoutMs = 10_000): Promise<ScannedHostKey> {
  let presented: Buffer | undefined;
  const ssh = new NodeSSH();
  const sock = net.connect({ host, port, noDelay: true });
  try {
    await ssh.connect({
      sock,
      username: 'relayplane-scan',
      readyTimeout: timeoutMs,
      tryKeyboard: false,
      hostVerifier: (key: Buffer) => {
        presented = key;
        return false;
      },
    });
  } catch (err) {
    if (presented === undefined) {
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`ssh ${host}:${port}: ${message}`);
    }
  } finally {
    ssh.dispose();
    sock.destroy();
  }
  if (presented === undefined) throw new Error(`ssh ${host}:${port}: no host key was presented`);
  const typeLength = presented.readUInt32BE(0);
  const type = presented.subarray(4, 4 + typeLength).toString('latin1');
  return { hostKey: `${type} ${presented.toString('base64')}`, fingerprint: sshFingerprint(presented) };
}

interface ClosableChannel {
  close(): void;
}

/** The part of ssh2's Client used for byte-exact output (its typings are not a dependency). */
interface RawExecChannel extends ClosableChannel {
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'exit', listener: (code: number | null) => void): this;
  on(event: 'close', listener: () => void): this;
  stderr: { on(event: 'data', listener: (chunk: Buffer) => void): void };
}
interface RawExecClient {
  exec(command: string, callback: (err: Error | undefined, channel: RawExecChannel) => void): void;
}

class SshNodeConnection implements NodeConnection {
  constructor(
    private readonly ssh: NodeSSH,
    readonly host: string,
    private readonly commandTimeoutMs: number,
  ) {
    // node-ssh stops listening for 'error' once connected: a reset socket (the node rebooted, its
    // sshd restarted) would then be an uncaught exception. The connection just ends (isOpen false);
    // a command on it fails or reports the lost channel.
    (ssh.connection as unknown as { on(event: 'error', listener: (err: Error) => void): void } | null)?.on('error', () => undefined);
  }

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const line = options.cwd === undefined ? command : `cd ${shellQuote(options.cwd)} && { ${command}\n}`;
    let channel: ClosableChannel | undefined;
    let timer: NodeJS.Timeout | undefined;
    const limit = options.timeoutMs ?? this.commandTimeoutMs;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        channel?.close();
        reject(new RemoteCommandError(`command timed out after ${limit} ms: ${excerpt(command, 120)}`, -1, ''));
      }, limit);
    });
    try {
      const r = await Promise.race([
        this.ssh.execCommand(line, {
          noTrim: true,
          ...(options.stdin !== undefined ? { stdin: typeof options.stdin === 'string' ? options.stdin : Readable.from([options.stdin]) } : {}),
          onChannel: (c: ClosableChannel) => {
            channel = c;
          },
        }),
        timedOut,
      ]);
      // A null code means the command died on a signal (or the channel closed without a status).
      return { code: r.code ?? 255, stdout: r.stdout, stderr: r.stderr };
    } finally {
      clearTimeout(timer);
    }
  }

  async writeFile(path: string, content: string, mode: number): Promise<void> {
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new Error(`invalid file mode ${mode}`);
    const tmp = posix.join(posix.dirname(path), `.${posix.basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
    const octal = mode.toString(8).padStart(4, '0');
    // umask 077 before the redirection creates the file: a 0600 secret is never readable by
    // others, not even between create and chmod. The rename makes the final name appear complete.
    const script =
      `umask 077 && cat > ${shellQuote(tmp)} && chmod ${octal} ${shellQuote(tmp)} && ${sh('mv', '-f', tmp, path)}` +
      ` || { rc=$?; rm -f ${shellQuote(tmp)}; exit $rc; }`;
    const r = await this.exec(script, { stdin: content });
    if (r.code !== 0) {
      throw new RemoteCommandError(`writing ${path} failed (exit ${r.code}): ${excerpt(r.stderr, 200)}`, r.code, r.stderr);
    }
  }

  async execBytes(command: string, options: { timeoutMs?: number } = {}): Promise<{ code: number; stdout: Buffer; stderr: string }> {
    const client = this.ssh.connection as unknown as RawExecClient | null;
    if (client === null) throw new RemoteCommandError('not connected', -1, '');
    const limit = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      client.exec(command, (err, stream) => {
        if (err !== undefined && err !== null) {
          reject(err);
          return;
        }
        const out: Buffer[] = [];
        const errs: Buffer[] = [];
        let code: number | null = null;
        const timer = setTimeout(() => {
          stream.close();
          reject(new RemoteCommandError(`command timed out after ${limit} ms: ${excerpt(command, 120)}`, -1, ''));
        }, limit);
        stream.on('data', (chunk: Buffer) => out.push(chunk));
        stream.stderr.on('data', (chunk: Buffer) => errs.push(chunk));
        stream.on('exit', (c: number | null) => {
          code = c;
        });
        stream.on('close', () => {
          clearTimeout(timer);
          resolve({ code: code ?? 255, stdout: Buffer.concat(out), stderr: Buffer.concat(errs).toString('utf8') });
        });
      });
    });
  }

  isOpen(): boolean {
    return this.ssh.isConnected();
  }

  close(): void {
    this.ssh.dispose();
  }
}

/** Runs a command and throws a RemoteCommandError (with a stderr excerpt, never stdout) on a non-zero exit. */
export async function execOk(conn: NodeConnection, command: string, options: ExecOptions = {}): Promise<ExecResult> {
  const r = await conn.exec(command, options);
  if (r.code !== 0) {
    const what = excerpt(command.split('\n')[0] ?? command, 100);
    throw new RemoteCommandError(`${what}: exit ${r.code}: ${excerpt(r.stderr, 300) || '(no stderr)'}`, r.code, r.stderr);
  }
  return r;
}
