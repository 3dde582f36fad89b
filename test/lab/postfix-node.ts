/**
 * A throw-away Postfix node for end-to-end tests: an independent Postfix instance (its own config,
 * queue, data and log under one temp dir, started with `postfix -c DIR start`, no systemd, no
 * postmulti) plus its own sshd, so the control plane can drive it exactly like a real node
 * (`postconf`, `postmap`, `postfix reload` over SSH act on this instance via `SetEnv MAIL_CONFIG`).
 *
 * Safety: loopback only. `inet_interfaces = loopback-only`, `inet_protocols = ipv4`, a catch-all
 * `relayhost` pointing at a loopback sink (so mail without a sender-dependent route never causes an
 * MX lookup), `smtp_dns_support_level = disabled`, `smtpd_peername_lookup = no`, explicit
 * `myhostname`. Nexthops you add must be bracketed IP literals (`[127.0.0.1]:PORT`).
 *
 * The node starts with `smtp_sasl_password_maps = hash:<configDir>/sasl_passwd` (empty map, built),
 * no sender-dependent maps, and a `relayhost` catch-all to the sink.
 *
 * `privateHosts` lets the node deliver "directly" to names listed there without DNS: its master and
 * sshd run in a mount namespace with their own /etc/hosts (see private-hosts.ts).
 *
 * Needs root (see requirements.ts). Layout of baseDir:
 *   etc/      config_directory (main.cf, master.cf, sasl_passwd, maps you add) → node.configDir
 *   spool/    queue_directory
 *   data/     data_directory (owned by postfix)
 *   log/maillog                                                      → node.maillogPath
 *   ssh/      sshd_config, host key, client key pair, authorized_keys, sshd.pid, sshd.log
 *   ns/       hosts, nsswitch.conf, resolv.conf seen by master and sshd (with privateHosts only)
 *   owner     "<pid> <starttime>" of the process that owns the node (for the stale-run reaper)
 */
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { assertInPrivateHosts, inPrivateHosts, writePrivateHostsFiles } from './private-hosts.js';
import {
  LOOPBACK,
  freePort,
  pidAlive,
  processToken,
  processTree,
  readPidFile,
  run,
  runOk,
  smtpGreeting,
  terminateTree,
  tokenAlive,
  waitUntil,
  type RunResult,
} from './util.js';

export interface PostfixNodeOptions {
  /** [a-z0-9-]+, used in syslog_name (`postfix-<name>`), myhostname and dir names. */
  name: string;
  /** Absolute dir to build the node in. Wiped (after stopping anything still running there) first. */
  baseDir?: string;
  /** Port of the node's SMTP listener on 127.0.0.1; default a free port. */
  smtpPort?: number;
  /**
   * Address of the SMTP listener: 127.0.0.1 (default) or ::1, a listener master can bind under
   * inet_protocols = ipv6 (a 127.0.0.1 one makes it exit: "bad hostname or network address").
   * With ::1 the node starts with inet_protocols = all (mainCf may say ipv6) and [::1]/128 in
   * mynetworks.
   */
  smtpHost?: typeof LOOPBACK | '::1';
  /** Port of the node's sshd; default a free port. */
  sshPort?: number;
  /** Catch-all `relayhost`, a loopback sink: `[127.0.0.1]:PORT` (must be bracketed). */
  sinkRelayhost: string;
  /** PEM certificates the node's smtp client trusts (written to etc/lab-ca.pem = smtp_tls_CAfile). */
  tlsCaCerts?: string[];
  /** Extra or overriding main.cf parameters. */
  mainCf?: Record<string, string>;
  /**
   * SSH sessions get HOME=<baseDir>/home (an empty dir) instead of root's home on this machine, so
   * the machine's root dotfiles do not run for every command (bash sources ~/.bashrc for commands
   * run by sshd; a `pyenv init` there costs tens of ms per command and, under concurrency, writes
   * rehash errors to stderr), as on a node whose root has default dotfiles. Default: on.
   */
  ownHome?: boolean;
  /**
   * Host name → IPv4 loopback address. When set, the node's Postfix master and sshd (and so every
   * command the deployer runs over SSH, `postfix start` included) resolve names from a private
   * /etc/hosts listing these and localhost only, never DNS: mail to a direct domain goes to port 25
   * of the address listed for the recipient domain. The node does not start without it (no
   * fallback to the machine's resolver). Commands run by node.exec()/reload() run outside.
   */
  privateHosts?: Record<string, string>;
}

