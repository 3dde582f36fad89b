import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { generatePostfixLog, type LogTruth } from '../../bench/usage/generate-log.js';
import {
  emptyCounters,
  UsageAccumulator,
  type MessageState,
  type TenantAttribution,
  type UsageBucket,
  type UsageCounters,
} from '../../src/usage/accumulator.js';
import { LogLineParser, type LogEvent } from '../../src/usage/log-line.js';

const HOUR = 3_600_000;
const at = (h: number, m = 0, s = 0, ms = 0) => Date.UTC(2026, 10, 28, h, m, s, ms);
const byDomain: TenantAttribution = (domain) =>
  domain.endsWith('.example') ? `tenant:${domain.split('.').at(-2)}` : null;

const origin = (queueId: string, t: number): LogEvent => ({ kind: 'origin', at: t, queueId });
const queued = (queueId: string, t: number, sender: string, nrcpt = 1, size = 1000): LogEvent => ({
  kind: 'queued',
  at: t,
  queueId,
  sender,
  size,
  nrcpt,
});
const delivery = (
  queueId: string,
  t: number,
  recipient: string,
  status: 'sent' | 'deferred' | 'bounced',
): LogEvent => ({ kind: 'delivery', at: t, queueId, recipient, status });
const removed = (queueId: string, t: number): LogEvent => ({ kind: 'removed', at: t, queueId });
const expired = (queueId: string, t: number, sender: string): LogEvent => ({ kind: 'expired', at: t, queueId, sender });

function run(
  events: LogEvent[],
  attribute: TenantAttribution = byDomain,
  known = new Map<string, MessageState>(),
  finalBefore = 0,
) {
  const acc = new UsageAccumulator(known, attribute, finalBefore);
  for (const e of events) acc.add(e);
  return acc;
}

function totals(buckets: UsageBucket[]): UsageCounters {
  const sum = emptyCounters();
  for (const b of buckets) for (const k of Object.keys(sum) as (keyof UsageCounters)[]) sum[k] += b[k];
  return sum;
}

const keyOf = (b: UsageBucket) =>
  `${b.tenantId ?? '-'}|${b.senderDomain}|${b.recipientDomain}|${new Date(b.hour).toISOString()}`;

/** Buckets keyed and summed, so results of several batches compare with one batch's. */
function merge(into: Map<string, UsageBucket>, buckets: UsageBucket[]): Map<string, UsageBucket> {
  for (const b of buckets) {
    const prev = into.get(keyOf(b));
    if (prev === undefined) into.set(keyOf(b), { ...b });
    else for (const k of Object.keys(emptyCounters()) as (keyof UsageCounters)[]) prev[k] += b[k];
  }
  return into;
}

