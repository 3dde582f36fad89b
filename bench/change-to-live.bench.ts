import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { buildApp } from '../src/app.js';
import { CHANGE_STEPS } from '../src/deploy/index.js';
import { applyMigrations } from '../src/db/migrate.js';
import { createPrismaClient } from '../src/db/prisma.js';
import { startDelayProxy, type DelayProxy } from '../test/lab/delay-proxy.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../test/lab/postfix-node.js';
import { LAB_INSTALL_COMMAND, labAvailable } from '../test/lab/requirements.js';
import { startSmartHost, type SmartHost } from '../test/lab/smart-host.js';
import { sleep, waitUntil } from '../test/lab/util.js';
import { machine, median, percentile, recordSection, ROOT, scratchDatabase } from './lib.js';
import { TICK_MS, labNodeCpuMs, mainThreadCpuMs, procCpuMs, processChildren } from './proc-cpu.js';
import { seed } from './seed.js';

/**
 * Change-to-live latency (goals: p50 ≤ 1.5 s for 1 node, ≤ 3 s for 20). An API write (a new
 * verified sender domain) → NOTIFY → the sync worker's debounce → compile → deploy over SSH →
 * every node reloaded with the new version. t0 is taken just before the HTTP request; t1 is when
 * EVERY node's `<configDir>/relayplane/current/VERSION` (read from the local filesystem: lab nodes
 * are local) is a new version AND its maillog shows master's `reload` after t0; once the
 * deployment finished, that version is checked to be the one the change compiles to
 * (`GET /v1/nodes/{id}`). Nothing polls the API before t1, and the nodes' files are polled by a
 * watcher process of the bench's own (bench/live-watcher.ts): the app runs in this process, and
 * work every few milliseconds here would take its CPU while it works on the change (and count as
 * the control plane's).
 * Changes are sequential: the next starts once the previous deployment finished (verify, prune).
 *
 * The app is the real one (buildApp with the SSH settings and the sync worker `relayplane serve`
 * uses), listening on 127.0.0.1, on a scratch database; the nodes are lab Postfix instances with
 * their own sshd on loopback (test/lab), relaying to a loopback sink. Nothing leaves the machine.
 *
 * Environment: BENCH_NODES (node counts, default "1,20"), BENCH_CHANGES (per run, default 30),
 * BENCH_PROFILES ("tuned,default"): tuned = debounce 25 ms, concurrency = node count; default =
 * RELAYPLANE_SYNC_DEBOUNCE_MS / RELAYPLANE_DEPLOY_CONCURRENCY defaults (500 ms, 4);
 * BENCH_DELAYS_MS (one-way delays to a 1-node row's node, default "0,20,80", through a loopback
 * delay proxy: test/lab/delay-proxy.ts); BENCH_LOGIN_ROWS ("1" by default: the 1-node tuned row
 * also runs with an empty login and with a new connection per deploy; "0": not); BENCH_DOMAINS
 * (seeded domains, bench/seed.ts: then node counts "1,2,4", the tuned profile, four kinds of change
 * in turn, CPU per node and projections to 20, 100 and 1,000 nodes); BENCH_KINDS (with
 * BENCH_DOMAINS: some of the kinds only, e.g. "relay-limit", recorded in a section of their own).
 *
 * Nodes log in as admins' servers often do: root's ~/.bashrc costs ≈ 0.5 s (`sleep 0.5`, as this
 * machine's root `pyenv init`), sourced by bash for every session sshd starts.
 */
/** Seeded sender domains (bench/seed.ts, as the compile benchmark's); changes then come in four kinds. */
const SEED_DOMAINS = Number(process.env.BENCH_DOMAINS ?? 0);
const NODE_COUNTS = (process.env.BENCH_NODES ?? (SEED_DOMAINS > 0 ? '1,2,4' : '1,20'))
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 30);
const PROFILE_NAMES = (process.env.BENCH_PROFILES ?? (SEED_DOMAINS > 0 ? 'tuned' : 'tuned,default'))
  .split(',')
  .filter((p) => p !== '');
const DELAYS_MS = (process.env.BENCH_DELAYS_MS ?? (SEED_DOMAINS > 0 ? '0' : '0,20,80'))
  .split(',')
  .map(Number)
  .filter((d) => d >= 0);
const LOGIN_ROWS = (process.env.BENCH_LOGIN_ROWS ?? (SEED_DOMAINS > 0 ? '0' : '1')) !== '0';
/** What a node's login costs: slow = a ~/.bashrc sleeping 0.5 s; empty = an empty one. */
type Login = 'slow' | 'empty';
const BASHRC: Record<Login, string> = { slow: 'sleep 0.5\n', empty: '' };

interface RowPlan {
  profile: Profile;
  count: number;
  login: Login;
  /** One-way delay between the control plane and each node. */
  delayMs: number;
  /** RELAYPLANE_SSH_IDLE_SECONDS=0: a new SSH connection (and login) for every deploy. */
  cold: boolean;
}
const LOOPBACK_DNS = (process.env.RELAYPLANE_DNS_SERVERS ?? '127.0.0.1:9').split(',');
const RECONCILE_INTERVAL_MS = 60_000; // RELAYPLANE_SYNC_INTERVAL_SECONDS default
const CHANGE_TIMEOUT_MS = 60_000;
/**
 * Goals, 1 node: p50 ≤ 0.3 s + 3 round trips with a realistic login (issue 23's 0.3 s; issue 24
 * asked 0.5 s), for the tuned debounce (the default's 500 ms alone is more than the budget), ≤ 1.5 s
 * with the defaults; 20 nodes: ≤ 3 s.
 */
const goalMs = (r: { nodes: number; delayMs: number; profile: string }): number | undefined =>
  SEED_DOMAINS > 0
    ? r.nodes === 1 && r.profile === 'tuned'
      ? 500
      : undefined
    : r.nodes === 1
      ? r.profile === 'tuned'
        ? 300 + 3 * 2 * r.delayMs
        : 1500
      : r.nodes === 20
        ? 3000
        : undefined;

