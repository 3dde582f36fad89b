/**
 * Joins a node's log events by queue id and adds them up per tenant × sender domain × recipient
 * domain × hour. Pure: the caller loads the states of the queue ids a batch mentions, applies the
 * batch, and stores the changed states together with the counts (one transaction), so a batch is
 * counted exactly once or not at all.
 *
 * What is counted, and when:
 * - messages, recipients (nrcpt), bytes: once per message, in the hour qmgr first queued it, under
 *   recipient domain '' (a message is accepted before Postfix logs any recipient). Only messages
 *   that entered from outside (an smtpd `client=` or pickup line) are "accepted": Postfix's own
 *   bounce notifications are not. qmgr logs `from=` again each time a deferred message is retried;
 *   those repeats are not counted.
 * - delivered / deferred (attempts) / bounced: per recipient line, in the hour of the line, under
 *   the recipient's domain.
 * - expired: per message, in the hour qmgr returned it to its sender.
 * The tenant is the one that owned the sender's domain when the message was queued (`attribute`),
 * kept with the message so later deliveries count for the same tenant. Lines about a queue id whose
 * `from=` was never seen (a Postfix notification's null sender, a log read from its middle) count
 * for no tenant: they stay visible to admins as unattributed, never vanish.
 */
import { addressDomain, type LogEvent } from './log-line.js';

export interface MessageState {
  queueId: string;
  /** An smtpd `client=` or pickup line was seen: the message came from outside Postfix. */
  origin: boolean;
  /** qmgr queued it (its first `from=` line was seen). */
  queued: boolean;
  sender: string;
  senderDomain: string;
  tenantId: string | null;
  size: number;
  /** When the message was first seen (origin or queue), ms since the epoch. */
  firstSeenAt: number;
  /** Its own counts so far (the message record billing disputes are answered with). */
  recipients: number;
  delivered: number;
  deferred: number;
  bounced: number;
  expired: boolean;
  /** When it left the queue (0 while queued). */
  removedAt: number;
}

/** A message that left the queue: what it counted, for GET /v1/usage/messages. */
export type FinishedMessage = MessageState;

export interface UsageCounters {
  messages: number;
  recipients: number;
  delivered: number;
  deferred: number;
  bounced: number;
  expired: number;
  bytes: number;
}

export interface UsageBucket extends UsageCounters {
  tenantId: string | null;
  senderDomain: string;
  recipientDomain: string;
  /** Start of the UTC hour, ms since the epoch. */
  hour: number;
}

export interface AccumulatorStats {
  events: number;
  /** Delivery or expiry lines for a queue id never queued in this log. */
  unattributedLines: number;
  /** Events dated in an hour already final, counted in the first open hour instead. */
  lateEvents: number;
}

export type TenantAttribution = (senderDomain: string, at: number) => string | null;

const HOUR = 3_600_000;

export function emptyCounters(): UsageCounters {
  return { messages: 0, recipients: 0, delivered: 0, deferred: 0, bounced: 0, expired: 0, bytes: 0 };
}

export class UsageAccumulator {
  /** hour → tenant ('' for none) → sender domain → recipient domain → bucket. Nested maps rather
   *  than one joined key: the tenant and sender strings come from the message state (their hashes
   *  are cached), so an event costs lookups, not a string built per line. */
  private readonly buckets = new Map<number, Map<string, Map<string, Map<string, UsageBucket>>>>();
  private lastHour = Number.NaN;
  private lastTenant = '';
  private lastSender = '';
  private lastByRecipient: Map<string, UsageBucket> | undefined;
  /** Queue id → state after this batch; null: the message left the queue (delete its state). */
  private readonly changed = new Map<string, MessageState | null>();
  /** Counted messages that left the queue in this batch. */
  readonly finished: FinishedMessage[] = [];
  readonly stats: AccumulatorStats = { events: 0, unattributedLines: 0, lateEvents: 0 };

  /**
   * @param known states of the queue ids the batch mentions, as stored before the batch
   * @param finalBefore hours starting before this instant are final: events dated there count in
   *   the hour that starts at it instead (a final number never changes)
   */
  constructor(
    private readonly known: ReadonlyMap<string, MessageState>,
    private readonly attribute: TenantAttribution,
    private readonly finalBefore = 0,
  ) {}

  /** The message's state as this batch's own (mutable) copy, or undefined. */
  private own(queueId: string): MessageState | undefined {
    const c = this.changed.get(queueId);
    if (c !== undefined) return c ?? undefined;
    const k = this.known.get(queueId);
    if (k === undefined) return undefined;
    const copy = { ...k };
    this.changed.set(queueId, copy);
    return copy;
  }

  private state(queueId: string): MessageState | undefined {
    const c = this.changed.get(queueId);
    if (c !== undefined) return c ?? undefined;
    return this.known.get(queueId);
  }

  /**
   * One copy of each domain name for the buckets. Strings cut out of a log chunk keep the whole
   * chunk alive in V8 (sliced strings): a bucket holding one would hold megabytes.
   */
  private readonly names = new Map<string, string>();
  private intern(name: string): string {
    let kept = this.names.get(name);
    if (kept === undefined) {
      kept = Buffer.from(name, 'utf8').toString('utf8');
      this.names.set(kept, kept);
    }
    return kept;
  }

