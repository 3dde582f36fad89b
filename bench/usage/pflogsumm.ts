/**
 * pflogsumm, the reference Relayplane's usage totals are checked and timed against: where it is,
 * and its "Grand Totals" block read back into numbers.
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

export function findExecutable(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter((d) => d !== ''), '/usr/sbin', '/usr/bin']) {
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return path.join(dir, name);
    } catch {
      /* next */
    }
  }
  return undefined;
}

export interface GrandTotals {
  /** smtpd `client=` and pickup lines. */
  received: number;
  /** `status=sent` lines, except `forwarded as`. */
  delivered: number;
  forwarded: number;
  /** Queue ids with at least one deferral. */
  deferred: number;
  /** `status=deferred` lines. */
  deferrals: number;
  /** `status=bounced` lines. */
  bounced: number;
  /** pflogsumm prints counts above 512k in k (1024) or m units, rounded down. */
  bytesReceived: { value: number; unit: '' | 'k' | 'm' };
}

/** Reads the "Grand Totals" block of pflogsumm's report; throws if a message count was rounded. */
export function parseGrandTotals(report: string): GrandTotals {
  const block = report.slice(report.indexOf('Grand Totals'));
  const count = (label: string) => {
    const m = new RegExp(`^\\s*(\\d+)([km ])\\s+${label}\\b`, 'm').exec(block);
    if (m === null) throw new Error(`pflogsumm report has no "${label}" total`);
    if (m[2] !== ' ') throw new Error(`pflogsumm rounded "${label}" to ${m[1]}${m[2]}`);
    return Number(m[1]);
  };
  // Printed only when there were deferrals.
  const deferrals = /^\s*\d+[km ]\s+deferred\s+\((\d+)([km ])\s*deferrals\)/m.exec(block);
  if (deferrals !== null && deferrals[2] !== ' ')
    throw new Error(`pflogsumm rounded deferrals to ${deferrals[1]}${deferrals[2]}`);
  const bytes = /^\s*(\d+)([km ])\s+bytes received/m.exec(block);
  if (bytes === null) throw new Error('pflogsumm report has no "bytes received" total');
  return {
    received: count('received'),
    delivered: count('delivered'),
    forwarded: count('forwarded'),
    deferred: count('deferred'),
    deferrals: deferrals === null ? 0 : Number(deferrals[1]),
    bounced: count('bounced'),
    bytesReceived: { value: Number(bytes[1]), unit: bytes[2]!.trim() as '' | 'k' | 'm' },
  };
}
