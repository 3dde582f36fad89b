/**
 * Checks that run on the node: postmap of the staged tables and their modes, probes of their
 * answers, `postfix check`, and after a reload the log. The validate step that uses the probes,
 * with the staged main.cf/master.cf checks, is validate-step.ts. Each returns problems (empty =
 * fine); none returns or logs a secret value.
 */
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { hashMaps, releaseFiles, type Bundle, type BundleFile } from './bundle.js';
import { META_DIR } from './layout.js';
import { derivedOnce } from '../lib/derived-once.js';
import { excerpt, perlQuote, sh, shellQuote, type ExecResult, type NodeConnection } from '../ssh/index.js';
import { entriesAt, entryCount } from './map-source.js';
import { postmapStderr } from './secret-scrub.js';
import type { BesideScript } from './shell-jobs.js';

/**
 * `postmap` of every hash table in `dir`, then the modes of sources and .db files. postmap exits 0
 * on warnings (duplicate key: first wins; a line without a value): any stderr is a failure, quoted
 * without the secret tables' data (postmapStderr).
 */
export async function postmapTables(
  conn: NodeConnection,
  dir: string,
  bundle: Bundle,
  beside?: BesideScript,
): Promise<string[]> {
  const maps = hashMaps(bundle).map(([name]) => `hash:${name}`);
  // No files: nothing to build (checks meant to run beside it run in validate instead).
  if (Object.keys(bundle.files).length === 0) return [];
  const postmap = maps.length > 0 ? sh('postmap', ...maps) : 'true';
  const r = await conn.exec(withModes(postmap, bundle, beside), { cwd: dir });
  if (r.code !== 0 || r.stderr.trim() !== '')
    return [`postmap exit ${r.code}: ${excerpt(postmapStderr(r.stderr, bundle), 300)}`];
  return modeProblems(r.stdout, bundle);
}

/** Every file of the bundle and, for a hash map, its .db (postmap gives it its source's mode), with the mode it must have. */
function expectedModes(bundle: Bundle): Map<string, number> {
  const expected = new Map<string, number>();
  for (const [name, f] of Object.entries(bundle.files)) {
    expected.set(name, f.mode);
    if (f.mapType === 'hash') expected.set(`${name}.db`, f.mode);
  }
  return expected;
}

/**
 * A release's files as they were left when it was built (mode, inode, size, mtime to the
 * nanosecond), kept in its metadata: a delta built on it later checks its base with one `stat`
 * instead of hashing every table. A hand edit writes a new inode or a new mtime.
 */
export const FILES_STAT = posix.join(META_DIR, 'files.stat');

/** `stat` of a release's files (run in its dir), in the manifest's form. */
export const filesStatCommand: (files: readonly string[]) => string = derivedOnce((files: readonly string[]) =>
  sh('stat', '-c', '%a %i %s %.9Y %n', ...files),
);

/**
 * Up to this many lines a manifest is read by the shell's own `read` (no process); past it by one
 * `tee` or `cmp`: dash's `read` makes a system call per byte, and a sharded release's manifest of
 * ≈ 130 lines then costs the node more than a process does (BENCHMARKS.md).
 */
export const SHELL_READ_LINES = 24;

/**
 * `script` (with `beside` around it), then the modes of every file (in the current dir) whatever
 * it did, saved as the release's manifest too, exiting as `script` exited. A short manifest is
 * printed by the shell's own `read` and `printf`, a long one by `tee` (SHELL_READ_LINES).
 */
export function withModes(script: string, bundle: Bundle, beside?: BesideScript): string {
  const manifest = sh(FILES_STAT);
  const [start, finish] = beside === undefined ? ['', ''] : [`${beside.start}\n`, `${beside.finish}; `];
  const files = releaseFiles(bundle);
  const record =
    files.length <= SHELL_READ_LINES
      ? `${filesStatCommand(files)} > ${manifest}; while IFS= read -r rp_line; do printf '%s\n' "$rp_line"; done < ${manifest}`
      : `${filesStatCommand(files)} | tee ${manifest}`;
  return `${start}${script}; rc=$?; ${finish}${record}; exit $rc`;
}

