/**
 * main.cf / master.cf as the deployer sees them: what the node has (`postconf -n`, `-M`, `-P`), what
 * the bundle wants, and the postconf commands that turn one into the other, touching only what
 * differs. The same commands run first against a scratch copy (validation); apply then installs
 * that checked copy, or runs them on the live files when those changed since (applyCommand).
 */
import { posix } from 'node:path';
import { MANAGED_SERVICE_PREFIX, renderValue, serviceFields, serviceKey, type Bundle } from './bundle.js';
import { META_DIR, releasesListing, versionOfTarget, type NodeLayout } from './layout.js';
import { execOk, type NodeConnection, sh } from '../ssh/index.js';
import { CONFIG_READS, KNOWN, PATHS_COMMAND, SEP } from './node-state-format.js';
import { liveStatePerl, nodeStatePerl } from './node-state-perl.js';

export type ParamMap = Map<string, string>;

export interface DesiredService {
  /** `name/type` */
  key: string;
  /** The eight master.cf columns. */
  fields: string;
  params: Array<[string, string]>;
}

export interface DesiredConfig {
  params: Array<[string, string]>;
  services: DesiredService[];
}

export interface LiveConfig {
  /** `postconf -n`: parameters set explicitly in main.cf. */
  params: ParamMap;
  /** `postconf -M`: `name/type` → the eight columns. */
  services: Map<string, string>;
  /** `postconf -P`: `name/type` → its `-o` overrides. */
  serviceParams: Map<string, ParamMap>;
  /** main.cf parameters the live release manages (its `params` manifest). */
  managedParams: string[];
}

export interface ConfigPlan {
  setParams: Array<[string, string]>;
  removeParams: string[];
  writeServices: DesiredService[];
  removeServices: string[];
}

/** `name = value` lines (postconf, -n, -d, -x); `name =` is an empty value. */
export function parseParams(text: string): ParamMap {
  const out: ParamMap = new Map();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_]+) =(?: (.*))?$/.exec(line);
    if (m !== null) out.set(m[1]!, m[2] ?? '');
  }
  return out;
}

/** `postconf -P` lines: `svc/type/name = value`. */
export function parseServiceParams(text: string): Map<string, ParamMap> {
  const out = new Map<string, ParamMap>();
  for (const line of text.split('\n')) {
    const m = /^([^/\s]+\/[^/\s]+)\/([A-Za-z0-9_]+) =(?: (.*))?$/.exec(line);
    if (m === null) continue;
    const params = out.get(m[1]!) ?? new Map<string, string>();
    params.set(m[2]!, m[3] ?? '');
    out.set(m[1]!, params);
  }
  return out;
}

/** `postconf -M` lines (arguments follow the eight columns on the same line). */
export function parseServices(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (/^\s/.test(line)) continue;
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 8) out.set(`${cols[0]}/${cols[1]}`, cols.slice(0, 8).join(' '));
  }
  return out;
}

export function desiredConfig(bundle: Bundle, liveDir: string): DesiredConfig {
  return {
    params: Object.entries(bundle.mainCf).map(([k, v]) => [k, renderValue(v, liveDir)]),
    services: bundle.masterCf.map((s) => ({
      key: serviceKey(s),
      fields: serviceFields(s),
      params: Object.entries(s.options).map(([k, v]) => [k, renderValue(v, liveDir)]),
    })),
  };
}

function sameParams(live: ParamMap | undefined, wanted: Array<[string, string]>): boolean {
  const have = live ?? new Map<string, string>();
  return have.size === wanted.length && wanted.every(([k, v]) => have.get(k) === v);
}

export function planConfig(desired: DesiredConfig, live: LiveConfig): ConfigPlan {
  const wantedParams = new Set(desired.params.map(([k]) => k));
  const wantedServices = new Set(desired.services.map((s) => s.key));
  return {
    setParams: desired.params.filter(([k, v]) => live.params.get(k) !== v),
    // Only what an earlier release of ours set: never a parameter the node's admin owns.
    removeParams: live.managedParams.filter((n) => !wantedParams.has(n) && live.params.has(n)),
    writeServices: desired.services.filter(
      (s) => live.services.get(s.key) !== s.fields || !sameParams(live.serviceParams.get(s.key), s.params),
    ),
    // The name prefix marks ownership; an rp_ service the bundle lacks is a leftover of ours.
    removeServices: [...live.services.keys()].filter(
      (k) => k.startsWith(MANAGED_SERVICE_PREFIX) && !wantedServices.has(k),
    ),
  };
}

export function planIsEmpty(plan: ConfigPlan): boolean {
  return (
    plan.setParams.length + plan.removeParams.length + plan.writeServices.length + plan.removeServices.length === 0
  );
}

