/**
 * The validate step of a deploy, on the node: the staged tables probed (node-checks.ts), the
 * services' daemons present, and a staged main.cf/master.cf checked by `postconf` on a scratch copy
 * with the plan's edits applied. Each returns problems (empty = fine); none returns a secret value.
 */
import { posix } from 'node:path';
import { hashMaps, type Bundle } from './bundle.js';
import { tlsLevelProblem, typedValueProblem } from './bundle-checks.js';
import type { BundleDelta } from './bundle-delta.js';
import { deltaProbeProblems, deltaProbeScript, deltaProbeVerdictScript } from './delta-probe.js';
import { probeProblems, probeScript } from './node-checks.js';
import {
  backdateCommand,
  parseParams,
  parseServiceParams,
  planCommands,
  planIsEmpty,
  type ConfigPlan,
  type DesiredConfig,
} from './postfix-config.js';
import {
  excerpt,
  execSections,
  sh,
  shellQuote,
  type ExecResult,
  type NodeConnection,
  type Section,
} from '../ssh/index.js';

/**
 * Every master.cf command present in daemon_directory (as read-node found it): a missing one only
 * shows when master spawns it ("fatal: master_spawn: exec …: No such file").
 */
export function daemonsScript(bundle: Bundle, daemonDirectory: string): string {
  const commands = [...new Set(bundle.masterCf.map((s) => s.command))];
  return `d=${shellQuote(daemonDirectory)}; for c in ${commands.map(shellQuote).join(' ')}; do test -x "$d/$c" || echo "missing $c"; done; true`;
}

export function daemonsProblems(r: ExecResult): string[] {
  const problems = [...r.stdout.matchAll(/^missing (.*)$/gm)].map(
    (m) => `master.cf command ${m[1]} not found in daemon_directory`,
  );
  if (r.code !== 0) problems.push(`daemon check exit ${r.code}: ${excerpt(r.stderr, 200)}`);
  return problems;
}

export interface StagedConfigArgs {
  scratchDir: string;
  configDir: string;
  plan: ConfigPlan;
  desired: DesiredConfig;
}

/** Where stagedConfigScript keeps main.cf and master.cf as it copied them, under its scratch dir. */
export const SCRATCH_BEFORE = 'before';

/**
 * Applies the plan to a scratch copy of main.cf/master.cf, then asks postconf about the result:
 * "unused parameter" warnings name parameters Postfix does not know (it only warns), and expanded
 * values are checked against the type of their default (`postconf -dx`) and TLS level names. The
 * copies as read stay in `before/` (hard links: postconf edits by rename), for apply to install the
 * checked files when the live ones still match them (applyCommand).
 */
export function stagedConfigScript(args: StagedConfigArgs): string {
  return `${sh('mkdir', '-p', posix.join(args.scratchDir, SCRATCH_BEFORE))} && ${stagedConfigChecks(args)}`;
}

/** stagedConfigScript once its scratch dir exists. */
function stagedConfigChecks(args: StagedConfigArgs): string {
  const { scratchDir: d, configDir, plan, desired } = args;
  const at = (...names: string[]) => names.map((n) => posix.join(d, n));
  // One postconf for every parameter set in main.cf and one for every service's: each run costs
  // the node milliseconds, and each parses the whole file (and warns) whatever it is asked.
  const setup = [
    sh('cp', '-p', posix.join(configDir, 'main.cf'), posix.join(configDir, 'master.cf'), d),
    sh('ln', ...at('main.cf', 'master.cf', SCRATCH_BEFORE)),
    ...planCommands(plan, d),
    backdateCommand(posix.join(d, 'main.cf')),
    sh('postconf', '-c', d, '-nx'),
    'echo @@',
    sh('postconf', '-c', d, '-Px'),
    'echo @@',
  ].join(' && ');
  const ours = ourParams(desired);
  return `${setup} && { ${ours.size > 0 ? sh('postconf', '-c', d, '-dx', ...ours) : 'true'}; } 2>/dev/null`;
}

/** The checks' output and exit code, in their scratch dir: the exit code only when they ran beside postmap. */
const CHECK_OUT = 'check.out';
const CHECK_ERR = 'check.err';
const CHECK_RC = 'check.rc';

/**
 * Where validate finds the checks of the staged main.cf/master.cf: `none`, it runs them; `same-plan`,
 * they ran beside postmap for the plan read-node then found (configCheckAhead), so validate reads
 * their record, or runs them when there is none (postmap built a full release without them);
 * `other-plan`, they ran for a plan read-node did not find (a hand edit since the live release):
 * their scratch dir goes, and validate runs them for this plan.
 */
export type CheckedAhead = 'none' | 'same-plan' | 'other-plan';

/** What stagedConfigStart prints when the checks' record from beside postmap is there. */
const AHEAD = 'checked-beside-postmap';

