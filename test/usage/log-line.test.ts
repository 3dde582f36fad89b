import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createStamper, longQueueId } from '../../bench/usage/log-format.js';
import { addressDomain, isQueueId, LogLineParser, type TimeContext } from '../../src/usage/log-line.js';

const NOV_2026: TimeContext = { year: 2026, month: 10, utcOffsetMinutes: 0 };
const AT = Date.UTC(2026, 10, 28, 5, 4, 16);
const parse = (line: string, time: TimeContext = NOV_2026) => new LogLineParser(time).parse(line);
const node = (rest: string) => `Nov 28 05:04:16 relay1 postfix-node1/${rest}`;

// Lines as the lab's Postfix 3.7 nodes write them (shared/reference/postfix-facts.md, "Log lines").
const FACTS = {
  queued: node('qmgr[11403]: 666F121ABF4: from=<y@b.test>, size=429, nrcpt=1 (queue active)'),
  sent: node(
    'smtp[11653]: 666F121ABF4: to=<bob@gmail.test>, relay=127.0.0.1[127.0.0.1]:2602, delay=0.01, delays=0/0/0.01/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as sh2-000001)',
  ),
  removed: node('qmgr[11403]: 666F121ABF4: removed'),
  deferred: node(
    'smtp[11653]: 9689A21ABFE: to=<bob@gmail.test>, relay=127.0.0.1[127.0.0.1]:2602, delay=0.01, delays=0/0/0.01/0, dsn=4.7.8, status=deferred (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8 Authentication credentials invalid)',
  ),
  bounced: node(
    'smtp[11918]: 60AB621ABFE: to=<reject-me@gmail.test>, relay=127.0.0.1[127.0.0.1]:2601, delay=0.02, delays=0/0/0.01/0.01, dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 ... (in reply to RCPT TO command))',
  ),
  notification: node('bounce[12179]: 60AB621ABFE: sender non-delivery notification: 64A7B21AC11'),
};