/** Files whose mode, as withModes printed it, is not the bundle's. */
export function modeProblems(stdout: string, bundle: Bundle): string[] {
  const expected = expectedModes(bundle);
  const problems: string[] = [];
  for (const line of stdout.trim().split('\n')) {
    const [mode, , , , name] = line.split(' ');
    const want = expected.get(name ?? '');
    if (want !== undefined && Number.parseInt(mode ?? '', 8) !== want)
      problems.push(`${name} has mode ${mode}, expected ${want.toString(8)}`);
  }
  return problems;
}

const SECTION = '@@relayplane-table@@ ';

/** A few keys per table (first, middle, last) to ask `postmap -q`. */
function sampleEntries(file: BundleFile): Array<{ key: string; value: string }> {
  const count = entryCount(file);
  return entriesAt(file, [...new Set([0, Math.floor(count / 2), count - 1])]);
}

/**
 * `postmap -s` entry counts against the source (optional), and `postmap -q` answers for sample keys
 * of each table under `dir`: keys go through quoted here-documents. A script (see execSections)
 * and the reading of its output.
 */
export function probeScript(dir: string, bundle: Bundle, counts = true): string {
  const eof = `RELAYPLANE_EOF_${randomBytes(6).toString('hex')}`;
  const lines = hashMaps(bundle).flatMap(([name, file]) => {
    const sample = sampleEntries(file);
    const table = sh(`hash:${posix.join(dir, name)}`);
    return [
      `echo ${sh(`${SECTION}${name}`)}`,
      counts ? `printf 'count '; postmap -s ${table} | wc -l` : 'true',
      sample.length === 0 ? 'true' : `postmap -q - ${table} <<'${eof}'\n${sample.map((e) => e.key).join('\n')}\n${eof}`,
    ];
  });
  return lines.length > 0 ? lines.join('\n') : 'true';
}

export function probeProblems(r: ExecResult, bundle: Bundle, counts = true): string[] {
  const maps = hashMaps(bundle).map(([name, file]) => ({ name, file, sample: sampleEntries(file) }));
  const sections = new Map<string, string[]>();
  let current: string[] = [];
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith(SECTION)) sections.set(line.slice(SECTION.length), (current = []));
    else current.push(line);
  }
  const problems: string[] = [];
  for (const { name, file, sample } of maps) {
    const lines = sections.get(name) ?? [];
    const want = entryCount(file);
    const count = lines.find((l) => l.startsWith('count '))?.slice(6);
    if (counts && Number(count) !== want)
      problems.push(`${name}: postmap -s lists ${count ?? '?'} entries, source has ${want}`);
    const answers = new Map(
      lines.filter((l) => l.includes('\t')).map((l) => [l.slice(0, l.indexOf('\t')), l.slice(l.indexOf('\t') + 1)]),
    );
    for (const e of sample) {
      const got = answers.get(e.key);
      if (got === e.value) continue;
      const shown = file.secret
        ? '(secret value differs)'
        : `${JSON.stringify(got)}, expected ${JSON.stringify(e.value)}`;
      problems.push(`${name}: postmap -q ${e.key} → ${got === undefined ? 'not found' : shown}`);
    }
  }
  return problems;
}

/**
 * `postfix check` (the installation: queue directories and files, ownership and permissions,
 * master.cf's postlog service), started in the background of a script (postfixCheckStart) and
 * collected at its end (postfixCheckCollect): the verify after a reload runs it beside its wait for
 * master's log line and the settle time. Its findings come from the installation, not from the
 * staged files (validate checks those with postconf), so it checks the config that is now live.
 */
export function postfixCheckStart(outFile: string): string {
  return `postfix check > ${shellQuote(outFile)} 2>&1 & rp_check=$!`;
}