describe('UsageAccumulator', () => {
  it('counts a message once in the hour it was queued, its recipients per domain and hour', () => {
    const acc = run([
      origin('A1', at(5, 59, 58)),
      queued('A1', at(5, 59, 59), 'news@Shop.Example', 3, 4200),
      delivery('A1', at(6, 0, 1), 'x@gmail.test', 'sent'),
      delivery('A1', at(6, 0, 1), 'y@GMAIL.test', 'bounced'),
      delivery('A1', at(6, 0, 2), 'z@r1.example', 'deferred'),
    ]);
    const rows = acc
      .result()
      .map((b) => [keyOf(b), b.messages, b.recipients, b.bytes, b.delivered, b.bounced, b.deferred]);
    expect(rows.sort()).toEqual([
      ['tenant:shop|shop.example|gmail.test|2026-11-28T06:00:00.000Z', 0, 0, 0, 1, 1, 0],
      ['tenant:shop|shop.example|r1.example|2026-11-28T06:00:00.000Z', 0, 0, 0, 0, 0, 1],
      ['tenant:shop|shop.example||2026-11-28T05:00:00.000Z', 1, 3, 4200, 0, 0, 0],
    ]);
  });

  it("does not count qmgr's from= line again when a deferred message is retried", () => {
    const acc = run([
      origin('B1', at(5)),
      queued('B1', at(5, 0, 1), 'a@t.example', 2),
      delivery('B1', at(5, 0, 2), 'x@gmail.test', 'sent'),
      delivery('B1', at(5, 0, 2), 'y@gmail.test', 'deferred'),
      queued('B1', at(5, 5, 2), 'a@t.example', 1),
      delivery('B1', at(5, 5, 3), 'y@gmail.test', 'deferred'),
      queued('B1', at(5, 15, 3), 'a@t.example', 1),
      delivery('B1', at(5, 15, 4), 'y@gmail.test', 'sent'),
      removed('B1', at(5, 15, 4)),
    ]);
    expect(totals(acc.result())).toMatchObject({ messages: 1, recipients: 2, delivered: 2, deferred: 2 });
  });

  it('a queue id reused after `removed` is a new message (and a new origin without `removed` too)', () => {
    const acc = run([
      origin('C1', at(5)),
      queued('C1', at(5), 'a@one.example'),
      delivery('C1', at(5), 'x@gmail.test', 'sent'),
      removed('C1', at(5)),
      origin('C1', at(6)),
      queued('C1', at(6), 'b@two.example'),
      delivery('C1', at(6), 'x@gmail.test', 'sent'),
      // `removed` lost (log rotated between the two lines): the next origin still starts afresh.
      origin('C1', at(7)),
      queued('C1', at(7), 'c@three.example'),
      delivery('C1', at(7), 'x@gmail.test', 'sent'),
    ]);
    const messages = acc
      .result()
      .filter((b) => b.messages > 0)
      .map((b) => [b.tenantId, b.messages]);
    expect(messages.sort()).toEqual([
      ['tenant:one', 1],
      ['tenant:three', 1],
      ['tenant:two', 1],
    ]);
    const deliveries = acc
      .result()
      .filter((b) => b.delivered > 0)
      .map((b) => b.tenantId);
    expect(deliveries.sort()).toEqual(['tenant:one', 'tenant:three', 'tenant:two']);
  });

  it('a bounce notification (null sender, no origin) is no message, but its deliveries count, for no tenant', () => {
    const attribute = vi.fn(byDomain);
    const acc = run(
      [
        queued('N1', at(5), '', 1, 3000),
        delivery('N1', at(5, 0, 1), 'news@shop.example', 'sent'),
        removed('N1', at(5, 0, 1)),
      ],
      attribute,
    );
    expect(attribute).not.toHaveBeenCalled();
    expect(acc.result()).toEqual([
      {
        ...emptyCounters(),
        tenantId: null,
        senderDomain: '',
        recipientDomain: 'shop.example',
        hour: at(5),
        delivered: 1,
      },
    ]);
    expect(acc.stats.unattributedLines).toBe(0);
  });

  it('lines about a queue id never queued in this log count for no tenant and are reported', () => {
    const acc = run([delivery('M1', at(5), 'x@gmail.test', 'sent'), expired('M2', at(5), 'a@shop.example')]);
    expect(acc.result().map(keyOf).sort()).toEqual([
      '-|shop.example||2026-11-28T05:00:00.000Z',
      '-||gmail.test|2026-11-28T05:00:00.000Z',
    ]);
    expect(acc.stats.unattributedLines).toBe(2);
  });

  it('asks attribution once per message, with the lower-cased sender domain and the time qmgr queued it', () => {
    // The domain moves to another tenant at 06:00: the message stays with the owner at queueing.
    const attribute = vi.fn<TenantAttribution>((domain, t) => (t < at(6) ? `old:${domain}` : `new:${domain}`));
    const acc = run(
      [
        origin('D1', at(5, 59, 59)),
        queued('D1', at(5, 59, 59, 900), 'Ops@Moved.Example', 1),
        delivery('D1', at(6, 10), 'x@gmail.test', 'deferred'),
        queued('D1', at(6, 15), 'Ops@Moved.Example', 1),
        delivery('D1', at(6, 15), 'x@gmail.test', 'sent'),
        expired('D1', at(7), 'Ops@Moved.Example'),
      ],
      attribute,
    );
    expect(attribute.mock.calls).toEqual([['moved.example', at(5, 59, 59, 900)]]);
    expect(new Set(acc.result().map((b) => b.tenantId))).toEqual(new Set(['old:moved.example']));
  });

  it('buckets by UTC hour, to the millisecond', () => {
    const acc = run([
      origin('E1', at(5)),
      queued('E1', at(5), 'a@t.example', 2),
      delivery('E1', at(5, 59, 59, 999), 'x@gmail.test', 'sent'),
      delivery('E1', at(6), 'y@gmail.test', 'sent'),
    ]);
    expect(
      acc
        .result()
        .filter((b) => b.delivered > 0)
        .map((b) => new Date(b.hour).toISOString())
        .sort(),
    ).toEqual(['2026-11-28T05:00:00.000Z', '2026-11-28T06:00:00.000Z']);
  });

  it('counts events dated in a final hour in the first open hour (finalBefore)', () => {
    const acc = run(
      [
        origin('F1', at(4, 30)),
        queued('F1', at(4, 30), 'a@t.example'),
        delivery('F1', at(5, 59), 'x@gmail.test', 'sent'),
        expired('F2', at(7), 'b@t.example'),
      ],
      byDomain,
      new Map(),
      at(6),
    );
    expect(
      acc
        .result()
        .map((b) => [new Date(b.hour).toISOString(), b.messages, b.delivered, b.expired])
        .sort(),
    ).toEqual([
      ['2026-11-28T06:00:00.000Z', 0, 1, 0],
      ['2026-11-28T06:00:00.000Z', 1, 0, 0],
      ['2026-11-28T07:00:00.000Z', 0, 0, 1],
    ]);
    expect(acc.stats.lateEvents).toBe(2);
  });

  it("puts late events and the open hour's own events for the same key into ONE bucket (stored with one upsert row)", () => {
    const acc = run(
      [
        origin('H1', at(5, 10)),
        queued('H1', at(5, 10), 'a@t.example', 2),
        delivery('H1', at(5, 50), 'x@gmail.test', 'sent'), // late: counted at 06:00
        delivery('H1', at(6, 5), 'y@gmail.test', 'sent'), // 06:00 itself
      ],
      byDomain,
      new Map(),
      at(6),
    );
    const keys = acc.result().map(keyOf);
    expect(new Set(keys).size).toBe(keys.length);
    expect(acc.result().filter((b) => b.recipientDomain === 'gmail.test')).toMatchObject([
      { hour: at(6), delivered: 2 },
    ]);
  });

  it('counts late events at finalBefore itself when it is not on an hour boundary, in one bucket per key', () => {
    // 06:40 lies in the hour starting 06:00, before 06:30: late as well.
    const acc = run(
      [
        origin('J1', at(5)),
        queued('J1', at(5), 'a@t.example'),
        delivery('J1', at(5, 10), 'x@gmail.test', 'sent'),
        delivery('J1', at(6, 40), 'y@gmail.test', 'sent'),
        delivery('J1', at(7, 1), 'z@gmail.test', 'sent'),
      ],
      byDomain,
      new Map(),
      at(6, 30),
    );
    expect(
      acc
        .result()
        .filter((b) => b.recipientDomain === 'gmail.test')
        .map((b) => [new Date(b.hour).toISOString(), b.delivered])
        .sort(),
    ).toEqual([
      ['2026-11-28T06:30:00.000Z', 2],
      ['2026-11-28T07:00:00.000Z', 1],
    ]);
    expect(acc.stats.lateEvents).toBe(3); // the queueing at 05:00 and the deliveries at 05:10 and 06:40
  });

  it('carries a message across two batches through its stored state', () => {
    const first = run([
      origin('G1', at(5)),
      queued('G1', at(5), 'a@t.example', 2, 500),
      delivery('G1', at(5), 'x@gmail.test', 'deferred'),
    ]);
    const { upsert, remove } = first.stateChanges();
    expect(remove).toEqual([]);
    expect(upsert).toEqual([
      {
        queueId: 'G1',
        origin: true,
        queued: true,
        sender: 'a@t.example',
        senderDomain: 't.example',
        tenantId: 'tenant:t',
        size: 500,
        firstSeenAt: at(5),
        recipients: 2,
        delivered: 0,
        deferred: 1,
        bounced: 0,
        expired: false,
        removedAt: 0,
      },
    ]);

    const attribute = vi.fn(byDomain);
    const second = run(
      [
        queued('G1', at(5, 5), 'a@t.example', 2),
        delivery('G1', at(5, 5), 'x@gmail.test', 'sent'),
        removed('G1', at(5, 5)),
        removed('ZZ9', at(5, 6)),
      ],
      attribute,
      new Map(upsert.map((s) => [s.queueId, s])),
    );
    expect(attribute).not.toHaveBeenCalled();
    expect(totals(second.result())).toMatchObject({ messages: 0, delivered: 1 });
    expect(second.result()[0]?.tenantId).toBe('tenant:t');
    // Only states that exist are deleted; a removal of an unknown id changes nothing.
    expect(second.stateChanges()).toEqual({ upsert: [], remove: ['G1'] });
    // The message leaves its record: both batches' counts, none of the unknown id.
    expect(second.finished).toEqual([{ ...upsert[0], delivered: 1, removedAt: at(5, 5) }]);
  });

  it('a message whose origin line ends one batch and its qmgr line starts the next is still counted once', () => {
    const first = run([origin('H1', at(5))]);
    const known = new Map(first.stateChanges().upsert.map((s) => [s.queueId, s]));
    expect(totals(first.result()).messages).toBe(0);
    expect(totals(run([queued('H1', at(5), 'a@t.example')], byDomain, known).result()).messages).toBe(1);
  });
});

