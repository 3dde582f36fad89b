/**
 * One open SSH connection per node, kept between deploys for `idleMs`: a change a few seconds after
 * the last one skips the key exchange and authentication (≈ 13 ms of node CPU and a round trip
 * each, more than any single deploy step but `postfix check`).
 *
 * - A connection is leased to one user at a time; `close()` on the lease gives it back.
 * - A lease whose command failed in transport (timeout, lost connection) is never given back: the
 *   connection is closed, the next acquire opens a new one. So is one the node closed while idle.
 * - A new connection always goes through `connect` (connectNode: the pinned host key is verified
 *   before authentication). A cached one is only reused for the same address, user, pinned host
 *   key and private key: changing any of them in the node's record opens (and verifies) a new one.
 * - `close()` closes the idle connections, and every leased one when it comes back.
 */
import { createHash } from 'node:crypto';
import { RemoteCommandError } from './errors.js';
import {
  connectNode,
  pinnedFingerprint,
  type ExecOptions,
  type ExecResult,
  type NodeConnection,
  type NodeTarget,
} from './transport.js';

export interface ConnectionPoolOptions {
  /** How long an unused connection stays open; 0 closes each one after use (no reuse). */
  idleMs: number;
  connect?: (target: NodeTarget) => Promise<NodeConnection>;
}

interface Idle {
  conn: NodeConnection;
  identity: string;
  timer: NodeJS.Timeout;
}

const addressOf = (t: NodeTarget) => `${t.username}@${t.host}:${t.port}`;

/** What a reused connection must match: the pin and the key it authenticated with (hashed, never kept). */
function identityOf(t: NodeTarget): string {
  const key = createHash('sha256').update(t.privateKey).digest('hex');
  return `${addressOf(t)} ${pinnedFingerprint(t.hostKey)} ${key}`;
}

const usable = (conn: NodeConnection) => conn.isOpen?.() !== false;

export class ConnectionPool {
  private readonly idle = new Map<string, Idle>();
  private readonly connect: (target: NodeTarget) => Promise<NodeConnection>;
  private closed = false;

  constructor(private readonly options: ConnectionPoolOptions) {
    this.connect = options.connect ?? connectNode;
  }

  /** A connection to the target for exclusive use until the lease is closed. */
  async acquire(target: NodeTarget): Promise<NodeConnection> {
    const address = addressOf(target);
    const identity = identityOf(target);
    const cached = this.idle.get(address);
    if (cached !== undefined) {
      this.idle.delete(address);
      clearTimeout(cached.timer);
      if (cached.identity === identity && usable(cached.conn))
        return new Lease(cached.conn, (lease) => this.release(address, identity, lease));
      cached.conn.close();
    }
    const conn = await this.connect(target);
    return new Lease(conn, (lease) => this.release(address, identity, lease));
  }

  /** Idle connections open now (for tests and metrics). */
  get idleCount(): number {
    return this.idle.size;
  }

  close(): void {
    this.closed = true;
    for (const { conn, timer } of this.idle.values()) {
      clearTimeout(timer);
      conn.close();
    }
    this.idle.clear();
  }

  private release(address: string, identity: string, lease: Lease): void {
    const { conn } = lease;
    if (this.closed || lease.broken || this.options.idleMs <= 0 || !usable(conn) || this.idle.has(address)) {
      conn.close();
      return;
    }
    const timer = setTimeout(() => {
      if (this.idle.get(address)?.conn !== conn) return;
      this.idle.delete(address);
      conn.close();
    }, this.options.idleMs);
    timer.unref();
    this.idle.set(address, { conn, identity, timer });
  }
}

/** A command that failed to run (not one that ran and exited non-zero) leaves the connection in doubt. */
function transportFailure(err: unknown): boolean {
  return !(err instanceof RemoteCommandError && err.exitCode >= 0);
}

class Lease implements NodeConnection {
  broken = false;
  private returned = false;

  constructor(
    readonly conn: NodeConnection,
    private readonly giveBack: (lease: Lease) => void,
  ) {}

  get host(): string {
    return this.conn.host;
  }

  get session(): object {
    return this.conn.session ?? this.conn;
  }

  exec(command: string, options?: ExecOptions): Promise<ExecResult> {
    return this.guard(() => this.conn.exec(command, options));
  }

  execBytes(
    command: string,
    options?: { timeoutMs?: number },
  ): Promise<{ code: number; stdout: Buffer; stderr: string }> {
    return this.guard(() => this.conn.execBytes(command, options));
  }

  writeFile(path: string, content: string, mode: number): Promise<void> {
    return this.guard(() => this.conn.writeFile(path, content, mode));
  }

  isOpen(): boolean {
    return !this.returned && usable(this.conn);
  }

  close(): void {
    if (this.returned) return;
    this.returned = true;
    this.giveBack(this);
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    // Once given back, the connection may be someone else's: a late command must not run on it.
    if (this.returned) throw new RemoteCommandError('the connection was returned to the pool', -1, '');
    try {
      return await fn();
    } catch (err) {
      if (transportFailure(err)) this.broken = true;
      throw err;
    }
  }
}
