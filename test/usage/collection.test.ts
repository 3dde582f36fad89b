/**
 * Usage collection against a real database and real log files: the node's commands (stat, head,
 * tail over a byte offset, the rotated-file search) run in a local shell instead of over SSH (the
 * lab test test/e2e/usage.test.ts runs them over SSH on real Postfix nodes). Covers exactly-once
 * across re-reads, rotation (rename and copytruncate), a crash between reading and committing,
 * attribution by domain ownership at sending time, final hours, and the usage API.
 */
import { appendFile, mkdtemp, rename, rm, truncate, copyFile, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { createDomain, createRelay, createTenant } from '../helpers/fixtures.js';
import { localConnection } from '../helpers/local-node.js';
import { emptyCounters, type UsageCounters } from '../../src/usage/accumulator.js';

const HOUR = 3_600_000;
const execFileAsync = promisify(execFile);
const HOST_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPpSWsIY6BdSprG0TgIPYzp0xZwJIbAxkrT42g8eVtLm';

type Rcpt = { to: string; status: 'sent' | 'deferred' | 'bounced' };
let qidCounter = 0x10000000;

/** The log lines of one message as Postfix writes them (RFC 3339 stamps, so the hour is explicit). */
function message(at: Date, from: string, rcpts: Rcpt[], size = 1000): string[] {
  const qid = (qidCounter++).toString(16).toUpperCase();
  const t = (offsetMs: number) => new Date(at.getTime() + offsetMs).toISOString();
  const lines = [
    `${t(0)} mx1 postfix/smtpd[100]: ${qid}: client=panel.example[192.0.2.1]`,
    `${t(10)} mx1 postfix/cleanup[103]: ${qid}: message-id=<${qid}@panel.example>`,
    `${t(20)} mx1 postfix/qmgr[101]: ${qid}: from=<${from}>, size=${size}, nrcpt=${rcpts.length} (queue active)`,
  ];
  for (const r of rcpts) {
    const dsn = r.status === 'sent' ? '2.0.0' : r.status === 'deferred' ? '4.2.0' : '5.1.1';
    lines.push(
      `${t(30)} mx1 postfix/smtp[102]: ${qid}: to=<${r.to}>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.1, delays=0/0/0/0.1, dsn=${dsn}, status=${r.status} (reply)`,
    );
  }
  if (rcpts.every((r) => r.status !== 'deferred')) lines.push(`${t(40)} mx1 postfix/qmgr[101]: ${qid}: removed`);
  return lines;
}

describe('usage collection from node logs', () => {
  let t: TestApp;
  let dir: string;
  let logFile: string;
  let admin: { headers: Record<string, string> };
  let tenantA: string;
  let tenantB: string;
  let domainA: string;
  let domainB: string;
  let nodeId: string;
  let relayId: string;
  const hour0 = new Date(Math.floor(Date.now() / HOUR) * HOUR - 5 * HOUR);

  const write = (lines: string[]) => appendFile(logFile, lines.map((l) => `${l}\n`).join(''));
  const collect = () => t.app.jobs.usage.collectAll();
  const usage = async (query: string, headers = admin.headers) => {
    const r = await t.app.inject({ method: 'GET', url: `/v1/usage?${query}`, headers });
    expect(r.statusCode, r.body).toBe(200);
    return r.json<{ items: Record<string, unknown>[]; next_cursor: string | null }>();
  };
  const totalsBy = async (groupBy: string, key: string) => {
    const page = await usage(`groupBy=${groupBy}&granularity=day&from=${dayStart(hour0)}&to=${dayEnd()}&limit=500`);
    const out: Record<string, UsageCounters> = {};
    for (const item of page.items) {
      const k = String(item[key] ?? 'null');
      const acc = (out[k] ??= emptyCounters());
      for (const c of Object.keys(acc) as (keyof UsageCounters)[]) acc[c] += item[c] as number;
    }
    return out;
  };
  const dayStart = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())).toISOString();
  const dayEnd = () =>
    new Date(
      Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1),
    ).toISOString();
  const nodeUsage = async () => {
    const r = await t.app.inject({ method: 'GET', url: `/v1/nodes/${nodeId}`, headers: admin.headers });
    return r.json<{ usage: Record<string, unknown> | null }>().usage;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-usage-'));
    logFile = path.join(dir, 'maillog');
    await writeFile(logFile, '');
    const keyFile = path.join(dir, 'id_ed25519');
    await writeFile(keyFile, 'not used: commands run locally\n', { mode: 0o600 });
    t = await createTestApp({
      ssh: { privateKeyPath: keyFile, connect: async () => localConnection() },
      usage: { finalDelaySeconds: 0, chunkBytes: 4096 },
    });
    admin = await tokenFor(t.app, ['admin']);
    tenantA = (await createTenant(t.app, admin.headers)).id;
    tenantB = (await createTenant(t.app, admin.headers)).id;
    relayId = (await createRelay(t.app, admin.headers)).id;
    domainA = (await createDomain(t.app, admin.headers, tenantA, { relayId })).name;
    domainB = (await createDomain(t.app, admin.headers, tenantB, { relayId })).name;
    const node = await t.app.inject({
      method: 'POST',
      url: '/v1/nodes',
      headers: admin.headers,
      payload: { name: 'mx1', sshHost: '127.0.0.1', hostKey: HOST_KEY, logPath: logFile },
    });
    expect(node.statusCode, node.body).toBe(201);
    nodeId = node.json<{ id: string }>().id;
  });

  afterAll(async () => {
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('counts messages, recipients, outcomes and bytes per tenant, sender domain and recipient domain', async () => {
    await write([
      ...message(
        hour0,
        `alice@${domainA}`,
        [
          { to: 'x@gmail.test', status: 'sent' },
          { to: 'y@gmail.test', status: 'sent' },
          { to: 'z@yahoo.test', status: 'bounced' },
        ],
        2000,
      ),
      ...message(
        new Date(hour0.getTime() + 10 * 60_000),
        `bob@${domainB}`,
        [{ to: 'q@yahoo.test', status: 'sent' }],
        500,
      ),
      'this line is not from Postfix',
      `${new Date(hour0.getTime() + 11 * 60_000).toISOString()} mx1 postfix/anvil[9]: statistics: max connection rate 1/60s`,
    ]);
    await collect();
    const byDomain = await totalsBy('domain', 'senderDomain');
    expect(byDomain[domainA]).toEqual({
      messages: 1,
      recipients: 3,
      delivered: 2,
      deferred: 0,
      bounced: 1,
      expired: 0,
      bytes: 2000,
    });
    expect(byDomain[domainB]).toEqual({
      messages: 1,
      recipients: 1,
      delivered: 1,
      deferred: 0,
      bounced: 0,
      expired: 0,
      bytes: 500,
    });
    const byRecipient = await totalsBy('recipientDomain', 'recipientDomain');
    expect(byRecipient['gmail.test']).toMatchObject({ delivered: 2, bounced: 0 });
    expect(byRecipient['yahoo.test']).toMatchObject({ delivered: 1, bounced: 1 });
    expect(byRecipient.null).toMatchObject({ messages: 2, recipients: 4, bytes: 2500 });
    const status = await nodeUsage();
    expect(status).toMatchObject({ logPath: logFile, linesRead: 14, linesMalformed: 1, lastError: null });
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/^relayplane_usage_log_lines_total\{node="mx1"\} 14$/m);
    expect(metrics.body).toMatch(/^relayplane_usage_collections_total\{outcome="ok"\} 1$/m);
    expect(status?.lastCollectedAt).toEqual(expect.any(String));
  });

  it('collecting again counts nothing twice; a retried message is counted once, its attempts each time', async () => {
    const before = await totalsBy('tenant', 'tenantId');
    await collect();
    await collect();
    expect(await totalsBy('tenant', 'tenantId')).toEqual(before);

    const at = new Date(hour0.getTime() + HOUR);
    const first = message(at, `carol@${domainA}`, [{ to: 'r@gmail.test', status: 'deferred' }], 700);
    const qid = first[0]!.split(' ')[3]!.replace(':', '');
    await write(first);
    await collect();
    // The retry from the deferred queue: qmgr logs from= again, then the delivery.
    const later = new Date(at.getTime() + 20 * 60_000).toISOString();
    await write([
      `${later} mx1 postfix/qmgr[101]: ${qid}: from=<carol@${domainA}>, size=700, nrcpt=1 (queue active)`,
      `${later} mx1 postfix/smtp[102]: ${qid}: to=<r@gmail.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=1200, delays=1200/0/0/0, dsn=2.0.0, status=sent (ok)`,
      `${later} mx1 postfix/qmgr[101]: ${qid}: removed`,
    ]);
    await collect();
    const after = await totalsBy('tenant', 'tenantId');
    expect(after[tenantA]).toEqual({
      ...before[tenantA],
      messages: 2,
      recipients: 4,
      delivered: 3,
      deferred: 1,
      bytes: 2700,
    });

    // Down to the message: each counted message that left the queue, with what it counted.
    const month = `from=${new Date(Date.UTC(hour0.getUTCFullYear(), hour0.getUTCMonth(), 1)).toISOString()}&to=${new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() + 1, 1)).toISOString()}`;
    const records = await t.app.inject({
      method: 'GET',
      url: `/v1/usage/messages?tenantId=${tenantA}&${month}`,
      headers: admin.headers,
    });
    expect(records.statusCode, records.body).toBe(200);
    const items = records.json<{ items: Record<string, unknown>[] }>().items;
    expect(
      items.map(({ sender, bytes, recipients, delivered, deferred, bounced, expired, node }) => ({
        sender,
        bytes,
        recipients,
        delivered,
        deferred,
        bounced,
        expired,
        node,
      })),
    ).toEqual([
      {
        sender: `alice@${domainA}`,
        bytes: 2000,
        recipients: 3,
        delivered: 2,
        deferred: 0,
        bounced: 1,
        expired: false,
        node: 'mx1',
      },
      {
        sender: `carol@${domainA}`,
        bytes: 700,
        recipients: 1,
        delivered: 1,
        deferred: 1,
        bounced: 0,
        expired: false,
        node: 'mx1',
      },
    ]);
    expect(items[1]?.queueId).toBe(qid);
    // Page by page (limit=1), the same records in the same order, and a last page without a cursor.
    const paged: Record<string, unknown>[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/usage/messages?tenantId=${tenantA}&${month}&limit=1${cursor === null ? '' : `&cursor=${cursor}`}`;
      const page = await t.app.inject({ method: 'GET', url, headers: admin.headers });
      expect(page.statusCode, page.body).toBe(200);
      const body: { items: Record<string, unknown>[]; next_cursor: string | null } = page.json();
      expect(body.items.length).toBeLessThanOrEqual(1);
      paged.push(...body.items);
      cursor = body.next_cursor;
    } while (cursor !== null);
    expect(paged).toEqual(items);
    const asB = await tokenFor(t.app, ['tenant'], tenantB);
    const own = await t.app.inject({ method: 'GET', url: `/v1/usage/messages?${month}`, headers: asB.headers });
    expect(own.json<{ items: { tenantId: string }[] }>().items.every((m) => m.tenantId === tenantB)).toBe(true);
  });

  it('reads the rest of a renamed log, then the new one; the copy of a truncated one; and a gzipped rotation', async () => {
    const before = (await totalsBy('tenant', 'tenantId'))[tenantB]!;
    const at = new Date(hour0.getTime() + 2 * HOUR);
    await write(message(at, `bob@${domainB}`, [{ to: 'a@x.test', status: 'sent' }]));
    await collect();
    // Written, not collected, then rotated away by rename (postfix logrotate, logrotate's default).
    await write(message(at, `bob@${domainB}`, [{ to: 'b@x.test', status: 'sent' }]));
    await rename(logFile, `${logFile}.1`);
    await writeFile(logFile, '');
    await write(message(at, `bob@${domainB}`, [{ to: 'c@x.test', status: 'sent' }]));
    await collect();
    let now = (await totalsBy('tenant', 'tenantId'))[tenantB]!;
    expect(now.messages - before.messages).toBe(3);
    expect(now.delivered - before.delivered).toBe(3);

    // copytruncate: the log is copied, then truncated in place (same inode).
    await write(message(at, `bob@${domainB}`, [{ to: 'd@x.test', status: 'sent' }]));
    await copyFile(logFile, `${logFile}.2`);
    await truncate(logFile, 0);
    await write(
      message(at, `bob@${domainB}`, [
        { to: 'e@x.test', status: 'sent' },
        { to: 'f@x.test', status: 'sent' },
      ]),
    );
    await collect();
    now = (await totalsBy('tenant', 'tenantId'))[tenantB]!;
    expect(now.messages - before.messages).toBe(5);
    expect(now.delivered - before.delivered).toBe(6);
    expect(await nodeUsage()).toMatchObject({ bytesLost: 0, lastError: null });

    // postfix logrotate with its default maillog_file_compressor: renamed, then gzipped.
    await write(message(at, `bob@${domainB}`, [{ to: 'g@x.test', status: 'sent' }]));
    await rename(logFile, `${logFile}.20261128-000000`);
    await writeFile(logFile, '');
    await execFileAsync('gzip', [`${logFile}.20261128-000000`]);
    await write(message(at, `bob@${domainB}`, [{ to: 'h@x.test', status: 'sent' }]));
    await collect();
    now = (await totalsBy('tenant', 'tenantId'))[tenantB]!;
    expect(now.messages - before.messages).toBe(7);
    expect(now.delivered - before.delivered).toBe(8);
    expect(await nodeUsage()).toMatchObject({ bytesLost: 0, lastError: null });
    await rm(`${logFile}.1`);
    await rm(`${logFile}.2`);
    await rm(`${logFile}.20261128-000000.gz`);
  });

  it('a crash between reading and committing counts nothing; the next run counts it once', async () => {
    const before = (await totalsBy('tenant', 'tenantId'))[tenantA]!;
    await write(
      message(new Date(hour0.getTime() + 3 * HOUR), `alice@${domainA}`, [{ to: 'z@gmail.test', status: 'sent' }]),
    );
    const connect = async () => {
      const client = new pg.Client({ connectionString: t.database.url.replace(/\?.*$/, '') });
      await client.connect();
      return client;
    };
    // One connection holds the cursor row; another (outside any transaction, so that it sees
    // pg_stat_activity afresh) kills the collector's connection while it waits for that row.
    const blocker = await connect();
    const killer = await connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM node_log_cursors WHERE node_id = $1 FOR UPDATE', [nodeId]);
      const running = collect();
      let killed = 0;
      for (let i = 0; i < 200 && killed === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const r = await killer.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%node_log_cursors%FOR UPDATE%'`,
        );
        killed = r.rowCount ?? 0;
      }
      expect(killed).toBeGreaterThan(0);
      // The collector records its error on the cursor row: let it have the row.
      await blocker.query('ROLLBACK');
      await running;
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      await blocker.end();
      await killer.end();
    }
    expect((await nodeUsage())?.lastError).toEqual(expect.any(String));
    expect((await totalsBy('tenant', 'tenantId'))[tenantA]).toEqual(before);
    await collect();
    expect((await totalsBy('tenant', 'tenantId'))[tenantA]).toEqual({
      ...before,
      messages: before.messages + 1,
      recipients: before.recipients + 1,
      delivered: before.delivered + 1,
      bytes: before.bytes + 1000,
    });
    expect((await nodeUsage())?.lastError).toBeNull();
  });

  it('attributes a message to the tenant that owned the sender domain when it was queued', async () => {
    const moving = (await createDomain(t.app, admin.headers, tenantA, { relayId })).name;
    await write(message(new Date(), `x@${moving}`, [{ to: 'a@m.test', status: 'sent' }]));
    await collect();
    const owned = await t.app.inject({
      method: 'GET',
      url: `/v1/tenants/${tenantA}/domains?limit=100`,
      headers: admin.headers,
    });
    const row = owned.json<{ items: { id: string; name: string }[] }>().items.find((d) => d.name === moving)!;
    const del = await t.app.inject({ method: 'DELETE', url: `/v1/domains/${row.id}`, headers: admin.headers });
    expect(del.statusCode, del.body).toBe(204);
    await new Promise((r) => setTimeout(r, 1100)); // log stamps have whole seconds
    await createDomain(t.app, admin.headers, tenantB, { name: moving, relayId });
    await new Promise((r) => setTimeout(r, 1100));
    await write(message(new Date(), `x@${moving}`, [{ to: 'b@m.test', status: 'sent' }]));
    await collect();
    const byDomain = await usage(`groupBy=domain&granularity=day&from=${dayStart(hour0)}&to=${dayEnd()}&limit=500`);
    const rows = byDomain.items.filter((i) => i.senderDomain === moving);
    const sum = (tenant: string) =>
      rows.filter((r) => r.tenantId === tenant).reduce((n, r) => n + (r.messages as number), 0);
    expect(sum(tenantA)).toBe(1);
    expect(sum(tenantB)).toBe(1);
  });

  it('hours end up final, and a line dated in a final hour counts in the first open hour', async () => {
    const page = await usage(
      `granularity=hour&from=${hour0.toISOString()}&to=${new Date(hour0.getTime() + HOUR).toISOString()}`,
    );
    expect(page.items.length).toBeGreaterThan(0);
    expect(page.items.every((i) => i.final === true)).toBe(true);
    const lateBefore = (await nodeUsage())?.lateEvents as number;
    await write(message(hour0, `alice@${domainA}`, [{ to: 'late@gmail.test', status: 'sent' }]));
    await collect();
    const again = await usage(
      `granularity=hour&from=${hour0.toISOString()}&to=${new Date(hour0.getTime() + HOUR).toISOString()}`,
    );
    expect(again.items).toEqual(page.items);
    expect((await nodeUsage())?.lateEvents).toBeGreaterThan(lateBefore);
  });

  it('serves each tenant only its own usage, CSV for billing imports, and a monthly summary', async () => {
    const asA = await tokenFor(t.app, ['tenant'], tenantA);
    const own = await usage(`granularity=month&from=${monthStart()}&to=${monthEnd()}`, asA.headers);
    expect(own.items.length).toBeGreaterThan(0);
    expect(own.items.every((i) => i.tenantId === tenantA)).toBe(true);
    const other = await t.app.inject({ method: 'GET', url: `/v1/usage?tenantId=${tenantB}`, headers: asA.headers });
    expect(other.statusCode).toBe(404);

    const billing = await tokenFor(t.app, ['usage:read']);
    const all = await usage(`granularity=month&from=${monthStart()}&to=${monthEnd()}`, billing.headers);
    const csv = await t.app.inject({
      method: 'GET',
      url: `/v1/usage?granularity=month&from=${monthStart()}&to=${monthEnd()}`,
      headers: { ...billing.headers, accept: 'text/csv' },
    });
    expect(csv.statusCode).toBe(200);
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    const lines = csv.body.trim().split('\r\n');
    expect(lines[0]).toBe(
      'start,end,final,tenantId,senderDomain,recipientDomain,messages,recipients,delivered,deferred,bounced,expired,bytes',
    );
    expect(lines.length - 1).toBe(all.items.length);
    const rowA = lines.find((l) => l.includes(tenantA))!.split(',');
    const itemA = all.items.find((i) => i.tenantId === tenantA)!;
    expect(Number(rowA[6])).toBe(itemA.messages);
    expect(Number(rowA[8])).toBe(itemA.delivered);

    const month = monthStart().slice(0, 7);
    const summary = await t.app.inject({
      method: 'GET',
      url: `/v1/tenants/${tenantA}/usage/summary?month=${month}`,
      headers: asA.headers,
    });
    expect(summary.statusCode, summary.body).toBe(200);
    const s = summary.json<{ totals: Record<string, number>; domains: { senderDomain: string }[]; final: boolean }>();
    expect(s.totals.messages).toBe(itemA.messages);
    expect(s.final).toBe(false);
    expect(s.domains.map((d) => d.senderDomain)).toContain(domainA);
  });

  it('answers bad queries with problem+json and pages through buckets without gaps', async () => {
    for (const query of [
      'from=2026-11-01T00:30:00Z&granularity=hour',
      'granularity=week',
      'from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z',
      'cursor=bogus',
    ]) {
      const r = await t.app.inject({ method: 'GET', url: `/v1/usage?${query}`, headers: admin.headers });
      expect(r.statusCode, query).toBe(400);
      expect(r.headers['content-type']).toMatch(/application\/problem\+json/);
    }
    const bad = await t.app.inject({
      method: 'GET',
      url: `/v1/tenants/${tenantA}/usage/summary?month=2026-13`,
      headers: admin.headers,
    });
    expect(bad.statusCode).toBe(400);
    const q = `groupBy=recipientDomain&granularity=hour&from=${hour0.toISOString()}&to=${dayEnd()}`;
    const whole = await usage(`${q}&limit=500`);
    const paged: unknown[] = [];
    let cursor: string | null = null;
    do {
      const page = await usage(`${q}&limit=2${cursor === null ? '' : `&cursor=${cursor}`}`);
      paged.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(paged).toEqual(whole.items);
  });
});

function monthStart(): string {
  const n = new Date();
  return new Date(Date.UTC(n.getUTCFullYear(), n.getUTCMonth(), 1)).toISOString();
}
function monthEnd(): string {
  const n = new Date();
  return new Date(Date.UTC(n.getUTCFullYear(), n.getUTCMonth() + 1, 1)).toISOString();
}