interface Profile {
  name: string;
  debounceMs: (nodes: number) => number;
  concurrency: (nodes: number) => number;
}
const PROFILES: Record<string, Profile> = {
  tuned: { name: 'tuned', debounceMs: () => 25, concurrency: (n) => n },
  default: { name: 'default', debounceMs: () => 500, concurrency: () => 4 },
};

interface StepJson {
  step: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  ok: boolean;
}
interface DeploymentJson {
  id: string;
  version: string;
  reason: string;
  state: string;
  startedAt: string | null;
  finishedAt: string | null;
  nodes: Array<{
    nodeName: string;
    state: string;
    attempts: number;
    startedAt: string | null;
    finishedAt: string | null;
    error: string | null;
    steps: StepJson[];
  }>;
}

interface ChangeSample {
  latencyMs: number;
  /** Until the deployment run finished (verify after the reload and prune included). */
  doneMs: number;
  /** t0 → the deployment's first node started (debounce, compile, deployment rows). */
  firstNodeStartMs: number;
  /** t0 → the last node started (queueing behind the concurrency limit). */
  lastNodeStartMs: number;
  /** Per node: node start → SSH connected (first step), and each step's duration. */
  perNode: Array<{ connectMs: number; steps: Record<string, number>; reloadDoneMs: number }>;
  /** A periodic reconcile overlapped this change. */
  reconcileOverlap: boolean;
  attempts: number;
  /** CPU used from t0 until the run was done (all cores). */
  cpu: CpuSnapshot;
}

interface RunResult {
  /** The kind of each measured change (onboard, rotate, disable, relay limit). */
  kinds: string[];
  profile: string;
  login: Login;
  delayMs: number;
  cold: boolean;
  nodes: number;
  debounceMs: number;
  concurrency: number;
  samples: ChangeSample[];
}

const profileLabel = (r: RunResult) => `debounce ${r.debounceMs} ms, concurrency ${r.concurrency}`;
const loginLabel = (r: RunResult) =>
  `${r.login === 'slow' ? '0.5 s .bashrc' : 'empty'}${r.cold ? ', new connection per deploy' : ''}`;

const ms = (v: number) => `${Math.round(v)} ms`;
const s = (v: number) => `${(v / 1000).toFixed(2)} s`;

function liveVersion(node: PostfixNode): string | null {
  const file = path.join(node.configDir, 'relayplane', 'current', 'VERSION');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * t1's watcher (bench/live-watcher.ts) in a process of its own, so that polling the nodes' files
 * does not count as the control plane's CPU (its CPU is "other"). One request at a time.
 */
function startLiveWatcher() {
  const script = fileURLToPath(new URL('./live-watcher.ts', import.meta.url));
  const child = spawn(process.execPath, [...process.execArgv, script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async live(
      watched: Array<{ versionFile: string; maillog: string; offset: number; before: string | null }>,
      timeoutMs: number,
    ): Promise<{ liveAt: number[]; versions: string[] }> {
      child.stdin.write(`${JSON.stringify({ nodes: watched, timeoutMs })}\n`);
      const { value, done } = await lines.next();
      if (done === true) throw new Error('the live watcher ended');
      const answer = JSON.parse(value as string) as { liveAt: number[]; versions: string[] } | { error: string };
      if ('error' in answer) throw new Error(`waiting for the change to be live: ${answer.error}`);
      return answer;
    },
    close() {
      child.stdin.end();
    },
  };
}

// --- CPU accounting (Linux /proc, clock ticks → ms): who burns the 2 cores during a change ---
function postgresCpuMs(): number {
  let total = 0;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== 'postgres') continue;
    } catch {
      continue;
    }
    // The postmaster also carries its exited backends (cutime); backends only their own time.
    const ppidComm = (() => {
      try {
        const st = readFileSync(`/proc/${e}/stat`, 'utf8');
        const ppid = st.slice(st.lastIndexOf(')') + 2).split(' ')[1];
        return readFileSync(`/proc/${ppid}/comm`, 'utf8').trim();
      } catch {
        return '';
      }
    })();
    total += procCpuMs(Number(e), ppidComm !== 'postgres');
  }
  return total;
}
function systemBusyMs(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return ((cpu[0] ?? 0) + (cpu[1] ?? 0) + (cpu[2] ?? 0) + (cpu[5] ?? 0) + (cpu[6] ?? 0) + (cpu[7] ?? 0)) * TICK_MS;
}
interface CpuSnapshot {
  /** This process's CPU when the snapshot started, and when it ended (its /proc scan between). */
  controlPlane: number;
  controlPlaneAfter: number;
  /** The process's main thread alone, at the same two points. */
  mainThread: number;
  mainThreadAfter: number;
  nodeSsh: number;
  postfix: number;
  postgres: number;
  total: number;
}
function cpuSnapshot(active: PostfixNode[]): CpuSnapshot {
  const usage = process.cpuUsage();
  const mainThread = mainThreadCpuMs();
  const children = processChildren();
  // The sshd listener reaps each connection's sshd, which reaped the commands it ran; connections
  // still open count with their own and their reaped sessions' CPU.
  const nodes = active.map((n) => labNodeCpuMs(n, children));
  const snapshot = {
    controlPlane: (usage.user + usage.system) / 1000,
    controlPlaneAfter: 0,
    mainThread,
    mainThreadAfter: 0,
    nodeSsh: nodes.reduce((sum, n) => sum + n.session, 0),
    postfix: nodes.reduce((sum, n) => sum + n.postfix, 0),
    postgres: postgresCpuMs(),
    total: systemBusyMs(),
  };
  const after = process.cpuUsage();
  snapshot.controlPlaneAfter = (after.user + after.system) / 1000;
  snapshot.mainThreadAfter = mainThreadCpuMs();
  return snapshot;
}
function cpuDelta(a: CpuSnapshot, b: CpuSnapshot): CpuSnapshot {
  return {
    // From the end of the first snapshot to the start of the second: the bench's /proc scans are not the app's.
    controlPlane: b.controlPlane - a.controlPlaneAfter,
    controlPlaneAfter: b.controlPlaneAfter - a.controlPlaneAfter,
    mainThread: b.mainThread - a.mainThreadAfter,
    mainThreadAfter: b.mainThreadAfter - a.mainThreadAfter,
    nodeSsh: b.nodeSsh - a.nodeSsh,
    postfix: b.postfix - a.postfix,
    postgres: b.postgres - a.postgres,
    total: b.total - a.total,
  };
}