/**
 * main.cf parameters master reads only when it starts: after `postfix reload` it logs "ignoring
 * inet_protocols parameter value change" and keeps its sockets and address families, so mail to an
 * IPv6 relay still bounces (seen on 3.7). A plan that touches one needs `postfix stop; postfix start`.
 */
export const RESTART_PARAMS: readonly string[] = ['inet_interfaces', 'inet_protocols'];

/** The restart-only parameters a plan sets or removes (empty: a reload applies it). */
export function restartParams(plan: ConfigPlan): string[] {
  const touched = new Set([...plan.setParams.map(([k]) => k), ...plan.removeParams]);
  return RESTART_PARAMS.filter((name) => touched.has(name));
}

export function describePlan(plan: ConfigPlan): string {
  const parts = [
    plan.setParams.length > 0 ? `set ${plan.setParams.map(([k]) => k).join(',')}` : '',
    plan.removeParams.length > 0 ? `remove ${plan.removeParams.join(',')}` : '',
    plan.writeServices.length > 0 ? `write ${plan.writeServices.map((s) => s.key).join(',')}` : '',
    plan.removeServices.length > 0 ? `remove ${plan.removeServices.join(',')}` : '',
  ].filter((p) => p !== '');
  return parts.length > 0 ? parts.join('; ') : 'main.cf/master.cf unchanged';
}

/**
 * postconf commands for a plan, against `configDir` (-c) or the node's own config. `postconf -M`
 * with the columns alone replaces the whole entry, arguments included, so a rewritten service gets
 * all its `-o` overrides again with `-P` (which refuses whitespace in values: see bundle checks).
 */
export function planCommands(plan: ConfigPlan, configDir?: string): string[] {
  const pc = configDir === undefined ? ['postconf'] : ['postconf', '-c', configDir];
  const cmds: string[] = [];
  if (plan.removeServices.length > 0) cmds.push(sh(...pc, '-MX', ...plan.removeServices));
  if (plan.removeParams.length > 0) cmds.push(sh(...pc, '-X', ...plan.removeParams));
  if (plan.setParams.length > 0) cmds.push(sh(...pc, '-e', ...plan.setParams.map(([k, v]) => `${k}=${v}`)));
  for (const s of plan.writeServices) {
    cmds.push(sh(...pc, '-M', `${s.key}=${s.fields}`));
    if (s.params.length > 0) cmds.push(sh(...pc, '-P', ...s.params.map(([k, v]) => `${s.key}/${k}=${v}`)));
  }
  return cmds;
}

/**
 * Postfix readers (postconf, postfix reload, master) re-read a main.cf modified within the last ~2 s
 * every 300 ms until it is older ("file being edited" guard): ~1.8 s per reload. postconf edits by
 * rename, so the file is never half-written; dating it 10 s back skips the wait.
 */
export function backdateCommand(mainCf: string): string {
  return sh('touch', '-m', '-d', '10 seconds ago', mainCf);
}

export interface NodeState {
  /** `postconf -h config_directory`: proves the session acts on the instance we mean to change. */
  configDirectory: string;
  /** `postconf -xh maillog_file`, '' when Postfix logs to syslog. */
  maillogFile: string;
  /** `postconf -xh daemon_directory`: where master.cf commands must exist. */
  daemonDirectory: string;
  /** `postconf -xh queue_directory`: master's pid file is `pid/master.pid` there. */
  queueDirectory: string;
  /** Where `current` leads (`releases/<version>`), null when there is no live release. */
  currentTarget: string | null;
  /** Content of current/VERSION, null when missing. */
  liveVersion: string | null;
  config: LiveConfig;
  /**
   * The release dirs with their mtimes, as releasesListing prints them ('' when there are none
   * yet), when asked for (readNodeState's `listReleases`).
   */
  releases?: string;
}

/** What a re-read after the reload needs: the release and the config, not where they are. */
export type LiveState = Pick<NodeState, 'currentTarget' | 'liveVersion' | 'config'>;

/** The commands reading the live release, by what they print. */
function releaseReads(layout: NodeLayout) {
  return {
    // Where `current` leads, relative to the layout's root, by the shell's own `cd -P` (readlink is a
    // process on every read): `releases/<version>` for a link of ours. A link that leads nowhere is
    // left to readlink, for its text; a `current` that is no link prints nothing, as readlink would.
    target: [
      `if [ -L ${sh(layout.current)} ]; then rp_here=$PWD`,
      `{ cd -P ${sh(layout.root)} && rp_root=$PWD && cd -P ${sh(layout.current)} && printf '%s\\n' "\${PWD#"$rp_root"/}"; } 2>/dev/null || readlink ${sh(layout.current)} || true`,
      `cd "$rp_here" 2>/dev/null || true; fi`,
    ].join('\n'),
    // Small files read with the shell's own `read`: no process.
    version: `{ IFS= read -r rp_v < ${sh(posix.join(layout.current, 'VERSION'))} && printf '%s\\n' "$rp_v"; } 2>/dev/null || true`,
    managed: `{ while IFS= read -r rp_l; do printf '%s\\n' "$rp_l"; done < ${sh(posix.join(layout.current, META_DIR, 'params'))}; } 2>/dev/null || true`,
  };
}

