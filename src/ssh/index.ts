/** How the control plane reaches a node: SSH transport with a pinned host key, the connection pool, shell quoting, remote scripts and the SSH settings. Used by deploy/ and usage/ alike. */
export { HostKeyMismatchError, RemoteCommandError, excerpt } from './errors.js';
export { perlQuote, sh, shellQuote } from './shell-quote.js';
export {
  chained,
  connectNode,
  execOk,
  pinnedFingerprint,
  scanHostKey,
  type ScannedHostKey,
  sshFingerprint,
  type ExecOptions,
  type ExecResult,
  type NodeConnection,
  type NodeTarget,
} from './transport.js';
export { ConnectionPool, type ConnectionPoolOptions } from './connection-pool.js';
export { execSections, sectionOk, type Section } from './remote-script.js';
export { DEFAULT_SSH, nodeTarget, privateKeyReader, type NodeAddress, type SshSettings } from './settings.js';
export { DEFAULT_REMOTE_PATH, SKIPPED_EXIT } from './remote-shell.js';
