/**
 * Usage accounting on the lab: known traffic for 3 tenants over 2 real Postfix nodes (several
 * recipients, deliveries, 5xx bounces at the smart host, 4xx deferrals later delivered) is
 * collected over SSH from the nodes' maillogs, and the usage API returns exactly the counts
 * computed from what was sent (deferral attempts and sizes read from the maillogs themselves).
 * Then: collecting twice counts nothing twice, a `postfix logrotate` in the middle of traffic loses
 * nothing, and a collection killed between reading and committing counts nothing until the next one.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, appendFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findExecutable, parseGrandTotals } from '../../bench/usage/pflogsumm.js';
import { connectNode, type NodeConnection, type NodeTarget } from '../../src/ssh/index.js';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate, toolGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { sendMail } from '../lab/submit.js';
import { HANG_GUARD_MS, sleep, waitUntil } from '../lab/util.js';

const labOk = labGate('usage e2e');
const pflogsummOk = labOk && toolGate('usage e2e: pflogsumm agreement', ['pflogsumm']);

const COUNTERS = ['messages', 'recipients', 'delivered', 'deferred', 'bounced', 'expired', 'bytes'] as const;
type Counters = Record<(typeof COUNTERS)[number], number>;
type Totals = Record<string, Counters>;
type GroupBy = 'tenant' | 'domain' | 'recipientDomain';
/** [sender domain, tenant index, smart host index] */
const DOMAINS = [
  ['t1a.test', 0, 0],
  ['t1b.test', 0, 1],
  ['t2.test', 1, 0],
  ['t3.test', 2, 1],
] as const;
const DAY = 86_400_000;
const run = promisify(execFile);

interface Sent {
  node: PostfixNode;
  queueId: string;
  tenantId: string;
  domain: string;
  rcpts: string[];
}

const zero = (): Counters => ({
  messages: 0,
  recipients: 0,
  delivered: 0,
  deferred: 0,
  bounced: 0,
  expired: 0,
  bytes: 0,
});
const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();
const add = (totals: Totals, key: string, part: Partial<Counters>) => {
  const c = (totals[key] ??= zero());
  for (const k of COUNTERS) c[k] += part[k] ?? 0;
};
/** Totals keyed `tenant|senderDomain|recipientDomain` projected onto one API grouping. */
const project = (totals: Totals, groupBy: GroupBy): Totals => {
  const out: Totals = {};
  for (const [key, c] of Object.entries(totals)) {
    const [tenant, sender, recipient] = key.split('|');
    add(
      out,
      groupBy === 'tenant' ? `${tenant}||` : groupBy === 'domain' ? `${tenant}|${sender}|` : `${tenant}||${recipient}`,
      c,
    );
  }
  return out;
};

/** What a node's maillog files (the live one and rotated ones) say, per queue id. */
async function logFacts(node: PostfixNode) {
  const dir = path.dirname(node.maillogPath);
  const files = (await readdir(dir)).filter((f) => f.startsWith('maillog'));
  const read = async (f: string) =>
    (f.endsWith('.gz') ? gunzipSync(await readFile(path.join(dir, f))) : await readFile(path.join(dir, f))).toString(
      'utf8',
    );
  const text = (await Promise.all(files.map(read))).join('');
  const size = new Map<string, number>();
  const status: { queueId: string; to: string; status: string }[] = [];
  const notifications: string[] = [];
  for (const line of text.split('\n')) {
    let m = / ([0-9A-F]{6,}): from=<[^>]*>, size=(\d+), nrcpt=/.exec(line);
    if (m !== null && !size.has(m[1]!)) size.set(m[1]!, Number(m[2]));
    m = / ([0-9A-F]{6,}): to=<([^>]*)>,.* status=(\w+)/.exec(line);
    if (m !== null) status.push({ queueId: m[1]!, to: m[2]!, status: m[3]! });
    m = /: sender non-delivery notification: ([0-9A-F]+)/.exec(line);
    if (m !== null) notifications.push(m[1]!);
  }
  return { size, status, notifications, files };
}

