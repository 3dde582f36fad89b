/**
 * "Can Relayplane deploy to this node?": connects with the pinned host key, then asks in one round
 * trip for the Postfix version, the commands the deployer runs, the instance the session acts on
 * and whether the config dir is writable. Read-only but for a probe file created and removed.
 */
import {
  excerpt,
  HostKeyMismatchError,
  sh,
  connectNode,
  pinnedFingerprint,
  type NodeConnection,
  type NodeTarget,
} from '../ssh/index.js';

export const REQUIRED_COMMANDS = ['postconf', 'postmap', 'postfix'] as const;

export interface NodeProbe {
  reachable: boolean;
  hostKey: { pinned: string; presented: string | null; matches: boolean | null };
  postfixVersion: string | null;
  commands: Record<(typeof REQUIRED_COMMANDS)[number], boolean>;
  /** `postconf -h config_directory` of the SSH session. */
  configDirectory: string | null;
  /** The name the node's SMTP client greets with (`postconf -xh smtp_helo_name`). */
  heloName: string | null;
  configDirWritable: boolean;
  /**
   * What the node's login costs: `shellStartMs` is the start of the connection's shell (one round
   * trip plus the login shell and its dotfiles, paid once per connection), `commandMs` an empty
   * command on that shell (one round trip). Null when the node was not reached.
   */
  login: { shellStartMs: number | null; commandMs: number | null };
  /** Empty when the node is fit for deploys. */
  problems: string[];
  /** Advisory findings (a slow login); they do not make the check fail. */
  warnings: string[];
  durationMs: number;
}

/** A login slower than this is worth a warning: every new connection (a collection, a check) pays it. */
export const SLOW_LOGIN_MS = 250;

const MARK = '@@relayplane-probe@@';

export async function inspectConnection(
  conn: NodeConnection,
  configDir: string,
): Promise<Omit<NodeProbe, 'reachable' | 'hostKey' | 'durationMs' | 'login' | 'warnings'>> {
  const script = [
    `echo "${MARK}version $(postconf -h mail_version 2>/dev/null)"`,
    `echo "${MARK}configdir $(postconf -h config_directory 2>/dev/null)"`,
    `echo "${MARK}helo $(postconf -xh smtp_helo_name 2>/dev/null)"`,
    ...REQUIRED_COMMANDS.map((c) => `command -v ${c} >/dev/null 2>&1 && echo "${MARK}has ${c}"`),
    `p=${sh(`${configDir}/.relayplane-write-probe-`)}$$`,
    `if (umask 077 && : > "$p") 2>/dev/null; then rm -f "$p"; echo "${MARK}writable"; fi`,
    'true',
  ].join('\n');
  const r = await conn.exec(script, { timeoutMs: 15_000 });
  const facts = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith(MARK)) continue;
    const [key, ...rest] = line.slice(MARK.length).split(' ');
    facts.set(key === 'has' ? `has ${rest[0]}` : key!, rest.join(' ').trim());
  }
  const commands = Object.fromEntries(
    REQUIRED_COMMANDS.map((c) => [c, facts.has(`has ${c}`)]),
  ) as NodeProbe['commands'];
  const postfixVersion = facts.get('version') || null;
  const configDirectory = facts.get('configdir') || null;
  const configDirWritable = facts.has('writable');
  const heloName = facts.get('helo') || null;
  const problems: string[] = [];
  for (const [c, ok] of Object.entries(commands))
    if (!ok) problems.push(`command ${c} not found in the login shell's PATH`);
  if (postfixVersion === null) problems.push('postconf -h mail_version gave no version');
  if (configDirectory !== null && configDirectory !== configDir) {
    problems.push(
      `the SSH session acts on config_directory ${configDirectory}, not ${configDir} (set MAIL_CONFIG for this user, or fix configDir)`,
    );
  }
  if (!configDirWritable) problems.push(`${configDir} is not writable by the SSH user`);
  return { postfixVersion, commands, configDirectory, heloName, configDirWritable, problems };
}

/** The shell's start (measured by the connection) and one empty command on it, in whole ms. */
async function measureLogin(conn: NodeConnection): Promise<NodeProbe['login']> {
  const started = performance.now();
  await conn.exec('true', { timeoutMs: 15_000 });
  const commandMs = Math.round(performance.now() - started);
  const shellStartMs = conn.shellStartMs?.();
  return { shellStartMs: shellStartMs === undefined ? null : Math.round(shellStartMs), commandMs };
}

/** Never throws for node trouble: unreachable nodes and key mismatches are reported as problems. */
export async function probeNode(target: NodeTarget, configDir: string): Promise<NodeProbe> {
  const started = Date.now();
  const pinned = pinnedFingerprint(target.hostKey);
  const empty = {
    postfixVersion: null,
    commands: { postconf: false, postmap: false, postfix: false },
    configDirectory: null,
    heloName: null,
    configDirWritable: false,
  };
  let conn: NodeConnection;
  try {
    conn = await connectNode(target);
  } catch (err) {
    const durationMs = Date.now() - started;
    if (err instanceof HostKeyMismatchError) {
      return {
        reachable: true,
        hostKey: { pinned, presented: err.presentedFingerprint, matches: false },
        ...empty,
        login: { shellStartMs: null, commandMs: null },
        warnings: [],
        problems: [
          `host key mismatch: the node presented ${err.presentedFingerprint}, pinned ${pinned}; nothing was sent`,
        ],
        durationMs,
      };
    }
    return {
      reachable: false,
      hostKey: { pinned, presented: null, matches: null },
      ...empty,
      login: { shellStartMs: null, commandMs: null },
      warnings: [],
      problems: [excerpt(err instanceof Error ? err.message : String(err), 300)],
      durationMs,
    };
  }
  try {
    const facts = await inspectConnection(conn, configDir);
    const login = await measureLogin(conn);
    const warnings =
      login.shellStartMs !== null && login.shellStartMs > SLOW_LOGIN_MS
        ? [
            `starting the node's shell took ${login.shellStartMs} ms (an empty command: ${login.commandMs ?? '?'} ms): the login shell's dotfiles ` +
              `(~/.bashrc, ~/.profile) are slow; every new SSH connection pays this once (see README, "Nodes and deployments")`,
          ]
        : [];
    return {
      reachable: true,
      hostKey: { pinned, presented: pinned, matches: true },
      ...facts,
      login,
      warnings,
      durationMs: Date.now() - started,
    };
  } catch (err) {
    return {
      reachable: true,
      hostKey: { pinned, presented: pinned, matches: true },
      ...empty,
      login: { shellStartMs: conn.shellStartMs?.() ?? null, commandMs: null },
      warnings: [],
      problems: [excerpt(err instanceof Error ? err.message : String(err), 300)],
      durationMs: Date.now() - started,
    };
  } finally {
    conn.close();
  }
}
