import { setTimeout as delay } from 'node:timers/promises';
import type { PrismaClient } from '../generated/prisma/client.js';
import { isRetryableTransactionError, sqlStateOf } from './errors.js';

export interface TransactionRetryPolicy {
  /** Runs in all, the first included. */
  attempts: number;
  /** First pause; doubled each retry, with full jitter, up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_TRANSACTION_RETRY: TransactionRetryPolicy = { attempts: 4, baseDelayMs: 50, maxDelayMs: 1_000 };

export interface TransactionRetry {
  attempt: number;
  /** SQLSTATE (40001, 40P01), or P2028 when no connection came free within maxWait. */
  reason: string;
}

type Listener = (retry: TransactionRetry) => void;
const listeners = new WeakMap<object, Set<Listener>>();

/** Called on every retry of one client's transactions (the app logs them); returns an unsubscribe. */
export function onTransactionRetry(client: PrismaClient, listener: Listener): () => void {
  let set = listeners.get(client);
  if (set === undefined) listeners.set(client, (set = new Set()));
  set.add(listener);
  return () => void set.delete(listener);
}

/**
 * Makes the client's interactive transactions (`$transaction(fn)`) run again when they failed
 * only because of contention: no pooled connection came free in time (nothing ran), or
 * PostgreSQL rolled them back for a serialization failure or a deadlock. The callback must be
 * a pure database unit, which every service's transaction is. Bounded: the last failure is
 * thrown, and the error handler answers it 503 with Retry-After.
 */
export function retryTransactions(
  client: PrismaClient,
  policy: TransactionRetryPolicy = DEFAULT_TRANSACTION_RETRY,
): void {
  const run = client.$transaction.bind(client) as (arg: unknown, options?: unknown) => Promise<unknown>;
  const retrying = async (arg: unknown, options?: unknown) => {
    if (typeof arg !== 'function') return run(arg, options);
    for (let attempt = 1; ; attempt++) {
      try {
        return await run(arg, options);
      } catch (error) {
        if (attempt >= policy.attempts || !isRetryableTransactionError(error)) throw error;
        const retry = { attempt, reason: sqlStateOf(error) ?? 'P2028' };
        for (const listener of listeners.get(client) ?? []) listener(retry);
        await delay(Math.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1)));
      }
    }
  };
  client.$transaction = retrying as PrismaClient['$transaction'];
}
