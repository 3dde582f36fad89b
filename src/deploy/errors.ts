/** Errors of the deploy path (the SSH ones are in ../ssh/errors.ts). None carries key material or secret file contents. */

/** A deploy step found the bundle or the node not fit to go (or stay) live. */
export class DeployCheckError extends Error {
  constructor(
    readonly step: string,
    readonly problems: string[],
  ) {
    super(`${step}: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}`);
    this.name = 'DeployCheckError';
  }
}
