/**
 * A real authoritative DNS server for tests: dnsmasq (Debian's dnsmasq-base) on 127.0.0.1 and a
 * free port, answering only the records a test gives it. Names under `.test` and reverse names it
 * does not know get NXDOMAIN at once (`local=`); it never forwards anything (no-resolv): no query
 * leaves the machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createSocket } from 'node:dgram';
import os from 'node:os';
import path from 'node:path';
import { Resolver } from 'node:dns/promises';

export const DNSMASQ = '/usr/sbin/dnsmasq';

export type ZoneRecord =
  | { type: 'TXT'; name: string; value: string | string[] }
  | { type: 'CNAME'; name: string; target: string }
  /** A (or AAAA) with its PTR. */
  | { type: 'A'; name: string; address: string };

export interface DnsServer {
  /** `127.0.0.1:PORT`, for RELAYPLANE_DNS_SERVERS. */
  server: string;
  /** Restarts the server with these records (same port). */
  setRecords(records: ZoneRecord[]): Promise<void>;
  /** Stops answering (a DNS outage) until the next setRecords. */
  suspend(): Promise<void>;
  stop(): Promise<void>;
}

export function dnsmasqAvailable(): boolean {
  try {
    accessSync(DNSMASQ, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function quote(s: string): string {
  if (/["\\\n]/.test(s)) throw new Error(`cannot put ${JSON.stringify(s)} in a dnsmasq TXT record`);
  return `"${s}"`;
}

function config(records: ZoneRecord[]): string {
  const lines = ['local=/test/', 'local=/in-addr.arpa/', 'local=/ip6.arpa/'];
  const known = new Set(records.filter((r) => r.type === 'A').map((r) => r.name));
  for (const r of records) {
    if (r.type === 'TXT') lines.push(`txt-record=${r.name},${(Array.isArray(r.value) ? r.value : [r.value]).map(quote).join(',')}`);
    else if (r.type === 'A') lines.push(`host-record=${r.name},${r.address}`);
    else {
      // dnsmasq only answers a CNAME whose target it knows itself.
      if (!known.has(r.target)) {
        lines.push(`host-record=${r.target},127.0.0.254`);
        known.add(r.target);
      }
      lines.push(`cname=${r.name},${r.target}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startDnsServer(records: ZoneRecord[] = []): Promise<DnsServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-dns-'));
  const conf = path.join(dir, 'dnsmasq.conf');
  const port = await freeUdpPort();
  let child: ChildProcess | undefined;

  const start = async (zone: ZoneRecord[]) => {
    await writeFile(conf, config(zone));
    const proc = spawn(
      DNSMASQ,
      ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${port}`, `--conf-file=${conf}`, '--pid-file=', '--user=root', '--log-facility=-'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    child = proc;
    // Ready when it answers.
    const probe = new Resolver({ timeout: 200, tries: 1 });
    probe.setServers([`127.0.0.1:${port}`]);
    for (let i = 0; i < 50; i++) {
      if (proc.exitCode !== null) throw new Error(`dnsmasq exited: ${stderr.trim()}`);
      try {
        await probe.resolveTxt('ready.probe.test');
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOTFOUND' || (error as NodeJS.ErrnoException).code === 'ENODATA') return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`dnsmasq did not answer on 127.0.0.1:${port}: ${stderr.trim()}`);
  };

  const halt = async () => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  };

  await start(records);
  return {
    server: `127.0.0.1:${port}`,
    async setRecords(zone) {
      // dnsmasq re-reads its records only at start.
      await halt();
      await start(zone);
    },
    suspend: halt,
    async stop() {
      await halt();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
