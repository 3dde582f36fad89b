/**
 * Checks a bundle needs before anything is sent to a node: pure, no I/O. They catch what Postfix
 * accepts silently and dies on later (a TLS level typo makes every smtp process exit "fatal:
 * Invalid TLS level" and master throttles the service), what postmap only warns about (duplicate
 * keys: first wins), and what postconf would rewrite behind our back (surrounding blanks).
 */
import { chunksOf, DIR_PLACEHOLDER, MANAGED_SERVICE_PREFIX, serviceKey, type Bundle } from './bundle.js';
import { VERSION_RE } from './layout.js';
import { parsedFile, tableProblems } from './map-source.js';

const FILE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const PARAM_RE = /^[a-z0-9][a-z0-9_]*$/;
const SERVICE_RE = new RegExp(`^${MANAGED_SERVICE_PREFIX}[a-z0-9][a-z0-9_-]{0,60}$`);
const FLAG_RE = /^[yn-]$/;
const WAKEUP_RE = /^(-|\d+\??)$/;
const MAXPROC_RE = /^(-|\d+)$/;
const COMMAND_RE = /^[a-z0-9][a-z0-9_.-]*$/;
const DIR_REF_RE = /\{\{dir\}\}\/([^\s,:{}]+)/g;
const OTHER_PLACEHOLDER_RE = /\{\{(?!dir\}\})[A-Za-z_]+\}\}/;

/** Parameters whose change by reload breaks or moves the instance: never from a bundle. */
const PROTECTED_PARAMS = new Set([
  'config_directory',
  'queue_directory',
  'data_directory',
  'daemon_directory',
  'command_directory',
  'shlib_directory',
  'meta_directory',
  'mail_owner',
  'setgid_group',
]);

const CLIENT_TLS_LEVELS = ['none', 'may', 'encrypt', 'dane', 'dane-only', 'fingerprint', 'verify', 'secure'];
const SERVER_TLS_LEVELS = ['none', 'may', 'encrypt'];

/** A problem with a `*_tls_security_level` value, or undefined. `$references` are checked once expanded. */
export function tlsLevelProblem(name: string, value: string): string | undefined {
  if (!name.endsWith('_tls_security_level') || value === '' || value.includes('$')) return undefined;
  const server = /^(smtpd|tlsproxy|postscreen)_/.test(name);
  const levels = server ? SERVER_TLS_LEVELS : CLIENT_TLS_LEVELS;
  // Postfix matches level names case-insensitively (name_code).
  if (levels.includes(value.toLowerCase())) return undefined;
  return `${name} = ${value}: not a TLS security level (${levels.join(', ')})`;
}

/**
 * Values of parameters whose Postfix default is a boolean, a number or a time must be one too:
 * postconf stores anything, the daemon then dies with "bad boolean/numerical configuration".
 * `defaultValue` is the expanded default (`postconf -dx`).
 */
export function typedValueProblem(name: string, value: string, defaultValue: string | undefined): string | undefined {
  if (defaultValue === undefined || TYPE_EXEMPT.has(name)) return undefined;
  if (/^(yes|no)$/.test(defaultValue) && !/^(yes|no)$/i.test(value)) return `${name} = ${value}: expected yes or no`;
  if (/^\d+$/.test(defaultValue) && !/^-?\d+$/.test(value)) return `${name} = ${value}: expected an integer`;
  if (/^\d+[smhdw]$/.test(defaultValue) && !/^\d+[smhdw]?$/.test(value))
    return `${name} = ${value}: expected a time (e.g. 30s, 5m)`;
  return undefined;
}
/** Defaults that look numeric but take other forms ("3.6", a service name, "6 no_header_reply"). */
const TYPE_EXEMPT = new Set(['compatibility_level', 'lmtp_tcp_port', 'milter_protocol']);

function valueProblems(where: string, value: string, files: Bundle['files']): string[] {
  const problems: string[] = [];
  if (/[\n\r\0]/.test(value)) problems.push(`${where}: value contains a line break or NUL`);
  if (value !== value.trim())
    problems.push(`${where}: value has leading or trailing blanks (postconf would strip them)`);
  if (OTHER_PLACEHOLDER_RE.test(value)) problems.push(`${where}: unknown placeholder (only ${DIR_PLACEHOLDER})`);
  for (const m of value.matchAll(DIR_REF_RE)) {
    if (files[m[1]!] === undefined) problems.push(`${where}: refers to ${m[0]}, which is not a bundle file`);
  }
  return problems;
}

