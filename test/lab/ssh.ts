/**
 * SSH access to a lab node with the host key pinned, the way the control plane should connect:
 * node-ssh (ssh2) with a `hostVerifier` comparing the OpenSSH SHA256 fingerprint.
 */
import { createHash } from 'node:crypto';
import { NodeSSH } from 'node-ssh';
import type { NodeSshTarget } from './postfix-node.js';

/** `SHA256:` + unpadded base64 of sha256(raw key blob), exactly as `ssh-keygen -lf` prints it. */
export function sshFingerprint(rawKey: Buffer): string {
  return `SHA256:${createHash('sha256').update(rawKey).digest('base64').replace(/=+$/, '')}`;
}

export interface ConnectOptions {
  /** Fingerprint to pin; default the node's real host key fingerprint. */
  expectedFingerprint?: string;
  readyTimeoutMs?: number;
}

/**
 * Opens an SSH connection to the node as root with the lab client key. Rejects when the host key's
 * fingerprint differs from the pinned one (ssh2 reports a "Handshake failed" / host verification error).
 * The caller must call `.dispose()`.
 */
export async function connectNodeSsh(node: { ssh: NodeSshTarget }, opts: ConnectOptions = {}): Promise<NodeSSH> {
  const expected = opts.expectedFingerprint ?? node.ssh.hostKeyFingerprint;
  const ssh = new NodeSSH();
  await ssh.connect({
    host: node.ssh.host,
    port: node.ssh.port,
    username: node.ssh.username,
    privateKey: node.ssh.privateKey,
    readyTimeout: opts.readyTimeoutMs ?? 10_000,
    hostVerifier: (key: Buffer) => sshFingerprint(key) === expected,
  });
  // node-ssh drops its error listener once connected: a reset later (a node stopped or restarted
  // under an open session) would be an uncaught exception; the next command on it fails instead.
  ssh.connection?.on('error', () => undefined);
  return ssh;
}
