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
  Jan: 0,
  Feb: 1,
  Mar: 2,
  Apr: 3,
  May: 4,
  Jun: 5,
  Jul: 6,
  Aug: 7,
  Sep: 8,
  Oct: 9,
  Nov: 10,
  Dec: 11,
};

// Long queue ids (enable_long_queue_ids): the time in base-52 digits (no vowels; 'z' is a digit
// there), a 'z', then the inode in base 51 (no 'z'): the last 'z' separates them.
/** The month names as numbers of their three character codes: checked without cutting the line. */
const MONTH_CODES = new Set(
  Object.keys(MONTHS).map((m) => m.charCodeAt(0) * 65_536 + m.charCodeAt(1) * 256 + m.charCodeAt(2)),
);

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

/** `needle` in s[from, end), or -1: indexOf bounded to one line of a larger text. */
function indexIn(s: string, needle: string, from: number, end: number): number {
  const i = s.indexOf(needle, from);
  return i < 0 || i + needle.length > end ? -1 : i;
}

/** The `<…>` address after `key=<` at `from`, within the line ending at `end`, or undefined. */
function angleValue(s: string, from: number, end: number): string | undefined {
  const close = indexIn(s, '>', from, end);
  return close < 0 ? undefined : s.slice(from, close);
}

/** Digits after `key` (e.g. `, size=`) at or after `from`, within the line ending at `end`, or NaN. */
function numberAfter(s: string, key: string, from: number, end: number): number {
  const i = indexIn(s, key, from, end);
  if (i < 0) return Number.NaN;
  let j = i + key.length;
  const start = j;
  while (j < end && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) j++;
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

  /**
   * The index after the timestamp of the line starting at `s` (its value is then in lastMs), or -1.
   * No object per line: this runs a million times.
   */
  private timestamp(text: string, s: number, lineEnd: number): number {
    // Same second as the line before (most lines): no slice, no date arithmetic.
    const last = this.lastStamp;
    if (last.length > 0 && text.charCodeAt(s + last.length) === 32 && text.startsWith(last, s)) return s + last.length;
    if (lineEnd - s > 20 && text.charCodeAt(s + 4) === 45 /* - */ && text.charCodeAt(s + 10) === 84 /* T */) {
      const end = indexIn(text, ' ', s, lineEnd);
      if (end < 0) return -1;
      // The fraction changes on every line: parse the second once, add the fraction by hand.
      let z = s + 19;
      let fraction = 0;
      if (text.charCodeAt(z) === 46 /* . */) {
        let scale = 100;
        for (z = s + 20; z < end; z++) {
          const d = text.charCodeAt(z) - 48;
          if (d < 0 || d > 9) break;
          fraction += d * scale;
          scale /= 10;
        }
      }
      const zone = text.slice(z, end);
      if (!text.startsWith(this.lastSecond, s) || zone !== this.lastZone || this.lastSecond === '') {
        const second = text.slice(s, s + 19);
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
    if (lineEnd - s < 16 || text.charCodeAt(s + 15) !== 32) return -1;
    // Same minute as the last stamp: only the seconds differ.
    const minute = this.lastMinute;
    if (minute.length > 0 && text.startsWith(minute, s) && text.charCodeAt(s + 12) === 58) {
      const ss = digits(text, s + 13, s + 15);
      if (!Number.isNaN(ss)) {
        this.lastStamp = text.slice(s, s + 15);
        this.lastMs = this.lastMinuteMs + ss * 1000;
        return s + 15;
      }
    }
    const stamp = text.slice(s, s + 15);
    if (stamp !== this.lastStamp) {
      const month = MONTHS[stamp.slice(0, 3)];
      const day = stamp.charCodeAt(4) === 32 ? digits(stamp, 5, 6) : digits(stamp, 4, 6);
      const hh = digits(stamp, 7, 9);
      const mm = digits(stamp, 10, 12);
      const ss = digits(stamp, 13, 15);
      if (
        month === undefined ||
        Number.isNaN(day + hh + mm + ss) ||
        stamp.charCodeAt(9) !== 58 ||
        stamp.charCodeAt(12) !== 58
      ) {
        return -1;
      }
      // A month after the collection's month is last year's (a log read in January holds December).
      const year = month > this.time.month ? this.time.year - 1 : this.time.year;
      this.lastStamp = stamp;
      this.lastMinute = stamp.slice(0, 12);
      this.lastMinuteMs = Date.UTC(year, month, day, hh, mm, 0) - this.time.utcOffsetMinutes * 60_000;
      this.lastMs = this.lastMinuteMs + ss * 1000;
    }
    return s + 15;
  }

  /**
   * Where the timestamp of the line starting at `s` ends, from its shape alone (its value is
   * computed only for lines that count: half of a log's lines never need it); -1 when the line
   * does not start like a syslog line.
   */
  private stampEnd(text: string, s: number, end: number): number {
    if (end - s < 16) return -1;
    if (text.charCodeAt(s + 4) === 45 /* - */ && text.charCodeAt(s + 10) === 84 /* T */)
      return indexIn(text, ' ', s, end);
    if (text.charCodeAt(s + 15) !== 32 || text.charCodeAt(s + 9) !== 58 || text.charCodeAt(s + 12) !== 58) return -1;
    return MONTH_CODES.has(text.charCodeAt(s) * 65_536 + text.charCodeAt(s + 1) * 256 + text.charCodeAt(s + 2))
      ? s + 15
      : -1;
  }

  /** One log line (without its newline). */
  parse(line: string): ParseResult {
    return this.parseAt(line, 0, line.length);
  }

  /**
   * The line text[start, end) of a larger text, `end` being the index of its newline or the
   * text's length: a collector parses a chunk of the log in place, with no string cut out per
   * line, and reads the characters from one flat string.
   */
  parseAt(text: string, start: number, end: number): ParseResult {
    const tsEnd = this.stampEnd(text, start, end);
    if (tsEnd < 0) return 'malformed';
    // host, then `program[pid]: `
    const hostEnd = indexIn(text, ' ', tsEnd + 1, end);
    if (hostEnd < 0) return 'malformed';
    const tagEnd = indexIn(text, ': ', hostEnd + 1, end);
    if (tagEnd < 0) return 'malformed';
    const idEnd = indexIn(text, ': ', tagEnd + 2, end);
    if (idEnd < 0) return 'ignored';

    const p = idEnd + 2; // start of the payload
    // Most lines (connect, TLS, message-id, statistics) mean nothing for usage: the payload's first
    // letter rules them out before anything is cut out of the line.
    const first = p < end ? text.charCodeAt(p) : -1;
    if (
      first !== 116 /* to= */ &&
      first !== 102 /* from= */ &&
      first !== 99 /* client= */ &&
      first !== 114 /* removed */ &&
      first !== 117 /* uid= */ &&
      first !== 115 /* sender= */
    ) {
      return 'ignored';
    }
    const queueId = text.slice(tagEnd + 2, idEnd);
    if (!isQueueId(queueId)) return 'ignored';
    if (this.timestamp(text, start, end) < 0) return 'malformed';
    const at = this.lastMs;
    if (first === 116) return text.startsWith('to=<', p) ? this.delivery(text, p, end, at, queueId) : 'ignored';

    const bracket = text.lastIndexOf('[', tagEnd);
    const programEnd = bracket > hostEnd ? bracket : tagEnd;
    const slash = text.lastIndexOf('/', programEnd);
    const program = text.slice(slash > hostEnd ? slash + 1 : hostEnd + 1, programEnd);
    switch (program) {
      case 'qmgr':
        if (text.startsWith('from=<', p)) {
          const sender = angleValue(text, p + 6, end);
          if (sender === undefined) return 'malformed';
          const rest = p + 6 + sender.length;
          if (text.startsWith('>, size=', rest)) {
            const size = numberAfter(text, ', size=', rest, end);
            const nrcpt = numberAfter(text, ', nrcpt=', rest, end);
            if (Number.isNaN(size) || Number.isNaN(nrcpt)) return 'malformed';
            return { kind: 'queued', at, queueId, sender, size, nrcpt };
          }
          // A rare line: cut it out rather than let a search run on past its end.
          const tail = text.slice(rest, end);
          if (tail.includes('status=expired') || tail.includes('status=force-expired')) {
            return { kind: 'expired', at, queueId, sender };
          }
          return 'ignored';
        }
        return end === p + 7 && text.startsWith('removed', p) ? { kind: 'removed', at, queueId } : 'ignored';
      case 'postsuper':
        return end - p >= 7 && text.startsWith('removed', p) ? { kind: 'removed', at, queueId } : 'ignored';
      case 'smtpd':
        return end - p >= 7 && text.startsWith('client=', p) ? { kind: 'origin', at, queueId } : 'ignored';
      case 'pickup':
        return (end - p >= 4 && text.startsWith('uid=', p)) || (end - p >= 7 && text.startsWith('sender=', p))
          ? { kind: 'origin', at, queueId }
          : 'ignored';
      default:
        return 'ignored';
    }
  }

  private delivery(text: string, p: number, lineEnd: number, at: number, queueId: string): ParseResult {
    const recipient = angleValue(text, p + 4, lineEnd);
    if (recipient === undefined) return 'malformed';
    const s = indexIn(text, ', status=', p + 4 + recipient.length, lineEnd);
    if (s < 0) return 'malformed';
    const start = s + 9;
    let end = indexIn(text, ' ', start, lineEnd);
    if (end < 0) end = lineEnd;
    const status = text.slice(start, end);
    if (status === 'sent') {
      // A local alias expansion is not a delivery (pflogsumm counts these as "forwarded").
      if (lineEnd - (end + 1) >= 14 && text.startsWith('(forwarded as ', end + 1)) return 'ignored';
      return { kind: 'delivery', at, queueId, recipient, status };
    }
    if (status === 'deferred' || status === 'bounced') return { kind: 'delivery', at, queueId, recipient, status };
    // deliverable/undeliverable (address probes), expired per recipient: no accounting meaning.
    return 'ignored';
  }
}
