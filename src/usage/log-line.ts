/**
 * Postfix log lines → accounting events. Pure and allocation-light: a node's log is read at up to
 * millions of lines per run, so lines are cut with indexOf/charCodeAt rather than one big regex,
 * and consecutive lines of the same second share one parsed timestamp.
 *
 * Two timestamp formats are accepted, as pflogsumm does:
 *   traditional  `Nov 28 05:04:16 host postfix/qmgr[123]: …` (no year, no zone: the node's local time)
 *   RFC 3339     `2026-11-28T05:04:16.123456+00:00 host postfix/qmgr[123]: …`
 *
 * Events are decided by the Postfix program (the last part of the syslog tag, so
 * `postfix-node1/rp_slow/smtp` is `smtp`) and the text after the queue id:
 *   smtpd `client=`, pickup `uid=`/`sender=`   origin: the message entered Postfix from outside
 *   qmgr `from=<…>, size=…, nrcpt=…`           the message is in the active queue (repeats on retries)
 *   qmgr `from=<…>, status=expired|force-expired, returned to sender`
 *   qmgr `removed`, postsuper `removed`        the queue file is gone (the queue id may be reused)
 *   any delivery agent `to=<…>, relay=…, … status=sent|deferred|bounced (…)`
 * Every other well-formed Postfix line is `ignored`; a line that is not a Postfix log line at all
 * (no timestamp, no `program[pid]:` tag) is `malformed`. Neither ever stops a run.
 */

export type DeliveryStatus = 'sent' | 'deferred' | 'bounced';

export type LogEvent =
  | { kind: 'origin'; at: number; queueId: string }
  | { kind: 'queued'; at: number; queueId: string; sender: string; size: number; nrcpt: number }
  | { kind: 'expired'; at: number; queueId: string; sender: string }
  | { kind: 'removed'; at: number; queueId: string }
  | { kind: 'delivery'; at: number; queueId: string; recipient: string; status: DeliveryStatus };

export type ParseResult = LogEvent | 'ignored' | 'malformed';

/** What a traditional timestamp lacks: the year and the node's UTC offset at collection time. */
export interface TimeContext {
  /** Year and month (0–11) of the collection in the node's local time. */
  year: number;
  month: number;
  /** The node's UTC offset in minutes (`date +%z`), e.g. +60 for +0100. */
  utcOffsetMinutes: number;
}

const MONTHS: Record<string, number> = {
  Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11,
};

// Long queue ids (enable_long_queue_ids): the time in base-52 digits (no vowels; 'z' is a digit
// there), a 'z', then the inode in base 51 (no 'z'): the last 'z' separates them.
/** The month names as numbers of their three character codes: checked without cutting the line. */
const MONTH_CODES = new Set(Object.keys(MONTHS).map((m) => m.charCodeAt(0) * 65_536 + m.charCodeAt(1) * 256 + m.charCodeAt(2)));

const LONG_QUEUE_ID = /^[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+$/;

/** Upper-case hex of at least 6 digits (a classic queue id), checked without a regex: once per line. */
function isShortQueueId(s: string): boolean {
  if (s.length < 6) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 70))) return false;
  }
  return true;
}

export function isQueueId(s: string): boolean {
  return isShortQueueId(s) || LONG_QUEUE_ID.test(s);
}

function digits(s: string, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return Number.NaN;
    n = n * 10 + c;
  }
  return n;
}

/** The `<…>` address after `key=<` at `from`, or undefined. */
function angleValue(s: string, from: number): string | undefined {
  const end = s.indexOf('>', from);
  return end < 0 ? undefined : s.slice(from, end);
}

/** Digits after `key` (e.g. `, size=`) at or after `from`, or NaN. */
function numberAfter(s: string, key: string, from: number): number {
  const i = s.indexOf(key, from);
  if (i < 0) return Number.NaN;
  let j = i + key.length;
  const start = j;
  while (j < s.length && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) j++;
  return j === start ? Number.NaN : digits(s, start, j);
}

