/**
 * The deploy's last node-side steps: `postfix reload` (or a restart: `systemctl restart <unit>`
 * where systemd runs master, else `postfix stop; postfix start`; see postfix-restart.ts), and the
 * check after it. The reload saves the maillog's size before it in the release's metadata, so the
 * check can be sent together with it and still read only what master logged since.
 */
import { posix } from 'node:path';
import type { Bundle } from './bundle.js';
import { META_DIR, releasesListing, type NodeLayout } from './layout.js';
import { digestScript, driftFromDigests } from './live-files.js';
import {
  postfixCheckCollect,
  postfixCheckResult,
  postfixCheckStart,
  reloadLogPerl,
  reloadLogProblems,
  reloadLogScript,
} from './node-checks.js';
import { liveStateRead, takeLiveState, type LiveState } from './postfix-config.js';
import {
  describeRestart,
  parseRestartVia,
  restartScript,
  runningMasterScript,
  type RestartVia,
} from './postfix-restart.js';
import { execSections, perlQuote, sectionOk, sh, type NodeConnection, type Section } from '../ssh/index.js';

export const RELOAD_COMMAND = 'postfix reload >/dev/null';

/**
 * What `postfix reload` comes down to (postfix-script: `kill -HUP` of the pid in
 * `pid/master.pid`), sent by the deployer itself when that pid is a running master: the `postfix`
 * wrapper, its script, `master -t` and two `postsuper` runs each read main.cf again (≈ 4 × 15 ms
 * of CPU per reload). postfix-script's queue housekeeping (`postsuper`) is left to `postfix start`
 * and the node's own jobs. Master logs `reload` either way; no pid file or no master: `postfix reload`.
 */
export function reloadCommand(queueDirectory: string): string {
  if (queueDirectory === '') return RELOAD_COMMAND;
  return [
    runningMasterScript(sh(posix.join(queueDirectory, 'pid', 'master.pid'))),
    `if [ -n "$rp_pid" ]; then kill -HUP "$rp_pid"; else ${RELOAD_COMMAND}; fi`,
  ].join('\n');
}

const offsetFile = (release: string) => posix.join(release, META_DIR, 'reload-offset');

/**
 * The reload's command in Perl, for the node's Perl loop: the log's size saved and printed, then
 * master's pid checked and sent SIGHUP, with no process started (its shell script, reloadCommand
 * after `wc -c`, starts a shell and `wc`). Without a running master it runs `postfix reload`.
 */
function reloadPerl(maillog: string, release: string, queueDirectory: string): string {
  const q = perlQuote;
  const pidFile = queueDirectory === '' ? '' : posix.join(queueDirectory, 'pid', 'master.pid');
  return [
    `my ($log, $saved, $pidfile) = (${q(maillog)}, ${q(offsetFile(release))}, ${q(pidFile)});`,
    'my $size = $log eq "" ? 0 : (-s $log || 0);',
    'my $f;',
    'open($f, ">", $saved) && print({$f} "$size\\n") && close($f) or do { err("writing $saved: $!\\n"); return 1 };',
    'out("$size\\n");',
    'my ($pid, $comm) = ("", "");',
    'if ($pidfile ne "" && open($f, "<", $pidfile)) { $pid = <$f> // ""; close $f; $pid =~ s/^\\s+|\\s+$//g }',
    'if ($pid =~ /^[0-9]+$/ && open($f, "<", "/proc/$pid/comm")) { $comm = <$f> // ""; close $f; chomp $comm }',
    'if ($comm eq "master") { kill("HUP", $pid) and return 0; err("kill -HUP $pid: $!\\n"); return 1 }',
    'my ($rc) = capture("postfix", "reload"); return $rc;',
  ].join('\n');
}

export interface ReloadArgs {
  /** The node's maillog_file; '' when Postfix logs to syslog only. */
  maillog: string;
  /** The release being made live (its metadata dir keeps the log offset). */
  release: string;
  restart: boolean;
  /** `postconf -xh queue_directory` as read-node found it ('' when unknown: `postfix reload`). */
  queueDirectory: string;
  /** Sent before the previous step answered: run only if it succeeded. */
  ifPreviousOk: boolean;
  /** Told how the restart went about it as soon as the node says, even when the restart then fails. */
  onRestart?: (via: RestartVia | undefined) => void;
}

export interface Reloaded {
  /** The maillog's size before the reload. */
  offset: number;
  /** How master was restarted; undefined after a reload. */
  via: RestartVia | undefined;
}

/**
 * Reloads (or restarts) Postfix and returns the maillog size before it. A failed start is
 * reported with master's reason, which only the log has.
 */