/** The commands' outputs, each followed by a separator line. */
const separated = (commands: string[]) => commands.join(`; echo ${SEP}; `);
const joinCommands = (commands: string[]) => `set -e; ${separated(commands)}`;

/** What the last full read on a connection found, and the fingerprint of the files it read. */
interface ConfigReading {
  fingerprint: string;
  paths: Pick<NodeState, 'configDirectory' | 'maillogFile' | 'daemonDirectory' | 'queueDirectory'>;
  config: Omit<LiveConfig, 'managedParams'>;
}

/**
 * Per connection (`session`: a pool's leases of one connection share it; a session keeps its
 * environment, so `MAIL_CONFIG` and the instance it names):
 * postconf's answers are a function of main.cf, master.cf and the postconf binary, so while their
 * bytes are the same the four `postconf` reads are not run again.
 */
const readings = new WeakMap<object, ConfigReading>();

/**
 * Everything the deployer needs to know about the node, as one script (see parseNodeState): the
 * fingerprint of the files postconf reads (`cksum`), the live release, then postconf's answers
 * unless the fingerprint is `known`. One postconf prints the paths, one per line in the order
 * asked; `-x` leaves config_directory as it is (it names a directory, never a `$parameter`).
 */
export function nodeStateScript(layout: NodeLayout, known?: string, listReleases = false): string {
  const files = [posix.join(layout.configDir, 'main.cf'), posix.join(layout.configDir, 'master.cf')];
  const { target, version, managed } = releaseReads(layout);
  const postconf = separated([PATHS_COMMAND, ...CONFIG_READS]);
  return [
    // postconf found in PATH by the shell itself (as `command -v` would, without its `$(…)` subshell).
    `set -e; rp_pc=postconf; rp_ifs=$IFS; IFS=:; for rp_d in $PATH; do if [ -f "$rp_d/postconf" ] && [ -x "$rp_d/postconf" ]; then rp_pc=$rp_d/postconf; break; fi; done; IFS=$rp_ifs`,
    `rp_fp=$(cksum ${sh(...files)} "$rp_pc" 2>&1) || true`,
    `printf '%s\\n' "$rp_fp"; echo ${SEP}`,
    `${target}; echo ${SEP}; ${version}; echo ${SEP}; ${managed}; echo ${SEP}`,
    // The releases the prune after a switch chooses from, sent with the deploy's other steps.
    listReleases ? `${releasesListing(layout)} 2>/dev/null || true; echo ${SEP}` : `echo ${SEP}`,
    known === undefined ? postconf : `if [ "$rp_fp" = ${sh(known)} ]; then echo ${KNOWN}; else ${postconf}; fi`,
  ].join('\n');
}

export function parseNodeState(
  stdout: string,
  known?: ConfigReading,
  listReleases = false,
): { state: NodeState; reading: ConfigReading } {
  const [fingerprint = '', target = '', version = '', managed = '', releases = '', ...rest] = stdout.split(`${SEP}\n`);
  let reading: ConfigReading;
  if (known !== undefined && rest[0]?.trim() === KNOWN) reading = known;
  else {
    const [paths = '', params = '', services = '', serviceParams = ''] = rest;
    const [confDir, maillog, daemonDir, queueDir] = paths.split('\n');
    reading = {
      fingerprint: fingerprint.trim(),
      paths: {
        configDirectory: confDir?.trim() ?? '',
        maillogFile: maillog?.trim() ?? '',
        daemonDirectory: daemonDir?.trim() ?? '',
        queueDirectory: queueDir?.trim() ?? '',
      },
      config: {
        params: parseParams(params.trim()),
        services: parseServices(services.trim()),
        serviceParams: parseServiceParams(serviceParams.trim()),
      },
    };
  }
  const live = liveState([target, version, '', '', '', managed]);
  return {
    state: {
      ...reading.paths,
      ...live,
      config: { ...reading.config, managedParams: live.config.managedParams },
      ...(listReleases ? { releases } : {}),
    },
    reading,
  };
}

