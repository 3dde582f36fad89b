/**
 * A deterministic, realistic Postfix 3.7 log of a busy relay node, with the totals it contains.
 *
 * Traffic is simulated, not sampled from templates: each SMTP session (or pickup submission) is
 * planned whole when it arrives — every line of its messages, their retries from the deferred queue,
 * bounce notifications and removals, each with its own time — and the lines are merged in time
 * order through a heap. A message is only planned if all its lines fit in the requested line count
 * (the rest is filled with noise), so the ground truth always describes complete messages, and
 * pflogsumm and Relayplane read exactly the same story.
 *
 *   tsx bench/usage/generate-log.ts --lines 1000000 --out /tmp/maillog [--seed 1] [--format rfc3339]
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createStamper, createRandom, LineHeap, type Random, type StampFormat } from './log-format.js';
import { createTraffic, type Plan } from './traffic.js';

export interface PostfixLogOptions {
  /** Exact number of lines to produce. */
  lines: number;
  seed: number;
  /** Time of the first line. */
  start: Date;
  /** Postfix `syslog_name` (default `postfix`; a Relayplane node is `postfix-node1`). */
  syslogName?: string;
  hostname?: string;
  tenants?: number;
  domainsPerTenant?: number;
  recipientDomains?: number;
  /** Sessions, submissions and noise events per second (default 6). */
  arrivalsPerSecond?: number;
  format?: StampFormat;
  /** The node's UTC offset: timestamps are written in its local time. */
  utcOffsetMinutes?: number;
  /** `maximal_queue_lifetime` (default 2 h). */
  maxQueueLifetimeSeconds?: number;
  /** `enable_long_queue_ids = yes`. */
  longQueueIds?: boolean;
}

/** What the log contains, counted the way pflogsumm and Relayplane count it. */
export interface LogTruth {
  lines: number;
  /** Messages that entered from outside: smtpd `client=` or pickup lines (pflogsumm "received"). */
  received: number;
  /** nrcpt of the received messages when first queued. */
  recipients: number;
  /** size of the received messages. */
  bytes: number;
  /** `status=sent` lines, except local `forwarded as` (pflogsumm "delivered"). */
  delivered: number;
  /** `status=sent (… forwarded as …)` lines (pflogsumm "forwarded"). */
  forwarded: number;
  /** `status=deferred` lines (pflogsumm "deferrals"). */
  deferrals: number;
  /** Queue ids with at least one deferral (pflogsumm "deferred"). */
  deferredMessages: number;
  /** `status=bounced` lines (pflogsumm "bounced"). */
  bounced: number;
  /** qmgr `status=expired` / `status=force-expired` lines. */
  expired: number;
  /** Bounce notifications Postfix created (null sender, no origin line). */
  notifications: number;
  /** Messages deleted with `postsuper -d`. */
  postsuperRemoved: number;
  /** Sender domain (lower case) → tenant name, for every tenant domain the generator knows. */
  tenantOfDomain: Map<string, string>;
  /** Received messages per sender domain (lower case; '' for none). */
  receivedBySenderDomain: Map<string, number>;
}

export function emptyTruth(): LogTruth {
  return {
    lines: 0,
    received: 0,
    recipients: 0,
    bytes: 0,
    delivered: 0,
    forwarded: 0,
    deferrals: 0,
    deferredMessages: 0,
    bounced: 0,
    expired: 0,
    notifications: 0,
    postsuperRemoved: 0,
    tenantOfDomain: new Map(),
    receivedBySenderDomain: new Map(),
  };
}

function addPlan(truth: LogTruth, plan: Plan): void {
  const d = plan.delta;
  truth.received += d.received;
  truth.recipients += d.recipients;
  truth.bytes += d.bytes;
  truth.delivered += d.delivered;
  truth.forwarded += d.forwarded;
  truth.deferrals += d.deferrals;
  truth.deferredMessages += d.deferredMessages;
  truth.bounced += d.bounced;
  truth.expired += d.expired;
  truth.notifications += d.notifications;
  truth.postsuperRemoved += d.postsuperRemoved;
  for (const domain of d.receivedFrom)
    truth.receivedBySenderDomain.set(domain, (truth.receivedBySenderDomain.get(domain) ?? 0) + 1);
}

export interface GeneratedLog {
  /** The lines, without newlines; iterate once. */
  lines: Iterable<string>;
  /** Complete once `lines` has been iterated to its end. */
  truth: LogTruth;
}

