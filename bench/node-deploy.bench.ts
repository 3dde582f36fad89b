import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deployBundle, nodeLayout, type Bundle } from '../src/deploy/index.js';
import { createIncrementalCompiler, type Credential, type Domain } from '../src/postfix/index.js';
import { connectNode, type NodeConnection } from '../src/ssh/index.js';
import { buildBundle } from '../test/deploy/bundles.js';
import { credential, domain, relay, snapshot, tenant } from '../test/postfix/fixtures.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../test/lab/postfix-node.js';
import { startSmartHost } from '../test/lab/smart-host.js';
import { machine, percentile, recordSection } from './lib.js';
import { cpuByCommand } from './perf-profile.js';
import { labNodeCpuMs, labNodePids } from './proc-cpu.js';

/**
 * Issue 23's per-node cost without the database and the API around it: BENCH_DEPLOYS (default 40)
 * changes in a row, each onboarding one domain on a small config, deployed as deltas over the
 * connections the sync worker would keep (real sshd + Postfix 3.7 on loopback) to one lab node,
 * then to BENCH_FLEET (default 4) at once. A change's own work (its delta, archive, expected probe
 * answers) is done once whatever the number of nodes, so the control plane's CPU per node per
 * change is the difference between the two runs per added node; the one-node run also gives the
 * write system calls per change, the node's CPU per deploy (/proc: its SSH session with the
 * commands, and Postfix's reload) and, where `accton` runs (package acct), the processes the node
 * started per deploy from its own accounting; with BENCH_PERF=1, the node's CPU by command name
 * (perf record, package linux-perf); and what one process and one `postmap` cost the node, the
 * units its deploys are made of. The 20-node row of `change-to-live` measures the same with
 * the database and the API. BENCH_DOMAINS=N: the configs are the compiler's, of N domains and more
 * (the sync job's incremental compiler, one domain onboarded per change), so the node's cost per
 * change is measured at that size as well. BENCH_KIND=relay-limit: each change sets a relay's
 * limits or clears them again instead (its domains move to or from a service of their own: main.cf and master.cf
 * change, so validate and verify run Postfix's checks), on the compiler's config of BENCH_DOMAINS
 * (at least 100) domains.
 *
 * The control plane's CPU per node is also read directly: a further BENCH_DEPLOYS changes, each
 * sent to one node and then to each other node in turn, the process's CPU read around each later
 * node's deploy (the change's own work is done by the first). Its median and quartiles are given:
 * a major garbage collection of the process's heap lands in one node's window now and then.
 */
const DEPLOYS = Number(process.env.BENCH_DEPLOYS ?? 40);
/** Nodes a change goes to at once in the fleet run (BENCH_FLEET, default 4). */
const FLEET = Math.max(2, Number(process.env.BENCH_FLEET ?? 4));
const WARMUP = 5;
/** BENCH_PERF=1: one more run of DEPLOYS changes to one node under `perf record`, for its CPU by command. */
const PERF = process.env.BENCH_PERF === '1';
/** BENCH_DOMAINS: 0 (default) hand-built bundles of 25–65 domains; else compiled configs of that many domains and up. */
const DOMAINS = Number(process.env.BENCH_DOMAINS ?? 0);
const RELAYS = 50;
/** BENCH_KIND: onboard (default) or relay-limit, the kind of every change. */
const KIND = process.env.BENCH_KIND ?? 'onboard';
if (KIND !== 'onboard' && KIND !== 'relay-limit')
  throw new Error(`BENCH_KIND must be onboard or relay-limit, got ${KIND}`);
const RELAY_LIMITS = KIND === 'relay-limit';
/** Domains of the compiled configs (0: hand-built bundles, onboarding only). */
const CONFIG_DOMAINS = RELAY_LIMITS ? Math.max(DOMAINS, 100) : DOMAINS;

/**
 * The compiler's configs of `size` domains and up, one more on each call: 50 shared relays, every
 * domain with a credential of its own, as the compile benchmark seeds them. Unchanged rows stay the
 * same objects, as the snapshot loader hands them out, so each compile after the first is the sync
 * job's incremental one. With relay limits, the calls set a relay's limits and clear them again,
 * one relay after another: each change moves one relay's domains, and the table of senders with a
 * service of their own stays as small as it starts (set on relay after relay, it would grow by
 * 2,000 domains a change, and later changes would cost more than earlier ones).
 */