/**
 * stagedConfigScript in the background, its output into files of its scratch dir, so the node runs
 * it beside other work on its other core (validate's probes, or postmap's builds: configCheckAhead):
 * the checks take ≈ 100 ms, the probes of a relay's 2,000 moved domains ≈ 30 ms. Its job id is
 * kept in `rp_config` for stagedConfigCollect or stagedConfigRecord, in the same shell.
 */
export function stagedConfigBackground(args: StagedConfigArgs): string {
  const d = args.scratchDir;
  const output = `> ${sh(posix.join(d, CHECK_OUT))} 2> ${sh(posix.join(d, CHECK_ERR))}`;
  return `${sh('mkdir', '-p', posix.join(d, SCRATCH_BEFORE))} && { { ${stagedConfigChecks(args)}\n} ${output} & rp_config=$!; }`;
}

/** Waits for stagedConfigBackground's job and leaves its exit code beside its output, for a later validate. */
export function stagedConfigRecord(args: StagedConfigArgs): string {
  const rc = sh(posix.join(args.scratchDir, CHECK_RC));
  return `if [ -n "\${rp_config:-}" ]; then wait "$rp_config"; printf '%s\\n' "$?" > ${rc}; fi`;
}

/** validate's start of the checks (a section without subshell), as `ahead` says. */
function stagedConfigStart(args: StagedConfigArgs, ahead: CheckedAhead): string {
  const d = args.scratchDir;
  const start = stagedConfigBackground(args);
  if (ahead === 'same-plan') return `if [ -f ${sh(posix.join(d, CHECK_RC))} ]; then echo ${AHEAD}; else ${start}; fi`;
  return ahead === 'other-plan' ? `${sh('rm', '-rf', d)} && ${start}` : start;
}

/**
 * Waits for stagedConfigStart's job, or takes the exit code the checks run beside postmap left,
 * and prints their output as the section's own (shell builtins only).
 */
function stagedConfigCollect(args: StagedConfigArgs): string {
  const file = (name: string) => sh(posix.join(args.scratchDir, name));
  const print = `while IFS= read -r rp_l || [ -n "$rp_l" ]; do printf '%s\\n' "$rp_l"; done`;
  return [
    `if [ -n "\${rp_config:-}" ]; then wait "$rp_config"; rp_rc=$?`,
    `elif [ -f ${file(CHECK_RC)} ]; then IFS= read -r rp_rc < ${file(CHECK_RC)} || rp_rc=1`,
    `else rp_rc=none; fi`,
    `if [ "$rp_rc" = none ]; then echo 'the checks did not start' >&2; false; else`,
    `rp_l=''; ${print} < ${file(CHECK_OUT)}; rp_l=''; ${print} < ${file(CHECK_ERR)} >&2`,
    `[ "$rp_rc" = 0 ] || { echo "postconf checks exited $rp_rc" >&2; false; }; fi`,
  ].join('\n');
}

const ourParams = (desired: DesiredConfig) =>
  new Set([...desired.params.map(([k]) => k), ...desired.services.flatMap((s) => s.params.map(([k]) => k))]);

export function stagedConfigProblems(r: ExecResult, desired: DesiredConfig): string[] {
  if (r.code !== 0) return [`postconf on a scratch copy failed (exit ${r.code}): ${excerpt(r.stderr, 300)}`];
  const ours = ourParams(desired);
  const problems: string[] = [];
  for (const m of r.stderr.matchAll(/(?:unused parameter: ([a-z0-9_]+)=|([a-z0-9_]+): unknown parameter)/g)) {
    const name = m[1] ?? m[2] ?? '';
    if (ours.has(name)) problems.push(`unknown parameter ${name} (postconf: ${m[0]})`);
  }
  const [mainText, serviceText, defaultsText] = r.stdout.split('@@\n');
  const defaults = parseParams(defaultsText ?? '');
  // Every parameter set in main.cf and every service's came back: only ours are checked here.
  const mainNames = new Set(desired.params.map(([k]) => k));
  const serviceParams = new Map(desired.services.map((s) => [s.key, new Set(s.params.map(([k]) => k))]));
  const values: Array<[string, string, string]> = [...parseParams(mainText ?? '')]
    .filter(([k]) => mainNames.has(k))
    .map(([k, v]) => [`main.cf ${k}`, k, v]);
  for (const [svc, params] of parseServiceParams(serviceText ?? '')) {
    const wanted = serviceParams.get(svc);
    for (const [k, v] of params) if (wanted?.has(k) === true) values.push([`master.cf ${svc} -o ${k}`, k, v]);
  }
  for (const [where, name, value] of values) {
    const p = typedValueProblem(name, value, defaults.get(name)) ?? tlsLevelProblem(name, value);
    if (p !== undefined) problems.push(`${where}: ${p}`);
  }
  return problems;
}

/**
 * The validate step in one round trip: `postmap -s`/`-q` probes of the staged tables and, when the
 * plan edits main.cf or master.cf, the services' daemons and the staged main.cf/master.cf. A change
 * of tables only leaves both files as they are: nothing there to check. `postfix check` runs with
 * the verify after the reload (postfixCheckStart), off the path to live.
 */
