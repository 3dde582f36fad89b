/**
 * "Can Relayplane deploy to this node?": connects with the pinned host key, then asks in one round
 * trip for the Postfix version, the commands the deployer runs, the instance the session acts on
 * and whether the config dir is writable. Read-only but for a probe file created and removed.
 */
import { excerpt, HostKeyMismatchError, sh, connectNode, pinnedFingerprint, type NodeConnection, type NodeTarget } from '../ssh/index.js';

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
  /** Empty when the node is fit for deploys. */
  problems: string[];
  durationMs: number;
}

const MARK = '@@relayplane-probe@@';

export async function inspectConnection(conn: NodeConnection, configDir: string): Promise<Omit<NodeProbe, 'reachable' | 'hostKey' | 'durationMs'>> {
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
  const commands = Object.fromEntries(REQUIRED_COMMANDS.map((c) => [c, facts.has(`has ${c}`)])) as NodeProbe['commands'];
  const postfixVersion = facts.get('version') || null;
  const configDirectory = facts.get('configdir') || null;
  const configDirWritable = facts.has('writable');
  const heloName = facts.get('helo') || null;
  const problems: string[] = [];
  for (const [c, ok] of Object.entries(commands)) if (!ok) problems.push(`command ${c} not found in the login shell's PATH`);
  if (postfixVersion === null) problems.push('postconf -h mail_version gave no version');
  if (configDirectory !== null && configDirectory !== configDir) {
    problems.push(`the SSH session acts on config_directory ${configDirectory}, not ${configDir} (set MAIL_CONFIG for this user, or fix configDir)`);
  }
  if (!configDirWritable) problems.push(`${configDir} is not writable by the SSH user`);
  return { postfixVersion, commands, configDirectory, heloName, configDirWritable, problems };
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
        problems: [`host key mismatch: the node presented ${err.presentedFingerprint}, pinned ${pinned}; nothing was sent`],
        durationMs,
      };
    }
    return {
      reachable: false,
      hostKey: { pinned, presented: null, matches: null },
      ...empty,
      problems: [excerpt(err instanceof Error ? err.message : String(err), 300)],
      durationMs,
    };
  }
  try {
    const facts = await inspectConnection(conn, configDir);
    return { reachable: true, hostKey: { pinned, presented: pinned, matches: true }, ...facts, durationMs: Date.now() - started };
  } catch (err) {
    return {
      reachable: true,
      hostKey: { pinned, presented: pinned, matches: true },
      ...empty,
      problems: [excerpt(err instanceof Error ? err.message : String(err), 300)],
      durationMs: Date.now() - started,
    };
  } finally {
    conn.close();
  }
}
