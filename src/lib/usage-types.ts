/**
 * What usage counting stores: a message's state between log batches and the hourly counters. Shared
 * by the accumulator (usage/) and the usage repository, which must not import usage/.
 */

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