// ---------------------------------------------------------------------------------------------

const lab = labAvailable();
if (!lab.ok)
  throw new Error(`change-to-live needs the lab (missing: ${lab.missing.join(', ')}); install: ${LAB_INSTALL_COMMAND}`);

const wantedNodes = Math.max(...NODE_COUNTS);
let sink: SmartHost | undefined;
let nodes: PostfixNode[] = [];
let database: Awaited<ReturnType<typeof scratchDatabase>> | undefined;
let current: { app: FastifyInstance; close(): Promise<void> } | undefined;
let cleaning: Promise<void> | undefined;
let proxies: DelayProxy[] = [];

async function cleanup() {
  cleaning ??= (async () => {
    await current?.close().catch((e: unknown) => process.stderr.write(`closing the app: ${String(e)}\n`));
    await Promise.allSettled(proxies.map((p) => p.close()));
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await stopAllLabNodes();
    await sink?.close().catch(() => undefined);
    await database?.drop().catch((e: unknown) => process.stderr.write(`dropping the scratch database: ${String(e)}\n`));
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

const log = (line: string) => process.stdout.write(`${line}\n`);
const ALL_CHANGE_KINDS = ['onboard', 'rotate', 'disable', 'relay limit'];
/** BENCH_KINDS: some of the kinds only ("relay-limit", "onboard,rotate"), in their own section. */
const CHANGE_KINDS = [
  ...new Set(
    (process.env.BENCH_KINDS ?? ALL_CHANGE_KINDS.join(','))
      .split(',')
      .map((k) => k.trim().replace('-', ' '))
      .filter((k) => k !== ''),
  ),
];
const unknownKinds = CHANGE_KINDS.filter((k) => !ALL_CHANGE_KINDS.includes(k));
if (unknownKinds.length > 0 || CHANGE_KINDS.length === 0)
  throw new Error(
    `BENCH_KINDS: unknown kind ${unknownKinds.join(', ') || '(none given)'}; have ${ALL_CHANGE_KINDS.map((k) => k.replace(' ', '-')).join(', ')}`,
  );
const someKinds = CHANGE_KINDS.length < ALL_CHANGE_KINDS.length;
if (someKinds && SEED_DOMAINS === 0)
  throw new Error('BENCH_KINDS needs BENCH_DOMAINS (a handful of domains only onboards)');
const KIND_TEXT: Record<string, string> = {
  onboard: 'onboard a verified domain',
  rotate: "rotate a domain's credential (create + activate)",
  disable: 'disable a domain',
  'relay limit': "set a relay's concurrency limit or clear it again (relay after relay)",
};
const kindsLabel = CHANGE_KINDS.map((k) => k.replace(' ', '-')).join(',');
type Api = <T = Record<string, unknown>>(method: string, url: string, body?: object) => Promise<T>;

async function seededTargets(
  url: string,
): Promise<{ domains: Array<{ id: string; relayId: string; name: string }>; relays: string[] }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const domains = await client.query<{ id: string; relayId: string; name: string }>(
      `SELECT d.id, d.relay_id AS "relayId", d.name FROM domains d JOIN relay_credentials c ON c.domain_id = d.id AND c.status = 'active'
        WHERE d.status = 'verified' ORDER BY d.name LIMIT 400`,
    );
    const relays = await client.query<{ id: string }>(
      `SELECT id FROM relays WHERE tenant_id IS NULL AND host LIKE '%.relay.example' ORDER BY name`,
    );
    return { domains: domains.rows, relays: relays.rows.map((r) => r.id) };
  } finally {
    await client.end();
  }
}
const masterKey = randomBytes(32);
const jwtSecret = randomBytes(32).toString('hex');
const results: RunResult[] = [];
let nodeShortfall = '';
const startedAt = new Date();

try {
  // --- lab: one sink smart host, the nodes ---
  sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
  const t = Date.now();
  const started: PostfixNode[] = [];
  const failures: string[] = [];
  // A few at a time: starting 20 Postfix instances at once on 2 cores only makes each slower.
  for (let i = 0; i < wantedNodes; i += 5) {
    const batch = Array.from({ length: Math.min(5, wantedNodes - i) }, (_, j) => i + j + 1);
    const settled = await Promise.allSettled(
      batch.map((k) =>
        startPostfixNode({
          name: `live${k}`,
          sinkRelayhost: sink!.nexthop,
          tlsCaCerts: [sink!.caCertPem],
          ownHome: true,
        }),
      ),
    );
    for (const r of settled) {
      if (r.status === 'fulfilled') started.push(r.value);
      else failures.push(String(r.reason).slice(0, 300));
    }
  }
  nodes = started;
  log(`started ${nodes.length}/${wantedNodes} lab nodes in ${s(Date.now() - t)}`);
  if (failures.length > 0) {
    nodeShortfall = `${failures.length} of ${wantedNodes} nodes did not start (${failures[0]})`;
    log(nodeShortfall);
  }
  if (nodes.length === 0) throw new Error('no lab node started');
  // The control plane has one key: the first node's lab client key, authorized on every node.
  const publicKey = await readFile(`${nodes[0]!.ssh.privateKeyPath}.pub`, 'utf8');
  for (const n of nodes.slice(1)) await appendFile(path.join(n.baseDir, 'ssh', 'authorized_keys'), publicKey);

  database = await scratchDatabase('rp_bench_live');
  await applyMigrations({ databaseUrl: database.url });
  if (SEED_DOMAINS > 0) {
    const seedStart = Date.now();
    await seed(database.url, masterKey, SEED_DOMAINS);
    log(`seeded ${SEED_DOMAINS} domains in ${s(Date.now() - seedStart)}`);
  }

  const ids: { tenant?: string; relay?: string; nodes: string[] } = { nodes: [] };
  // Seeded rows the mixed changes act on: domains with an active credential, shared relays.
  const targets = SEED_DOMAINS > 0 ? await seededTargets(database.url) : { domains: [], relays: [] };
  const counts: Record<string, number> = {};
  /** One change of the given kind through the API (a rotation is two calls: create, then activate). */
  async function makeChange(api: Api, kind: string, name: string, n: number): Promise<void> {
    const k = (counts[kind] = (counts[kind] ?? 0) + 1);
    const half = Math.floor(targets.domains.length / 2);
    if (kind === 'onboard') {
      await api('POST', `/v1/tenants/${ids.tenant}/domains`, { name, relayId: ids.relay, status: 'verified' });
    } else if (kind === 'rotate') {
      const d = targets.domains[k % half]!;
      const body = { username: `rotated${n}@${d.name}`, secret: randomBytes(12).toString('base64url'), domainId: d.id };
      const created = await api<{ id: string; status: string }>('POST', `/v1/relays/${d.relayId}/credentials`, body);
      if (created.status !== 'active') await api('POST', `/v1/credentials/${created.id}/activate`);
    } else if (kind === 'disable') {
      await api('PATCH', `/v1/domains/${targets.domains[half + k]!.id}`, { status: 'disabled' });
    } else {
      // Set, then cleared by the next such change: each moves one relay's domains to or from a
      // service of their own, and the table of those senders stays as small as it starts, row
      // after row (set on relay after relay, it grew by a relay's domains each time).
      const relayId = targets.relays[Math.floor((k - 1) / 2) % targets.relays.length]!;
      await api('PUT', `/v1/relays/${relayId}/limits`, { concurrency: k % 2 === 1 ? 5 + (k % 20) : null });
    }
  }

  let changeCounter = 0;

  const plans: RowPlan[] = [];
  for (const profileName of PROFILE_NAMES) {
    const profile = PROFILES[profileName];
    if (profile === undefined)
      throw new Error(`unknown profile ${profileName}; have ${Object.keys(PROFILES).join(', ')}`);
    for (const count of NODE_COUNTS) {
      // Distance and login variants for one node: with 20 lab nodes this machine is CPU-bound.
      const delays = count === 1 && profile.name === 'tuned' ? DELAYS_MS : [0];
      for (const delayMs of delays) plans.push({ profile, count, login: 'slow', delayMs, cold: false });
      if (count === 1 && profile.name === 'tuned' && LOGIN_ROWS) {
        plans.push({ profile, count, login: 'slow', delayMs: 0, cold: true });
        plans.push({ profile, count, login: 'empty', delayMs: 0, cold: false });
      }
    }
  }
  for (const plan of plans) {
    {
      const { profile, count, login, delayMs, cold } = plan;
      const profileName = profile.name;
      const n = Math.min(count, nodes.length);
      const debounceMs = profile.debounceMs(n);
      const concurrency = profile.concurrency(n);

      // --- the app as `relayplane serve` builds it: real SSH settings, the sync worker ---
      const prisma = createPrismaClient(database.url);
      const warnings: string[] = [];
      const logStream = new Writable({
        write(chunk, _encoding, done) {
          const line = String(chunk);
          if (/"level":(40|50|60)/.test(line)) warnings.push(line.slice(0, 400));
          done();
        },
      });
      const app = await buildApp({
        config: { jwtSecret, masterKey, tokenTtlSeconds: 3600, logLevel: 'warn' },
        prisma,
        configEngine: { execution: 'worker-thread', databaseUrl: database.url },
        logStream,
        ssh: { privateKeyPath: nodes[0]!.ssh.privateKeyPath, concurrency, idleMs: cold ? 0 : 30_000 },
        // Nothing leaves the machine: domain DNS checks go to a loopback port nobody answers on.
        dnsServers: LOOPBACK_DNS,
        sync: { databaseUrl: database.url, reconcileIntervalMs: RECONCILE_INTERVAL_MS, debounceMs },
      });
      // Attribution only: when did the periodic reconcile run (a change arriving then waits for it)?
      const reconciles: Array<[number, number]> = [];
      const handlers = app.jobs.sync.handlers;
      const runReconcile = handlers.runReconcile.bind(handlers);
      handlers.runReconcile = async () => {
        const from = Date.now();
        try {
          await runReconcile();
        } finally {
          reconciles.push([from, Date.now()]);
        }
      };
      current = {
        app,
        close: async () => {
          await app.close();
          await prisma.$disconnect();
        },
      };
      const base = await app.listen({ host: '127.0.0.1', port: 0 });
      const key = await app.services.apiKeys.create(null, { name: `bench-${profileName}-${n}`, scopes: ['admin'] });
      const token = (
        (await (
          await fetch(`${base}/v1/auth/token`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ key: key.key }),
          })
        ).json()) as { access_token: string }
      ).access_token;
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const api = async <T = Record<string, unknown>>(method: string, url: string, body?: object): Promise<T> => {
        const response = await fetch(`${base}${url}`, {
          method,
          headers: body === undefined ? { authorization: headers.authorization } : headers,
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        const text = await response.text();
        if (response.status >= 300) throw new Error(`${method} ${url} → ${response.status}: ${text.slice(0, 500)}`);
        return (text === '' ? {} : JSON.parse(text)) as T;
      };

      if (ids.tenant === undefined) {
        // The lab nodes are IPv4 only: inet_protocols must not change (that needs a restart).
        const { version: _v, updatedAt: _u, ...settings } = await api('GET', '/v1/settings');
        await api('PUT', '/v1/settings', { ...settings, inetProtocols: 'ipv4', addressPreference: 'ipv4' });
        ids.tenant = (await api<{ id: string }>('POST', '/v1/tenants', { name: 'Bench', slug: 'bench' })).id;
        ids.relay = (
          await api<{ id: string }>('POST', '/v1/relays', {
            name: 'sink',
            host: '127.0.0.1',
            port: sink.port,
            tls: 'starttls',
            verify: false,
          })
        ).id;
        await api('POST', `/v1/tenants/${ids.tenant}/domains`, {
          name: 'base.bench.test',
          relayId: ids.relay,
          status: 'verified',
        });
        for (const node of nodes) {
          const created = await api<{ id: string }>('POST', '/v1/nodes', {
            name: node.name,
            sshHost: '127.0.0.1',
            sshPort: node.ssh.port,
            hostKey: node.ssh.hostKeyFingerprint,
            configDir: node.configDir,
            enabled: false,
          });
          ids.nodes.push(created.id);
        }
      }
      // This run's nodes: the first n enabled (at this row's distance), the others disabled (not deployed to).
      const active = nodes.slice(0, n);
      for (const node of active) await writeFile(path.join(node.baseDir, 'home', '.bashrc'), BASHRC[login]);
      proxies = delayMs === 0 ? [] : await Promise.all(active.map((node) => startDelayProxy(node.ssh.port, delayMs)));
      for (const [i, id] of ids.nodes.entries()) {
        await api('PATCH', `/v1/nodes/${id}`, { enabled: i < n, sshPort: proxies[i]?.port ?? nodes[i]!.ssh.port });
      }
      await waitUntil(
        async () => {
          const { items } = await api<{
            items: Array<{
              enabled: boolean;
              drift: boolean;
              liveVersion: string | null;
              desiredVersion: string | null;
              lastError: string | null;
            }>;
          }>('GET', '/v1/nodes?limit=100');
          const enabled = items.filter((i) => i.enabled);
          return (
            enabled.length === n &&
            enabled.every(
              (i) => !i.drift && i.lastError === null && i.liveVersion !== null && i.liveVersion === i.desiredVersion,
            )
          );
        },
        180_000,
        `${n} nodes to converge`,
        200,
      );
      await sleep(debounceMs * 2 + 200);
      await app.syncWorker!.idle();
      log(
        `\n${profileName}: ${n} node(s), debounce ${debounceMs} ms, concurrency ${concurrency}, login ${login}${cold ? ' (cold)' : ''}, delay ${delayMs} ms: converged; measuring ${CHANGES} changes`,
      );

      const samples: ChangeSample[] = [];
      const watcher = startLiveWatcher();
      const kinds: string[] = [];
      // i = -1: one change not measured, so the row starts as the sync job runs (its cache of the
      // bundles it deployed, which deltas are built from, starts empty in a new process).
      for (let i = -1; i < CHANGES; i++) {
        const offsets = active.map((node) => fileSize(node.maillogPath));
        const before = active.map(liveVersion);
        const name = `c${++changeCounter}.bench.test`;
        const cpuBefore = cpuSnapshot(active);
        const t0 = Date.now();
        const kind = SEED_DOMAINS > 0 ? CHANGE_KINDS[changeCounter % CHANGE_KINDS.length]! : 'onboard';
        if (i >= 0) kinds.push(kind);
        await makeChange(api, kind, name, changeCounter);
        // Live: a node's current/VERSION is no longer the one it ran before t0 and its maillog shows
        // master's reload since t0. Read on the nodes' files only, by the watcher's process: polling
        // the API, or the files here, every few milliseconds would spend this process's CPU (the
        // app runs in it) while it works on the change.
        const { liveAt, versions: liveVersions } = await watcher.live(
          active.map((node, k) => ({
            versionFile: path.join(node.configDir, 'relayplane', 'current', 'VERSION'),
            maillog: node.maillogPath,
            offset: offsets[k]!,
            before: before[k] ?? null,
          })),
          CHANGE_TIMEOUT_MS,
        );
        const version = liveVersions[0]!;
        if (liveVersions.some((v) => v !== version))
          throw new Error(`change ${name}: the nodes went live with different versions: ${liveVersions.join(', ')}`);
        const t1 = Math.max(...liveAt);
        // Sequential: the next change starts once this deployment finished (verify, prune). Waited
        // for in-process, not by polling the API: the requests would count as the control plane's
        // CPU, the more the longer the run.
        await app.syncWorker!.idle();
        await sleep(150); // the nodes' per-connection sshd processes exit and are reaped
        // Before the reads below: they are this benchmark's, and their answers grow with the nodes
        // (each deployment lists every node's steps), so they would count as a cost per node.
        const cpu = cpuDelta(cpuBefore, cpuSnapshot(active));
        const deployment = await waitUntil(
          async () => {
            const { items } = await api<{ items: DeploymentJson[] }>('GET', '/v1/deployments?limit=10');
            // Normally the change's own run; a periodic reconcile that compiled after the write deploys it instead.
            return items.find(
              (d) =>
                d.version === version && (d.reason === 'change' || d.reason === 'reconcile') && d.finishedAt !== null,
            );
          },
          CHANGE_TIMEOUT_MS,
          `the deployment of ${version.slice(0, 12)} to finish`,
          20,
        );
        if (deployment.state !== 'succeeded')
          throw new Error(
            `deployment ${deployment.id} ${deployment.state}: ${JSON.stringify(deployment.nodes.map((x) => x.error))}`,
          );
        // What went live is what the change compiles to (not a step on the way there).
        const { desiredVersion } = await api<{ desiredVersion: string | null }>('GET', `/v1/nodes/${ids.nodes[0]}`);
        if (desiredVersion !== version)
          throw new Error(
            `change ${name}: live ${version.slice(0, 12)}, compiled ${String(desiredVersion).slice(0, 12)}`,
          );
        const full = await api<DeploymentJson>('GET', `/v1/deployments/${deployment.id}`);
        const nodeStarts = full.nodes.map((x) => new Date(x.startedAt!).getTime());
        const sample: ChangeSample = {
          latencyMs: t1 - t0,
          doneMs: new Date(full.finishedAt!).getTime() - t0,
          firstNodeStartMs: Math.min(...nodeStarts) - t0,
          lastNodeStartMs: Math.max(...nodeStarts) - t0,
          perNode: full.nodes.map((x) => {
            const start = new Date(x.startedAt!).getTime();
            const steps: Record<string, number> = {};
            for (const st of x.steps) steps[st.step] = (steps[st.step] ?? 0) + st.durationMs;
            const first = x.steps[0];
            const reload = x.steps.find((st) => st.step === 'reload');
            return {
              connectMs: first === undefined ? 0 : new Date(first.startedAt).getTime() - start,
              steps,
              reloadDoneMs: reload === undefined ? Number.NaN : new Date(reload.finishedAt).getTime() - start,
            };
          }),
          reconcileOverlap: reconciles.some(([from, to]) => from < t1 && to > t0),
          attempts: Math.max(...full.nodes.map((x) => x.attempts)),
          cpu,
        };
        if (i < 0) continue;
        samples.push(sample);
        log(
          `  change ${String(i + 1).padStart(2)}: ${ms(sample.latencyMs)} to live on all (deployment done at ${ms(sample.doneMs)})${sample.reconcileOverlap ? ' [reconcile overlapped]' : ''}`,
        );
      }
      watcher.close();
      results.push({ profile: profileName, login, delayMs, cold, nodes: n, debounceMs, concurrency, samples, kinds });
      if (warnings.length > 0) log(`  ${warnings.length} warning/error log lines, first: ${warnings[0]}`);
      await current.close();
      current = undefined;
      await Promise.all(proxies.map((p) => p.close()));
      proxies = [];
    }
  }
} finally {
  await cleanup();
}