describe('LogLineParser: events', () => {
  it('reads the lab lines of postfix-facts.md', () => {
    expect(parse(FACTS.queued)).toEqual({
      kind: 'queued',
      at: AT,
      queueId: '666F121ABF4',
      sender: 'y@b.test',
      size: 429,
      nrcpt: 1,
    });
    expect(parse(FACTS.sent)).toEqual({
      kind: 'delivery',
      at: AT,
      queueId: '666F121ABF4',
      recipient: 'bob@gmail.test',
      status: 'sent',
    });
    expect(parse(FACTS.removed)).toEqual({ kind: 'removed', at: AT, queueId: '666F121ABF4' });
    expect(parse(FACTS.deferred)).toMatchObject({ kind: 'delivery', queueId: '9689A21ABFE', status: 'deferred' });
    expect(parse(FACTS.bounced)).toMatchObject({
      kind: 'delivery',
      queueId: '60AB621ABFE',
      recipient: 'reject-me@gmail.test',
      status: 'bounced',
    });
    expect(parse(FACTS.notification)).toBe('ignored');
  });

  it('an smtpd client= line (plain, submission or smtps service) or a pickup line is an origin', () => {
    const origin = { kind: 'origin', at: AT, queueId: '92CED3779B1' };
    expect(parse(node('smtpd[5057]: 92CED3779B1: client=mta4.tenant0.example[203.0.113.151]'))).toEqual(origin);
    expect(
      parse(
        node(
          'submission/smtpd[5120]: 92CED3779B1: client=app1.t.example[203.0.113.75], sasl_method=PLAIN, sasl_username=t0',
        ),
      ),
    ).toEqual(origin);
    expect(parse(node('smtps/smtpd[5120]: 92CED3779B1: client=unknown[2001:db8::5]'))).toEqual(origin);
    expect(parse(node('pickup[1500]: 92CED3779B1: uid=0 from=<root>'))).toEqual(origin);
    expect(parse(node('pickup[1500]: 92CED3779B1: sender=<www-data>'))).toEqual(origin);
    // The same text from another program is not an origin.
    expect(parse(node('cleanup[1801]: 92CED3779B1: client=x[203.0.113.1]'))).toBe('ignored');
  });

  it('qmgr from= lines: queued (also the null sender), expired and force-expired', () => {
    expect(parse(node('qmgr[1187]: B1B894562003: from=<>, size=3773, nrcpt=1 (queue active)'))).toEqual({
      kind: 'queued',
      at: AT,
      queueId: 'B1B894562003',
      sender: '',
      size: 3773,
      nrcpt: 1,
    });
    expect(
      parse(node('qmgr[1187]: C93CEB08A04: from=<ina@somedomain.com>, status=expired, returned to sender')),
    ).toEqual({
      kind: 'expired',
      at: AT,
      queueId: 'C93CEB08A04',
      sender: 'ina@somedomain.com',
    });
    expect(
      parse(node('qmgr[1187]: C93CEB08A04: from=<ina@somedomain.com>, status=force-expired, returned to sender')),
    ).toEqual({
      kind: 'expired',
      at: AT,
      queueId: 'C93CEB08A04',
      sender: 'ina@somedomain.com',
    });
  });

  it('postsuper and qmgr removals; other "removed" texts are not', () => {
    expect(parse(node('postsuper[4100]: 4F2C1C0E1A: removed'))).toEqual({
      kind: 'removed',
      at: AT,
      queueId: '4F2C1C0E1A',
    });
    expect(parse(node('postsuper[4100]: Deleted: 1 message'))).toBe('ignored');
    expect(parse(node('qmgr[1187]: 4F2C1C0E1A: removed by the administrator'))).toBe('ignored');
  });

  it('deliveries from any agent and service tag, with orig_to= and conn_use=', () => {
    const sent = { kind: 'delivery', at: AT, queueId: '0D1EE156075', recipient: 'eva.1@r11.example', status: 'sent' };
    expect(
      parse(
        node(
          'rp_slow/smtp[2476]: 0D1EE156075: to=<eva.1@r11.example>, relay=127.0.0.1[127.0.0.1]:2525, conn_use=3, delay=0.45, delays=0/0.02/0.07/0.16, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4626E4CDA26)',
        ),
      ),
    ).toEqual(sent);
    expect(
      parse(
        node(
          'smtp[2476]: 0D1EE156075: to=<eva.1@r11.example>, orig_to=<postmaster@r11.example>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.4, delays=0/0/0.1/0.3, dsn=2.0.0, status=sent (250 Ok)',
        ),
      ),
    ).toEqual(sent);
    expect(
      parse(
        node(
          'error[2901]: 0D1EE156075: to=<eva.1@r11.example>, relay=none, delay=300, delays=300/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:2525: Connection refused)',
        ),
      ),
    ).toMatchObject({ status: 'deferred' });
    // A multi-instance syslog name that is not `postfix-…`, no pid: the program is still the last part.
    expect(
      parse(
        'Nov 28 05:04:16 relay1 mta-eu/rp_x/smtp: 0D1EE156075: to=<eva.1@r11.example>, relay=none, delay=1, delays=1/0/0/0, dsn=5.4.4, status=bounced (Host not found)',
      ),
    ).toMatchObject({ status: 'bounced' });
  });

  it('a local alias expansion ("forwarded as") is not a delivery; probes and per-recipient expiry count nothing', () => {
    expect(
      parse(
        node(
          'local[2701]: 4F2C1C0E1A: to=<root@relay1.relay.example>, orig_to=<root>, relay=local, delay=0.02, delays=0.01/0/0/0.01, dsn=2.0.0, status=sent (forwarded as 5B7E2C0E2B)',
        ),
      ),
    ).toBe('ignored');
    expect(
      parse(
        node(
          'smtp[2476]: 4F2C1C0E1A: to=<a@b.example>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.1, delays=0/0/0/0.1, dsn=2.1.5, status=deliverable (250 2.1.5 Ok)',
        ),
      ),
    ).toBe('ignored');
    expect(
      parse(
        node(
          'error[2901]: I1B2C3D409: to=<d76@example.test>, relay=none, delay=432000, delays=0/0/0/0, dsn=4.4.1, status=expired, returned to sender',
        ),
      ),
    ).toBe('ignored');
  });

  it('lines without accounting meaning are ignored', () => {
    for (const rest of [
      'smtpd[5064]: NOQUEUE: reject: RCPT from unknown[198.51.100.117]: 554 5.7.1 <chen@r25.example>: Relay access denied; from=<spam@bulk7.example> to=<chen@r25.example> proto=ESMTP helo=<User>',
      'smtpd[5064]: 92CED3779B1: reject: RCPT from unknown[198.51.100.117]: 450 4.1.2 <x@y.example>: Recipient address rejected: Domain not found; from=<a@b.example> to=<x@y.example> proto=ESMTP helo=<h>',
      'smtpd[5099]: warning: hostname jo.dyn.example does not resolve to address 198.51.100.87: Name or service not known',
      'submission/smtpd[6001]: warning: unknown[198.51.100.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6',
      'qmgr[1187]: warning: qmgr_active_corrupt: save corrupt file queue active id 4F2C1C0E1A: No such file or directory',
      'smtpd[5057]: connect from mta4.tenant0.example[203.0.113.151]',
      'smtpd[5057]: disconnect from mta4.tenant0.example[203.0.113.151] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7',
      'smtpd[5057]: Anonymous TLS connection established from x[203.0.113.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)',
      'cleanup[1801]: 92CED3779B1: message-id=<311726098.0@news.tenant0.example>',
      'anvil[1203]: statistics: max connection rate 20/60s for (submission:203.0.113.2) at Nov 28 05:00:00',
      'master[1150]: reload -- version 3.7.11, configuration /etc/postfix-node1',
      'postscreen[900]: CONNECT from [203.0.113.151]:38846 to [192.0.2.10]:25',
      'smtpd[5057]: disconnect fr',
    ]) {
      expect(parse(node(rest)), rest).toBe('ignored');
    }
    expect(
      parse('Nov 28 05:04:16 relay1 opendkim[612]: 92CED3779B1: DKIM-Signature field added (s=rp2026, d=t.example)'),
    ).toBe('ignored');
    expect(parse('Nov 28 05:04:16 relay1 systemd[1]: Started session-4.scope - Session 4 of User root.')).toBe(
      'ignored',
    );
  });

  it('not a Postfix log line at all, or cut before its message, is malformed', () => {
    for (const line of [
      '',
      'hello world',
      'Nov 28 05:0',
      'Nov 28 05:04:16',
      'Nov 28 05:04:16 relay1',
      'Nov 28 05:04:16 relay1 postfix/smtpd[1]',
      'Foo 28 05:04:16 relay1 postfix/smtpd[1]: connect from x[1.2.3.4]',
      'Nov 28 05-04-16 relay1 postfix/smtpd[1]: connect from x[1.2.3.4]',
      '2026-11-28Tgarbage relay1 postfix/qmgr[1]: 666F121ABF4: removed',
      '2026-13-45T05:04:16+00:00 relay1 postfix/qmgr[1]: 666F121ABF4: removed',
    ]) {
      expect(parse(line), JSON.stringify(line)).toBe('malformed');
    }
  });

  it('a counted line cut short (a log rotated or copied mid-write) is malformed, never a wrong event', () => {
    expect(parse(node('smtp[1]: 666F121ABF4: to=<bob@gma'))).toBe('malformed');
    expect(parse(node('smtp[1]: 666F121ABF4: to=<bob@gmail.test>, relay=127.0.0.1[127.0.0.1]:26'))).toBe('malformed');
    expect(parse(node('qmgr[1]: 666F121ABF4: from=<y@b.te'))).toBe('malformed');
    expect(parse(node('qmgr[1]: 666F121ABF4: from=<y@b.test>, size=429, nrc'))).toBe('malformed');
    expect(parse(node('qmgr[1]: 666F121ABF4: from=<y@b.test>, size=, nrcpt=1 (queue active)'))).toBe('malformed');
  });
});