/** Waits for the check; prints `check <exit code>`, and its output on stderr (read by the shell: no cat). */
export function postfixCheckCollect(outFile: string): string {
  return `wait "$rp_check"; echo "check $?"; while IFS= read -r rp_l; do printf '%s\n' "$rp_l"; done < ${shellQuote(outFile)} >&2`;
}

/** A failed check is a problem (the deploy rolls back); its warnings are reported, not fatal. */
export function postfixCheckResult(r: ExecResult): { problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const checkCode = /^check (\d+)$/m.exec(r.stdout)?.[1];
  if (checkCode !== '0') problems.push(`postfix check exit ${checkCode ?? '?'}: ${excerpt(r.stderr, 300)}`);
  if (r.code !== 0) problems.push(`postfix check: script exit ${r.code}: ${excerpt(r.stderr, 200)}`);
  const warnings = r.stderr.split('\n').filter((l) => l.trim() !== '');
  return { problems, warnings };
}

const RELOAD_LINE = '/master\\[[0-9]+\\]: reload -- ';
/** What a fresh master logs once it runs (after `postfix start`). */
const START_LINE = '/master\\[[0-9]+\\]: daemon started -- ';
/**
 * A daemon's own fatal or panic message, or master throttling a service. Anchored to the daemon's
 * tag: a delivery status line quotes the remote server's reply, which can say anything (a relay
 * that echoes the AUTH argument would put base64 of a secret into the problem, and its "fatal:"
 * would roll a good release back).
 */
const TROUBLE = /\[\d+\]: (?:fatal|panic): |\/master\[\d+\]: warning: .*bad command startup -- throttling/;
const RELOADED = 'relayplane: reload logged';
const NO_RELOAD = 'relayplane: no reload logged';

export interface ReloadLogArgs {
  maillog: string;
  /**
   * Size of the maillog before the reload: only what was written after counts. A file name: the
   * file on the node holding that size (written by the reload step, when the verify is sent with it).
   */
  offset: number | { file: string };
  settleMs: number;
  timeoutMs: number;
  /** Wait for master's start line instead of its reload line (after a restart). */
  restarted?: boolean;
}

const seconds = (ms: number) => (Math.max(0, ms) / 1000).toFixed(3);

/**
 * The wait in Perl (perl-base is essential on Debian and Ubuntu): one process where the shell's
 * wait runs five (`timeout`, `tail`, `grep`, `sleep`, `tail` again; each costs a node milliseconds,
 * BENCHMARKS.md). It reads the log from the offset every 10 ms until master's line is there
 * (reopening it from the start when it was rotated, removed or truncated meanwhile), sleeps the settle time,
 * reads what came since and prints it all once, at the end; it exits non-zero only when it could
 * not run, before printing anything. No single quote: it travels as one single-quoted word.
 */
const PERL_WAIT_CORE = [
  'my ($fh, $ino, $pos, $text) = (undef, -1, $off, "");',
  'my $poll = sub { my @st = stat $log or return;',
  '  if (!defined $fh || $st[1] != $ino || $st[7] < $pos || !(stat $fh)[3]) {',
  '    $pos = 0 if defined $fh || $st[7] < $pos; close $fh if defined $fh; undef $fh;',
  '    open($fh, "<", $log) or do { undef $fh; return }; binmode $fh; $ino = $st[1]; sysseek($fh, $pos, 0) }',
  '  while (my $n = sysread($fh, $text, 65536, length $text)) { $pos += $n } };',
  // Each poll searches only the lines it has not searched yet (from the last, maybe partial, one).
  'my ($found, $end, $seen) = (0, time + $wait + 1, 0);',
  'for (my $t = 0; ; $t += 0.01) { $poll->(); if (substr($text, $seen) =~ /$re/) { $found = 1; last }',
  '  $seen = rindex($text, "\\n") + 1;',
  '  last if $t >= $wait || time > $end; select(undef, undef, undef, 0.01) }',
  `if ($found) { select(undef, undef, undef, $settle) if $settle > 0; $poll->(); $emit->("${RELOADED}\\n", $text) }`,
  `else { $emit->("${NO_RELOAD}\\n") }`,
];
const PERL_WAIT = [
  'my ($log, $off, $re, $wait, $settle) = @ARGV; my $emit = sub { print @_ };',
  ...PERL_WAIT_CORE,
].join('\n');