export interface NodeSshTarget {
  host: typeof LOOPBACK;
  port: number;
  username: 'root';
  privateKeyPath: string;
  /** OpenSSH-format ed25519 private key (what node-ssh/ssh2 take as `privateKey`). */
  privateKey: string;
  /** `ssh-ed25519 AAAA...` (no comment). */
  hostKeyLine: string;
  /** `SHA256:...` exactly as `ssh-keygen -lf` prints it (base64 without padding). */
  hostKeyFingerprint: string;
}

export interface QueueEntry {
  queue_name: string;
  queue_id: string;
  arrival_time: number;
  message_size: number;
  sender: string;
  recipients: { address: string; delay_reason?: string }[];
}

export interface PostfixNode {
  name: string;
  baseDir: string;
  configDir: string;
  queueDir: string;
  dataDir: string;
  syslogName: string;
  smtpHost: typeof LOOPBACK | '::1';
  smtpPort: number;
  ssh: NodeSshTarget;
  maillogPath: string;
  sshLogPath: string;
  /** Kills the node's sshd and its open sessions (the node becomes unreachable over SSH). */
  stopSsh(): Promise<void>;
  /** Starts the sshd again on the same port with the same keys. No-op if it runs. */
  startSsh(): Promise<void>;
  /** Stops sshd and Postfix and removes baseDir. Idempotent. */
  stop(): Promise<void>;
  /** `postconf -c configDir ...args`; throws on a non-zero exit; returns stdout. */
  postconf(args: string[]): Promise<string>;
  /** Runs a shell command locally with MAIL_CONFIG=configDir (what an SSH session on the node gets). */
  exec(cmd: string): Promise<RunResult>;
  /** `postfix -c configDir reload`. */
  reload(): Promise<void>;
  /** `postqueue -f`: retry deferred mail now. */
  flushQueue(): Promise<void>;
  /** `postqueue -j`: the messages in the queue. */
  queue(): Promise<QueueEntry[]>;
  /** Appends a CA certificate to smtp_tls_CAfile (takes effect for new smtp processes; reload). */
  trustCa(pem: string): Promise<void>;
}

const DIR_PREFIX = 'relayplane-lab-node-';
const live = new Set<{ baseDir: string }>();
let reaped = false;
let exitHookInstalled = false;

function procComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function masterPidFile(baseDir: string): string {
  return path.join(baseDir, 'spool', 'pid', 'master.pid');
}
function sshdPidFile(baseDir: string): string {
  return path.join(baseDir, 'ssh', 'sshd.pid');
}

/** The pid in the file, if that process still runs and has the expected command name. */
function livePid(file: string, comm: string): number | undefined {
  const pid = readPidFile(file);
  if (pid === undefined || !pidAlive(pid)) return undefined;
  return procComm(pid) === comm ? pid : undefined;
}

/** Stops whatever a node dir's pid files point at. Safe on stale pid files and half-built dirs. */
async function stopProcessesAt(baseDir: string): Promise<void> {
  const sshd = livePid(sshdPidFile(baseDir), 'sshd');
  if (sshd !== undefined) await terminateTree(sshd, 2000);
  const master = livePid(masterPidFile(baseDir), 'master');
  if (master !== undefined) {
    const configDir = path.join(baseDir, 'etc');
    if (existsSync(path.join(configDir, 'main.cf'))) {
      await run('/usr/sbin/postfix', ['-c', configDir, 'stop'], { env: postfixEnv(configDir), timeoutMs: 10_000 });
      await waitUntil(() => !pidAlive(master), 5000, 'postfix master to exit').catch(() => undefined);
    }
    await terminateTree(master, 1000);
  }
}

