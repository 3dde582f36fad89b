/**
 * A throw-away Postfix config dir holding a rendered bundle, queried with the real tools:
 * `postmap` (build + batch `-q -`), `postconf -c DIR` (-e, -M, -n, -P, -x -h) and `postfix check`.
 * Optionally starts the instance (root only) with a loopback smtpd to test submissions.
 * No DNS: nothing here delivers mail; the smtpd test stops at RCPT.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { masterCfLine, renderBundle, type Bundle } from '../../src/postfix/index.js';
import { missingRoot, missingTools, requirementGate, toolGate } from '../lab/requirements.js';

const SBIN = ['/usr/sbin', '/usr/local/sbin', '/usr/bin', '/sbin'];

function findBinary(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SBIN]) {
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return path.join(dir, name);
    } catch {
      /* next */
    }
  }
  return undefined;
}

export const POSTMAP = findBinary('postmap');
export const POSTCONF = findBinary('postconf');
export const POSTFIX = findBinary('postfix');
/** The gate of a suite that runs postmap/postconf (see test/lab/requirements.ts). */
export const postfixToolsGate = (suite: string): boolean => toolGate(suite, ['postmap', 'postconf']);
/** The gate of a suite that starts a Postfix instance: the tools, postfix itself and root. */
export const postfixInstanceGate = (suite: string): boolean =>
  requirementGate(suite, [
    ...missingTools(['postmap', 'postconf', 'postfix']),
    ...missingRoot(),
    ...(process.platform === 'linux' ? [] : ['Linux']),
  ]);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], input = ''): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: { ...process.env, LANG: 'C', LC_ALL: 'C' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

export async function runClean(cmd: string, args: string[], input = ''): Promise<string> {
  const r = await run(cmd, args, input);
  // postmap and postconf exit 0 on warnings: any stderr output is a failure here.
  if (r.code !== 0 || r.stderr !== '') throw new Error(`${cmd} ${args.join(' ')} → ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** `name = value` lines → Map. */
export function parseParams(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_]+) =(?: (.*))?$/.exec(line);
    if (m?.[1] !== undefined) out.set(m[1], m[2] ?? '');
  }
  return out;
}

function baseMainCf(base: string): string {
  const p: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: path.join(base, 'spool'),
    data_directory: path.join(base, 'data'),
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    syslog_name: 'postfix-rp-compiler-test',
    maillog_file: path.join(base, 'log', 'maillog'),
    maillog_file_prefixes: path.join(base, 'log'),
    myhostname: 'compiler.lab.test',
    mydomain: 'lab.test',
    myorigin: '$myhostname',
    mydestination: '',
    local_recipient_maps: '',
    alias_maps: '',
    alias_database: '',
    inet_interfaces: 'loopback-only',
    mynetworks: '127.0.0.0/8',
    smtpd_relay_restrictions: 'permit_mynetworks, reject',
    smtpd_peername_lookup: 'no',
    smtp_dns_support_level: 'disabled',
    biff: 'no',
    readme_directory: 'no',
  };
  return Object.entries(p)
    .map(([k, v]) => `${k} = ${v}\n`)
    .join('');
}

function baseMasterCf(smtpPort: number): string {
  return [
    `127.0.0.1:${smtpPort} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'tlsmgr unix - - n 1000? 1 tlsmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'proxywrite unix - - n - 1 proxymap',
    'smtp unix - - n - - smtp',
    'relay unix - - n - - smtp',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
    '',
  ].join('\n');
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * Postfix re-reads a config file that changed within the last second ("hot"), dozing 300 ms each
 * time: back-dating main.cf/master.cf after every write keeps each postconf call at ~5 ms.
 */
async function cool(etc: string): Promise<void> {
  const past = new Date(Date.now() - 60_000);
  for (const f of ['main.cf', 'master.cf']) await utimes(path.join(etc, f), past, past);
}

export interface StagedConfig {
  base: string;
  etc: string;
  /** The bundle rendered for `etc` (table paths point into it). */
  rendered: Bundle;
  smtpPort: number;
  postconf(args: string[]): Promise<string>;
  /** Batch `postmap -q -`: the keys found, with their values. */
  query(mapSpec: string, keys: string[]): Promise<Map<string, string>>;
  /** `hash:<etc>/<name>` or `regexp:<etc>/<name>` for a bundle file. */
  mapSpec(name: string): string;
  cleanup(): Promise<void>;
}

/** Writes main.cf/master.cf, the bundle's files (with their modes), postmaps, applies postconf. */
export async function stageBundle(bundle: Bundle): Promise<StagedConfig> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'relayplane-compiler-'));
  await chmod(base, 0o755);
  const etc = path.join(base, 'etc');
  for (const d of ['etc', 'spool', 'data', 'log']) await mkdir(path.join(base, d), { mode: 0o755 });
  const smtpPort = await freePort();
  await writeFile(path.join(etc, 'main.cf'), baseMainCf(base));
  await writeFile(path.join(etc, 'master.cf'), baseMasterCf(smtpPort));
  await cool(etc);
  if (process.getuid?.() === 0) {
    // `postfix check` (and start) want the data directory owned by mail_owner.
    const id = (flag: string) => Number(spawnSync('id', [flag, 'postfix'], { encoding: 'utf8' }).stdout.trim());
    await chown(path.join(base, 'data'), id('-u'), id('-g'));
    await chmod(path.join(base, 'data'), 0o700);
  }
  const rendered = renderBundle(bundle, etc);
  const postconf = async (args: string[]) => {
    const out = await runClean(POSTCONF ?? 'postconf', ['-c', etc, ...args]);
    if (args.some((a) => ['-e', '-M', '-P', '-X', '-#'].includes(a))) await cool(etc);
    return out;
  };
  const mapSpec = (name: string) =>
    `${bundle.files[name]?.mapType === 'hash' ? 'hash' : 'regexp'}:${path.join(etc, name)}`;
  for (const [name, file] of Object.entries(rendered.files)) {
    const file_ = path.join(etc, name);
    await writeFile(file_, file.content, { mode: file.mode });
    await chmod(file_, file.mode);
    if (file.mapType === 'hash') await runClean(POSTMAP ?? 'postmap', ['-c', etc, mapSpec(name)]);
  }
  await postconf(['-e', ...Object.entries(rendered.mainCf).map(([k, v]) => `${k}=${v}`)]);
  if (rendered.masterCf.length > 0)
    await postconf(['-M', ...rendered.masterCf.map((s) => `${s.name}/${s.type}=${masterCfLine(s)}`)]);
  return {
    base,
    etc,
    rendered,
    smtpPort,
    postconf,
    mapSpec,
    async query(spec, keys) {
      const found = new Map<string, string>();
      if (keys.length === 0) return found;
      // postmap -q exits 1 when no key was found at all: only stderr output is a failure.
      const r = await run(POSTMAP ?? 'postmap', ['-c', etc, '-q', '-', spec], keys.map((k) => `${k}\n`).join(''));
      if (r.code > 1 || r.stderr !== '') throw new Error(`postmap -q - ${spec} → ${r.code}: ${r.stderr.trim()}`);
      const out = r.stdout;
      for (const line of out.split('\n')) {
        const tab = line.indexOf('\t');
        if (tab > 0) found.set(line.slice(0, tab), line.slice(tab + 1));
      }
      return found;
    },
    async cleanup() {
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** Starts the staged instance (root only); returns a stop function. */
export async function startInstance(cfg: StagedConfig): Promise<() => Promise<void>> {
  const started = await run(POSTFIX ?? 'postfix', ['-c', cfg.etc, 'start']);
  if (started.code !== 0) throw new Error(`postfix start failed: ${started.stderr}`);
  return async () => {
    await run(POSTFIX ?? 'postfix', ['-c', cfg.etc, 'stop']);
  };
}

/**
 * Submits one message with its envelope addresses exactly as given (SMTP client libraries fold a
 * domain's case or drop a trailing dot before Postfix could), and fails unless smtpd accepted it.
 */
export async function submitVerbatim(
  port: number,
  message: { from: string; to: string; messageId: string; body: string },
): Promise<void> {
  const replies = await smtpDialogue(port, [
    'EHLO client.lab.test',
    `MAIL FROM:<${message.from}>`,
    `RCPT TO:<${message.to}>`,
    'DATA',
    `Message-ID: ${message.messageId}\r\nSubject: verbatim\r\n\r\n${message.body}\r\n.`,
    'QUIT',
  ]);
  const codes = replies.slice(1, 5).map((reply) => reply.slice(0, 3));
  if (codes.join(' ') !== '250 250 354 250')
    throw new Error(`smtpd did not accept ${message.from} -> ${message.to}: ${replies.join(' | ')}`);
}

/**
 * A minimal SMTP client: sends each command, returns the final reply line of each. `host` is the
 * listener's address (a lab node's `smtpHost`: 127.0.0.1 or ::1).
 */
export async function smtpDialogue(port: number, commands: string[], host = '127.0.0.1'): Promise<string[]> {
  const deadline = Date.now() + 15_000;
  let socket: net.Socket | undefined;
  while (socket === undefined) {
    socket = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (socket === undefined) {
      if (Date.now() > deadline) throw new Error('smtpd did not come up');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const sock = socket;
  let buffer = '';
  const waiters: Array<(line: string) => void> = [];
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\r\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 2);
      if (/^\d{3} /.test(line)) waiters.shift()?.(line);
    }
  });
  const reply = () => new Promise<string>((resolve) => waiters.push(resolve));
  const replies: string[] = [];
  const banner = reply();
  await banner;
  for (const command of commands) {
    const r = reply();
    sock.write(`${command}\r\n`);
    replies.push(await r);
  }
  sock.end();
  return replies;
}
