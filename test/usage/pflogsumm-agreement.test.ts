/**
 * On the same log, Relayplane's totals agree with pflogsumm's Grand Totals (received, delivered,
 * deferred + deferrals, bounced, bytes received), and both with what the generator wrote.
 * Runs the real pflogsumm; skipped when it is not installed, failing instead on CI
 * (RELAYPLANE_REQUIRE_LAB=1).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePostfixLog, type LogTruth, type PostfixLogOptions } from '../../bench/usage/generate-log.js';
import { findExecutable, parseGrandTotals } from '../../bench/usage/pflogsumm.js';
import { emptyCounters, UsageAccumulator, type UsageCounters } from '../../src/usage/accumulator.js';
import { LogLineParser } from '../../src/usage/log-line.js';
import { toolGate } from '../lab/requirements.js';

const run = promisify(execFile);

async function relayplaneTotals(file: string, truth: LogTruth, utcOffsetMinutes: number): Promise<UsageCounters> {
  const parser = new LogLineParser({ year: 2026, month: 10, utcOffsetMinutes });
  const acc = new UsageAccumulator(new Map(), (domain) => truth.tenantOfDomain.get(domain) ?? null);
  const text = await readFile(file, 'utf8');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const event = parser.parse(line);
    if (typeof event === 'object') acc.add(event);
  }
  const sum = emptyCounters();
  for (const b of acc.result()) for (const k of Object.keys(sum) as (keyof UsageCounters)[]) sum[k] += b[k];
  return sum;
}

describe('parseGrandTotals', () => {
  it("reads pflogsumm 1.1.5's block, k-rounded bytes included", () => {
    const report = [
      'Grand Totals',
      '------------',
      'messages',
      '',
      '   4554   received',
      '   9358   delivered',
      '     54   forwarded',
      '    536   deferred  (1022  deferrals)',
      '    363   bounced',
      '    675   rejected (6%)',
      '      0   reject warnings',
      '',
      ' 320088k  bytes received',
      ' 497058k  bytes delivered',
    ].join('\n');
    expect(parseGrandTotals(report)).toEqual({
      received: 4554,
      delivered: 9358,
      forwarded: 54,
      deferred: 536,
      deferrals: 1022,
      bounced: 363,
      bytesReceived: { value: 320088, unit: 'k' },
    });
    expect(() => parseGrandTotals(report.replace('9358   delivered', '612k  delivered'))).toThrow(
      /rounded "delivered"/,
    );
  });
});

const pflogsumm = findExecutable('pflogsumm');

describe.skipIf(!toolGate('pflogsumm agreement', ['pflogsumm']))(
  'Relayplane totals vs pflogsumm on the same log',
  () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-pflogsumm-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('pflogsumm is installed', () => {
      expect(pflogsumm, 'install with: apt-get install pflogsumm').toBeDefined();
    });

    const cases: [string, Omit<PostfixLogOptions, 'lines' | 'start'>][] = [
      ['traditional stamps, syslog_name postfix-node1', { seed: 11, syslogName: 'postfix-node1' }],
      ['RFC 3339 stamps at +01:00, syslog_name postfix', { seed: 12, format: 'rfc3339', utcOffsetMinutes: 60 }],
      ['long queue ids (enable_long_queue_ids)', { seed: 13, syslogName: 'postfix-node1', longQueueIds: true }],
    ];
    for (const [name, options] of cases) {
      it(name, async () => {
        const file = path.join(dir, `${options.seed}.log`);
        const truth = await writePostfixLog(file, {
          lines: 40_000,
          start: new Date('2026-11-28T05:00:00Z'),
          ...options,
        });
        const args = options.syslogName === undefined ? [file] : [`--syslog-name=${options.syslogName}`, file];
        const { stdout } = await run(pflogsumm!, args, { maxBuffer: 64 << 20 });
        const theirs = parseGrandTotals(stdout);
        const ours = await relayplaneTotals(file, truth, options.utcOffsetMinutes ?? 0);

        // The generator's ground truth, as pflogsumm counts it …
        expect(theirs).toMatchObject({
          received: truth.received,
          delivered: truth.delivered,
          forwarded: truth.forwarded,
          deferred: truth.deferredMessages,
          deferrals: truth.deferrals,
          bounced: truth.bounced,
        });
        const divisor = { '': 1, k: 1024, m: 1024 * 1024 }[theirs.bytesReceived.unit];
        expect(theirs.bytesReceived.value).toBe(Math.floor(truth.bytes / divisor));
        // … and as Relayplane does: one message per origin, a deferral per deferred line.
        expect({
          messages: ours.messages,
          delivered: ours.delivered,
          deferred: ours.deferred,
          bounced: ours.bounced,
        }).toEqual({
          messages: theirs.received,
          delivered: theirs.delivered,
          deferred: theirs.deferrals,
          bounced: theirs.bounced,
        });
        expect(ours).toEqual({
          messages: truth.received,
          recipients: truth.recipients,
          delivered: truth.delivered,
          deferred: truth.deferrals,
          bounced: truth.bounced,
          expired: truth.expired,
          bytes: truth.bytes,
        });
      });
    }
  },
);
