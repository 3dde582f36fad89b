/**
 * The pure rules of domain verification: its settings, how long DNS failures may leave records
 * unknown, and the status a check leads to. The service applies them to stored domains.
 */
import type { RecordCheck } from '../dns/index.js';
import type { DomainStatus } from '../generated/prisma/client.js';

export interface VerificationSettings {
  /** A pending domain fails after this long without verifying. */
  pendingTimeoutSeconds: number;
  /** A degraded domain keeps its route this long, then fails. */
  degradedGraceSeconds: number;
  /** Domains are re-checked this long after their last check. */
  recheckIntervalSeconds: number;
  /** Domains checked per periodic run at most. */
  batchSize: number;
  /**
   * A required record that could not be checked (timeout, SERVFAIL) this long without a break
   * counts as wrong: an expired domain or a lame delegation does not stay verified forever.
   */
  uncheckableLimitSeconds: number;
  /** POST /v1/domains/{id}/verify runs at most once per domain this often (0: no limit). */
  verifyCooldownSeconds: number;
  /** Suggested as DMARC `rua=mailto:<address>` where a domain's record has none (null: no suggestion). */
  dmarcReportAddress: string | null;
}

export const DEFAULT_VERIFICATION: VerificationSettings = {
  pendingTimeoutSeconds: 72 * 3600,
  degradedGraceSeconds: 48 * 3600,
  recheckIntervalSeconds: 3600,
  batchSize: 200,
  uncheckableLimitSeconds: 72 * 3600,
  verifyCooldownSeconds: 30,
  dmarcReportAddress: null,
};

/**
 * Required records left unknown by DNS failures since `since` (kept across checks while some stay
 * unknown) become wrong once that lasted `limitSeconds`, with the reason. Pure; exported for tests.
 */
export function boundUnknown(
  checks: RecordCheck[],
  since: Date | null,
  at: Date,
  limitSeconds: number,
): { checks: RecordCheck[]; uncheckableSince: Date | null } {
  if (!checks.some((c) => c.required && c.valid === null)) return { checks, uncheckableSince: null };
  const start = since ?? at;
  if (at.getTime() - start.getTime() < limitSeconds * 1000) return { checks, uncheckableSince: start };
  const bounded = checks.map((c) =>
    c.required && c.valid === null
      ? {
          ...c,
          valid: false,
          reason: `could not be checked since ${start.toISOString()} (over ${limitSeconds} s): ${c.reason ?? 'DNS failure'}`,
        }
      : c,
  );
  return { checks: bounded, uncheckableSince: start };
}

/** The next status after a check (pure; exported for tests). */
export function nextStatus(
  current: DomainStatus,
  checks: Pick<RecordCheck, 'required' | 'valid'>[],
  since: { statusChangedAt: Date; now: Date },
  settings: Pick<VerificationSettings, 'pendingTimeoutSeconds' | 'degradedGraceSeconds'>,
): DomainStatus {
  if (current === 'disabled') return current;
  const required = checks.filter((c) => c.required);
  const allValid = required.every((c) => c.valid === true);
  const anyInvalid = required.some((c) => c.valid === false);
  const age = (since.now.getTime() - since.statusChangedAt.getTime()) / 1000;
  if (allValid) return 'verified';
  switch (current) {
    case 'pending':
      return age >= settings.pendingTimeoutSeconds ? 'failed' : 'pending';
    case 'verified':
      return anyInvalid ? 'degraded' : 'verified';
    case 'degraded':
      return anyInvalid && age >= settings.degradedGraceSeconds ? 'failed' : 'degraded';
    default:
      return current;
  }
}