function events(lines: Iterable<string>): LogEvent[] {
  const parser = new LogLineParser({ year: 2026, month: 10, utcOffsetMinutes: 0 });
  const out: LogEvent[] = [];
  for (const line of lines) {
    const r = parser.parse(line);
    if (typeof r === 'object') out.push(r);
  }
  return out;
}

function attributeFrom(truth: LogTruth): TenantAttribution {
  return (domain) => truth.tenantOfDomain.get(domain) ?? null;
}

describe('UsageAccumulator on a generated log', () => {
  const log = generatePostfixLog({
    lines: 20_000,
    seed: 7,
    start: new Date('2026-11-28T05:00:00Z'),
    syslogName: 'postfix-node1',
    tenants: 12,
  });
  const all = events(log.lines);
  const truth = log.truth;

  it("adds up to the generator's ground truth, per sender domain and per tenant", () => {
    const acc = run(all, attributeFrom(truth));
    expect(totals(acc.result())).toEqual({
      messages: truth.received,
      recipients: truth.recipients,
      delivered: truth.delivered,
      deferred: truth.deferrals,
      bounced: truth.bounced,
      expired: truth.expired,
      bytes: truth.bytes,
    });
    const bySender = new Map<string, number>();
    for (const b of acc.result())
      if (b.messages > 0) bySender.set(b.senderDomain, (bySender.get(b.senderDomain) ?? 0) + b.messages);
    expect(bySender).toEqual(truth.receivedBySenderDomain);
    for (const b of acc.result()) {
      if (b.messages > 0) expect(b.tenantId).toBe(truth.tenantOfDomain.get(b.senderDomain) ?? null);
    }
    expect(acc.stats.unattributedLines).toBe(0);
    expect(acc.stateChanges().upsert).toEqual([]);
  });

  it('any split into batches, each given the stored states it mentions, gives the same buckets (property)', () => {
    const attribute = attributeFrom(truth);
    const whole = merge(new Map(), run(all, attribute).result());
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: all.length - 1 }), { maxLength: 12 }), (cuts) => {
        const bounds = [0, ...cuts.sort((a, b) => a - b), all.length];
        const store = new Map<string, MessageState>();
        const merged = new Map<string, UsageBucket>();
        for (let i = 0; i + 1 < bounds.length; i++) {
          const batch = all.slice(bounds[i], bounds[i + 1]);
          const known = new Map<string, MessageState>();
          for (const e of batch) {
            const s = store.get(e.queueId);
            if (s !== undefined) known.set(e.queueId, s);
          }
          const acc = run(batch, attribute, known);
          merge(merged, acc.result());
          const { upsert, remove } = acc.stateChanges();
          for (const id of remove) store.delete(id);
          for (const s of upsert) store.set(s.queueId, s);
        }
        expect(merged).toEqual(whole);
        expect(store.size).toBe(0);
      }),
      { numRuns: 40 },
    );
  });

  it('a batch boundary inside the hours already final moves those counts, never loses them', () => {
    const attribute = attributeFrom(truth);
    const half = Math.floor(all.length / 2);
    const first = run(all.slice(0, half), attribute);
    // The hour the cut falls in is declared final too: its later lines must move, not vanish.
    const finalBefore = Math.floor(all[half]!.at / HOUR) * HOUR + HOUR;
    const known = new Map(first.stateChanges().upsert.map((s) => [s.queueId, s]));
    const second = run(all.slice(half), attribute, known, finalBefore);
    expect(second.result().every((b) => b.hour >= finalBefore)).toBe(true);
    expect(second.stats.lateEvents).toBeGreaterThan(0);
    const sum = totals([...first.result(), ...second.result()]);
    expect(sum).toEqual(totals(run(all, attribute).result()));
  });
});
