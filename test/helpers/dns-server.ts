/**
 * A real DNS server for tests: dnsmasq (Debian's dnsmasq-base) on 127.0.0.1 and a free port,
 * answering only the records a test gives it. `local=/#/` makes it answer NXDOMAIN at once for
 * every other name (and NODATA for a known name's other types); with `no-resolv` and no upstream
 * it forwards nothing, so no query leaves the machine. A zone can also make names fail (SERVFAIL,
 * REFUSED, or no answer at all): dnsmasq forwards those to small responders on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { reverseName } from '../../src/dns/resolver.js';
import { findBinary } from '../lab/requirements.js';

/** Tests that start one open with toolGate(…, ['dnsmasq']), which finds it the same way. */
export const DNSMASQ = findBinary('dnsmasq') ?? '/usr/sbin/dnsmasq';

export type ZoneRecord =
  /** One TXT record; an array gives its character-strings (each ≤ 255 bytes; dnsmasq cuts a longer one). */
  | { type: 'TXT'; name: string; value: string | string[] }
  /**
   * dnsmasq's --cname needs a target it knows itself: a target with an A/AAAA record here gets one
   * (queries of other types follow it); any other is published as raw data (--dns-rr, type 5) that
   * answers CNAME queries only, which is what record checks ask.
   */
  | { type: 'CNAME'; name: string; target: string }
  /**
   * An address, with a PTR back to the name unless a PTR record is given for the address.
   * `ptr: false`: none at all (dnsmasq's address=, which also answers the names under this one and
   * gives NXDOMAIN for its other types); then a FAIL record can make the reverse lookup fail.
   */
  | { type: 'A' | 'AAAA'; name: string; address: string; ptr?: false }
  /** A mail exchanger (dnsmasq's mx-host), preference 10 unless given. */
  | { type: 'MX'; name: string; exchange: string; preference?: number }
  /** `name`: the address (or its reverse name); replaces the PTR an A/AAAA record would give it. */
  | { type: 'PTR'; name: string; target: string }
  /** Every query for the name and the names under it fails this way. */
  | { type: 'FAIL'; name: string; failure: Failure };

export type Failure = 'SERVFAIL' | 'REFUSED' | 'TIMEOUT';

export interface DnsServer {
  /** `127.0.0.1:PORT`, as RELAYPLANE_DNS_SERVERS takes it. */
  server: string;
  port: number;
  /** Restarts dnsmasq with these records, on the same port (it reads TXT records only at start). */
  setRecords(records: ZoneRecord[]): Promise<void>;
  /** Stops dnsmasq until the next setRecords: queries are refused (ICMP port unreachable). */
  suspend(): Promise<void>;
  stop(): Promise<void>;
}

function quote(s: string): string {
  if (/[\x00-\x1f\x7f]/.test(s)) throw new Error(`cannot put ${JSON.stringify(s)} in a dnsmasq TXT record`);
  return `"${s.replace(/[\\"]/g, '\\$&')}"`;
}

/** A name in DNS wire format, hex (for --dns-rr). */
function wireName(name: string): string {
  const labels = name.replace(/\.$/, '').split('.');
  return Buffer.concat([
    ...labels.map((l) => Buffer.concat([Buffer.from([Buffer.byteLength(l)]), Buffer.from(l)])),
    Buffer.from([0]),
  ]).toString('hex');
}

function config(records: ZoneRecord[], responders: Responders): string {
  const lines = ['local=/#/'];
  const hosts = new Set(records.flatMap((r) => (r.type === 'A' || r.type === 'AAAA' ? [r.name.toLowerCase()] : [])));
  for (const r of records) {
    switch (r.type) {
      case 'TXT':
        lines.push(`txt-record=${r.name},${(Array.isArray(r.value) ? r.value : [r.value]).map(quote).join(',')}`);
        break;
      case 'CNAME':
        lines.push(
          hosts.has(r.target.toLowerCase())
            ? `cname=${r.name},${r.target}`
            : `dns-rr=${r.name},5,${wireName(r.target)}`,
        );
        break;
      case 'A':
      case 'AAAA':
        if (!(r.type === 'A' ? isIPv4 : isIPv6)(r.address))
          throw new Error(
            `${r.type} record for ${r.name}: ${r.address} is not an IPv${r.type === 'A' ? 4 : 6} address`,
          );
        lines.push(r.ptr === false ? `address=/${r.name}/${r.address}` : `host-record=${r.name},${r.address}`);
        break;
      case 'MX':
        lines.push(`mx-host=${r.name},${r.exchange},${r.preference ?? 10}`);
        break;
      case 'PTR':
        lines.push(`ptr-record=${/\.arpa\.?$/i.test(r.name) ? r.name : reverseName(r.name)},${r.target}`);
        break;
      case 'FAIL':
        lines.push(`server=/${r.name}/127.0.0.1#${responders.port(r.failure)}`);
        break;
    }
  }
  return `${lines.join('\n')}\n`;
}

const RCODES = { SERVFAIL: 2, REFUSED: 5 } as const;