/** Synchronous last-resort cleanup for process exit: SIGKILL everything, remove the dir. */
function killAtSync(baseDir: string): void {
  for (const [file, comm] of [
    [sshdPidFile(baseDir), 'sshd'],
    [masterPidFile(baseDir), 'master'],
  ] as const) {
    const pid = livePid(file, comm);
    if (pid === undefined) continue;
    for (const p of processTree(pid)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  rmSync(baseDir, { recursive: true, force: true });
}

/**
 * Removes node dirs left in os.tmpdir() by runs whose owning process is gone (a crashed or killed
 * vitest worker): stops their sshd/Postfix via the pid files and deletes the dir. Dirs owned by a
 * live process (a parallel test file) are left alone.
 */
export async function reapStaleLabNodes(): Promise<string[]> {
  const reapedDirs: string[] = [];
  const tmp = os.tmpdir();
  let entries: string[] = [];
  try {
    entries = readdirSync(tmp);
  } catch {
    return reapedDirs;
  }
  for (const e of entries) {
    if (!e.startsWith(DIR_PREFIX)) continue;
    const dir = path.join(tmp, e);
    let owner = '';
    try {
      owner = readFileSync(path.join(dir, 'owner'), 'utf8');
    } catch {
      // No owner file: being created right now by a parallel test file, or left by a run that died
      // while creating it. Only the latter is old.
      try {
        if (Date.now() - statSync(dir).mtimeMs < 60_000) continue;
      } catch {
        continue;
      }
    }
    if (owner !== '' && tokenAlive(owner)) continue;
    await stopProcessesAt(dir);
    await rm(dir, { recursive: true, force: true });
    reapedDirs.push(dir);
  }
  return reapedDirs;
}

function postfixEnv(configDir: string): NodeJS.ProcessEnv {
  return { ...process.env, MAIL_CONFIG: configDir, LANG: 'C', LC_ALL: 'C' };
}

let postfixIds: { uid: number; gid: number } | undefined;
async function postfixOwner(): Promise<{ uid: number; gid: number }> {
  if (postfixIds === undefined) {
    const uid = Number((await runOk('id', ['-u', 'postfix'])).stdout.trim());
    const gid = Number((await runOk('id', ['-g', 'postfix'])).stdout.trim());
    postfixIds = { uid, gid };
  }
  return postfixIds;
}

function mainCf(p: {
  name: string;
  baseDir: string;
  configDir: string;
  syslogName: string;
  sinkRelayhost: string;
  bannerToken: string;
  caFile: string | undefined;
  smtpHost: typeof LOOPBACK | '::1';
  extra: Record<string, string>;
}): string {
  const params: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: path.join(p.baseDir, 'spool'),
    data_directory: path.join(p.baseDir, 'data'),
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    syslog_name: p.syslogName,
    // Generated services derive their syslog_name from this, as on a postmulti instance.
    multi_instance_name: p.syslogName,
    maillog_file: path.join(p.baseDir, 'log', 'maillog'),
    maillog_file_prefixes: path.join(p.baseDir, 'log'),
    myhostname: `${p.name}.lab.test`,
    mydomain: 'lab.test',
    myorigin: '$myhostname',
    mydestination: '',
    relay_domains: '',
    local_recipient_maps: '',
    alias_maps: '',
    alias_database: '',
    inet_interfaces: 'loopback-only',
    inet_protocols: p.smtpHost === LOOPBACK ? 'ipv4' : 'all',
    mynetworks: p.smtpHost === LOOPBACK ? '127.0.0.0/8' : '127.0.0.0/8 [::1]/128',
    smtpd_relay_restrictions: 'permit_mynetworks, reject',
    smtpd_peername_lookup: 'no',
    smtpd_banner: `$myhostname ESMTP lab node ${p.bannerToken}`,
    // No DNS: every route ends at a bracketed loopback literal; the catch-all is the sink.
    relayhost: p.sinkRelayhost,
    smtp_dns_support_level: 'disabled',
    lmtp_dns_support_level: 'disabled',
    smtp_sasl_auth_enable: 'yes',
    smtp_sasl_password_maps: `hash:${path.join(p.configDir, 'sasl_passwd')}`,
    smtp_sasl_security_options: 'noanonymous',
    smtp_sasl_tls_security_options: 'noanonymous',
    smtp_sender_dependent_authentication: 'yes',
    smtp_tls_security_level: 'may',
    smtp_tls_loglevel: '1',
    smtp_tls_CAfile: p.caFile ?? '',
    biff: 'no',
    append_dot_mydomain: 'no',
    readme_directory: 'no',
    smtputf8_enable: 'no',
  };
  Object.assign(params, p.extra);
  return (
    '# Generated by test/lab/postfix-node.ts\n' +
    Object.entries(params)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n') +
    '\n'
  );
}

function masterCf(smtpHost: typeof LOOPBACK | '::1', smtpPort: number): string {
  const listener = smtpHost === LOOPBACK ? LOOPBACK : `[${smtpHost}]`;
  // Explicit 'n' in the chroot column everywhere: the instance lives outside /var/spool/postfix.
  return `# Generated by test/lab/postfix-node.ts
${listener}:${smtpPort} inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
`;
}

function sshdConfig(p: { sshDir: string; port: number; configDir: string; home: string | undefined }): string {
  return `# Generated by test/lab/postfix-node.ts
ListenAddress ${LOOPBACK}:${p.port}
AddressFamily inet
HostKey ${path.join(p.sshDir, 'ssh_host_ed25519_key')}
PidFile ${path.join(p.sshDir, 'sshd.pid')}
AuthorizedKeysFile ${path.join(p.sshDir, 'authorized_keys')}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
PermitUserEnvironment no
LoginGraceTime 20
MaxStartups 100:30:200
MaxSessions 50
LogLevel VERBOSE
SetEnv MAIL_CONFIG=${p.configDir}${p.home !== undefined ? ` HOME=${p.home}` : ''}
Subsystem sftp internal-sftp
`;
}

/** Creates, configures and starts a node; resolves once it answers SMTP and SSH. */
export async function startPostfixNode(opts: PostfixNodeOptions): Promise<PostfixNode> {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(opts.name)) throw new Error(`invalid node name ${JSON.stringify(opts.name)}`);
  if (!/^\[127\.\d+\.\d+\.\d+\]:\d+$/.test(opts.sinkRelayhost)) {
    throw new Error(
      `sinkRelayhost must be a bracketed loopback literal like [127.0.0.1]:2525, got ${opts.sinkRelayhost}`,
    );
  }
  if (!reaped) {
    reaped = true;
    await reapStaleLabNodes();
  }
  installExitHook();

  let baseDir: string;
  if (opts.baseDir !== undefined) {
    if (!path.isAbsolute(opts.baseDir)) throw new Error('baseDir must be absolute (postfix -c needs an absolute path)');
    baseDir = opts.baseDir;
    await stopProcessesAt(baseDir);
    await rm(baseDir, { recursive: true, force: true });
    await mkdir(baseDir, { recursive: true });
  } else {
    baseDir = await mkdtemp(path.join(os.tmpdir(), `${DIR_PREFIX}${opts.name}-`));
  }
  const handle = { baseDir };
  live.add(handle);
  try {
    return await buildNode(opts, baseDir, handle);
  } catch (err) {
    await stopProcessesAt(baseDir);
    await rm(baseDir, { recursive: true, force: true });
    live.delete(handle);
    throw err;
  }
}