describe('LogLineParser: time', () => {
  it('traditional stamps are the node local time: the UTC offset is applied', () => {
    expect(parse(FACTS.removed, { year: 2026, month: 10, utcOffsetMinutes: 60 })).toMatchObject({
      at: Date.UTC(2026, 10, 28, 4, 4, 16),
    });
    expect(parse(FACTS.removed, { year: 2026, month: 10, utcOffsetMinutes: -300 })).toMatchObject({
      at: Date.UTC(2026, 10, 28, 10, 4, 16),
    });
    expect(parse(FACTS.removed, { year: 2026, month: 10, utcOffsetMinutes: 330 })).toMatchObject({
      at: Date.UTC(2026, 10, 27, 23, 34, 16),
    });
  });

  it('a single-digit day is padded with a space', () => {
    expect(parse('Nov  8 05:04:16 relay1 postfix/qmgr[1]: 666F121ABF4: removed')).toMatchObject({
      at: Date.UTC(2026, 10, 8, 5, 4, 16),
    });
  });

  it('a December line read in January belongs to the year before', () => {
    const january: TimeContext = { year: 2027, month: 0, utcOffsetMinutes: 0 };
    expect(parse('Dec 31 23:59:59 relay1 postfix/qmgr[1]: 666F121ABF4: removed', january)).toMatchObject({
      at: Date.UTC(2026, 11, 31, 23, 59, 59),
    });
    expect(parse('Jan  1 00:00:01 relay1 postfix/qmgr[1]: 666F121ABF4: removed', january)).toMatchObject({
      at: Date.UTC(2027, 0, 1, 0, 0, 1),
    });
  });

  it('RFC 3339 stamps carry their own year and zone (fraction, offset or Z)', () => {
    const line = (stamp: string) => `${stamp} relay1 postfix-node1/qmgr[11403]: 666F121ABF4: removed`;
    expect(
      parse(line('2026-11-28T05:04:16.123456+01:00'), { year: 1999, month: 0, utcOffsetMinutes: 600 }),
    ).toMatchObject({ at: Date.UTC(2026, 10, 28, 4, 4, 16, 123) });
    expect(parse(line('2026-11-28T05:04:16+00:00'))).toMatchObject({ at: AT });
    expect(parse(line('2026-11-28T05:04:16Z'))).toMatchObject({ at: AT });
    expect(parse(line('2026-11-28T00:04:16.5-05:00'))).toMatchObject({ at: AT + 500 });
  });

  it('the cached stamp of one line never leaks into the next', () => {
    const parser = new LogLineParser(NOV_2026);
    const a = parser.parse('Nov 28 05:04:16 relay1 postfix/qmgr[1]: 666F121ABF4: removed');
    const b = parser.parse('2026-11-28T05:04:17+00:00 relay1 postfix/qmgr[1]: 666F121ABF4: removed');
    const c = parser.parse('Nov 28 05:04:16 relay1 postfix/qmgr[1]: 666F121ABF4: removed');
    const d = parser.parse('Nov 28 05:04:1x relay1 postfix/qmgr[1]: 666F121ABF4: removed');
    expect([a, b, c, d]).toMatchObject([{ at: AT }, { at: AT + 1000 }, { at: AT }, 'malformed']);
  });

  it('round-trips any instant in both formats (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2099, 11, 31) }),
        fc.integer({ min: 0, max: 999_999 }),
        fc.integer({ min: -12 * 60, max: 14 * 60 }),
        (ms, micro, offset) => {
          const micros = Math.floor(ms / 1000) * 1_000_000 + micro;
          const local = new Date(Math.floor(micros / 1000) + offset * 60_000);
          const time: TimeContext = {
            year: local.getUTCFullYear(),
            month: local.getUTCMonth(),
            utcOffsetMinutes: offset,
          };
          const rest = ' relay1 postfix/qmgr[1]: 666F121ABF4: removed';
          const traditional = new LogLineParser(time).parse(createStamper('traditional', offset)(micros) + rest);
          const rfc = new LogLineParser(time).parse(createStamper('rfc3339', offset)(micros) + rest);
          expect(traditional).toMatchObject({ at: Math.floor(micros / 1_000_000) * 1000 });
          expect(rfc).toMatchObject({ at: Math.floor(micros / 1000) });
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('queue ids', () => {
  it('short ids: hex', () => {
    expect(isQueueId('666F121ABF4')).toBe(true);
    expect(isQueueId('4F2C1C0E1A')).toBe(true);
    expect(isQueueId('NOQUEUE')).toBe(false);
    expect(isQueueId('warning')).toBe(false);
    expect(isQueueId('statistics')).toBe(false);
  });

  // enable_long_queue_ids: seconds in base 52 (six or more digits), microseconds in base 52 (four),
  // 'z', the inode in base 51 (Postfix src/global/mail_queue.h). The base-52 digits include 'z':
  // only the LAST 'z' separates the time from the inode.
  it('long ids, whatever digits the clock gives', () => {
    const at0504 = Date.UTC(2026, 10, 28, 5, 4, 16) * 1000;
    expect(longQueueId(at0504 + 123_456, 4_800)).toBe('4jbyr00sf8z1q6');
    expect(isQueueId('4jbyr00sf8z1q6')).toBe(true);
    expect(isQueueId('4XnJ2m5Qzbz1Wb')).toBe(true); // a 'z' among the microsecond digits
    // 2026-11-28T05:05:07Z is `4jbyrz` in base 52: for one second in 52, every id has a 'z' there.
    const at0505 = Date.UTC(2026, 10, 28, 5, 5, 7) * 1000;
    expect(longQueueId(at0505 + 123_456, 4_800)).toBe('4jbyrz0sf8z1q6');
    expect(isQueueId('4jbyrz0sf8z1q6')).toBe(true);
    expect(
      parse(
        `Nov 28 05:05:07 relay1 postfix/qmgr[1]: 4jbyrz0sf8z1q6: from=<a@t.example>, size=1, nrcpt=1 (queue active)`,
      ),
    ).toMatchObject({ kind: 'queued', queueId: '4jbyrz0sf8z1q6' });
  });

  it("long ids made by Postfix's encoding are always recognized (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2001, 0, 1), max: Date.UTC(2099, 0, 1) }),
        fc.integer({ min: 0, max: 999_999 }),
        fc.integer({ min: 1, max: 2 ** 40 }),
        (ms, micro, inode) => {
          const id = longQueueId(Math.floor(ms / 1000) * 1_000_000 + micro, inode);
          expect(isQueueId(id), id).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('robustness', () => {
  it('never throws, whatever the line (property)', () => {
    const realistic = Object.values(FACTS);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 300 }),
          fc.string({
            unit: fc.constantFrom(...'Nov 28:05<>=@[]/,.-T+Z 0123456789ABCDEFa postfix/qmgr smtp to= from= status='),
            maxLength: 200,
          }),
          // any cut or splice of a real line
          fc
            .tuple(fc.constantFrom(...realistic), fc.nat(), fc.nat(), fc.string({ maxLength: 8 }))
            .map(([l, a, b, s]) => l.slice(0, a % (l.length + 1)) + s + l.slice(b % (l.length + 1))),
        ),
        (line) => {
          const result = new LogLineParser(NOV_2026).parse(line);
          expect(
            typeof result === 'string'
              ? ['ignored', 'malformed']
              : ['origin', 'queued', 'expired', 'removed', 'delivery'],
          ).toContain(typeof result === 'string' ? result : result.kind);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('addressDomain', () => {
  it('lower-cases the domain after the last @; empty for the null sender or a bare local part', () => {
    expect(addressDomain('Billing@Tenant3.EXAMPLE')).toBe('tenant3.example');
    expect(addressDomain('"odd@local"@b.example')).toBe('b.example');
    expect(addressDomain('')).toBe('');
    expect(addressDomain('root')).toBe('');
  });
});