/**
 * reloadLogScript as the body of a Perl sub, for the node's Perl loop: the same wait, run by the
 * loop itself (no shell, no `perl` of its own), the offset read from its file as the shell reads it.
 */
export function reloadLogPerl(args: ReloadLogArgs): string {
  const q = perlQuote;
  const line = args.restarted === true ? START_LINE : RELOAD_LINE;
  const offset =
    typeof args.offset === 'number'
      ? [`my $off = ${Math.max(0, Math.trunc(args.offset))};`]
      : [
          `my ($off, $saved) = (0, ${q(args.offset.file)});`,
          'if (open(my $f, "<", $saved)) { my $l = <$f> // ""; close $f; $l =~ s/^\\s+|\\s+$//g; $off = $l if $l =~ /^[0-9]+$/ }',
        ];
  return [
    ...offset,
    `my ($log, $re, $wait, $settle) = (${q(args.maillog)}, ${q(line)}, ${seconds(args.timeoutMs)}, ${seconds(args.settleMs)});`,
    'my $emit = \\&out;',
    ...PERL_WAIT_CORE,
    'return 0;',
  ].join('\n');
}

/**
 * Waits on the node for master to log the reload (Postfix writes maillog_file asynchronously
 * through postlogd), lets new processes start for `settleMs`, then prints the log since `offset`
 * for reloadLogProblems. In Perl where it runs (PERL_WAIT); else `tail -F` wakes on each write
 * (inotify) and exits once grep has its line, bounded by `timeout`.
 */
export function reloadLogScript(args: ReloadLogArgs): string {
  const log = shellQuote(args.maillog);
  const from = '"$rp_from"';
  const line = shellQuote(args.restarted === true ? START_LINE : RELOAD_LINE);
  // Read by the shell itself (no `$(cat …)`: two processes); a missing or garbled file reads as 0.
  const offset =
    typeof args.offset === 'number'
      ? [`rp_off=${args.offset}`]
      : [
          `rp_off=0; { read -r rp_off < ${shellQuote(args.offset.file)}; } 2>/dev/null`,
          `case $rp_off in ''|*[!0-9]*) rp_off=0 ;; esac`,
        ];
  return [
    ...offset,
    `rp_from=+$((rp_off + 1))`,
    `perl -e '${PERL_WAIT}' ${log} "$rp_off" ${line} ${seconds(args.timeoutMs)} ${seconds(args.settleMs)} 2>/dev/null ||`,
    `if timeout ${seconds(args.timeoutMs)} tail -F -c ${from} ${log} 2>/dev/null | grep -q -m1 -E ${line}`,
    `then sleep ${seconds(args.settleMs)}; echo ${shellQuote(RELOADED)}; tail -c ${from} ${log} 2>/dev/null || true`,
    `else echo ${shellQuote(NO_RELOAD)}; fi`,
  ].join('\n');
}

/** fatal/panic lines or throttling since the reload; a reload master never logged is a problem too. */
export function reloadLogProblems(r: ExecResult, timeoutMs: number): string[] {
  const newline = r.stdout.indexOf('\n');
  if (newline === -1 || r.stdout.slice(0, newline) !== RELOADED)
    return [`master did not log the reload within ${timeoutMs} ms`];
  return r.stdout
    .slice(newline + 1)
    .split('\n')
    .filter((l) => TROUBLE.test(l))
    .slice(0, 3)
    .map((l) => `log: ${excerpt(l.replace(/^.*?: /, ''), 200)}`);
}