// --- report ---
const date = startedAt.toISOString().slice(0, 10);
const rows = results.map((r) => {
  const lat = r.samples.map((x) => x.latencyMs);
  const goal = goalMs(r);
  const p50 = median(lat);
  return {
    r,
    line: `| ${r.nodes} | ${r.profile} | ${loginLabel(r)} | ${r.delayMs} ms | ${r.debounceMs} ms | ${r.concurrency} | ${r.samples.length} | **${s(p50)}** | ${s(percentile(lat, 95))} | ${s(Math.max(...lat))} | ${s(median(r.samples.map((x) => x.doneMs)))} | ${goal === undefined ? '—' : `≤ ${s(goal)}: ${p50 <= goal ? 'met' : 'NOT met'}`} |`,
  };
});
/** Each kind of change with its samples, in the order the bench makes them. */
const samplesByKind = (r: RunResult) =>
  [...new Set(r.kinds)].map((kind) => ({ kind, samples: r.samples.filter((_, i) => r.kinds[i] === kind) }));
/** Each deploy step's median over the given nodes' runs, as "step N ms, …". */
const stepMediansOf = (per: ChangeSample['perNode']) =>
  CHANGE_STEPS.map((step) => `${step} ${ms(median(per.map((p) => p.steps[step] ?? 0)))}`).join(', ');
