/**
 * SSH to a Postfix node with the host key pinned: a thin wrapper over node-ssh (ssh2). Commands run
 * in one `/bin/sh` per connection (remote-shell.ts) started once through the node user's login
 * shell (root, or a deploy user through `sudo -n`; MAIL_CONFIG set by the node's sshd when the
 * node runs a non-default instance), so `postconf`, `postmap` and `postfix` act on that node's Postfix.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { posix } from 'node:path';
import { NodeSSH } from 'node-ssh';
import { HostKeyMismatchError, RemoteCommandError, excerpt } from './errors.js';
import { DEFAULT_REMOTE_PATH, RemoteShell, SKIPPED_EXIT, type ShellChannel } from './remote-shell.js';
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
  /** PATH of the node's commands (default DEFAULT_REMOTE_PATH); the login's own PATH is not used. */
  remotePath?: string | undefined;
  /** 'sh': the shell loop even where perl runs, as on a node without perl (default 'auto'). */
  remoteLoop?: 'auto' | 'sh';
}

export interface ExecOptions {
  stdin?: string | Buffer;
  cwd?: string;
  timeoutMs?: number;
  /**
   * Run only when the connection's previous command exited 0; otherwise it does not run, and the
   * call fails at once with a RemoteCommandError of exit code SKIPPED_EXIT. For steps sent before
   * the previous one answered.
   */
  ifPreviousOk?: boolean;
  /**
   * The same command as the body of a Perl sub, run by the node's Perl loop itself where it runs (no
   * process started; see remote-shell.ts): it writes with out() and err(), removes trees with
   * rmtree(), runs a program with capture(argv…) (its exit code and stdout; its stderr goes to the answer's),
   * returns its exit code and dies with what would go to stderr. Absolute paths only: no cwd.
   */
  perl?: string;
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
  execBytes(
    command: string,
    options?: { timeoutMs?: number },
  ): Promise<{ code: number; stdout: Buffer; stderr: string }>;
  /** False once the transport is closed (by either side); absent when the implementation cannot tell. */
  isOpen?(): boolean;
  /**
   * What facts learnt about the node's session are kept by: the underlying connection, which every
   * lease of it from a pool shares (absent: the object itself).
   */
  readonly session?: object;
  /**
   * What starting the node's shell cost (ms): one round trip plus the login's own work (dotfiles).
   * Paid once per connection; undefined until the first command ran.
   */
  shellStartMs?(): number | undefined;
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

/**
 * ssh2 hands the socket each packet in pieces (for AES-GCM: its length, the ciphertext, the tag),
 * each a write of its own and a system call: corked until the tick ends, everything written in one
 * tick (a frame's packets, several frames sent together) leaves in one writev.
 */
function coalesceWrites(sock: net.Socket): net.Socket {
  const write = sock.write.bind(sock) as (...args: unknown[]) => boolean;
  let corked = false;
  sock.write = ((...args: unknown[]) => {
    if (!corked) {
      corked = true;
      sock.cork();
      process.nextTick(() => {
        corked = false;
        sock.uncork();
      });
    }
    return write(...args);
  }) as typeof sock.write;
  return sock;
}

export async function connectNode(target: NodeTarget): Promise<NodeConnection> {
  const expected = pinnedFingerprint(target.hostKey);
  let presented: string | undefined;
  const ssh = new NodeSSH();
  // Our own socket, so that Nagle is off from the first packet (ssh2 leaves it on): with it, a
  // command's small trailing packets waited for the node's delayed ACK, ~40 ms per command and a
  // few times during the handshake (on loopback a command went from ~45 ms to ~2 ms, a connect from
  // ~80 ms to ~40 ms). ssh2's readyTimeout still covers the TCP connect.
  const sock = coalesceWrites(net.connect({ host: target.host, port: target.port, noDelay: true }));
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
  return new SshNodeConnection(
    ssh,
    target.host,
    target.commandTimeoutMs ?? 60_000,
    target.remotePath ?? DEFAULT_REMOTE_PATH,
    target.username !== 'root',
    target.remoteLoop ?? 'auto',
  );
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

/** The part of ssh2's Client the shell is opened with (its typings are not a dependency). */
interface RawExecClient {
  exec(command: string, callback: (err: Error | undefined, channel: ShellChannel) => void): void;
}

class SshNodeConnection implements NodeConnection {
  private shell: Promise<RemoteShell> | undefined;
  /** The started shell: commands are written to it synchronously, so they reach the node in call order. */
  private started: RemoteShell | undefined;
  private startMs: number | undefined;

  constructor(
    private readonly ssh: NodeSSH,
    readonly host: string,
    private readonly commandTimeoutMs: number,
    private readonly remotePath: string,
    /** Not root: the connection's shell runs as root through `sudo -n`. */
    private readonly sudo: boolean,
    private readonly loop: 'auto' | 'sh',
  ) {
    // node-ssh stops listening for 'error' once connected: a reset socket (the node rebooted, its
    // sshd restarted) would then be an uncaught exception. The connection just ends (isOpen false);
    // a command on it fails or reports the lost channel.
    (ssh.connection as unknown as { on(event: 'error', listener: (err: Error) => void): void } | null)?.on(
      'error',
      () => undefined,
    );
  }

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.run(command, options);
    return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
  }

  async execBytes(
    command: string,
    options: { timeoutMs?: number } = {},
  ): Promise<{ code: number; stdout: Buffer; stderr: string }> {
    const r = await this.run(command, options);
    return { code: r.code, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
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
      throw new RemoteCommandError(
        `writing ${path} failed (exit ${r.code}): ${excerpt(r.stderr, 200)}`,
        r.code,
        r.stderr,
      );
    }
  }

  isOpen(): boolean {
    return this.ssh.isConnected();
  }

  shellStartMs(): number | undefined {
    return this.startMs;
  }

  close(): void {
    void this.shell?.then((s) => s.close()).catch(() => undefined);
    this.ssh.dispose();
  }

  /**
   * Writes the command now when the shell runs (in call order), or once it has started (also in call
   * order). A command the node skipped (ifPreviousOk, the one before failed) did not run: a
   * RemoteCommandError with exit code SKIPPED_EXIT, never a result to read.
   */
  private async run(command: string, options: ExecOptions): Promise<{ code: number; stdout: Buffer; stderr: Buffer }> {
    if (options.perl !== undefined && options.cwd !== undefined) throw new Error('a Perl body takes no cwd');
    const line = options.cwd === undefined ? command : `cd ${shellQuote(options.cwd)} && { ${command}\n}`;
    const limit = options.timeoutMs ?? this.commandTimeoutMs;
    const send = (shell: RemoteShell) =>
      shell.run(line, options.stdin, limit, options.ifPreviousOk === true, options.perl);
    const r = await (this.started?.isOpen === true ? send(this.started) : this.openShell(limit).then(send));
    if (options.ifPreviousOk === true && r.code === SKIPPED_EXIT)
      throw new RemoteCommandError('skipped: the command before it failed', SKIPPED_EXIT, '');
    return r;
  }

  /** The connection's shell, started on first use and again after one was lost (a timeout ends it). */
  private openShell(timeoutMs: number): Promise<RemoteShell> {
    if (this.shell !== undefined && (this.started === undefined || this.started.isOpen)) return this.shell;
    const client = this.ssh.connection as unknown as RawExecClient | null;
    if (client === null) return Promise.reject(new RemoteCommandError('not connected', -1, ''));
    const open = (cmd: string) =>
      new Promise<ShellChannel>((resolve, reject) => {
        client.exec(cmd, (err, channel) => (err !== undefined && err !== null ? reject(err) : resolve(channel)));
      });
    this.started = undefined;
    const starting = RemoteShell.start(open, {
      host: this.host,
      path: this.remotePath,
      timeoutMs,
      sudo: this.sudo,
      loop: this.loop,
    }).then(
      ({ shell, startMs }) => {
        this.startMs = startMs;
        this.started = shell;
        return shell;
      },
      (err: unknown) => {
        // The next command tries a new shell.
        if (this.shell === starting) this.shell = undefined;
        throw err;
      },
    );
    this.shell = starting;
    return starting;
  }
}

/**
 * The same connection with every command sent `ifPreviousOk`: a chain of steps sent at once stops
 * on the node at its first failure. Closing it leaves the connection open.
 */
export function chained(conn: NodeConnection): NodeConnection {
  return {
    host: conn.host,
    exec: (command, options) => conn.exec(command, { ...options, ifPreviousOk: true }),
    execBytes: (command, options) => conn.execBytes(command, options),
    writeFile: (path, content, mode) => conn.writeFile(path, content, mode),
    close: () => undefined,
    // What a read of the node taught its session holds for commands sent through this view too.
    session: conn.session ?? conn,
  };
}

/** Runs a command and throws a RemoteCommandError (with a stderr excerpt, never stdout) on a non-zero exit. */
export async function execOk(conn: NodeConnection, command: string, options: ExecOptions = {}): Promise<ExecResult> {
  const r = await conn.exec(command, options);
  if (r.code !== 0) {
    const what = excerpt(command.split('\n')[0] ?? command, 100);
    throw new RemoteCommandError(
      `${what}: exit ${r.code}: ${excerpt(r.stderr, 300) || '(no stderr)'}`,
      r.code,
      r.stderr,
    );
  }
  return r;
}