export async function reloadPostfix(conn: NodeConnection, args: ReloadArgs): Promise<Reloaded> {
  const size = args.maillog === '' ? 'echo 0' : `{ wc -c < ${sh(args.maillog)} 2>/dev/null || echo 0; }`;
  // Written to the file, then read back by the shell: no `$(…)` subshell.
  const saved = sh(offsetFile(args.release));
  const save = `${size} > ${saved} && read -r rp_size < ${saved} && echo "$rp_size"`;
  const command = `{ ${args.restart ? restartScript() : reloadCommand(args.queueDirectory)}\n}`;
  const r = await conn.exec(`${save} && ${command}`, {
    ifPreviousOk: args.ifPreviousOk,
    ...(args.restart ? {} : { perl: reloadPerl(args.maillog, args.release, args.queueDirectory) }),
  });
  const offset = Number.parseInt(r.stdout.trim(), 10) || 0;
  const via = args.restart ? parseRestartVia(r.stdout) : undefined;
  if (args.restart) args.onRestart?.(via);
  if (r.code === 0) return { offset, via };
  if (!args.restart) throw new Error(`postfix reload failed (exit ${r.code})`);
  const reasons =
    args.maillog === ''
      ? ''
      : (await conn.exec(`tail -c +${offset + 1} ${sh(args.maillog)} | grep -E ': (fatal|panic): ' | head -n 3`))
          .stdout;
  const why = reasons
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^.*?: (fatal|panic): /, '$1: '));
  const what = via?.kind === 'systemd' ? describeRestart(via) : 'postfix start';
  throw new Error(`${what} failed (exit ${r.code})${why.length > 0 ? `: ${why.join('; ').slice(0, 300)}` : ''}`);
}

export interface VerifyArgs {
  layout: NodeLayout;
  bundle: Bundle;
  /** Only these files' digests (a delta release's built files); default every file. */
  digestFiles?: string[] | undefined;
  /** The config as read before a deploy that edited none of it: not read again. */
  knownConfig?: LiveState['config'] | undefined;
  maillog: string;
  release: string;
  settleMs: number;
  timeoutMs: number;
  restarted: boolean;
  ifPreviousOk: boolean;
  /** Also list the release dirs (releasesListing), for the prune that follows. */
  listReleases?: boolean;
  /** Also run `postfix check`, in the background of the wait and the settle time. */
  checkInstallation?: boolean;
}

export interface VerifyFindings {
  live: LiveState;
  drifted: string[];
  /** releasesListing's output, when asked for. */
  releases?: string;
  /** Problems in the log since the reload; null when Postfix logs to syslog only (nothing checked). */
  logProblems: string[] | null;
  /** `postfix check`'s findings, when asked for. */
  installation?: { problems: string[]; warnings: string[] };
}

/**
 * After the reload, in one command: the live release (and the config, unless known unchanged) read again, the digests of the
 * live files, then (on the node) the wait for master's reload line, the settle time and the log since; when asked,
 * `postfix check` runs in the background from the start and is collected at the end.
 */
export async function verifyAfterReload(conn: NodeConnection, args: VerifyArgs): Promise<VerifyFindings> {
  const { bundle, digestFiles } = args;
  const checkOutput = posix.join(args.release, META_DIR, 'postfix-check');
  const sections: Section[] = [];
  if (args.checkInstallation === true)
    sections.push({ name: 'installation-start', script: postfixCheckStart(checkOutput), subshell: false });
  sections.push({ name: 'live-state', ...liveStateRead(args.layout, args.knownConfig) });
  // A delta release's merged tables were checked as they were built: often nothing is left to digest.
  const digesting = (digestFiles ?? Object.keys(bundle.files)).length > 0;
  if (digesting)
    sections.push({ name: 'digests', script: digestScript(bundle, digestFiles), cwd: args.layout.liveDir });
  if (args.maillog !== '') {
    const wait = {
      maillog: args.maillog,
      offset: { file: offsetFile(args.release) },
      settleMs: args.settleMs,
      timeoutMs: args.timeoutMs,
      restarted: args.restarted,
    };
    sections.push({ name: 'reload-log', script: reloadLogScript(wait), subshell: false, perl: reloadLogPerl(wait) });
  }
  if (args.listReleases === true)
    sections.push({ name: 'releases', script: releasesListing(args.layout), subshell: false });
  if (args.checkInstallation === true)
    sections.push({ name: 'installation', script: postfixCheckCollect(checkOutput), subshell: false });
  // The wait is bounded on the node; the command gets that much time on top of its usual limit.
  const r = await execSections(conn, sections, {
    timeoutMs: 60_000 + args.settleMs + args.timeoutMs,
    ifPreviousOk: args.ifPreviousOk,
  });
  return {
    live: takeLiveState(sectionOk(r, 'live-state').stdout, conn.session ?? conn, args.knownConfig),
    drifted: digesting ? driftFromDigests(r.get('digests')!.stdout, bundle, digestFiles) : [],
    logProblems: args.maillog === '' ? null : reloadLogProblems(r.get('reload-log')!, args.timeoutMs),
    ...(args.checkInstallation === true ? { installation: postfixCheckResult(r.get('installation')!) } : {}),
    // A listing that failed is the prune's business (it lists again), never the verify's.
    ...(r.get('releases')?.code === 0 ? { releases: r.get('releases')!.stdout } : {}),
  };
}
