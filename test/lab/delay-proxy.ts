/**
 * A loopback TCP proxy that delays every byte by `delayMs` in each direction: a node "far away"
 * (one-way delay, so a round trip costs 2 × delayMs) without touching the machine's interfaces.
 * `tc qdisc … netem` would do this on a veth pair of the lab's own network namespace, but this
 * machine's kernel has no netem ("Specified qdisc kind is unknown"); bandwidth is not limited.
 */
import net from 'node:net';
import { LOOPBACK } from './util.js';

export interface DelayProxy {
  port: number;
  close(): Promise<void>;
}

/** Order is kept: timers of equal delay fire in the order they were set. */
function delayed(from: net.Socket, to: net.Socket, delayMs: number): void {
  from.on('data', (chunk: Buffer) => {
    setTimeout(() => {
      if (!to.destroyed) to.write(chunk);
    }, delayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('error', () => to.destroy());
  from.on('close', () => setTimeout(() => to.destroy(), delayMs + 1));
}

export async function startDelayProxy(targetPort: number, delayMs: number): Promise<DelayProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: LOOPBACK, port: targetPort, noDelay: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    delayed(client, upstream, delayMs);
    delayed(upstream, client, delayMs);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