const breakdown = results.map((r) => {
  const per = r.samples.flatMap((x) => x.perNode);
  const stepMedians = stepMediansOf(per);
  const cpu = (k: keyof CpuSnapshot) => median(r.samples.map((x) => x.cpu[k]));
  // /proc counts in 10 ms ticks: small negative remainders are rounding.
  const other = Math.max(
    0,
    median(r.samples.map((x) => x.cpu.total - x.cpu.controlPlane - x.cpu.nodeSsh - x.cpu.postfix - x.cpu.postgres)),
  );
  const kinds = samplesByKind(r);
  const byKind = kinds.map(({ kind, samples }) => `${kind} ${s(median(samples.map((x) => x.latencyMs)))}`).join(', ');
  const nodeCpuOf = (samples: ChangeSample[]) => median(samples.map((x) => (x.cpu.nodeSsh + x.cpu.postfix) / r.nodes));
  const nodeCpu = nodeCpuOf(r.samples);
  const nodeCpuByKind = kinds.map(({ kind, samples }) => `${kind} ${ms(nodeCpuOf(samples))}`).join(', ');
  const controlByKind = kinds
    .map(({ kind, samples }) => `${kind} ${ms(median(samples.map((x) => x.cpu.controlPlane)))}`)
    .join(', ');
  // Where each kind's time goes: a relay limit moves its domains to or from a service of their own.
  const stepsByKind = kinds
    .map(({ kind, samples }) => {
      const steps = stepMediansOf(samples.flatMap((x) => x.perNode));
      return `${kind}: first node started ${ms(median(samples.map((x) => x.firstNodeStartMs)))}, ${steps}`;
    })
    .join('; ');
  const cpuLine =
    (SEED_DOMAINS > 0
      ? ` p50 by kind: ${byKind}. Steps by kind (medians): ${stepsByKind}. Node-side CPU per change per node (SSH session, its commands, Postfix): ${ms(nodeCpu)} (by kind: ${nodeCpuByKind}). Control-plane process CPU per change by kind (medians): ${controlByKind}.`
      : '') +
    ` CPU per change, t0 → run done (medians, all cores): ${ms(cpu('total'))} busy = control plane process ${ms(cpu('controlPlane'))}, ` +
    `node SSH sessions and the commands they run ${ms(cpu('nodeSsh'))}, Postfix masters and daemons (reload) ${ms(cpu('postfix'))}, ` +
    `PostgreSQL ${ms(cpu('postgres'))}, other (this benchmark's watcher of the nodes' files among it) ${ms(other)}.`;
  const overlaps = r.samples.filter((x) => x.reconcileOverlap).length;
  const retried = r.samples.filter((x) => x.attempts > 1).length;
  return (
    `- ${r.nodes} node(s), ${r.profile}, login ${loginLabel(r)}, delay ${r.delayMs} ms: t0 → first node started (debounce + compile + deployment rows) ${ms(median(r.samples.map((x) => x.firstNodeStartMs)))}, ` +
    `→ last node started ${ms(median(r.samples.map((x) => x.lastNodeStartMs)))}; per node: SSH connect ${ms(median(per.map((p) => p.connectMs)))}, ` +
    `node start → reload done ${ms(median(per.map((p) => p.reloadDoneMs)))}; steps (medians): ${stepMedians}.` +
    cpuLine +
    (overlaps > 0 ? ` ${overlaps} change(s) overlapped a periodic reconcile.` : '') +
    (retried > 0 ? ` ${retried} change(s) needed an SSH retry.` : '')
  );
});
const counts = NODE_COUNTS.map((c) => Math.min(c, nodes.length));
const cores = os.availableParallelism();
const reading: string[] = [];
for (const n of [...new Set(counts)]) {
  const of = results.filter((r) => r.nodes === n && r.login === 'slow' && !r.cold);
  const parts = of.map((r) => {
    const goal = goalMs(r);
    const p50 = median(r.samples.map((x) => x.latencyMs));
    return `${s(p50)} (${r.profile}, ${r.delayMs} ms one way${goal === undefined ? '' : `; goal ≤ ${s(goal)}: ${p50 <= goal ? 'met' : 'NOT met'}`})`;
  });
  reading.push(`**${n} node(s)**, 0.5 s login: p50 ${parts.join(', ')}.`);
}
const largest = results
  .filter((r) => r.nodes === Math.max(...counts) && r.delayMs === 0 && !r.cold)
  .sort((a, b) => median(a.samples.map((x) => x.latencyMs)) - median(b.samples.map((x) => x.latencyMs)))[0];
