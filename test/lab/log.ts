/**
 * Reads a lab node's maillog (`maillog_file`) and parses delivery attempts:
 *
 *   <time> <host> postfix-node1/smtp[11653]: 666F121ABF4: to=<bob@x.test>, relay=127.0.0.1[127.0.0.1]:2602,
 *     delay=0.01, delays=0/0/0.01/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as sh2-000001)
 *
 * `status=` lines carry neither sender nor SASL user; each entry is joined on the queue id with the
 * `qmgr: QID: from=<...>` line (envelope sender) and the `cleanup: QID: message-id=<...>` line.
 */
import { readFile } from 'node:fs/promises';
import { sleep } from './util.js';

export interface LogTarget {
  maillogPath: string;
  /** The node's syslog_name; used to split `postfix-node1/smtps-out/smtp` into the service part. */
  syslogName?: string;
}

export interface LogLine {
  time: string;
  host: string;
  /** Full program tag, e.g. `postfix-node1/smtp` or `postfix-node1/smtps-out/smtp`. */
  program: string;
  pid: number;
  message: string;
  raw: string;
}

export type DeliveryStatus = 'sent' | 'deferred' | 'bounced' | 'expired' | 'undeliverable' | 'deliverable' | string;

export interface DeliveryLogEntry {
  queueId: string;
  /** Recipient (without angle brackets). */
  to: string;
  origTo: string | undefined;
  /** `127.0.0.1[127.0.0.1]:2602`, or `none`. */
  relay: string;
  dsn: string;
  status: DeliveryStatus;
  /** Text in parentheses after the status, e.g. `250 2.0.0 Ok: queued as sh2-000001`. */
  statusText: string;
  delay: number | undefined;
  /** Program with the node's syslog_name removed: `smtp`, `smtps-out/smtp`, `error`. */
  service: string;
  program: string;
  /** Envelope sender from the qmgr `from=` line ('' for the null sender); undefined if not logged yet. */
  from: string | undefined;
  /** Message-ID from the cleanup line, with angle brackets. */
  messageId: string | undefined;
  time: string;
  raw: string;
}

const LINE_RE = /^(\S+(?:\s+\d+\s+\d\d:\d\d:\d\d(?:\.\d+)?)?)\s+(\S+)\s+([^\s[]+)\[(\d+)\]:\s(.*)$/;
const QID_RE = /^([0-9A-Za-z]+): (.*)$/;

export function parseLogLine(raw: string): LogLine | undefined {
  const m = LINE_RE.exec(raw);
  if (m === null) return undefined;
  return { time: m[1]!, host: m[2]!, program: m[3]!, pid: Number(m[4]), message: m[5]!, raw };
}

function field(body: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|, )${name}=([^,]*)`).exec(body);
  return m?.[1];
}

function stripAngles(s: string | undefined): string | undefined {
  if (s === undefined) return undefined;
  return s.startsWith('<') && s.endsWith('>') ? s.slice(1, -1) : s;
}

function serviceOf(program: string, syslogName: string | undefined): string {
  if (syslogName !== undefined && program.startsWith(`${syslogName}/`)) return program.slice(syslogName.length + 1);
  const slash = program.indexOf('/');
  return slash >= 0 ? program.slice(slash + 1) : program;
}

/** Parses maillog text into delivery entries (one per status= line), oldest first. */
export function parseDeliveries(text: string, syslogName?: string): DeliveryLogEntry[] {
  const from = new Map<string, string>();
  const messageIds = new Map<string, string>();
  const pending: { line: LogLine; qid: string; body: string }[] = [];
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const line = parseLogLine(raw);
    if (line === undefined) continue;
    const q = QID_RE.exec(line.message);
    if (q === null) continue;
    const qid = q[1]!;
    const body = q[2]!;
    if (body.startsWith('from=')) {
      const f = stripAngles(field(body, 'from'));
      if (f !== undefined && !from.has(qid)) from.set(qid, f);
    } else if (body.startsWith('message-id=')) {
      const id = field(body, 'message-id');
      if (id !== undefined) messageIds.set(qid, id);
    } else if (body.startsWith('to=') && / status=/.test(body)) {
      pending.push({ line, qid, body });
    }
  }
  return pending.map(({ line, qid, body }) => {
    const statusMatch = /, status=(\S+)(?: \((.*)\))?$/.exec(body);
    const delay = field(body, 'delay');
    return {
      queueId: qid,
      to: stripAngles(field(body, 'to')) ?? '',
      origTo: stripAngles(field(body, 'orig_to')),
      relay: field(body, 'relay') ?? '',
      dsn: field(body, 'dsn') ?? '',
      status: statusMatch?.[1] ?? '',
      statusText: statusMatch?.[2] ?? '',
      delay: delay === undefined ? undefined : Number(delay),
      service: serviceOf(line.program, syslogName),
      program: line.program,
      from: from.get(qid),
      messageId: messageIds.get(qid),
      time: line.time,
      raw: line.raw,
    };
  });
}

/** The whole maillog ('' if it does not exist yet). */
export async function readMaillog(node: LogTarget): Promise<string> {
  return readFile(node.maillogPath, 'utf8').catch(() => '');
}

export async function readDeliveries(node: LogTarget): Promise<DeliveryLogEntry[]> {
  return parseDeliveries(await readMaillog(node), node.syslogName);
}

/** Resolves with the first delivery entry matching predicate (polls the file every 50 ms). */
export async function waitForLog(
  node: LogTarget,
  predicate: (e: DeliveryLogEntry) => boolean,
  timeoutMs = 10_000,
): Promise<DeliveryLogEntry> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = (await readDeliveries(node)).find(predicate);
    if (hit !== undefined) return hit;
    if (Date.now() >= deadline) {
      const tail = (await readMaillog(node)).split('\n').slice(-15).join('\n');
      throw new Error(
        `waitForLog: no matching status= line in ${node.maillogPath} within ${timeoutMs} ms. Log tail:\n${tail}`,
      );
    }
    await sleep(50);
  }
}

/** Resolves with the first raw log line matching (a regex or a predicate on the parsed line). */
export async function waitForLogLine(
  node: LogTarget,
  match: RegExp | ((l: LogLine) => boolean),
  timeoutMs = 10_000,
): Promise<LogLine> {
  const test = match instanceof RegExp ? (l: LogLine) => match.test(l.raw) : match;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const raw of (await readMaillog(node)).split('\n')) {
      const l = parseLogLine(raw);
      if (l !== undefined && test(l)) return l;
    }
    if (Date.now() >= deadline) throw new Error(`waitForLogLine: no match for ${String(match)} within ${timeoutMs} ms`);
    await sleep(50);
  }
}