  private bucket(tenantId: string | null, senderDomain: string, recipientDomain: string, at: number): UsageBucket {
    let hour = at - (((at % HOUR) + HOUR) % HOUR);
    if (hour < this.finalBefore) {
      hour = this.finalBefore;
      this.stats.lateEvents++;
    }
    const tenantKey = tenantId ?? '';
    let byRecipient: Map<string, UsageBucket> | undefined;
    // Consecutive lines are mostly about one message: reuse the last sender-level map.
    if (hour === this.lastHour && tenantKey === this.lastTenant && senderDomain === this.lastSender) {
      byRecipient = this.lastByRecipient;
    }
    if (byRecipient === undefined) {
      let byTenant = this.buckets.get(hour);
      if (byTenant === undefined) this.buckets.set(hour, (byTenant = new Map()));
      let bySender = byTenant.get(tenantKey);
      if (bySender === undefined) byTenant.set(tenantKey, (bySender = new Map()));
      byRecipient = bySender.get(senderDomain);
      if (byRecipient === undefined) bySender.set(senderDomain, (byRecipient = new Map()));
      this.lastHour = hour;
      this.lastTenant = tenantKey;
      this.lastSender = senderDomain;
      this.lastByRecipient = byRecipient;
    }
    let b = byRecipient.get(recipientDomain);
    if (b === undefined) {
      const rd = this.intern(recipientDomain);
      b = { tenantId, senderDomain, recipientDomain: rd, hour, ...emptyCounters() };
      byRecipient.set(rd, b);
    }
    return b;
  }

  add(event: LogEvent): void {
    this.stats.events++;
    const { queueId } = event;
    switch (event.kind) {
      case 'origin': {
        const s = this.state(queueId);
        // A queued message that never logged `removed` (a lost line) must not absorb the next
        // message that reuses its queue id.
        if (s === undefined || s.queued) {
          this.changed.set(queueId, {
            queueId, origin: true, queued: false, sender: '', senderDomain: '', tenantId: null, size: 0, firstSeenAt: event.at,
            recipients: 0, delivered: 0, deferred: 0, bounced: 0, expired: false, removedAt: 0,
          });
        } else if (!s.origin) {
          this.changed.set(queueId, { ...s, origin: true });
        }
        return;
      }
      case 'queued': {
        const own = this.changed.get(queueId);
        const s = own === undefined ? this.known.get(queueId) : (own ?? undefined);
        if (s?.queued === true) return; // a retry from the deferred queue
        const senderDomain = this.intern(addressDomain(event.sender));
        const tenantId = senderDomain === '' ? null : this.attribute(senderDomain, event.at);
        let next: MessageState;
        if (own !== undefined && own !== null) {
          // Created by this batch's origin line: complete it in place (one object per message).
          next = own;
          next.queued = true;
          next.sender = event.sender;
          next.senderDomain = senderDomain;
          next.tenantId = tenantId;
          next.size = event.size;
          next.recipients = event.nrcpt;
        } else {
          next = {
            queueId, origin: s?.origin ?? false, queued: true, sender: event.sender, senderDomain, tenantId, size: event.size,
            firstSeenAt: s?.firstSeenAt ?? event.at, recipients: event.nrcpt, delivered: 0, deferred: 0, bounced: 0, expired: false, removedAt: 0,
          };
          this.changed.set(queueId, next);
        }
        if (next.origin) {
          const b = this.bucket(tenantId, senderDomain, '', event.at);
          b.messages++;
          b.recipients += event.nrcpt;
          b.bytes += event.size;
        }
        return;
      }
      case 'delivery': {
        const s = this.own(queueId);
        if (s?.queued !== true) this.stats.unattributedLines++;
        const b = this.bucket(s?.tenantId ?? null, s?.senderDomain ?? '', addressDomain(event.recipient), event.at);
        if (event.status === 'sent') {
          b.delivered++;
          if (s !== undefined) s.delivered++;
        } else if (event.status === 'deferred') {
          b.deferred++;
          if (s !== undefined) s.deferred++;
        } else {
          b.bounced++;
          if (s !== undefined) s.bounced++;
        }
        return;
      }
      case 'expired': {
        const s = this.own(queueId);
        if (s?.queued !== true) this.stats.unattributedLines++;
        const senderDomain = s?.senderDomain ?? addressDomain(event.sender);
        this.bucket(s?.tenantId ?? null, senderDomain, '', event.at).expired++;
        if (s !== undefined) s.expired = true;
        return;
      }
      case 'removed': {
        const s = this.state(queueId);
        // A message that was counted leaves its record behind; its join state goes.
        // (The state object itself becomes the record: it is not used after this line.)
        if (s !== undefined && s.origin && s.queued) {
          s.removedAt = event.at;
          this.finished.push(s);
        }
        // Stored before this batch: delete it; seen only in this batch: just forget it.
        if (this.known.has(queueId)) this.changed.set(queueId, null);
        else this.changed.delete(queueId);
        return;
      }
    }
  }

  /** The non-empty buckets of this batch. */
  result(): UsageBucket[] {
    const out: UsageBucket[] = [];
    for (const byTenant of this.buckets.values()) {
      for (const bySender of byTenant.values()) {
        for (const byRecipient of bySender.values()) out.push(...byRecipient.values());
      }
    }
    return out;
  }

  /** States to store (upsert) and queue ids whose state to delete. */
  stateChanges(): { upsert: MessageState[]; remove: string[] } {
    const upsert: MessageState[] = [];
    const remove: string[] = [];
    for (const [queueId, s] of this.changed) {
      if (s === null) remove.push(queueId);
      else upsert.push(s);
    }
    return { upsert, remove };
  }
}