if (largest !== undefined && largest.nodes > 1) {
  const med = (f: (c: CpuSnapshot) => number) => median(largest.samples.map((x) => f(x.cpu)));
  const total = med((c) => c.total);
  const nodeSide = med((c) => c.nodeSsh + c.postfix);
  const control = med((c) => c.controlPlane);
  const busy = median(largest.samples.map((x) => x.cpu.total / (cores * x.doneMs)));
  // What each added node costs the control plane: against the same profile's 1-node row.
  const single = results.find(
    (r) => r.nodes === 1 && r.profile === largest.profile && r.login === largest.login && r.delayMs === 0 && !r.cold,
  );
  const singleControl = single === undefined ? undefined : median(single.samples.map((x) => x.cpu.controlPlane));
  const perNode =
    singleControl === undefined
      ? `≈ ${ms(control / largest.nodes)} per node`
      : control < singleControl
        ? `${ms(singleControl)} with 1 node: the cost per added node is under this run's noise`
        : `≈ ${ms((control - singleControl) / (largest.nodes - 1))} per added node, ${ms(singleControl)} with 1 node`;
  reading.push(
    `Every lab node's sshd, the deployer's shell commands on it and its Postfix run on this same ${cores}-core machine as the control plane: ` +
      `with ${largest.nodes} nodes (${profileLabel(largest)}) the cores were ${Math.round(100 * busy)} % busy from t0 to run done${busy >= 0.8 ? ' (CPU-bound)' : ''}, ` +
      `${s(total)} of CPU per change, ${Math.round((100 * nodeSide) / total)} % of it on the node side (SSH sessions, \`postconf\`/\`postmap\`/\`postfix check\`, reload) ` +
      `and ${s(control)} in the control plane process (${perNode}: SSH sessions, step records, node runs in PostgreSQL). ` +
      (SEED_DOMAINS > 0
        ? `Onboarding, rotating and disabling edit tables only, so \`validate\` probes the staged tables; setting a relay's first limit or clearing it again moves the relay's domains to or from a service of their own, which edits main.cf and master.cf, so \`validate\` checks the staged files with \`postconf\` and \`verify\` runs \`postfix check\` after the reload, beside the settle time (its CPU counts, its time is after t1). `
        : `These changes edit tables only, so \`validate\` probes the staged tables and \`postfix check\` does not run (it runs in \`verify\`, after the reload, when main.cf or master.cf change). `) +
      `On real nodes the node-side work runs on each node's own CPU in parallel, so there the latency is about the debounce plus one node's deploy, not ${largest.nodes} of them on ${cores} cores.`,
  );
}
/**
 * node-deploy's section of the same size and kind as these rows: a handful of domains, 100,000
 * onboardings, or relay limits (the kind that costs a node most when the rows make only that one).
 */
