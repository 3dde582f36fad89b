/** SSH settings of the control plane and the reading of its private key. */
import { readFile } from 'node:fs/promises';
import { UnprocessableError } from '../lib/errors.js';
import type { NodeConnection, NodeTarget } from './transport.js';

/** How the control plane reaches nodes. The private key is a file, read at each use, never stored. */
export interface SshSettings {
  privateKeyPath?: string | undefined;
  /** SSH handshake timeout per attempt (a dead node must not hold a run). */
  connectTimeoutMs: number;
  /** Nodes deployed at once. */
  concurrency: number;
  retry: { attempts: number; baseDelayMs: number };
  keepReleases?: number;
  /** A node's connection stays open this long after a deploy, for the next one (0: never reused). */
  idleMs: number;
  /** PATH the node's commands run with (RELAYPLANE_NODE_PATH); default DEFAULT_REMOTE_PATH. */
  remotePath?: string | undefined;
  /** Replaces connectNode (tests count connections through it). */
  connect?: (target: NodeTarget) => Promise<NodeConnection>;
}

export const DEFAULT_SSH: SshSettings = {
  connectTimeoutMs: 5000,
  concurrency: 4,
  retry: { attempts: 3, baseDelayMs: 1000 },
  idleMs: 30_000,
};

/** Reads the key file when a node is contacted; the error names the variable, never the key. */
export function privateKeyReader(path: string | undefined): () => Promise<string> {
  return async () => {
    if (path === undefined) {
      throw new UnprocessableError(
        'RELAYPLANE_SSH_PRIVATE_KEY_PATH is not set: the control plane has no SSH key to reach nodes with',
        'ssh-key-missing',
      );
    }
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new UnprocessableError(
        `the SSH private key file (RELAYPLANE_SSH_PRIVATE_KEY_PATH) cannot be read: ${code}`,
        'ssh-key-unreadable',
      );
    }
  };
}

/** A registered node's SSH address and pinned key, as the control plane stores them. */
export interface NodeAddress {
  sshHost: string;
  sshPort: number;
  sshUser: string;
  hostKey: string;
}

/** How to reach a node with the control plane's key and settings (one place for deploys, checks and collections). */
export function nodeTarget(
  node: NodeAddress,
  privateKey: string,
  ssh: Pick<SshSettings, 'connectTimeoutMs' | 'remotePath'>,
): NodeTarget {
  return {
    host: node.sshHost,
    port: node.sshPort,
    username: node.sshUser,
    privateKey,
    hostKey: node.hostKey,
    readyTimeoutMs: ssh.connectTimeoutMs,
    remotePath: ssh.remotePath,
  };
}
