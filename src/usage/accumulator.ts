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
import type { FinishedMessage, MessageState, UsageBucket, UsageCounters } from '../lib/usage-types.js';
import { addressDomain, type LogEvent } from './log-line.js';

export type { FinishedMessage, MessageState, UsageBucket, UsageCounters };

export interface AccumulatorStats {
  events: number;
  /** Delivery or expiry lines for a queue id never queued in this log. */
  unattributedLines: number;
  /** Events dated in an hour already final, counted in the first open hour instead. */
  lateEvents: number;
}

export type TenantAttribution = (senderDomain: string, at: number) => string | null;

export const HOUR = 3_600_000;

/** The start of the UTC hour `ms` falls in. */
export function floorHour(ms: number): number {
  return ms - (ms % HOUR);
}

export function emptyCounters(): UsageCounters {
  return { messages: 0, recipients: 0, delivered: 0, deferred: 0, bounced: 0, expired: 0, bytes: 0 };
}

/** The buckets of one tenant × sender domain: by hour (its index since the epoch), then recipient domain. */
interface SenderGroup {
  tenantId: string | null;
  senderDomain: string;
  byHour: Map<number, Map<string, UsageBucket>>;
}

/** A message this batch has touched: its state, and its sender group once known (looked up once per message, not per line). */
class Open {
  group: SenderGroup | undefined = undefined;
  constructor(readonly state: MessageState) {}
}

export class UsageAccumulator {
  /** tenant ('' for none) → sender domain → group. */
  private readonly groups = new Map<string, Map<string, SenderGroup>>();
  /** Queue id → state after this batch; null: the message left the queue (delete its state). */
  private readonly changed = new Map<string, Open | null>();
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
  ) {
    // Late events share the key of the hour starting at finalBefore (when it starts an hour), so
    // they land in the same bucket as that hour's own events, never in a second one.
    this.lateKey = finalBefore % HOUR === 0 ? finalBefore / HOUR : -1;
  }

  /** The hour key under which events dated before finalBefore are counted. */
  private readonly lateKey: number;

  /** The message as this batch's own (its state a mutable copy of the stored one), or undefined. */
  private open(queueId: string): Open | undefined {
    const c = this.changed.get(queueId);
    if (c !== undefined) return c ?? undefined;
    const k = this.known.get(queueId);
    if (k === undefined) return undefined;
    const copy = new Open({ ...k });
    this.changed.set(queueId, copy);
    return copy;
  }

  private state(queueId: string): MessageState | undefined {
    const c = this.changed.get(queueId);
    if (c !== undefined) return c?.state;
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

  private group(tenantId: string | null, senderDomain: string): SenderGroup {
    const tenantKey = tenantId ?? '';
    let bySender = this.groups.get(tenantKey);
    if (bySender === undefined) this.groups.set(tenantKey, (bySender = new Map()));
    let g = bySender.get(senderDomain);
    if (g === undefined) bySender.set(senderDomain, (g = { tenantId, senderDomain, byHour: new Map() }));
    return g;
  }

  private groupOf(o: Open): SenderGroup {
    return (o.group ??= this.group(o.state.tenantId, o.state.senderDomain));
  }

  private bucket(group: SenderGroup, recipientDomain: string, at: number): UsageBucket {
    let key = Math.floor(at / HOUR);
    if (key * HOUR < this.finalBefore) {
      key = this.lateKey;
      this.stats.lateEvents++;
    }
    let byRecipient = group.byHour.get(key);
    if (byRecipient === undefined) group.byHour.set(key, (byRecipient = new Map()));
    let b = byRecipient.get(recipientDomain);
    if (b === undefined) {
      const rd = this.intern(recipientDomain);
      b = {
        tenantId: group.tenantId,
        senderDomain: group.senderDomain,
        recipientDomain: rd,
        hour: key === this.lateKey ? this.finalBefore : key * HOUR,
        ...emptyCounters(),
      };
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
          this.changed.set(
            queueId,
            new Open({
              queueId,
              origin: true,
              queued: false,
              sender: '',
              senderDomain: '',
              tenantId: null,
              size: 0,
              firstSeenAt: event.at,
              recipients: 0,
              delivered: 0,
              deferred: 0,
              bounced: 0,
              expired: false,
              removedAt: 0,
            }),
          );
        } else if (!s.origin) {
          this.changed.set(queueId, new Open({ ...s, origin: true }));
        }
        return;
      }
      case 'queued': {
        const own = this.changed.get(queueId);
        const s = own === undefined ? this.known.get(queueId) : own?.state;
        if (s?.queued === true) return; // a retry from the deferred queue
        const senderDomain = this.intern(addressDomain(event.sender));
        const tenantId = senderDomain === '' ? null : this.attribute(senderDomain, event.at);
        let next: Open;
        if (own !== undefined && own !== null) {
          // Created by this batch's origin line: complete it in place (one object per message).
          next = own;
          const st = own.state;
          st.queued = true;
          st.sender = event.sender;
          st.senderDomain = senderDomain;
          st.tenantId = tenantId;
          st.size = event.size;
          st.recipients = event.nrcpt;
        } else {
          next = new Open({
            queueId,
            origin: s?.origin ?? false,
            queued: true,
            sender: event.sender,
            senderDomain,
            tenantId,
            size: event.size,
            firstSeenAt: s?.firstSeenAt ?? event.at,
            recipients: event.nrcpt,
            delivered: 0,
            deferred: 0,
            bounced: 0,
            expired: false,
            removedAt: 0,
          });
          this.changed.set(queueId, next);
        }
        next.group = this.group(tenantId, senderDomain);
        if (next.state.origin) {
          const b = this.bucket(next.group, '', event.at);
          b.messages++;
          b.recipients += event.nrcpt;
          b.bytes += event.size;
        }
        return;
      }
      case 'delivery': {
        const o = this.open(queueId);
        const s = o?.state;
        if (s?.queued !== true) this.stats.unattributedLines++;
        const b = this.bucket(
          o === undefined ? this.group(null, '') : this.groupOf(o),
          addressDomain(event.recipient),
          event.at,
        );
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
        const o = this.open(queueId);
        const s = o?.state;
        if (s?.queued !== true) this.stats.unattributedLines++;
        const group = o === undefined ? this.group(null, this.intern(addressDomain(event.sender))) : this.groupOf(o);
        this.bucket(group, '', event.at).expired++;
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
    for (const bySender of this.groups.values()) {
      for (const group of bySender.values()) {
        for (const byRecipient of group.byHour.values()) out.push(...byRecipient.values());
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
      else upsert.push(s.state);
    }
    return { upsert, remove };
  }
}
