/**
 * The small parts of the Postfix log generator that are not about mail: a seeded PRNG (runs must be
 * reproducible, so never Math.random), a time-ordered line heap, syslog timestamps and queue ids.
 */

/** mulberry32: tiny, fast and good enough for synthetic traffic. */
export function createRandom(seed: number) {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return {
    next,
    /** Integer in [min, max]. */
    int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)),
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
    /** Index in [0, n) skewed towards 0 (a few busy tenants, many quiet ones). */
    skewed: (n: number) => Math.min(n - 1, Math.floor(n * next() ** 2.5)),
    /** Exponentially distributed, with the given mean. */
    exponential: (mean: number) => -Math.log(1 - next()) * mean,
  };
}

export type Random = ReturnType<typeof createRandom>;

export interface TimedLine {
  /** Microseconds since the epoch. */
  t: number;
  seq: number;
  /** `tag[pid]: message`, without timestamp and host. */
  text: string;
}

/** Binary min-heap on (t, seq): lines come out in time order, ties in the order they were planned. */
export class LineHeap {
  private readonly items: TimedLine[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): TimedLine | undefined {
    return this.items[0];
  }

  push(line: TimedLine): void {
    const a = this.items;
    a.push(line);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(a[i]!, a[parent]!)) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }

  pop(): TimedLine | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (top === undefined || last === undefined || a.length === 0) return top;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && before(a[l]!, a[m]!)) m = l;
      if (r < a.length && before(a[r]!, a[m]!)) m = r;
      if (m === i) break;
      [a[i], a[m]] = [a[m]!, a[i]!];
      i = m;
    }
    return top;
  }
}

function before(a: TimedLine, b: TimedLine): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number, width = 2) => String(n).padStart(width, '0');

export type StampFormat = 'traditional' | 'rfc3339';

/**
 * Syslog timestamps in the node's local time: `Nov 28 05:04:16` (day padded with a space, as
 * syslog writes it) or rsyslog's high-precision `2026-11-28T05:04:16.123456+01:00`.
 */
export function createStamper(format: StampFormat, utcOffsetMinutes: number) {
  const sign = utcOffsetMinutes < 0 ? '-' : '+';
  const zone = `${sign}${pad(Math.floor(Math.abs(utcOffsetMinutes) / 60))}:${pad(Math.abs(utcOffsetMinutes) % 60)}`;
  let lastSecond = Number.NaN;
  let lastText = '';
  return (micros: number): string => {
    const second = Math.floor(micros / 1_000_000);
    if (second !== lastSecond) {
      const d = new Date(second * 1000 + utcOffsetMinutes * 60_000);
      const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
      lastText =
        format === 'traditional'
          ? `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${time}`
          : `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${time}`;
      lastSecond = second;
    }
    return format === 'traditional' ? lastText : `${lastText}.${pad(micros % 1_000_000, 6)}${zone}`;
  };
}

/**
 * Short Postfix queue ids: five hex digits of the microsecond clock, then the queue file's inode
 * in hex. `serial` is spread over 2^24 by an odd multiplier, so ids never repeat within a log.
 */
export function shortQueueId(micros: number, serial: number): string {
  const usec = (micros % 1_000_000).toString(16).toUpperCase().padStart(5, '0');
  const inode = Math.imul(serial + 1, 0x9e3779b1) & 0xffffff;
  return usec + inode.toString(16).toUpperCase().padStart(5, '0');
}

const SAFE = '0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz';

function encode(value: number, base: number, width: number): string {
  let s = '';
  let v = value;
  do {
    s = SAFE[v % base]! + s;
    v = Math.floor(v / base);
  } while (v > 0);
  return s.padStart(width, '0');
}

/**
 * A long queue id (`enable_long_queue_ids = yes`), as Postfix's mail_queue.h builds it: seconds
 * (base 52, at least six digits), microseconds (base 52, exactly four), 'z', the inode in base 51
 * (so it holds no 'z': the last 'z' is the separator; the time part may contain 'z').
 */
export function longQueueId(micros: number, inode: number): string {
  return `${encode(Math.floor(micros / 1_000_000), 52, 6)}${encode(micros % 1_000_000, 52, 4)}z${encode(inode, 51, 0)}`;
}

export function ip(random: Random, prefix = '203.0.113'): string {
  return `${prefix}.${random.int(2, 254)}`;
}
