import type { PeriodicTask } from '../deploy/index.js';
import type { DomainVerificationService } from '../services/domain-verification.service.js';

/**
 * The leader's periodic look for domains due a DNS re-check (each is re-checked every
 * RELAYPLANE_DNS_CHECK_INTERVAL_SECONDS); the check itself is the verification service's.
 */
export function dnsRecheckTask(
  verification: Pick<DomainVerificationService, 'checkDue'>,
  intervalMs: number,
): PeriodicTask {
  return { name: 'dns', intervalMs, run: () => verification.checkDue() };
}