/** Answers every query with an error code, or (TIMEOUT) never: where dnsmasq forwards FAIL names. */
class Responders {
  private readonly sockets = new Map<Failure, { socket: Socket; port: number }>();

  async start(failures: Iterable<Failure>): Promise<void> {
    for (const failure of failures) {
      if (this.sockets.has(failure)) continue;
      const socket = createSocket('udp4');
      socket.on('message', (query, from) => {
        if (failure === 'TIMEOUT' || query.length < 12) return;
        socket.send(errorReply(query, RCODES[failure]), from.port, from.address);
      });
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      this.sockets.set(failure, { socket, port: socket.address().port });
    }
  }

  port(failure: Failure): number {
    const entry = this.sockets.get(failure);
    if (entry === undefined) throw new Error(`no ${failure} responder`);
    return entry.port;
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.sockets.values()].map(({ socket }) => new Promise<void>((resolve) => socket.close(() => resolve()))),
    );
    this.sockets.clear();
  }
}

/** The query's header and question, flagged as a response with `rcode` and no records. */
function errorReply(query: Buffer, rcode: number): Buffer {
  let end = 12;
  while (end < query.length && query[end] !== 0) end += query[end]! + 1;
  const reply = Buffer.from(query.subarray(0, Math.min(end + 5, query.length)));
  reply[2] = 0x80 | (query[2]! & 0x79); // QR, opcode and RD kept
  reply[3] = 0x80 | rcode; // RA
  reply.writeUInt16BE(0, 6);
  reply.writeUInt16BE(0, 8);
  reply.writeUInt16BE(0, 10);
  return reply;
}

/**
 * dnsmasq under a shell that kills it when our end of its stdin closes: when this process ends,
 * however it ends (a vitest worker is killed, not exited), dnsmasq goes with it.
 */
const WATCHDOG =
  'exec 3<&0; "$@" </dev/null & pid=$!; (read -r _ <&3; kill "$pid" 2>/dev/null) & exec 3<&-; wait "$pid"';

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

async function answers(port: number): Promise<boolean> {
  const probe = new Resolver({ timeout: 100, tries: 1 });
  probe.setServers([`127.0.0.1:${port}`]);
  try {
    await probe.resolveTxt('ready.probe.invalid');
    return true;
  } catch (error) {
    return ['ENOTFOUND', 'ENODATA'].includes((error as NodeJS.ErrnoException).code ?? '');
  }
}

/** Starts dnsmasq with `records` (an array, or `{ records }`). */
export async function startDnsServer(zone: ZoneRecord[] | { records?: ZoneRecord[] } = []): Promise<DnsServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-dns-'));
  const conf = path.join(dir, 'dnsmasq.conf');
  const responders = new Responders();
  let port = await freeUdpPort();
  let child: ChildProcess | undefined;

  const launch = async (records: ZoneRecord[]): Promise<string | null> => {
    await responders.start(records.flatMap((r) => (r.type === 'FAIL' ? [r.failure] : [])));
    await writeFile(conf, config(records, responders));
    const args = [
      '--keep-in-foreground',
      '--no-resolv',
      '--no-hosts',
      '--no-poll',
      '--bind-interfaces',
      '--listen-address=127.0.0.1',
      `--port=${port}`,
    ];
    args.push(
      `--conf-file=${conf}`,
      '--pid-file=',
      '--user=root',
      '--log-facility=-',
      '--local-ttl=0',
      '--cache-size=0',
    );
    const proc = spawn('sh', ['-c', WATCHDOG, 'dnsmasq-watchdog', DNSMASQ, ...args], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    proc.once('exit', () => proc.stdin?.destroy());
    child = proc;
    for (let i = 0; i < 100; i++) {
      if (proc.exitCode !== null) return stderr.trim() || `dnsmasq exited with ${proc.exitCode}`;
      if (await answers(port)) return null;
      await new Promise((r) => setTimeout(r, 20));
    }
    return `dnsmasq did not answer on 127.0.0.1:${port}: ${stderr.trim()}`;
  };

  const halt = async () => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.stdin?.end();
    await exited;
  };

  const start = async (records: ZoneRecord[], firstStart: boolean) => {
    for (let attempt = 0; ; attempt++) {
      const error = await launch(records);
      if (error === null) return;
      await halt();
      // Another process may have taken the free port in the meantime: only a first start moves.
      if (!firstStart || attempt >= 2 || !/address already in use/i.test(error)) throw new Error(error);
      port = await freeUdpPort();
    }
  };

  try {
    await start(Array.isArray(zone) ? zone : (zone.records ?? []), true);
  } catch (error) {
    await responders.close();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    server: `127.0.0.1:${port}`,
    port,
    async setRecords(records) {
      await halt();
      await start(records, false);
    },
    suspend: halt,
    async stop() {
      await halt();
      await responders.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A DNS server that never answers (queries time out): a bound UDP socket that reads and drops. */
export async function startUnresponsiveDnsServer(): Promise<{ server: string; stop(): Promise<void> }> {
  const socket = createSocket('udp4');
  socket.on('message', () => {});
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    stop: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