export async function validateStaged(
  conn: NodeConnection,
  args: {
    bundle: Bundle;
    stagingDir: string;
    daemonDirectory: string;
    delta?: BundleDelta | undefined;
    checkedAhead?: CheckedAhead;
  } & StagedConfigArgs,
): Promise<{ problems: string[]; configChecked: boolean; besidePostmap: boolean }> {
  // A delta release: whole tables are probed as usual, merged ones at every key they changed;
  // copied ones are the base's, byte for byte.
  const { delta } = args;
  const probed = probedWhole(args.bundle, delta);
  // Nothing to probe (a delta that only patched tables): no section, one process fewer on the node.
  const probing = hashMaps(probed).length > 0;
  const sections: Section[] = probing ? [{ name: 'probe', script: probeScript(args.stagingDir, probed) }] : [];
  if (delta !== undefined) sections.push({ name: 'delta-probe', script: deltaProbeScript(args.stagingDir, delta) });
  const configChecked = !planIsEmpty(args.plan);
  const ahead = args.checkedAhead ?? 'none';
  if (configChecked) {
    // Beside the probes when there are any; the daemons' check is a few `test -x`.
    const beside = sections.length > 0 || ahead !== 'none';
    if (beside)
      sections.unshift({ name: 'staged-config-start', script: stagedConfigStart(args, ahead), subshell: false });
    sections.push(
      { name: 'daemons', script: daemonsScript(args.bundle, args.daemonDirectory) },
      beside
        ? { name: 'staged-config', script: stagedConfigCollect(args), subshell: false }
        : { name: 'staged-config', script: stagedConfigScript(args) },
    );
  } else if (ahead === 'other-plan') {
    // Checks run beside postmap for a plan that turned out empty: their copies leave the release.
    sections.push({ name: 'scratch', script: sh('rm', '-rf', args.scratchDir) });
  }
  const r = sections.length > 0 ? await execSections(conn, sections) : new Map<string, ExecResult>();
  const scratch = r.get('scratch');
  const problems = [
    ...(scratch !== undefined && scratch.code !== 0
      ? [`removing the checks of another plan failed: ${excerpt(scratch.stderr, 200)}`]
      : []),
    ...(probing ? probeProblems(r.get('probe')!, probed) : []),
    ...(delta === undefined
      ? []
      : deltaProbeProblems(r.get('delta-probe')!.stdout, args.bundle, delta, args.stagingDir)),
  ];
  if (!configChecked) return { problems, configChecked, besidePostmap: false };
  return {
    besidePostmap: r.get('staged-config-start')?.stdout.trim() === AHEAD,
    problems: [
      ...daemonsProblems(r.get('daemons')!),
      ...problems,
      ...stagedConfigProblems(r.get('staged-config')!, args.desired),
    ],
    configChecked,
  };
}

/** The validate step's record of what validateStaged checked. */
export function describeValidate(r: { configChecked: boolean; besidePostmap: boolean }): string | undefined {
  if (!r.configChecked) return 'tables only: main.cf and master.cf unchanged';
  return r.besidePostmap ? 'main.cf and master.cf checked beside postmap' : undefined;
}

/**
 * Whether validate can be decided on the node for this deploy (validateDeltaOnNode): a delta that
 * changed tables only, with no table sent whole to probe. Anything else is checked here, answer by answer.
 */
export function validatesOnNode(
  bundle: Bundle,
  plan: ConfigPlan,
  delta: BundleDelta | undefined,
): delta is BundleDelta {
  return delta !== undefined && planIsEmpty(plan) && hashMaps(probedWhole(bundle, delta)).length === 0;
}

/** The files validate probes whole: all of a full release's, only those a delta sent whole. */
function probedWhole(bundle: Bundle, delta: BundleDelta | undefined): Bundle {
  if (delta === undefined) return bundle;
  return { ...bundle, files: Object.fromEntries(delta.whole.map((n) => [n, bundle.files[n]!])) };
}

/**
 * validate of a delta that changed tables only (validatesOnNode): every changed key probed, with
 * the node's verdict (deltaProbeVerdictScript), chained on the step before it. The steps sent after
 * it, chained on it, run only when it passed.
 */
export async function validateDeltaOnNode(
  conn: NodeConnection,
  args: { bundle: Bundle; stagingDir: string; delta: BundleDelta },
): Promise<string[]> {
  const { bundle, stagingDir, delta } = args;
  const r = await conn.exec(deltaProbeVerdictScript(stagingDir, bundle, delta), { ifPreviousOk: true });
  if (r.code === 0) return [];
  const problems = deltaProbeProblems(r.stdout, bundle, delta, stagingDir);
  return problems.length > 0
    ? problems
    : [
        `the staged tables did not answer as the bundle says (exit ${r.code}): ${excerpt(r.stderr, 200) || '(no stderr)'}`,
      ];
}
