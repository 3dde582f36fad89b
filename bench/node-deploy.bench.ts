import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { deployBundle, type Bundle } from '../src/deploy/index.js';
import { connectNode } from '../src/ssh/index.js';
import { buildBundle } from '../test/deploy/bundles.js';
import { startPostfixNode, stopAllLabNodes } from '../test/lab/postfix-node.js';
import { startSmartHost } from '../test/lab/smart-host.js';
import { machine, recordSection } from './lib.js';

/**
 * Issue 23's per-node cost, measured one deploy at a time instead of from a fleet's difference: a
 * node costs the control plane one deploy per change, so the control plane's CPU per node per
 * change is its CPU per deploy. BENCH_DEPLOYS (default 40) delta deploys in a row to one lab node
 * (real sshd + Postfix 3.7 on loopback), each onboarding one domain on a small config, over the
 * connection the sync worker would keep: the control-plane process's CPU per deploy (user and
 * system), its socket writes per deploy, and, where `accton` runs (package acct), the processes the
 * node started per deploy from its own accounting. No database and no API: the 20-node row of
 * `change-to-live` measures those with the rest.
 */
const DEPLOYS = Number(process.env.BENCH_DEPLOYS ?? 40);
const WARMUP = 5;

let socketWrites = 0;
const write = net.Socket.prototype.write;
net.Socket.prototype.write = function (this: net.Socket, ...args: Parameters<typeof write>) {
  socketWrites++;
  return write.apply(this, args);
} as typeof write;

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
const node = await startPostfixNode({
  name: 'deploybench',
  sinkRelayhost: sink.nexthop,
  tlsCaCerts: [sink.caCertPem],
  ownHome: true,
});
try {
  const conn = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint });
  const bundleOf = (domains: number): Bundle =>
    buildBundle(
      Array.from({ length: domains }, (_, i) => ({
        domain: `d${String(i).padStart(5, '0')}.test`,
        nexthop: sink.nexthop,
        user: `u${i}`,
        password: `pw${i}`,
      })),
    );
  let current: Bundle | undefined;
  let steps = '';
  const deploy = async (next: Bundle) => {
    const outcome = await deployBundle(conn, next, {
      configDir: node.configDir,
      expectedLiveVersion: current?.version ?? null,
      base: current,
      settleMs: 0,
    });
    if (outcome.state !== 'live') throw new Error(`deploy ${outcome.state}: ${outcome.error}`);
    steps = outcome.steps.map((s) => s.step).join(', ');
    current = next;
  };
  for (let i = 0; i < WARMUP; i++) await deploy(bundleOf(20 + i));

  const writesBefore = socketWrites;
  let cpu = { user: 0, system: 0 };
  const processes = await accounted(async () => {
    const before = process.cpuUsage();
    for (let i = 0; i < DEPLOYS; i++) await deploy(bundleOf(20 + WARMUP + i));
    cpu = process.cpuUsage(before);
  });
  conn.close();

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
  const table = [
    '## Control-plane CPU per node per change: one deploy at a time (issue 23)',
    '',
    `Command: \`npm run bench -- node-deploy\` (${DEPLOYS} delta deploys in a row after ${WARMUP} unmeasured, each onboarding one domain on a config of 25–${25 + DEPLOYS} domains, to one lab node: real sshd + Postfix 3.7 on loopback, over one kept connection, settle time 0; ${machine()}; ${new Date().toISOString().slice(0, 10)}). The node's processes come from process accounting (\`accton\`, package acct) and count every process the machine started meanwhile, the lab node's Postfix daemons among them.`,
    '',
    '| Deploys | Control-plane CPU per deploy | user | system | Socket writes per deploy | Node processes per deploy |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
    `| ${DEPLOYS} | **${ms(cpu.user + cpu.system)}** | ${ms(cpu.user)} | ${ms(cpu.system)} | ${per(socketWrites - writesBefore).toFixed(1)} | ${total === null ? '— (no accton)' : per(total).toFixed(1)} |`,
    '',
    `Steps of each deploy: ${steps}.${processes === null ? '' : ` Processes per deploy by name: ${top}.`}`,
  ].join('\n');
  console.log(table);
  await recordSection('node-deploy', table);
} finally {
  await stopAllLabNodes();
  await sink.close();
}