/**
 * The live release and config, as a verify reads them after a reload. With the config already
 * known (a deploy that edited none of it), only the release: no `postconf` read. Otherwise the
 * whole of read-node's script, whose reading (takeLiveState) becomes the session's: the next
 * read-node of a deploy that edited main.cf or master.cf finds their fingerprint known instead
 * of asking postconf four times again.
 */
export function liveStateScript(layout: NodeLayout, knownConfig?: LiveState['config']): string {
  if (knownConfig === undefined) return nodeStateScript(layout);
  const { target, version } = releaseReads(layout);
  return joinCommands([target, version]);
}

/** liveStateScript and the same read in Perl (node-state-perl.ts), for a section the node's Perl loop may run. */
export function liveStateRead(layout: NodeLayout, knownConfig?: LiveState['config']): { script: string; perl: string } {
  return {
    script: liveStateScript(layout, knownConfig),
    perl: knownConfig === undefined ? nodeStatePerl(layout) : liveStatePerl(layout),
  };
}

/**
 * liveStateScript's output as a LiveState; a full read (no `knownConfig`) is also kept as the
 * reading of `session` (the connection's), as readNodeState keeps its own.
 */
export function takeLiveState(stdout: string, session: object, knownConfig?: LiveState['config']): LiveState {
  if (knownConfig !== undefined) return { ...liveState(stdout.split(`${SEP}\n`)), config: knownConfig };
  const { state, reading } = parseNodeState(stdout);
  readings.set(session, reading);
  return { currentTarget: state.currentTarget, liveVersion: state.liveVersion, config: state.config };
}

function liveState(parts: string[]): LiveState {
  const [target, version, params, services, serviceParams, managed] = parts.map((p) => p.trim());
  return {
    currentTarget: target === undefined || target === '' ? null : target,
    liveVersion: version === undefined || version === '' ? null : version,
    config: {
      params: parseParams(params ?? ''),
      services: parseServices(services ?? ''),
      serviceParams: parseServiceParams(serviceParams ?? ''),
      managedParams: (managed ?? '').split('\n').filter((l) => /^[a-z0-9_]+$/.test(l)),
    },
  };
}

/** What differs between the node and the bundle, given the files found drifted: empty when in sync. */
export function liveProblems(
  now: LiveState,
  drifted: readonly string[],
  version: string,
  desired: DesiredConfig,
): string[] {
  const problems: string[] = [];
  if (now.liveVersion !== version) problems.push(`live version is ${now.liveVersion ?? 'none'}`);
  const plan = planConfig(desired, now.config);
  if (!planIsEmpty(plan)) problems.push(`config differs: ${describePlan(plan)}`);
  if (drifted.length > 0) problems.push(`files differ from the release: ${drifted.join(', ')}`);
  return problems;
}

/** The drifted files as a drift report names them: the tables, then main.cf and master.cf when the config differs. */
export function driftReportFiles(drifted: readonly string[], plan: ConfigPlan): string[] {
  const files = [...drifted];
  if (plan.setParams.length + plan.removeParams.length > 0) files.push('main.cf');
  if (plan.writeServices.length + plan.removeServices.length > 0) files.push('master.cf');
  return files;
}

/** What makes a node's state unsafe to deploy over: another Postfix instance, or a `current` we did not make. */
export function nodeStateProblems(state: NodeState, layout: NodeLayout): string[] {
  const problems: string[] = [];
  if (state.configDirectory !== layout.configDir) {
    problems.push(`the SSH session acts on config_directory ${state.configDirectory}, not ${layout.configDir}`);
  }
  // A rollback must know exactly where to point `current` back to.
  const target = versionOfTarget(state.currentTarget);
  if (state.currentTarget !== null && (target === null || target !== state.liveVersion)) {
    problems.push(
      `inconsistent live release: current → ${state.currentTarget}, VERSION ${state.liveVersion ?? 'missing'}`,
    );
  }
  return problems;
}

/**
 * Reads the node's state in one round trip. `listReleases`: also the release dirs, for a deploy
 * that expects to switch (its prune goes behind the verify); a reconcile of the live version
 * starts no `find` for them.
 */
export async function readNodeState(
  conn: NodeConnection,
  layout: NodeLayout,
  options: { listReleases?: boolean } = {},
): Promise<NodeState> {
  const session = conn.session ?? conn;
  const known = readings.get(session);
  const listReleases = options.listReleases === true;
  const { state, reading } = parseNodeState(
    (
      await execOk(conn, nodeStateScript(layout, known?.fingerprint, listReleases), {
        perl: nodeStatePerl(layout, known?.fingerprint, listReleases),
      })
    ).stdout,
    known,
    listReleases,
  );
  readings.set(session, reading);
  return state;
}
