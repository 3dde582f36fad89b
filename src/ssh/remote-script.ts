/**
 * Several remote commands in one command of the connection's shell (remote-shell.ts): a deploy
 * step made of independent commands runs them as sections of one script, one round trip, and gets
 * back each section's own exit code, stdout and stderr, exactly as if it had run alone.
 *
 * Each section runs in a subshell (its `set -e`, `cd` or `exit` stays inside), after a marker line
 * written to both streams; its exit code follows its stdout. The marker carries a random token, so
 * no output can fake one. A section that changes nothing of the shell's own state may run without
 * the subshell (`subshell: false`): one process fewer on the node. Where every section also comes
 * as Perl, the node's Perl loop runs them itself, between the same markers: no process at all.
 */
import { randomBytes } from 'node:crypto';
import { RemoteCommandError, excerpt } from './errors.js';
import { perlQuote, shellQuote } from './shell-quote.js';
import type { ExecOptions, ExecResult, NodeConnection } from './transport.js';

export interface Section {
  name: string;
  script: string;
  cwd?: string;
  /**
   * false: run in the script's own shell, for a section with no `exit`, `cd`, `set`, `umask` or
   * `trap` (its variables are seen by the sections after it). Default true.
   */
  subshell?: boolean;
  /**
   * The section as the body of a Perl sub (ExecOptions.perl). When every section has one, the
   * node's Perl loop runs them all itself, with the same markers around each: no process at all.
   */
  perl?: string;
}

/** Runs the sections in order, one after the other, in one exec. A missing section (the script died) is an error. */
export async function execSections(
  conn: NodeConnection,
  sections: Section[],
  options: Pick<ExecOptions, 'timeoutMs' | 'ifPreviousOk'> = {},
): Promise<Map<string, ExecResult>> {
  const token = `@@relayplane-section-${randomBytes(6).toString('hex')}`;
  const script = sections.map(({ name, script: body, cwd, subshell = true, perl }) => {
    if (!subshell && cwd !== undefined) throw new Error(`section ${name}: a cwd needs a subshell`);
    if (perl !== undefined && cwd !== undefined) throw new Error(`section ${name}: a Perl body takes no cwd`);
    const start = shellQuote(`${token} begin ${name}`);
    const inner = cwd === undefined ? body : `cd ${shellQuote(cwd)} && { ${body}\n}`;
    const [open, close] = subshell ? ['(', ')'] : ['{', '}'];
    return `printf '\\n%s\\n' ${start}; printf '\\n%s\\n' ${start} >&2\n${open} ${inner}\n${close}\nprintf '\\n%s %s\\n' ${shellQuote(`${token} end`)} $?`;
  });
  const perl = sections.every((s) => s.perl !== undefined) ? perlSections(sections, token) : undefined;
  const r = await conn.exec(script.join('\n'), { ...options, ...(perl === undefined ? {} : { perl }) });
  const stdout = split(r.stdout, token);
  const stderr = split(r.stderr, token);
  const out = new Map<string, ExecResult>();
  for (const { name } of sections) {
    const s = stdout.get(name);
    if (s?.code === undefined) {
      throw new RemoteCommandError(
        `${name}: the remote script ended early (exit ${r.code}): ${excerpt(r.stderr, 300) || '(no stderr)'}`,
        r.code,
        r.stderr,
      );
    }
    out.set(name, { code: s.code, stdout: s.text, stderr: stderr.get(name)?.text ?? '' });
  }
  return out;
}

/** The sections' Perl bodies as one, each between the markers the shell script prints; a death is its exit 1. */
function perlSections(sections: Section[], token: string): string {
  return [
    ...sections.map(({ name, perl }) => {
      const start = perlQuote(`${token} begin ${name}`);
      return [
        `out("\\n", ${start}, "\\n"); err("\\n", ${start}, "\\n");`,
        `{ my $rc = eval { (sub {\n${perl!}\n})->() }; if (!defined $rc) { err($@); $rc = 1 }`,
        `  out("\\n", ${perlQuote(`${token} end`)}, " ", $rc + 0, "\\n"); }`,
      ].join('\n');
    }),
    'return 0;',
  ].join('\n');
}

/** Throws a RemoteCommandError (stderr excerpt, never stdout) when a section exited non-zero. */
export function sectionOk(results: Map<string, ExecResult>, name: string): ExecResult {
  const r = results.get(name);
  if (r === undefined) throw new RemoteCommandError(`${name}: no such section`, -1, '');
  if (r.code !== 0)
    throw new RemoteCommandError(
      `${name}: exit ${r.code}: ${excerpt(r.stderr, 300) || '(no stderr)'}`,
      r.code,
      r.stderr,
    );
  return r;
}

/**
 * Splits one stream at the markers. Markers start on a line of their own (each is written after a
 * newline), so a section's text is exactly what it wrote; stderr has begin markers only.
 */
function split(stream: string, token: string): Map<string, { text: string; code?: number }> {
  const out = new Map<string, { text: string; code?: number }>();
  const begin = `\n${token} begin `;
  const end = `\n${token} end `;
  let at = stream.indexOf(begin);
  while (at !== -1) {
    const nameEnd = stream.indexOf('\n', at + begin.length);
    if (nameEnd === -1) break;
    const name = stream.slice(at + begin.length, nameEnd);
    const next = stream.indexOf(begin, nameEnd);
    const closing = stream.indexOf(end, nameEnd);
    if (closing !== -1 && (next === -1 || closing < next)) {
      const code = Number.parseInt(stream.slice(closing + end.length, stream.indexOf('\n', closing + end.length)), 10);
      out.set(name, { text: stream.slice(nameEnd + 1, closing), code });
    } else {
      out.set(name, { text: stream.slice(nameEnd + 1, next === -1 ? stream.length : next) });
    }
    at = next;
  }
  return out;
}