export function generatePostfixLog(options: PostfixLogOptions): GeneratedLog {
  const random: Random = createRandom(options.seed);
  const truth = emptyTruth();
  const traffic = createTraffic(random, {
    syslogName: options.syslogName ?? 'postfix',
    hostname: options.hostname ?? 'relay1',
    tenants: options.tenants ?? 40,
    domainsPerTenant: options.domainsPerTenant ?? 3,
    recipientDomains: options.recipientDomains ?? 300,
    maxQueueLifetime: (options.maxQueueLifetimeSeconds ?? 7200) * 1_000_000,
    longQueueIds: options.longQueueIds ?? false,
    utcOffsetMinutes: options.utcOffsetMinutes ?? 0,
  });
  for (const [domain, tenant] of traffic.tenantOfDomain) truth.tenantOfDomain.set(domain, tenant);
  const stamp = createStamper(options.format ?? 'traditional', options.utcOffsetMinutes ?? 0);
  const host = options.hostname ?? 'relay1';
  const meanGap = 1_000_000 / (options.arrivalsPerSecond ?? 6);

  function* lines(): Generator<string> {
    const heap = new LineHeap();
    let seq = 0;
    let now = options.start.getTime() * 1000;
    let last = now;
    const budget = options.lines;
    for (;;) {
      const plan = traffic.next(now);
      if (truth.lines + heap.size + plan.lines.length > budget) break;
      for (const line of plan.lines) heap.push({ t: line.t, seq: seq++, text: line.text });
      addPlan(truth, plan);
      // Every later plan starts after `now`: whatever is due by then is final and in order.
      for (let top = heap.peek(); top !== undefined && top.t <= now; top = heap.peek()) {
        heap.pop();
        truth.lines++;
        last = top.t;
        yield `${stamp(top.t)} ${host} ${top.text}`;
      }
      now += Math.max(1, Math.round(random.exponential(meanGap)));
    }
    for (let top = heap.pop(); top !== undefined; top = heap.pop()) {
      truth.lines++;
      last = top.t;
      yield `${stamp(top.t)} ${host} ${top.text}`;
    }
    while (truth.lines < budget) {
      last += Math.max(1, Math.round(random.exponential(meanGap)));
      truth.lines++;
      yield `${stamp(last)} ${host} ${traffic.noiseLine(last)}`;
    }
  }

  return { lines: lines(), truth };
}

/** Writes the log to `file` (one line per `\n`) and returns its ground truth. */
export async function writePostfixLog(file: string, options: PostfixLogOptions): Promise<LogTruth> {
  const log = generatePostfixLog(options);
  const out = createWriteStream(file);
  let chunk: string[] = [];
  let size = 0;
  for (const line of log.lines) {
    chunk.push(line);
    size += line.length;
    if (size > 1 << 20) {
      if (!out.write(`${chunk.join('\n')}\n`)) await once(out, 'drain');
      chunk = [];
      size = 0;
    }
  }
  if (chunk.length > 0) out.write(`${chunk.join('\n')}\n`);
  out.end();
  await once(out, 'finish');
  return log.truth;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      lines: { type: 'string', default: '1000000' },
      out: { type: 'string' },
      seed: { type: 'string', default: '1' },
      start: { type: 'string', default: '2026-11-28T05:00:00Z' },
      format: { type: 'string', default: 'traditional' },
      'syslog-name': { type: 'string', default: 'postfix' },
      'long-queue-ids': { type: 'boolean', default: false },
    },
  });
  if (values.out === undefined || (values.format !== 'traditional' && values.format !== 'rfc3339')) {
    process.stderr.write(
      'usage: generate-log.ts --lines N --out FILE [--seed S] [--start ISO] [--format traditional|rfc3339] [--syslog-name NAME] [--long-queue-ids]\n',
    );
    process.exit(2);
  }
  const truth = await writePostfixLog(values.out, {
    lines: Number(values.lines),
    seed: Number(values.seed),
    start: new Date(values.start),
    format: values.format,
    syslogName: values['syslog-name'],
    longQueueIds: values['long-queue-ids'],
  });
  const { tenantOfDomain: _domains, receivedBySenderDomain: _bySender, ...totals } = truth;
  process.stdout.write(`${JSON.stringify(totals)}\n`);
}
