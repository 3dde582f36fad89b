/**
 * POSIX sh quoting for arguments of commands run on a node over SSH. Every argument that is not a
 * literal of ours goes through shellQuote: paths, parameter values and map keys come from the
 * database and must never be interpreted by the remote shell.
 */

const SAFE = /^[A-Za-z0-9_@%+:,./-]+$/;

export function shellQuote(arg: string): string {
  if (arg.includes('\0')) throw new Error('a shell argument cannot contain NUL');
  if (SAFE.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Quotes and joins: `sh('postmap', '-q', key, map)`. */
export function sh(...args: string[]): string {
  return args.map(shellQuote).join(' ');
}

/** A Perl single-quoted string (for a command's Perl body): only `\\` and `'` need escaping there. */
export function perlQuote(arg: string): string {
  if (arg.includes('\0')) throw new Error('a Perl string here cannot contain NUL');
  return `'${arg.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}