function compiledConfigs(size: number, relayLimits: boolean): () => Bundle {
  const compiler = createIncrementalCompiler();
  const tenants = [tenant('t')];
  const relays = Array.from({ length: RELAYS }, (_, i) => relay(`r${i}`));
  const domains: Domain[] = [];
  const credentials: Credential[] = [];
  const add = (i: number) => {
    domains.push(domain(`d${i}`, 't', `d${String(i).padStart(7, '0')}.test`, { relayId: `r${i % RELAYS}` }));
    credentials.push(credential(`c${i}`, `r${i % RELAYS}`, `d${i}`));
  };
  for (let i = 0; i < size - 1; i += 1) add(i);
  let next = size - 1;
  let turn = 0;
  return () => {
    if (relayLimits) {
      const k = Math.floor(turn / 2) % RELAYS;
      const limits = { concurrency: 5 + (turn % 20), rateDelaySeconds: null, recipientsPerMessage: null };
      relays[k] = relay(`r${k}`, { limits: turn % 2 === 0 ? { ...limits, connectionReuseSeconds: null } : null });
      turn++;
    } else add(next++);
    return compiler.compile(
      snapshot({ tenants, relays: [...relays], domains: [...domains], credentials: [...credentials] }),
    );
  };
}

const CALIBRATION_RUNS = 200;

/**
 * The node's CPU (ms) for one trivial process (fork and exec of /bin/true from its shell) and for
 * one `postmap -q` of a live table: what its deploys cost is mostly such processes, so a deploy's
 * cost in them compares machines whose processes cost several times more or less.
 */
async function processCost(conn: NodeConnection, node: PostfixNode): Promise<{ process: number; postmap: number }> {
  const loop = (runs: number, command: string) =>
    `i=0; while [ $i -lt ${runs} ]; do ${command} || exit 1; i=$((i+1)); done`;
  const timed = async (runs: number, command: string) => {
    const before = labNodeCpuMs(node);
    const r = await conn.exec(loop(runs, command));
    if (r.code !== 0) throw new Error(`calibration: ${command}: exit ${r.code}: ${r.stderr}`);
    const after = labNodeCpuMs(node);
    return (after.session - before.session) / runs;
  };
  const table = path.posix.join(nodeLayout(node.configDir).current, 'tls_policy');
  return {
    process: await timed(CALIBRATION_RUNS, '/bin/true'),
    postmap: await timed(CALIBRATION_RUNS / 4, `postmap -q rp-calibration hash:${table} >/dev/null; [ $? -le 1 ]`),
  };
}

/** Write system calls this process made so far (write, writev…: each costs the control plane a kernel entry). */
const writeCalls = () => Number(/^syscw: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN);

/** Processes the machine started while `fn` ran, by command name, from process accounting; null without accton. */
async function accounted(fn: () => Promise<void>): Promise<Map<string, number> | null> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rp-bench-acct-'));
  const file = path.join(dir, 'pacct');
  // accton appends to a file that exists.
  await writeFile(file, '');
  const on = spawnSync('accton', [file], { stdio: 'ignore' });
  if (on.status !== 0) {
    await fn();
    await rm(dir, { recursive: true, force: true });
    return null;
  }
  try {
    await fn();
  } finally {
    spawnSync('accton', ['off'], { stdio: 'ignore' });
  }
  const dump = execFileSync('dump-acct', [file], { encoding: 'utf8' });
  await rm(dir, { recursive: true, force: true });
  const counts = new Map<string, number>();
  for (const line of dump.split('\n')) {
    const name = line.split('|')[0]?.trim();
    if (name !== undefined && name !== '' && name !== 'accton') counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}

const sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
const nodes = await Promise.all(
  Array.from({ length: FLEET }, (_, i) =>
    startPostfixNode({
      name: `deploybench${i}`,
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink.caCertPem],
      ownHome: true,
    }),
  ),
);
try {
  const conns = await Promise.all(nodes.map((n) => connectNode({ ...n.ssh, hostKey: n.ssh.hostKeyFingerprint })));
  const handBuilt = (domains: number): Bundle =>
    buildBundle(
      Array.from({ length: domains }, (_, i) => ({
        domain: `d${String(i).padStart(5, '0')}.test`,
        nexthop: sink.nexthop,
        user: `u${i}`,
        password: `pw${i}`,
      })),
    );
  /** What each node runs, as the sync worker knows it: the base of its next delta. */
  const live: Array<Bundle | undefined> = nodes.map(() => undefined);
  let steps = '';
  /** One change to the first `count` nodes at once, as the sync worker sends it (one bundle, each node from its base). */
  const deployTo = async (i: number, next: Bundle) => {
    const outcome = await deployBundle(conns[i]!, next, {
      configDir: nodes[i]!.configDir,
      expectedLiveVersion: live[i]?.version ?? null,
      base: live[i],
      settleMs: 0,
    });
    if (outcome.state !== 'live') throw new Error(`deploy ${outcome.state}: ${outcome.error}`);
    steps = outcome.steps.map((s) => s.step).join(', ');
    live[i] = next;
  };
  const deploy = (next: Bundle, count: number) =>
    Promise.all(Array.from({ length: count }, (_, i) => deployTo(i, next)));
  // Bundles made before the clock starts: compiling is the change's, not a node's.
  let domains = 20;
  const nextBundle = CONFIG_DOMAINS > 0 ? compiledConfigs(CONFIG_DOMAINS, RELAY_LIMITS) : () => handBuilt(domains++);
  const bundles = (n: number) => Array.from({ length: n }, nextBundle);
  for (const b of bundles(WARMUP)) await deploy(b, FLEET);

  /** Control-plane CPU (µs) and write system calls for DEPLOYS changes to `count` nodes. */
  const measure = async (count: number) => {
    const changes = bundles(DEPLOYS);
    const writesBefore = writeCalls();
    const before = process.cpuUsage();
    for (const b of changes) await deploy(b, count);
    const cpu = process.cpuUsage(before);
    return { cpu, writes: writeCalls() - writesBefore };
  };
  let one = { cpu: { user: 0, system: 0 }, writes: 0 };
  const nodeBefore = labNodeCpuMs(nodes[0]!);
  const processes = await accounted(async () => {
    one = await measure(1);
  });
  const nodeAfter = labNodeCpuMs(nodes[0]!);
  const nodeCpu = {
    session: nodeAfter.session - nodeBefore.session,
    postfix: nodeAfter.postfix - nodeBefore.postfix,
  };
  // The nodes that sat out the one-node run catch up, unmeasured: every node deploys a delta.
  await deploy(bundles(1)[0]!, FLEET);
  const fleet = await measure(FLEET);
  // Read directly: each change to the first node (its own work done there), then to each other in
  // turn, the CPU read around each of those. The bundles are compiled before, as the runs above
  // have them: one compiled just before its first deploy was young in the later nodes' windows,
  // and the collections that promoted it counted as theirs.
  const direct: number[] = [];
  for (const next of bundles(DEPLOYS)) {
    await deployTo(0, next);
    for (let i = 1; i < FLEET; i++) {
      const before = process.cpuUsage();
      await deployTo(i, next);
      const cpu = process.cpuUsage(before);
      direct.push(cpu.user + cpu.system);
    }
  }
  // Apart from the runs above: perf's sampling costs the node CPU of its own.
  const profile = PERF
    ? await cpuByCommand(labNodePids(nodes[0]!), async () => {
        for (const b of bundles(DEPLOYS)) await deploy(b, 1);
      })
    : null;
  const unit = await processCost(conns[0]!, nodes[0]!);
  for (const conn of conns) conn.close();

  const per = (n: number) => n / DEPLOYS;
  const ms = (us: number) => `${(per(us) / 1000).toFixed(1)} ms`;
  const total = processes === null ? null : [...processes.values()].reduce((a, b) => a + b, 0);
  const top =
    processes === null
      ? ''
      : [...processes]
          .sort((a, b) => b[1] - a[1])
          .filter(([, n]) => per(n) >= 0.5)
          .map(([name, n]) => `${name} ${per(n).toFixed(1)}`)
          .join(', ');
  const sum = (c: { user: number; system: number }) => c.user + c.system;
  const nodeMs = (total: number) => `${per(total).toFixed(0)} ms`;
  const added = (sum(fleet.cpu) - sum(one.cpu)) / (FLEET - 1);
  const directMs = (p: number) => `${(percentile(direct, p) / 1000).toFixed(1)} ms`;
  const changes = RELAY_LIMITS
    ? `each setting a relay's limits or clearing them again, relay after relay (its 2,000 domains to or from a service of their own: main.cf and master.cf change) on the compiler's config of ${CONFIG_DOMAINS} domains (${RELAYS} shared relays, a credential per domain; large tables as shards)`
    : `each onboarding one domain on ${DOMAINS > 0 ? `the compiler's config of ${DOMAINS}+ domains (${RELAYS} shared relays, a credential per domain; large tables as shards)` : `a config of 25–${25 + DEPLOYS} domains`}`;
  const table = [
    RELAY_LIMITS
      ? `## Control-plane and node CPU per relay-limit change at ${CONFIG_DOMAINS.toLocaleString('en')} domains: deploys to lab nodes (issue 23)`
      : DOMAINS > 0
        ? `## Control-plane and node CPU per change at ${DOMAINS.toLocaleString('en')} domains: deploys to lab nodes (issue 23)`
        : '## Control-plane CPU per node per change: deploys to lab nodes (issue 23)',
    '',
    `Command: \`${RELAY_LIMITS ? 'BENCH_KIND=relay-limit ' : ''}${DOMAINS > 0 ? `BENCH_DOMAINS=${DOMAINS} ` : ''}${PERF ? 'BENCH_PERF=1 ' : ''}npm run bench -- node-deploy\` (${DEPLOYS} changes in a row after ${WARMUP} unmeasured, ${changes}, deployed as a delta to 1 lab node, then to ${FLEET} at once as the sync worker sends one change to a fleet (one bundle, each node from its own base); real sshd + Postfix 3.7 on loopback, one kept connection per node, settle time 0; bundles compiled before the clock starts; ${machine()}; ${new Date().toISOString().slice(0, 10)}). The node's processes come from process accounting (\`accton\`, package acct) during the 1-node run and count every process the machine started meanwhile, the lab node's Postfix daemons among them; the node's CPU from /proc (10 ms ticks summed over the run): its sshd with the deployer's connection, the shells and every command they ran, and its Postfix master with the daemons it reaped.`,
    '',
    '| Nodes | Control-plane CPU per change | user | system | Write system calls per change | Node processes per deploy | Node CPU per deploy (SSH session and commands + Postfix) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| 1 | ${ms(sum(one.cpu))} | ${ms(one.cpu.user)} | ${ms(one.cpu.system)} | ${per(one.writes).toFixed(1)} | ${total === null ? '— (no accton)' : per(total).toFixed(1)} | ${nodeMs(nodeCpu.session + nodeCpu.postfix)} (${nodeMs(nodeCpu.session)} + ${nodeMs(nodeCpu.postfix)}) |`,
    `| ${FLEET} | ${ms(sum(fleet.cpu))} | ${ms(fleet.cpu.user)} | ${ms(fleet.cpu.system)} | ${per(fleet.writes).toFixed(1)} | — | — |`,
    '',
    `**Control-plane CPU per added node per change: ${ms(added)}** ((${FLEET}-node CPU − 1-node CPU) / ${FLEET - 1}: what the work shared by every node of a change, its delta, archive and expected probe answers, does not repeat). **Read directly: ${directMs(50)}** per later node (median; quartiles ${directMs(25)}–${directMs(75)}): a further ${DEPLOYS} changes, each deployed to one node, then to each of the other ${FLEET - 1} in turn, the process's CPU read around each of those deploys; the difference above is what a node adds beside the others, as the sync worker runs them. Steps of each deploy: ${steps}.${processes === null ? '' : ` Processes per deploy by name: ${top}.`}`,
    ...(profile === null
      ? []
      : [
          '',
          `Node CPU per deploy by command (a further ${DEPLOYS} changes to one node under \`perf record -e cpu-clock -F 4000\` of the node's sshd, Postfix master and everything they started; perf's sampling adds to it): ${[
            ...profile,
          ]
            .sort((a, b) => b[1] - a[1])
            .filter(([, cpu]) => per(cpu) >= 0.5)
            .map(([name, cpu]) => `${name} ${per(cpu).toFixed(1)} ms`)
            .join(', ')}; in all ${per([...profile.values()].reduce((a, b) => a + b, 0)).toFixed(0)} ms.`,
        ]),
    '',
    `What a process costs this node, the unit its deploys are made of (machines differ in it several times over): ${unit.process.toFixed(2)} ms for a fork and exec of /bin/true from the node's shell (${CALIBRATION_RUNS} in a row), ${unit.postmap.toFixed(1)} ms for a \`postmap -q\` of one key (${CALIBRATION_RUNS / 4} in a row: its start-up, dynamic linking and main.cf, is most of it). A deploy's node CPU is ${(per(nodeCpu.session + nodeCpu.postfix) / unit.process).toFixed(0)} such processes.`,
  ].join('\n');
  console.log(table);
  await recordSection(
    RELAY_LIMITS ? 'node-deploy-relay-limit' : DOMAINS > 0 ? 'node-deploy-domains' : 'node-deploy',
    table,
  );
} finally {
  await stopAllLabNodes();
  await sink.close();
}
