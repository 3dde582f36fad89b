/**
 * Restarting master so that a node's service manager keeps agreeing with it. Where master runs in
 * a systemd service (Debian's postfix@-.service, RHEL's postfix.service, postfix@<instance> for a
 * postmulti instance), `postfix stop` behind systemd's back leaves the unit inactive or failed
 * while the next master runs outside it, and a later `systemctl reload/stop` misbehaves: there the
 * restart is `systemctl restart <that unit>`. Everywhere else, `postfix stop; postfix start`.
 *
 * The node decides, in the same command that restarts: systemd runs (/run/systemd/system, as
 * sd_booted(3) checks), the pid in <queue_directory>/pid/master.pid is a running `master`, its
 * cgroup is a `.service` unit, that unit is active, and the unit's MainPID is master's pid or 0.
 * (Debian 12's postfix@.service is Type=forking with GuessMainPID=no and no PIDFile: MainPID 0. A
 * non-zero MainPID that is not master means master merely sits in that unit's cgroup, such as an
 * sshd without PAM sessions that ran `postfix start`: restarting that unit would be wrong.)
 */
import { sh } from '../ssh/index.js';

/** How master was (or is to be) restarted, as the node's restart script chose. */
export type RestartVia = { kind: 'systemd'; unit: string } | { kind: 'postfix'; why: string };

/** Where the script looks on the node. Fixed in the product; tests point them at a temp dir. */
export interface RestartProbePaths {
  systemdDir: string;
  procDir: string;
}

const NODE_PATHS: RestartProbePaths = { systemdDir: '/run/systemd/system', procDir: '/proc' };

/** master detaches from the session's stdio, so the command returns once it runs. */
const POSTFIX_RESTART = 'postfix stop >/dev/null 2>&1; postfix start </dev/null >/dev/null';

const UNIT = /^[A-Za-z0-9:_.@\\-]+\.service$/;
const VIA_LINE = /^via (systemd|postfix) (.*)$/m;

/**
 * Sets `rp_pid` to the pid in master's pid file (`pidFile`, a shell word) when that pid is a
 * running process named `master`, else to ''. Only shell builtins: no process.
 */
export function runningMasterScript(pidFile: string, procDir = NODE_PATHS.procDir): string {
  return [
    `rp_pid=; rp_comm=; { read -r rp_pid < ${pidFile}; } 2>/dev/null || true`,
    `case $rp_pid in ''|*[!0-9]*) rp_pid= ;; *) { read -r rp_comm < ${sh(procDir)}/"$rp_pid"/comm; } 2>/dev/null || true ;; esac`,
    `[ "$rp_comm" = master ] || rp_pid=`,
  ].join('\n');
}

/**
 * The restart as one shell script: it prints `via systemd <unit>` or `via postfix <why not
 * systemd>` on a line of its own, then restarts that way; its exit code is the restart's.
 */
export function restartScript(paths: RestartProbePaths = NODE_PATHS): string {
  const proc = (file: string) => `${sh(paths.procDir)}/"$rp_pid"/${file}`;
  return [
    `rp_via=postfix; rp_why='the node does not run systemd'`,
    `if [ -d ${sh(paths.systemdDir)} ] && command -v systemctl >/dev/null 2>&1; then`,
    `  rp_why='master is not running'; rp_q=$(postconf -h queue_directory 2>/dev/null)`,
    runningMasterScript('"$rp_q/pid/master.pid"', paths.procDir),
    `  if [ -n "$rp_q" ] && [ -n "$rp_pid" ]; then`,
    // cgroup v2 (`0::/path`) or v1's systemd hierarchy (`N:name=systemd:/path`); master must be in the unit itself.
    `    rp_unit=$(sed -n -e 's|^0::.*/\\([^/]*\\.service\\)$|\\1|p' -e 's|^[0-9]*:name=systemd:.*/\\([^/]*\\.service\\)$|\\1|p' ${proc('cgroup')} 2>/dev/null | head -n 1)`,
    `    rp_why="master $rp_pid runs outside any systemd service"`,
    `    if [ -n "$rp_unit" ]; then`,
    `      rp_main=$(systemctl show -p MainPID -- "$rp_unit" 2>/dev/null)`,
    `      if ! systemctl is-active --quiet -- "$rp_unit"; then rp_why="master $rp_pid is in $rp_unit, which is not active"`,
    `      elif [ "$rp_main" = "MainPID=$rp_pid" ] || [ "$rp_main" = MainPID=0 ]; then rp_via=systemd`,
    `      else rp_why="master $rp_pid is in $rp_unit, whose main process is \${rp_main#MainPID=}"`,
    `      fi`,
    `    fi`,
    `  fi`,
    `fi`,
    `if [ "$rp_via" = systemd ]; then`,
    `  echo "via systemd $rp_unit"`,
    `  systemctl restart -- "$rp_unit" </dev/null >/dev/null`,
    `else`,
    `  echo "via postfix $rp_why"`,
    `  ${POSTFIX_RESTART}`,
    `fi`,
  ].join('\n');
}

/** The choice the script printed; undefined when it printed none (it did not run). */
export function parseRestartVia(stdout: string): RestartVia | undefined {
  const m = VIA_LINE.exec(stdout);
  if (m === null) return undefined;
  const detail = m[2]!.trim();
  if (m[1] === 'postfix') return { kind: 'postfix', why: detail.slice(0, 200) };
  return UNIT.test(detail) ? { kind: 'systemd', unit: detail } : undefined;
}

/**
 * The same restart again (a rollback after a failed one): the way chosen before, since a failed
 * `systemctl restart` leaves no master to decide by; the script when nothing was chosen yet.
 */
export function restartAgainCommand(via: RestartVia | undefined): string {
  if (via === undefined) return restartScript();
  return via.kind === 'systemd' ? `systemctl restart -- ${sh(via.unit)} </dev/null >/dev/null` : POSTFIX_RESTART;
}

/** The command in the deploy step's words, with why systemd was not used. */
export function describeRestart(via: RestartVia | undefined): string {
  if (via === undefined) return 'restart';
  return via.kind === 'systemd' ? `systemctl restart ${via.unit}` : `postfix stop; postfix start (${via.why})`;
}
