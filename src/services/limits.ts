import { UnprocessableError } from '../lib/errors.js';
import type { RelayLimits, SenderLimits } from '../postfix/index.js';

// Declared once, by the compiler that reads them (src/postfix/snapshot.ts).
export type { RelayLimits, SenderLimits };

export const NO_LIMITS: SenderLimits = { concurrency: null, rateDelaySeconds: null, recipientsPerMessage: null };

/** The limits, or null when none of them is set: how the compiler reads "no limits of its own". */
export function limitsOrNull<T extends SenderLimits>(limits: T): T | null {
  return Object.values(limits).every((value) => value === null) ? null : limits;
}

export function senderLimits(input: Partial<SenderLimits> | undefined | null): SenderLimits {
  return {
    concurrency: input?.concurrency ?? null,
    rateDelaySeconds: input?.rateDelaySeconds ?? null,
    recipientsPerMessage: input?.recipientsPerMessage ?? null,
  };
}

/**
 * Refuses limits Postfix cannot honour as asked: with a rate delay the queue manager sends one
 * message at a time per destination, so a concurrency above 1 would silently mean nothing.
 */
export function assertHonourable(limits: SenderLimits, what: string): void {
  if (limits.rateDelaySeconds !== null && limits.concurrency !== null && limits.concurrency > 1) {
    throw new UnprocessableError(
      `${what}: a delay between deliveries makes Postfix use one connection at a time, so concurrency ${limits.concurrency} cannot be honoured; set concurrency to 1 or remove rateDelaySeconds`,
      'limits-not-honourable',
    );
  }
}

/** A domain's own limit wins field by field; the tenant default fills what it leaves open. */
export function effectiveLimits(own: SenderLimits, tenantDefault: SenderLimits): SenderLimits {
  return {
    concurrency: own.concurrency ?? tenantDefault.concurrency,
    rateDelaySeconds: own.rateDelaySeconds ?? tenantDefault.rateDelaySeconds,
    recipientsPerMessage: own.recipientsPerMessage ?? tenantDefault.recipientsPerMessage,
  };
}
