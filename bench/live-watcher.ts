/**
 * The change-to-live benchmark's t1, watched from a process of its own: polling every node's files
 * every 5 ms costs CPU (≈ 1 ms per poll with 20 nodes), which in the benchmark's process would count
 * as the control plane's. Started once per row (bench/change-to-live.bench.ts, liveWatcher); it
 * reads one request per line on stdin and answers one line on stdout, both JSON:
 *
 *   in:  { nodes: [{ versionFile, maillog, offset, before }], timeoutMs }
 *   out: { liveAt: [ms since the epoch, per node], versions: [...] }  or  { error }
 *
 * A node is live once its `current/VERSION` is no longer `before` and its maillog shows master's
 * reload after `offset`.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';

interface Watched {
  versionFile: string;
  maillog: string;
  offset: number;
  before: string | null;
}

const RELOAD_LINE = /\/master\[\d+\]: reload -- /;
const POLL_MS = 5;

function readVersion(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function logSince(file: string, offset: number): string {
  if (!existsSync(file)) return '';
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    if (size <= offset) return '';
    const buf = Buffer.alloc(size - offset);
    readSync(fd, buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

async function watch(nodes: Watched[], timeoutMs: number): Promise<{ liveAt: number[]; versions: string[] }> {
  const liveAt: Array<number | undefined> = nodes.map(() => undefined);
  const versions: string[] = nodes.map(() => '');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = Date.now();
    nodes.forEach((node, k) => {
      if (liveAt[k] !== undefined) return;
      const version = readVersion(node.versionFile);
      if (version === null || version === node.before) return;
      if (RELOAD_LINE.test(logSince(node.maillog, node.offset))) {
        liveAt[k] = now;
        versions[k] = version;
      }
    });
    if (liveAt.every((at) => at !== undefined)) return { liveAt: liveAt as number[], versions };
    if (now >= deadline)
      throw new Error(`not live within ${timeoutMs} ms on ${liveAt.filter((at) => at === undefined).length} node(s)`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line) as { nodes: Watched[]; timeoutMs: number };
  const answer = await watch(request.nodes, request.timeoutMs).catch((error: unknown) => ({
    error: error instanceof Error ? error.message : String(error),
  }));
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