const NODE_DEPLOY_SECTION =
  SEED_DOMAINS === 0
    ? 'node-deploy'
    : CHANGE_KINDS.length === 1 && CHANGE_KINDS[0] === 'relay limit'
      ? 'node-deploy-relay-limit'
      : 'node-deploy-domains';

/** The control plane's CPU per added node as node-deploy last wrote it in NODE_DEPLOY_SECTION, if it did. */
function recordedPerNodeMs(): number | undefined {
  const text = readFileSync(path.join(ROOT, 'BENCHMARKS.md'), 'utf8');
  const start = text.indexOf(`<!-- ${NODE_DEPLOY_SECTION}:start -->`);
  const end = text.indexOf(`<!-- ${NODE_DEPLOY_SECTION}:end -->`);
  if (start === -1 || end === -1) return undefined;
  const m = /\*\*Control-plane CPU per added node per change: ([0-9.]+) ms\*\*/.exec(text.slice(start, end));
  return m === null ? undefined : Number(m[1]);
}

if (SEED_DOMAINS > 0) {
  for (const profile of [...new Set(results.map((r) => r.profile))]) {
    const one = results.find((r) => r.profile === profile && r.nodes === 1);
    // The most nodes: a few ms per node stand out of the noise of a change's CPU only over several.
    const many = results
      .filter((r) => r.profile === profile && r.nodes > 1)
      .reduce<RunResult | undefined>((most, r) => (most === undefined || r.nodes > most.nodes ? r : most), undefined);
    if (one === undefined || many === undefined) continue;
    const added = many.nodes - 1;
    // Each kind's median, averaged over the kinds: they cost the control plane several times apart
    // (a relay limit moves a relay's domains), so a median of all changes falls between
    // kinds and moves with the few changes next to it.
    const kindMedian = (r: RunResult, kind: string, of: 'controlPlane' | 'mainThread' = 'controlPlane') =>
      median(
        samplesByKind(r)
          .find((k) => k.kind === kind)
          ?.samples.map((x) => x.cpu[of]) ?? [],
      );
    const kinds = samplesByKind(one).map((k) => k.kind);
    const cp = (r: RunResult, of: 'controlPlane' | 'mainThread' = 'controlPlane') =>
      kinds.reduce((sum, kind) => sum + kindMedian(r, kind, of), 0) / kinds.length;
    const perKindOf = (of: 'controlPlane' | 'mainThread') =>
      kinds.map((kind) => `${kind} ${ms((kindMedian(many, kind, of) - kindMedian(one, kind, of)) / added)}`).join(', ');
    const perKind = perKindOf('controlPlane');
    // The main thread alone: the config engine's thread (a change's compile) and V8's helper
    // threads (its share of the collections) left out, which move a change's CPU the most.
    const mainThread = Number.isNaN(cp(one, 'mainThread'))
      ? ''
      : `; the process's main thread alone (its own run time, from /proc's schedstat: the API, the sync job, the deploys' JavaScript and its part of the collections) ${ms((cp(many, 'mainThread') - cp(one, 'mainThread')) / added)} per added node ((${ms(cp(many, 'mainThread'))} − ${ms(cp(one, 'mainThread'))}) / ${added}; by kind: ${perKindOf('mainThread')})`;
    // A figure with more nodes under the 1-node one: noise larger than the cost measured. The
    // projection then takes the node-deploy benchmark's figure, which measures that cost alone.
    const noisy = cp(many) < cp(one);
    const recorded = noisy ? recordedPerNodeMs() : undefined;
    const perNode = noisy ? (recorded ?? 0) : (cp(many) - cp(one)) / added;
    const nodeCpu = median(one.samples.map((x) => x.cpu.nodeSsh + x.cpu.postfix));
    const t1 = median(one.samples.map((x) => x.latencyMs));
    const deploy = median(one.samples.flatMap((x) => x.perNode.map((p) => p.reloadDoneMs)));
    const c = 4; // RELAYPLANE_DEPLOY_CONCURRENCY default
    const project = (n: number) => t1 + (Math.ceil(n / c) - 1) * deploy + (n * perNode) / cores;
    reading.push(
      `**Per node (${profile})**: control-plane CPU per added node per change ${noisy ? `under this run's noise, projected with ${recorded === undefined ? '0' : `${ms(perNode)}, the figure \`npm run bench -- node-deploy\` last recorded in this file's "${NODE_DEPLOY_SECTION}" section`}` : ms(perNode)} (control-plane process CPU per change with ${many.nodes} nodes minus with 1, each the mean of the kinds' medians, divided by ${added}: (${ms(cp(many))} − ${ms(cp(one))}) / ${added}; by kind: ${perKind}${mainThread}); ` +
        `node-side CPU per change ${ms(nodeCpu)} (1 node: its SSH session, the commands it runs and Postfix's reload). ` +
        `Projected change-to-live with N nodes each on its own CPU, \`RELAYPLANE_DEPLOY_CONCURRENCY\` C = ${c}, this ${cores}-core control plane: ` +
        `T(N) = T(1) + (⌈N / C⌉ − 1) × t_node + N × c_node / ${cores}, with T(1) = ${s(t1)}, t_node = ${ms(deploy)} (node start → reload done), c_node = ${ms(perNode)}: ` +
        `20 nodes ${s(project(20))}, 100 nodes ${s(project(100))}, 1,000 nodes ${s(project(1000))}; ` +
        `with C = N (every node at once, the control plane's CPU the only shared cost): 20 nodes ${s(t1 + (20 * perNode) / cores)}, 100 nodes ${s(t1 + (100 * perNode) / cores)}, 1,000 nodes ${s(t1 + (1000 * perNode) / cores)}.`,
    );
  }
}
const markdown = [
  SEED_DOMAINS > 0
    ? `## Change-to-live at ${SEED_DOMAINS.toLocaleString('en-US')} domains: delta releases${someKinds ? ` (${CHANGE_KINDS.join(', ')} only)` : ''}`
    : '## Change-to-live latency: API write → every node reloaded with the new version',
  '',
  `Command: \`${SEED_DOMAINS > 0 ? `BENCH_DOMAINS=${SEED_DOMAINS} BENCH_NODES=${NODE_COUNTS.join(',')} ${someKinds ? `BENCH_KINDS=${kindsLabel} ` : ''}` : ''}npm run bench -- change-to-live\`${process.env.BENCH_DELAYS_MS !== undefined ? ` with \`BENCH_DELAYS_MS=${process.env.BENCH_DELAYS_MS}\`` : ''} (${CHANGES} sequential changes per row after one unmeasured, ` +
    (SEED_DOMAINS > 0
      ? `on ${SEED_DOMAINS} seeded domains (bench/seed.ts, as the compile benchmark), changes in turn: ${CHANGE_KINDS.map((k) => KIND_TEXT[k]).join(', ')}; `
      : `each a \`POST /v1/tenants/{id}/domains\` of a new verified domain; `) +
    `the real app and sync worker on a scratch database, reconcile every ${RECONCILE_INTERVAL_MS / 1000} s (default); lab nodes = real Postfix 3.7 instances with their own sshd on loopback, ` +
    `node counts ${counts.length > 1 ? `${counts.slice(0, -1).join(', ')} and ${counts.at(-1)}` : counts.join('')}${nodeShortfall !== '' ? ` — ${nodeShortfall}` : ''}, ` +
    `each node's root logs in with a ~/.bashrc that sleeps 0.5 s (as this machine's root \`pyenv init\` costs), rows labelled "empty" with an empty one; ` +
    `one-way delays through a loopback TCP delay proxy (this kernel has no netem), 1 node only; "new connection per deploy" = \`RELAYPLANE_SSH_IDLE_SECONDS=0\`; profiles: tuned = \`RELAYPLANE_SYNC_DEBOUNCE_MS=25\`, \`RELAYPLANE_DEPLOY_CONCURRENCY=<nodes>\`; ` +
    `default = 500 ms, 4; ${machine()}; ${date}).`,
  '',
  'Latency = t1 − t0: t0 just before the HTTP request, t1 when every node\'s `current/VERSION` equals the new compiled version and its maillog shows master\'s `reload` after t0. "Run done" = the deployment finished (post-reload verify with its 300 ms settle, and prune).',
  '',
  '| Nodes | Profile | Login | Delay (one way) | Debounce | Concurrency | Changes | p50 | p95 | max | run done (p50) | Goal (p50) |',
  '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ...rows.map((x) => x.line),
  '',
  "Where the time goes (from each deployment's per-node steps, `GET /v1/deployments/{id}`):",
  '',
  ...breakdown,
  '',
  ...reading.flatMap((line) => [line, '']),
].join('\n');
await recordSection(
  SEED_DOMAINS > 0
    ? `change-to-live-domains${someKinds ? `-${kindsLabel.replaceAll(',', '-')}` : ''}`
    : 'change-to-live',
  markdown,
);
log(`\n${markdown}`);