async function buildNode(opts: PostfixNodeOptions, baseDir: string, handle: { baseDir: string }): Promise<PostfixNode> {
  // The postfix user must traverse into the queue and data dirs (mkdtemp makes 0700).
  await chmod(baseDir, 0o755);
  await writeFile(path.join(baseDir, 'owner'), processToken());
  // Identifies this incarnation: a handle whose baseDir was taken over by a newer node must not stop it.
  const instanceId = randomBytes(6).toString('hex');
  await writeFile(path.join(baseDir, 'instance'), instanceId);
  const configDir = path.join(baseDir, 'etc');
  const queueDir = path.join(baseDir, 'spool');
  const dataDir = path.join(baseDir, 'data');
  const logDir = path.join(baseDir, 'log');
  const sshDir = path.join(baseDir, 'ssh');
  for (const d of [configDir, queueDir, dataDir, logDir, sshDir]) await mkdir(d, { mode: 0o755 });
  const { uid, gid } = await postfixOwner();
  await chown(dataDir, uid, gid);
  await chmod(dataDir, 0o700);
  await chmod(sshDir, 0o700);

  const syslogName = `postfix-${opts.name}`;
  const maillogPath = path.join(logDir, 'maillog');
  const caFile = path.join(configDir, 'lab-ca.pem');
  await writeFile(caFile, (opts.tlsCaCerts ?? []).join('\n'));
  const env = postfixEnv(configDir);
  // Master and sshd enter the namespace as they start; their children and SSH sessions inherit it.
  const nsDir = opts.privateHosts === undefined ? undefined : path.join(baseDir, 'ns');
  if (nsDir !== undefined) await writePrivateHostsFiles(nsDir, opts.privateHosts ?? {});
  const launch = (cmd: string, args: string[]): [string, string[]] =>
    nsDir === undefined ? [cmd, args] : inPrivateHosts(nsDir, cmd, args);
  const checkNamespace = (pid: number | undefined, what: string) => {
    if (nsDir !== undefined) assertInPrivateHosts(pid ?? 0, nsDir, `${what} of ${opts.name}`);
  };
  const bannerToken = instanceId;
  const smtpHost = opts.smtpHost ?? LOOPBACK;
  // smtp_sasl_auth_enable = yes without smtp_sasl_password_maps makes every smtp process die
  // ("fatal: specify a password table") and master throttles the service: ship an empty map.
  const saslPasswd = path.join(configDir, 'sasl_passwd');
  await writeFile(saslPasswd, '', { mode: 0o600 });

  // --- Postfix (retry with another port if the listener port was taken meanwhile) ---
  let smtpPort = opts.smtpPort ?? (await freePort());
  for (let attempt = 1; ; attempt++) {
    await writeFile(
      path.join(configDir, 'main.cf'),
      mainCf({
        name: opts.name,
        baseDir,
        configDir,
        syslogName,
        sinkRelayhost: opts.sinkRelayhost,
        bannerToken,
        caFile,
        smtpHost,
        extra: opts.mainCf ?? {},
      }),
    );
    await writeFile(path.join(configDir, 'master.cf'), masterCf(smtpHost, smtpPort));
    // Postfix re-reads a main.cf changed within the last ~2 s in 300 ms steps until it is older
    // (load_file(3): "file being edited" guard); backdating saves ~1.8 s at start.
    await backdate(path.join(configDir, 'main.cf'));
    if (attempt === 1) await runOk('/usr/sbin/postmap', [`hash:${saslPasswd}`], { env });
    // `postfix start` runs `master -w`: it returns once master initialized (listeners bound) or failed.
    const [startCmd, startArgs] = launch('/usr/sbin/postfix', ['-c', configDir, 'start']);
    const start = await run(startCmd, startArgs, { env, timeoutMs: 30_000 });
    if (start.code === 0) {
      // The banner carries this instance's token, so another server on a reused port cannot fool us.
      await waitUntil(
        async () => (await smtpGreeting(smtpPort, smtpHost, 1000))?.includes(bannerToken) === true,
        15_000,
        `postfix node ${opts.name} to answer SMTP on ${smtpPort}`,
        50,
      );
      checkNamespace(livePid(masterPidFile(baseDir), 'master'), 'postfix master');
      break;
    }
    const log = await readFile(maillogPath, 'utf8').catch(() => '');
    if (!/bind .*Address already in use/.test(log + start.stderr)) {
      throw new Error(
        `postfix -c ${configDir} start exited ${start.code}: ${start.stderr.trim()}\n${await tail(maillogPath)}`,
      );
    }
    await stopProcessesAt(baseDir);
    if (opts.smtpPort !== undefined || attempt >= 3) throw new Error(`SMTP port ${smtpPort} is taken`);
    await rm(maillogPath, { force: true });
    smtpPort = await freePort();
  }

  // --- sshd ---
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = path.join(sshDir, 'ssh_host_ed25519_key');
  const clientKey = path.join(sshDir, 'client_ed25519');
  await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${opts.name}-host`, '-f', hostKey]);
  await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `relayplane-lab-client`, '-f', clientKey]);
  const clientPub = await readFile(`${clientKey}.pub`, 'utf8');
  await writeFile(path.join(sshDir, 'authorized_keys'), clientPub, { mode: 0o600 });
  const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/);
  const hostKeyLine = `${hostPub[0]} ${hostPub[1]}`;
  const fp = (await runOk('ssh-keygen', ['-lf', `${hostKey}.pub`])).stdout.trim().split(/\s+/)[1] ?? '';
  const privateKey = await readFile(clientKey, 'utf8');
  const sshConfigPath = path.join(sshDir, 'sshd_config');
  const sshLogPath = path.join(sshDir, 'sshd.log');
  const home = opts.ownHome !== false ? path.join(baseDir, 'home') : undefined;
  if (home !== undefined) await mkdir(home, { mode: 0o700 });
  let sshPort = opts.sshPort ?? (await freePort());

  const startSshOnce = async (): Promise<'up' | 'port-taken'> => {
    if (livePid(sshdPidFile(baseDir), 'sshd') !== undefined) return 'up';
    await rm(sshdPidFile(baseDir), { force: true });
    await writeFile(sshConfigPath, sshdConfig({ sshDir, port: sshPort, configDir, home }));
    const logBefore = (await readFile(sshLogPath, 'utf8').catch(() => '')).length;
    // Without -D, sshd (OpenSSH 9.2) checks its config, daemonizes and only then binds: exit 0 does
    // not mean it listens. The pid file appears after the bind; a bind failure only shows in the log.
    const [sshdCmd, sshdArgs] = launch('/usr/sbin/sshd', ['-f', sshConfigPath, '-E', sshLogPath]);
    const r = await run(sshdCmd, sshdArgs, { timeoutMs: 15_000 });
    const newLog = async () => (await readFile(sshLogPath, 'utf8').catch(() => '')).slice(logBefore);
    if (r.code !== 0) throw new Error(`sshd exited ${r.code}: ${r.stderr.trim()}\n${await newLog()}`);
    const outcome = await waitUntil(
      async () => {
        if (livePid(sshdPidFile(baseDir), 'sshd') !== undefined) return 'up' as const;
        const log = await newLog();
        if (/Address already in use|Cannot bind any address/.test(log)) return 'port-taken' as const;
        if (/fatal|error/i.test(log)) throw new Error(`sshd failed to start:\n${log}`);
        return undefined;
      },
      10_000,
      `sshd of ${opts.name} to listen on ${sshPort}`,
      20,
    );
    if (outcome === 'port-taken') return outcome;
    checkNamespace(livePid(sshdPidFile(baseDir), 'sshd'), 'sshd');
    return 'up';
  };
  for (let attempt = 1; ; attempt++) {
    if ((await startSshOnce()) === 'up') break;
    if (opts.sshPort !== undefined || attempt >= 3) throw new Error(`SSH port ${sshPort} is taken`);
    sshPort = await freePort();
  }

  let stopped = false;
  const node: PostfixNode = {
    name: opts.name,
    baseDir,
    configDir,
    queueDir,
    dataDir,
    syslogName,
    smtpHost,
    smtpPort,
    ssh: {
      host: LOOPBACK,
      port: sshPort,
      username: 'root',
      privateKeyPath: clientKey,
      privateKey,
      hostKeyLine,
      hostKeyFingerprint: fp,
    },
    maillogPath,
    sshLogPath,
    async stopSsh() {
      const pid = livePid(sshdPidFile(baseDir), 'sshd');
      if (pid !== undefined) await terminateTree(pid, 2000);
      await rm(sshdPidFile(baseDir), { force: true });
    },
    async startSsh() {
      if (stopped) throw new Error(`node ${opts.name} is stopped`);
      // Same port on purpose (clients keep their target); a just-closed listener may need a moment.
      await waitUntil(
        async () => (await startSshOnce()) === 'up',
        5000,
        `sshd of ${opts.name} to start on ${sshPort}`,
        200,
      );
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      live.delete(handle);
      const current = await readFile(path.join(baseDir, 'instance'), 'utf8').catch(() => '');
      if (current !== instanceId) return; // baseDir now belongs to another node (or is gone)
      await stopProcessesAt(baseDir);
      await rm(baseDir, { recursive: true, force: true });
    },
    async postconf(args) {
      return (await runOk('/usr/sbin/postconf', ['-c', configDir, ...args], { env })).stdout;
    },
    exec(cmd) {
      return run('/bin/sh', ['-c', cmd], { env, cwd: configDir });
    },
    async reload() {
      await runOk('/usr/sbin/postfix', ['-c', configDir, 'reload'], { env });
    },
    async flushQueue() {
      await runOk('/usr/sbin/postqueue', ['-c', configDir, '-f'], { env });
    },
    async queue() {
      const out = (await runOk('/usr/sbin/postqueue', ['-c', configDir, '-j'], { env })).stdout;
      return out
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as QueueEntry);
    },
    async trustCa(pem) {
      const cur = await readFile(caFile, 'utf8').catch(() => '');
      await writeFile(caFile, `${cur.trimEnd()}\n${pem.trim()}\n`);
    },
  };
  return node;
}

/** Sets a file's mtime 10 s into the past (see the load_file note where it is used). */
export async function backdate(file: string, seconds = 10): Promise<void> {
  const t = new Date(Date.now() - seconds * 1000);
  await utimes(file, t, t);
}

async function tail(file: string, lines = 20): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').slice(-lines).join('\n');
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const h of live) killAtSync(h.baseDir);
    live.clear();
  });
}

/** Stops every node this process started and has not stopped yet (for afterAll safety nets). */
export async function stopAllLabNodes(): Promise<void> {
  const dirs = [...live];
  await Promise.all(
    dirs.map(async (h) => {
      await stopProcessesAt(h.baseDir);
      await rm(h.baseDir, { recursive: true, force: true });
      live.delete(h);
    }),
  );
}