/** The domain of an address, lower-cased; '' for the null sender or an address without one. */
export function addressDomain(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/**
 * A stateful line parser: remembers the last timestamp text so that the many lines logged within
 * one second cost one comparison, not a date computation.
 */
export class LogLineParser {
  private lastStamp = '';
  private lastMs = 0;
  /** RFC 3339: `YYYY-MM-DDTHH:MM:SS` and the zone of the last stamp, and that second in ms. */
  private lastSecond = '';
  /** Traditional stamps: `Mmm dd HH:MM` of the last stamp and that minute in ms. */
  private lastMinute = '';
  private lastMinuteMs = 0;
  private lastZone = '';
  private lastSecondMs = 0;

  constructor(private readonly time: TimeContext) {}

  /** The index after the timestamp (its value is then in lastMs), or -1. No object per line: this runs a million times. */
  private timestamp(line: string): number {
    // Same second as the line before (most lines): no slice, no date arithmetic.
    const last = this.lastStamp;
    if (last.length > 0 && line.charCodeAt(last.length) === 32 && line.startsWith(last)) return last.length;
    if (line.length > 20 && line.charCodeAt(4) === 45 /* - */ && line.charCodeAt(10) === 84 /* T */) {
      const end = line.indexOf(' ');
      if (end < 0) return -1;
      // The fraction changes on every line: parse the second once, add the fraction by hand.
      let z = 19;
      let fraction = 0;
      if (line.charCodeAt(19) === 46 /* . */) {
        let scale = 100;
        for (z = 20; z < end; z++) {
          const d = line.charCodeAt(z) - 48;
          if (d < 0 || d > 9) break;
          fraction += d * scale;
          scale /= 10;
        }
      }
      const zone = line.slice(z, end);
      if (!line.startsWith(this.lastSecond) || zone !== this.lastZone || this.lastSecond === '') {
        const second = line.slice(0, 19);
        const ms = Date.parse(second + zone);
        if (Number.isNaN(ms)) return -1;
        this.lastSecond = second;
        this.lastZone = zone;
        this.lastSecondMs = ms;
      }
      this.lastStamp = '';
      this.lastMs = this.lastSecondMs + Math.floor(fraction);
      return end;
    }
    // `Mmm dd HH:MM:SS` (day padded with a space): 15 characters.
    if (line.length < 16 || line.charCodeAt(15) !== 32) return -1;
    // Same minute as the last stamp: only the seconds differ.
    const minute = this.lastMinute;
    if (minute.length > 0 && line.startsWith(minute) && line.charCodeAt(12) === 58) {
      const ss = digits(line, 13, 15);
      if (!Number.isNaN(ss)) {
        this.lastStamp = line.slice(0, 15);
        this.lastMs = this.lastMinuteMs + ss * 1000;
        return 15;
      }
    }
    const stamp = line.slice(0, 15);
    if (stamp !== this.lastStamp) {
      const month = MONTHS[stamp.slice(0, 3)];
      const day = stamp.charCodeAt(4) === 32 ? digits(stamp, 5, 6) : digits(stamp, 4, 6);
      const hh = digits(stamp, 7, 9);
      const mm = digits(stamp, 10, 12);
      const ss = digits(stamp, 13, 15);
      if (month === undefined || Number.isNaN(day + hh + mm + ss) || stamp.charCodeAt(9) !== 58 || stamp.charCodeAt(12) !== 58) {
        return -1;
      }
      // A month after the collection's month is last year's (a log read in January holds December).
      const year = month > this.time.month ? this.time.year - 1 : this.time.year;
      this.lastStamp = stamp;
      this.lastMinute = stamp.slice(0, 12);
      this.lastMinuteMs = Date.UTC(year, month, day, hh, mm, 0) - this.time.utcOffsetMinutes * 60_000;
      this.lastMs = this.lastMinuteMs + ss * 1000;
    }
    return 15;
  }

  /**
   * Where the timestamp ends, from its shape alone (its value is computed only for lines that
   * count: half of a log's lines never need it); -1 when the line does not start like a syslog line.
   */
  private stampEnd(line: string): number {
    if (line.charCodeAt(4) === 45 /* - */ && line.charCodeAt(10) === 84 /* T */) return line.indexOf(' ');
    if (line.charCodeAt(15) !== 32 || line.charCodeAt(9) !== 58 || line.charCodeAt(12) !== 58) return -1;
    return MONTH_CODES.has(line.charCodeAt(0) * 65_536 + line.charCodeAt(1) * 256 + line.charCodeAt(2)) ? 15 : -1;
  }

  parse(line: string): ParseResult {
    const tsEnd = this.stampEnd(line);
    if (tsEnd < 0) return 'malformed';
    // host, then `program[pid]: `
    const hostEnd = line.indexOf(' ', tsEnd + 1);
    if (hostEnd < 0) return 'malformed';
    const tagEnd = line.indexOf(': ', hostEnd + 1);
    if (tagEnd < 0) return 'malformed';
    const idEnd = line.indexOf(': ', tagEnd + 2);
    if (idEnd < 0) return 'ignored';

    const p = idEnd + 2; // start of the payload
    // Most lines (connect, TLS, message-id, statistics) mean nothing for usage: the payload's first
    // letter rules them out before anything is cut out of the line.
    const first = line.charCodeAt(p);
    if (first !== 116 /* to= */ && first !== 102 /* from= */ && first !== 99 /* client= */ && first !== 114 /* removed */ && first !== 117 /* uid= */ && first !== 115 /* sender= */) {
      return 'ignored';
    }
    const queueId = line.slice(tagEnd + 2, idEnd);
    if (!isQueueId(queueId)) return 'ignored';
    if (this.timestamp(line) < 0) return 'malformed';
    const at = this.lastMs;
    if (first === 116) return line.startsWith('to=<', p) ? this.delivery(line, p, at, queueId) : 'ignored';

    const bracket = line.lastIndexOf('[', tagEnd);
    const programEnd = bracket > hostEnd ? bracket : tagEnd;
    const slash = line.lastIndexOf('/', programEnd);
    const program = line.slice(slash > hostEnd ? slash + 1 : hostEnd + 1, programEnd);
    switch (program) {
      case 'qmgr':
        if (line.startsWith('from=<', p)) {
          const sender = angleValue(line, p + 6);
          if (sender === undefined) return 'malformed';
          const rest = p + 6 + sender.length;
          if (line.startsWith('>, size=', rest)) {
            const size = numberAfter(line, ', size=', rest);
            const nrcpt = numberAfter(line, ', nrcpt=', rest);
            if (Number.isNaN(size) || Number.isNaN(nrcpt)) return 'malformed';
            return { kind: 'queued', at, queueId, sender, size, nrcpt };
          }
          if (line.includes('status=expired', rest) || line.includes('status=force-expired', rest)) {
            return { kind: 'expired', at, queueId, sender };
          }
          return 'ignored';
        }
        return line.length === p + 7 && line.endsWith('removed') ? { kind: 'removed', at, queueId } : 'ignored';
      case 'postsuper':
        return line.startsWith('removed', p) ? { kind: 'removed', at, queueId } : 'ignored';
      case 'smtpd':
        return line.startsWith('client=', p) ? { kind: 'origin', at, queueId } : 'ignored';
      case 'pickup':
        return line.startsWith('uid=', p) || line.startsWith('sender=', p) ? { kind: 'origin', at, queueId } : 'ignored';
      default:
        return 'ignored';
    }
  }

  private delivery(line: string, p: number, at: number, queueId: string): ParseResult {
    const recipient = angleValue(line, p + 4);
    if (recipient === undefined) return 'malformed';
    const s = line.indexOf(', status=', p + 4 + recipient.length);
    if (s < 0) return 'malformed';
    const start = s + 9;
    let end = line.indexOf(' ', start);
    if (end < 0) end = line.length;
    const status = line.slice(start, end);
    if (status === 'sent') {
      // A local alias expansion is not a delivery (pflogsumm counts these as "forwarded").
      if (line.startsWith('(forwarded as ', end + 1)) return 'ignored';
      return { kind: 'delivery', at, queueId, recipient, status };
    }
    if (status === 'deferred' || status === 'bounced') return { kind: 'delivery', at, queueId, recipient, status };
    // deliverable/undeliverable (address probes), expired per recipient: no accounting meaning.
    return 'ignored';
  }
}