/** TLS policy tables: the first word of each value is a security level, read by smtp at delivery. */
function tlsPolicyProblems(where: string, name: string, value: string, files: Bundle['files']): string[] {
  if (!name.endsWith('_tls_policy_maps')) return [];
  const problems: string[] = [];
  for (const m of value.matchAll(DIR_REF_RE)) {
    const file = files[m[1]!];
    if (file === undefined) continue;
    for (const e of parsedFile(file).entries) {
      const level = e.value.split(/\s+/)[0] ?? '';
      if (!CLIENT_TLS_LEVELS.includes(level.toLowerCase())) {
        problems.push(
          `${m[1]} line ${e.line} (used by ${where}): ${JSON.stringify(level)} is not a TLS security level`,
        );
      }
    }
  }
  return problems;
}

function paramProblems(where: string, name: string, value: string, files: Bundle['files']): string[] {
  if (!PARAM_RE.test(name)) return [`${where}: invalid parameter name ${JSON.stringify(name)}`];
  if (PROTECTED_PARAMS.has(name)) return [`${where}: ${name} may not be set by a bundle`];
  const problems = valueProblems(where, value, files);
  const tls = tlsLevelProblem(name, value);
  if (tls !== undefined) problems.push(`${where}: ${tls}`);
  problems.push(...tlsPolicyProblems(where, name, value, files));
  return problems;
}

function fileProblems(bundle: Bundle): string[] {
  const problems: string[] = [];
  for (const [name, file] of Object.entries(bundle.files)) {
    if (!FILE_RE.test(name) || name === 'VERSION' || name.endsWith('.db') || name.includes('.tmp-')) {
      problems.push(`file ${JSON.stringify(name)}: invalid or reserved name`);
      continue;
    }
    if (file.mode !== 0o600 && file.mode !== 0o644) problems.push(`file ${name}: mode must be 0600 or 0644`);
    if (file.secret && file.mode !== 0o600) problems.push(`file ${name}: a secret file must be 0600`);
    // A chunked file (chunkedFile) is searched chunk by chunk: its text is not joined for this.
    if ((chunksOf(file) ?? [file.content]).some((chunk) => chunk.includes('\0')))
      problems.push(`file ${name}: contains NUL`);
    if (file.mapType === 'hash') {
      for (const p of tableProblems(file)) problems.push(`file ${name}: ${p}`);
    }
  }
  return problems;
}

function masterProblems(bundle: Bundle): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const s of bundle.masterCf) {
    const where = `master.cf ${s.name}`;
    if (!SERVICE_RE.test(s.name)) problems.push(`${where}: service names must match ${SERVICE_RE.source}`);
    if (s.type !== 'unix') problems.push(`${where}: only unix services are supported`);
    if (seen.has(serviceKey(s))) problems.push(`${where}: defined twice`);
    seen.add(serviceKey(s));
    for (const [col, v] of [
      ['private', s.private],
      ['unpriv', s.unpriv],
      ['chroot', s.chroot],
    ] as const) {
      if (!FLAG_RE.test(v)) problems.push(`${where}: ${col} must be y, n or -`);
    }
    if (!WAKEUP_RE.test(s.wakeup)) problems.push(`${where}: invalid wakeup ${JSON.stringify(s.wakeup)}`);
    if (!MAXPROC_RE.test(s.maxproc)) problems.push(`${where}: invalid maxproc ${JSON.stringify(s.maxproc)}`);
    if (!COMMAND_RE.test(s.command)) problems.push(`${where}: command must be a daemon name in daemon_directory`);
    for (const [k, v] of Object.entries(s.options)) {
      // postconf -P refuses whitespace in values ("-Pe does not accept whitespace").
      if (/\s/.test(v)) problems.push(`${where}: -o ${k}: value contains whitespace`);
      problems.push(...paramProblems(`${where} -o ${k}`, k, v, bundle.files));
    }
  }
  return problems;
}

/** Everything wrong with the bundle that can be known without the node; empty when fit to stage. */
/** Bundles are immutable and deployed to every node: their checks run once per bundle. */
const checked = new WeakMap<Bundle, string[]>();

export function checkBundle(bundle: Bundle): string[] {
  const known = checked.get(bundle);
  if (known !== undefined) return known;
  const problems = bundleProblems(bundle);
  checked.set(bundle, problems);
  return problems;
}

function bundleProblems(bundle: Bundle): string[] {
  const problems: string[] = [];
  if (!VERSION_RE.test(bundle.version)) problems.push('version must be a sha256 hex digest');
  problems.push(...fileProblems(bundle));
  for (const [name, value] of Object.entries(bundle.mainCf)) {
    problems.push(...paramProblems(`main.cf ${name}`, name, value, bundle.files));
  }
  problems.push(...masterProblems(bundle));
  return problems;
}