// Waits end on events (log lines, a blocked backend, a collection that ended); the timeouts (the
// lab project's, HANG_GUARD_MS) only stop hangs: on a loaded machine these steps take several
// times longer than on a quiet one.
describe.skipIf(!labOk)('usage accounting from real Postfix logs', () => {
  let t: TestApp;
  let sink: SmartHost;
  let hosts: SmartHost[];
  let nodes: PostfixNode[];
  let admin: Record<string, string>;
  const tenants: string[] = [];
  const nodeIds: string[] = [];
  const sent: Sent[] = [];
  const from = new Date(Math.floor(Date.now() / DAY) * DAY - DAY).toISOString();
  const to = new Date(Math.floor(Date.now() / DAY) * DAY + 2 * DAY).toISOString();

  const api = async <T = Record<string, unknown>>(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH',
    url: string,
    payload?: object,
    headers = admin,
  ) => {
    const r = await t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
    if (r.statusCode >= 300) throw new Error(`${method} ${url} → ${r.statusCode}: ${r.body}`);
    return r.json<T>();
  };
  const collect = () => t.app.jobs.usage.collectAll();
  const nodeUsage = async (): Promise<(Record<string, unknown> & { id: string })[]> =>
    (await api<{ items: { id: string; usage: Record<string, unknown> | null }[] }>('GET', '/v1/nodes')).items.map(
      (n) => ({ ...n.usage, id: n.id }),
    );

  /** Sends one message and remembers what it should count. */
  async function send(node: PostfixNode, d: (typeof DOMAINS)[number], rcpts: string[]) {
    const r = await sendMail(node, {
      from: `app@${d[0]}`,
      to: rcpts,
      body: `usage ${rcpts.join(' ')}\n`.repeat(d[1] + 1),
    });
    expect(r.queueId, r.response).toBeDefined();
    sent.push({ node, queueId: r.queueId!, tenantId: tenants[d[1]]!, domain: d[0], rcpts });
  }

  /** Every message sent has a final status line per recipient, only bounce notifications wait in queues, and the logs are quiet. */
  async function settle() {
    await waitUntil(
      async () => {
        for (const node of nodes) {
          const facts = await logFacts(node);
          for (const m of sent.filter((s) => s.node === node)) {
            const final = facts.status.filter(
              (s) => s.queueId === m.queueId && (s.status === 'sent' || s.status === 'bounced'),
            );
            if (final.length < m.rcpts.length) return false;
          }
          // postqueue -j names the null sender MAILER-DAEMON.
          if ((await node.queue()).some((q) => q.sender !== 'MAILER-DAEMON' || q.queue_name !== 'deferred'))
            return false;
        }
        return true;
      },
      HANG_GUARD_MS,
      'the lab mail to settle',
      100,
    );
    for (let sizes = ''; ;) {
      await sleep(300);
      const now = (await Promise.all(nodes.map(async (n) => (await stat(n.maillogPath)).size))).join(',');
      if (now === sizes) return;
      sizes = now;
    }
  }

  /** Counts derived from what was sent, with deferral attempts, sizes and bounce notifications read from the logs. */
  async function expected(): Promise<Totals> {
    const totals: Totals = {};
    for (const node of nodes) {
      const facts = await logFacts(node);
      for (const m of sent.filter((s) => s.node === node)) {
        const size = facts.size.get(m.queueId);
        expect(size, `qmgr size= line of ${m.queueId}`).toBeGreaterThan(0);
        add(totals, `${m.tenantId}|${m.domain}|`, { messages: 1, recipients: m.rcpts.length, bytes: size });
        for (const r of m.rcpts)
          add(
            totals,
            `${m.tenantId}|${m.domain}|${domainOf(r)}`,
            r.startsWith('reject-') ? { bounced: 1 } : { delivered: 1 },
          );
        for (const s of facts.status.filter((x) => x.queueId === m.queueId && x.status === 'deferred'))
          add(totals, `${m.tenantId}|${m.domain}|${domainOf(s.to)}`, { deferred: 1 });
      }
      // Postfix's own bounce notifications (null sender) belong to no tenant: held by retry: (deferred).
      for (const s of facts.status.filter((x) => facts.notifications.includes(x.queueId)))
        add(totals, `null||${domainOf(s.to)}`, { [s.status === 'sent' ? 'delivered' : s.status]: 1 });
    }
    return totals;
  }

  /** GET /v1/usage summed over the day buckets, keyed like `project`. */
  async function usage(groupBy: GroupBy, headers = admin, extra = ''): Promise<Totals> {
    const page = await api<{ items: Record<string, unknown>[]; next_cursor: string | null }>(
      'GET',
      `/v1/usage?groupBy=${groupBy}&granularity=day&from=${from}&to=${to}&limit=500${extra}`,
      undefined,
      headers,
    );
    expect(page.next_cursor).toBeNull();
    const out: Totals = {};
    for (const item of page.items)
      add(
        out,
        `${String(item.tenantId)}|${String(item.senderDomain ?? '')}|${String(item.recipientDomain ?? '')}`,
        item as Partial<Counters>,
      );
    return out;
  }

  async function expectExact() {
    const want = await expected();
    for (const groupBy of ['tenant', 'domain', 'recipientDomain'] as const)
      expect(await usage(groupBy), `groupBy=${groupBy}`).toEqual(project(want, groupBy));
    return want;
  }

  // Every SSH connection the app opens, and every command sent on them.
  const opened = { connections: 0, commands: 0 };
  const counted = async (target: NodeTarget): Promise<NodeConnection> => {
    const conn = await connectNode(target);
    opened.connections++;
    return {
      host: conn.host,
      exec: (c, o) => (opened.commands++, conn.exec(c, o)),
      execBytes: (c, o) => (opened.commands++, conn.execBytes(c, o)),
      writeFile: (p, c, m) => (opened.commands++, conn.writeFile(p, c, m)),
      isOpen: () => conn.isOpen?.() !== false,
      close: () => conn.close(),
    };
  };

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    hosts = [
      await startSmartHost({ name: 'ush1', tls: 'starttls', users: {} }),
      await startSmartHost({ name: 'ush2', tls: 'starttls', users: {} }),
    ];
    const cas = [sink, ...hosts].map((h) => h.caCertPem);
    // Postfix's defaults: `postfix logrotate` renames the log and gzips it a moment later
    // (maillog_file_compressor = gzip); the collector reads the rest of the rotated log either way.
    nodes = await Promise.all(
      ['usage1', 'usage2'].map((name) => startPostfixNode({ name, sinkRelayhost: sink.nexthop, tlsCaCerts: cas })),
    );
    await appendFile(
      path.join(nodes[1]!.baseDir, 'ssh', 'authorized_keys'),
      await readFile(`${nodes[0]!.ssh.privateKeyPath}.pub`, 'utf8'),
    );
    t = await createTestApp({
      ssh: {
        privateKeyPath: nodes[0]!.ssh.privateKeyPath,
        connectTimeoutMs: 3000,
        retry: { attempts: 2, baseDelayMs: 200 },
        concurrency: 4,
        connect: counted,
      },
      // As the jobs plugin sets it when collections run every minute: connections kept until the next run.
      usage: { finalDelaySeconds: 0, connectionIdleMs: 600_000 },
    });
    admin = (await tokenFor(t.app, ['admin'])).headers;
    const { version: _v, updatedAt: _u, ...settings } = await api('GET', '/v1/settings');
    await api('PUT', '/v1/settings', { ...settings, inetProtocols: 'ipv4', addressPreference: 'ipv4' });
    for (const i of [1, 2, 3])
      tenants.push((await api<{ id: string }>('POST', '/v1/tenants', { name: `Usage ${i}`, slug: `usage-${i}` })).id);
    const relays = [];
    for (const h of hosts)
      relays.push(
        (
          await api<{ id: string }>('POST', '/v1/relays', {
            name: h.name,
            host: '127.0.0.1',
            port: h.port,
            tls: 'starttls',
            verify: false,
          })
        ).id,
      );
    for (const [name, tenant, host] of DOMAINS) {
      const domain = await api<{ id: string }>('POST', `/v1/tenants/${tenants[tenant]}/domains`, {
        name,
        relayId: relays[host],
        status: 'verified',
      });
      hosts[host]!.users[`user-${name}`] = `pw ${name}`;
      await api('POST', `/v1/relays/${relays[host]}/credentials`, {
        username: `user-${name}`,
        secret: `pw ${name}`,
        domainId: domain.id,
      });
    }
    for (const n of nodes)
      nodeIds.push(
        (
          await api<{ id: string }>('POST', '/v1/nodes', {
            name: n.name,
            sshHost: '127.0.0.1',
            sshPort: n.ssh.port,
            hostKey: n.ssh.hostKeyFingerprint,
            configDir: n.configDir,
          })
        ).id,
      );
    await t.app.jobs.sync.handlers.runChange();
    const { items } = await api<{
      items: { liveVersion: string | null; desiredVersion: string | null; lastError: string | null }[];
    }>('GET', '/v1/nodes');
    for (const n of items)
      expect(
        n.liveVersion !== null && n.liveVersion === n.desiredVersion && n.lastError === null,
        JSON.stringify(n),
      ).toBe(true);
  });

  afterAll(async () => {
    await t?.close();
    await Promise.allSettled((nodes ?? []).map((n) => n.stop()));
    await stopAllLabNodes();
    await Promise.allSettled([sink, ...(hosts ?? [])].map((h) => h?.close()));
  });

  it('counts delivered, bounced and deferred-then-delivered mail exactly per tenant, domain and recipient domain', async () => {
    // Both smart hosts accept; `reject-` recipients get 550 (bounced).
    for (const [ni, node] of nodes.entries()) {
      for (const [di, d] of DOMAINS.entries()) {
        await send(node, d, [`u${ni}${di}@x.example.test`, `v${ni}@y.example.test`, `reject-w${di}@y.example.test`]);
        if ((ni + di) % 2 === 0) await send(node, d, [`solo${di}@x.example.test`]);
      }
    }
    await settle();
    // The second smart host answers 451 to every RCPT: its domains' mail is deferred, then delivered on a flush.
    hosts[1]!.setMode('defer', 'rcpt');
    const before = sent.length;
    for (const node of nodes)
      for (const d of DOMAINS.filter((x) => x[2] === 1))
        await send(node, d, [`later1@x.example.test`, `later2@y.example.test`]);
    const deferredSent = sent.slice(before);
    await waitUntil(
      async () => {
        for (const node of nodes) {
          const facts = await logFacts(node);
          for (const m of deferredSent.filter((s) => s.node === node)) {
            if (facts.status.filter((s) => s.queueId === m.queueId && s.status === 'deferred').length < m.rcpts.length)
              return false;
          }
        }
        return true;
      },
      HANG_GUARD_MS,
      'the deferrals to be logged',
    );
    hosts[1]!.setMode('accept');
    for (const node of nodes) await node.flushQueue();
    await settle();
    expect(hosts[1]!.received.filter((m) => m.rcptTo.includes('later1@x.example.test'))).toHaveLength(
      deferredSent.length,
    );

    await collect();
    const want = await expectExact();
    // Sanity of the expectation itself: every kind of count is there.
    const all = project(want, 'tenant');
    for (const tenant of tenants)
      for (const k of ['messages', 'recipients', 'delivered', 'bounced', 'bytes'] as const)
        expect(all[`${tenant}||`]![k]).toBeGreaterThan(0);
    expect(all[`${tenants[0]}||`]!.deferred + all[`${tenants[2]}||`]!.deferred).toBeGreaterThanOrEqual(
      deferredSent.length * 2,
    );

    // A tenant key sees its own tenant only, and another tenant's id is not found.
    const own = (await tokenFor(t.app, ['tenant'], tenants[1])).headers;
    expect(await usage('domain', own)).toEqual(
      Object.fromEntries(Object.entries(project(want, 'domain')).filter(([k]) => k.startsWith(`${tenants[1]}|`))),
    );
    const foreign = await t.app.inject({ method: 'GET', url: `/v1/usage?tenantId=${tenants[0]}`, headers: own });
    expect(foreign.statusCode).toBe(404);

    // The monthly summary adds up to the same totals (the month of every bucket the traffic made).
    const month = new Date().toISOString().slice(0, 7);
    for (const [i, tenant] of tenants.entries()) {
      const summary = await api<{ totals: Counters; domains: (Counters & { senderDomain: string })[] }>(
        'GET',
        `/v1/tenants/${tenant}/usage/summary?month=${month}`,
      );
      expect(summary.totals, `tenant ${i}`).toEqual(all[`${tenant}||`]);
      const byDomain = project(want, 'domain');
      for (const { senderDomain, ...c } of summary.domains) expect(c).toEqual(byDomain[`${tenant}|${senderDomain}|`]);
      expect(summary.domains.map((d) => d.senderDomain).sort()).toEqual(
        DOMAINS.filter((d) => d[1] === i)
          .map((d) => d[0])
          .sort(),
      );
    }

    // CSV carries the same numbers.
    const csv = await t.app.inject({
      method: 'GET',
      url: `/v1/usage?groupBy=recipientDomain&granularity=day&from=${from}&to=${to}&format=csv`,
      headers: admin,
    });
    expect(csv.statusCode, csv.body).toBe(200);
    const [header, ...rows] = csv.body.trim().split('\r\n');
    const columns = header!.split(',');
    const fromCsv: Totals = {};
    for (const row of rows) {
      const cells = Object.fromEntries(row.split(',').map((v, i) => [columns[i]!, v]));
      add(
        fromCsv,
        `${cells.tenantId === '' ? 'null' : cells.tenantId}||${cells.recipientDomain}`,
        Object.fromEntries(COUNTERS.map((k) => [k, Number(cells[k])])),
      );
    }
    expect(fromCsv).toEqual(project(want, 'recipientDomain'));
  });

  it('collecting again counts nothing twice; the nodes show their collection status', async () => {
    const before = await usage('recipientDomain');
    await collect();
    await collect();
    expect(await usage('recipientDomain')).toEqual(before);
    const status = await nodeUsage();
    expect(status.map((s) => s.id).sort()).toEqual([...nodeIds].sort());
    for (const [i, s] of status.entries()) {
      expect(s, `node ${i}`).toMatchObject({
        lastError: null,
        linesMalformed: 0,
        bytesLost: 0,
        logPath: expect.stringMatching(/\/log\/maillog$/),
      });
      expect(s.lastCollectedAt).toEqual(expect.any(String));
      expect(s.linesRead as number).toBeGreaterThan(0);
    }
  });

  it('a postfix logrotate in the middle of traffic loses nothing', async () => {
    const node = nodes[0]!;
    for (const d of DOMAINS) await send(node, d, [`pre-${d[1]}@x.example.test`, `reject-pre@y.example.test`]);
    await settle();
    // Traffic keeps flowing while the log is renamed and postlogd reopens it.
    const during = (async () => {
      for (const d of [...DOMAINS, ...DOMAINS]) await send(node, d, [`mid@x.example.test`]);
    })();
    await sleep(100);
    const rotate = await node.exec(`/usr/sbin/postfix -c ${node.configDir} logrotate`);
    expect(rotate.code, rotate.stderr).toBe(0);
    await during;
    for (const d of DOMAINS) await send(node, d, [`post@y.example.test`, `reject-post@x.example.test`]);
    await settle();
    // Collect only once postfix logrotate's default compressor has gzipped the renamed log.
    await waitUntil(
      async () => (await logFacts(node)).files.some((f) => f.endsWith('.gz')),
      HANG_GUARD_MS,
      'the rotated log to be gzipped',
      100,
    );
    const files = (await logFacts(node)).files;
    expect(files.length).toBe(2);
    expect(files.some((f) => f.endsWith('.gz'))).toBe(true);
    await collect();
    await expectExact();
    const status = (await nodeUsage()).find((s) => s.id === nodeIds[0])!;
    expect(status).toMatchObject({ lastError: null, bytesLost: 0 });
  });

  it('a collection killed between reading and committing counts nothing; the next counts everything once', async () => {
    const node = nodes[1]!;
    const committed = await usage('recipientDomain');
    for (const d of DOMAINS)
      await send(node, d, [`crash-${d[1]}@x.example.test`, `reject-crash@y.example.test`, `crash@y.example.test`]);
    await settle();

    const lock = new pg.Client({ connectionString: t.database.url });
    await lock.connect();
    try {
      await lock.query('BEGIN');
      await lock.query('SELECT 1 FROM node_log_cursors WHERE node_id = $1 FOR UPDATE', [nodeIds[1]]);
      let ended = false;
      const run = collect().finally(() => {
        ended = true;
      });
      // The collector read the log and now waits for the cursor row in its commit transaction: kill it
      // there. However long reading takes under load, the wait fails only if the collection ends first.
      const victim = await waitUntil(
        async () => {
          const r = await lock.query<{ pid: number }>(
            'SELECT pid FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))',
          );
          if (r.rows[0] === undefined && ended)
            throw new Error('the collection ended without waiting on the cursor lock');
          return r.rows[0]?.pid;
        },
        HANG_GUARD_MS,
        'the collector to wait on the cursor lock',
      );
      await lock.query('SELECT pg_terminate_backend($1)', [victim]);
      await lock.query('ROLLBACK');
      await run;
    } finally {
      await lock.end();
    }
    expect(await usage('recipientDomain')).toEqual(committed);
    const failed = (await nodeUsage()).find((s) => s.id === nodeIds[1])!;
    expect(failed.lastError).toEqual(expect.any(String));

    await collect();
    await expectExact();
    const status = (await nodeUsage()).find((s) => s.id === nodeIds[1])!;
    expect(status).toMatchObject({ lastError: null, bytesLost: 0 });
  });

  it.skipIf(!pflogsummOk)("agrees with pflogsumm on the nodes' real logs (rotated part included)", async () => {
    const pflogsumm = findExecutable('pflogsumm');
    const reference = { received: 0, delivered: 0, deferrals: 0, bounced: 0 };
    for (const node of nodes) {
      // Oldest first: the rotated (gzipped) file, then the live one.
      const dir = path.dirname(node.maillogPath);
      const files = (await readdir(dir))
        .filter((f) => f.startsWith('maillog'))
        .sort((a, b) => (a === 'maillog' ? 1 : b === 'maillog' ? -1 : a.localeCompare(b)));
      const text = (
        await Promise.all(
          files.map(async (f) =>
            (f.endsWith('.gz')
              ? gunzipSync(await readFile(path.join(dir, f)))
              : await readFile(path.join(dir, f))
            ).toString('utf8'),
          ),
        )
      ).join('');
      const whole = path.join(dir, 'whole-for-pflogsumm');
      await writeFile(whole, text);
      const { stdout } = await run(pflogsumm!, [`--syslog-name=${node.syslogName}`, whole], {
        maxBuffer: 16 * 1024 * 1024,
      });
      const totals = parseGrandTotals(stdout);
      reference.received += totals.received;
      reference.delivered += totals.delivered;
      reference.deferrals += totals.deferrals;
      reference.bounced += totals.bounced;
    }
    const ours = Object.values(await usage('tenant')).reduce(
      (sum, c) => ({
        received: sum.received + (c.messages ?? 0),
        delivered: sum.delivered + (c.delivered ?? 0),
        deferrals: sum.deferrals + (c.deferred ?? 0),
        bounced: sum.bounced + (c.bounced ?? 0),
      }),
      { received: 0, delivered: 0, deferrals: 0, bounced: 0 },
    );
    expect(reference.received).toBeGreaterThan(0);
    expect(ours).toEqual(reference);
  });

  it("a run over the connections kept from the last one costs one command per node: no login, the node's maillog_file checked in that command", async () => {
    await collect();
    const before = { ...opened };
    await collect();
    expect(opened.connections - before.connections).toBe(0);
    expect(opened.commands - before.commands).toBe(nodes.length);
    // Postfix logging elsewhere from now on: the next run follows it (and reads the new file from its start).
    const node = nodes[0]!;
    const moved = `${node.maillogPath}.moved`;
    await writeFile(moved, '');
    await node.postconf(['-e', `maillog_file=${moved}`]);
    try {
      await collect();
      const status = (await nodeUsage()).find((s) => s.id === nodeIds[0])!;
      expect(status).toMatchObject({ lastError: null, logPath: moved });
    } finally {
      await node.postconf(['-e', `maillog_file=${node.maillogPath}`]);
    }
  });
});
