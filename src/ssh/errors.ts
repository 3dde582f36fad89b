/** Errors of the SSH layer. None of them carries key material or secret file contents. */

/**
 * The node presented a host key other than the pinned one. Never retried: it means a wrong
 * address, a reinstalled node, or an attacker. Nothing was sent (the check runs before auth).
 */
export class HostKeyMismatchError extends Error {
  readonly code = 'host-key-mismatch';
  readonly retryable = false;
  constructor(
    readonly host: string,
    readonly port: number,
    readonly expectedFingerprint: string,
    readonly presentedFingerprint: string,
  ) {
    super(`host key of ${host}:${port} is ${presentedFingerprint}, pinned ${expectedFingerprint}`);
    this.name = 'HostKeyMismatchError';
  }
}

/** A remote command exited non-zero (or timed out); `message` holds a short excerpt. */
export class RemoteCommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'RemoteCommandError';
  }
}

/** First `max` characters of a text, on one line, for outcomes and logs. */
export function excerpt(text: string, max = 400): string {
  const flat = text.replace(/\s*\n\s*/g, ' | ').trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}
