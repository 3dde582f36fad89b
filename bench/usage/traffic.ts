/**
 * What happens on a relay node, one arrival at a time: a tenant's SMTP session with one to three
 * messages, a local pickup submission, a rejected or failed connection, or periodic statistics.
 * Each arrival becomes a Plan: all the lines it will ever cause (with their times) and what they
 * add to the totals. Wording follows Postfix 3.7's logging.
 */
import { createStamper, ip, longQueueId, shortQueueId, type Random } from './log-format.js';

export interface TrafficConfig {
  syslogName: string;
  hostname: string;
  tenants: number;
  domainsPerTenant: number;
  recipientDomains: number;
  /** Microseconds. */
  maxQueueLifetime: number;
  longQueueIds: boolean;
  utcOffsetMinutes: number;
}

export interface PlanDelta {
  received: number;
  recipients: number;
  bytes: number;
  delivered: number;
  forwarded: number;
  deferrals: number;
  deferredMessages: number;
  bounced: number;
  expired: number;
  notifications: number;
  postsuperRemoved: number;
  receivedFrom: string[];
}

export interface Plan {
  lines: { t: number; text: string }[];
  delta: PlanDelta;
}

const MS = 1000;
const SECOND = 1_000_000;
const RELAY = '127.0.0.1[127.0.0.1]:2525';
const BIG_PROVIDERS = ['gmail.test', 'outlook.test', 'yahoo.test', 'icloud.test', 'gmx.test', 'web.test'];
const LOCALS = ['noreply', 'billing', 'alerts', 'news', 'support', 'orders', 'no-reply+bounces', 'Info'];
const FIRST = ['anna', 'bob', 'chen', 'dmitri', 'eva', 'farah', 'gus', 'hana', 'ivan', 'jo', 'kemal', 'lea'];
const SUBDOMAINS = ['mail', 'news', 'app', 'billing'];

function fmtDelay(seconds: number): string {
  if (seconds >= 10) return String(Math.round(seconds));
  if (seconds >= 1) return seconds.toFixed(1);
  return String(Number(seconds.toFixed(2)));
}

function newPlan(): Plan {
  return {
    lines: [],
    delta: {
      received: 0,
      recipients: 0,
      bytes: 0,
      delivered: 0,
      forwarded: 0,
      deferrals: 0,
      deferredMessages: 0,
      bounced: 0,
      expired: 0,
      notifications: 0,
      postsuperRemoved: 0,
      receivedFrom: [],
    },
  };
}

export function createTraffic(random: Random, config: TrafficConfig) {
  const name = config.syslogName;
  const fqdn = `${config.hostname}.relay.example`;
  const stats = createStamper('traditional', config.utcOffsetMinutes);
  const domains: string[][] = [];
  const tenantOfDomain = new Map<string, string>();
  for (let i = 0; i < config.tenants; i++) {
    const own = Array.from({ length: config.domainsPerTenant }, (_, j) =>
      j === 0
        ? `tenant${i}.example`
        : `${SUBDOMAINS[(j - 1) % SUBDOMAINS.length]}${j > SUBDOMAINS.length ? j : ''}.tenant${i}.example`,
    );
    domains.push(own);
    for (const d of own) tenantOfDomain.set(d, `tenant-${i}`);
  }
  const recipientDomains = [
    ...BIG_PROVIDERS,
    ...Array.from({ length: Math.max(0, config.recipientDomains - BIG_PROVIDERS.length) }, (_, k) => `r${k}.example`),
  ];
  const pid = (base: number, size: number) => base + random.int(0, size - 1) * 7;
  const qmgrPid = 1187;
  let serial = 0;
  const queueId = (t: number) =>
    config.longQueueIds ? longQueueId(t, 1_300_000 + serial++ * 3) : shortQueueId(t, serial++);
  let nextStatsAt = 0;
  let nextReloadAt = 0;

  /** The smart host is down a few minutes every two hours or so: every delivery then defers. */
  function smartHostDown(t: number): boolean {
    const window = Math.floor(t / (7200 * SECOND));
    const offset = ((Math.imul(window + 1, 0x2c1b3c6d) >>> 0) % 6600) * SECOND;
    const start = window * 7200 * SECOND + offset;
    return t >= start && t < start + 240 * SECOND;
  }

  function recipient(): string {
    const domain = recipientDomains[random.skewed(recipientDomains.length)]!;
    return `${random.pick(FIRST)}.${random.int(1, 99_999)}@${domain}`;
  }

  function messageSize(): number {
    const base = 900 + Math.round(random.exponential(14_000));
    return random.chance(0.02) ? base + random.int(200_000, 6_000_000) : base;
  }

  /**
   * Delivery attempts of a queued message until every recipient is final, it expires or an admin
   * deletes it. `first` is the time qmgr first logged it active.
   */
  function deliver(
    plan: Plan,
    qid: string,
    arrival: number,
    first: number,
    sender: string,
    size: number,
    rcpts: string[],
    service: string,
  ): void {
    const { lines, delta } = plan;
    let remaining = rcpts;
    let t = first + random.int(20, 600) * MS;
    let deferredOnce = false;
    const notification = sender === '';
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        lines.push({
          t,
          text: `${name}/qmgr[${qmgrPid}]: ${qid}: from=<${sender}>, size=${size}, nrcpt=${remaining.length} (queue active)`,
        });
        t += random.int(5, 120) * MS;
        // `postsuper -e`: the next time qmgr reads the message it returns it without trying.
        if (attempt >= 2 && random.chance(0.03)) {
          lines.push({
            t,
            text: `${name}/qmgr[${qmgrPid}]: ${qid}: from=<${sender}>, status=force-expired, returned to sender`,
          });
          delta.expired++;
          if (!notification) t = notify(plan, qid, t, sender);
          lines.push({ t: t + random.int(1, 5) * MS, text: `${name}/qmgr[${qmgrPid}]: ${qid}: removed` });
          return;
        }
      }
      const next: string[] = [];
      let bounced = false;
      const down = smartHostDown(t);
      const smtp = `${notification ? `${name}/smtp` : service}[${pid(2301, 30)}]`;
      for (const [k, rcpt] of remaining.entries()) {
        t += (k === 0 ? random.int(5, 250) : random.int(1, 40)) * MS;
        const delay = (t - arrival) / SECOND;
        // delays=a/b/c/d: before the active queue, in it, connection setup, transmission.
        const [b, c] = [random.int(0, 20) / 1000, random.int(1, 90) / 1000];
        const d = Math.min(random.int(5, 400) / 1000, Math.max(0, delay - b - c));
        const delays = [Math.max(0, delay - b - c - d), b, c, d].map(fmtDelay).join('/');
        const origTo =
          !notification && random.chance(0.03) ? `orig_to=<postmaster@${rcpt.slice(rcpt.indexOf('@') + 1)}>, ` : '';
        if (down) {
          const text =
            k === 0
              ? `${smtp}: ${qid}: to=<${rcpt}>, ${origTo}relay=none, delay=${fmtDelay(delay)}, delays=${delays}, dsn=4.4.1, status=deferred (connect to ${RELAY}: Connection refused)`
              : `${name}/error[${pid(2901, 3)}]: ${qid}: to=<${rcpt}>, ${origTo}relay=none, delay=${fmtDelay(delay)}, delays=${delays}, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to ${RELAY}: Connection refused)`;
          lines.push({ t, text });
          delta.deferrals++;
          next.push(rcpt);
          continue;
        }
        const roll = random.next();
        const [pSent, pDeferred] = notification ? [0.97, 0.03] : attempt === 0 ? [0.9, 0.065] : [0.55, 0.4];
        const connUse = random.chance(0.3) ? `conn_use=${random.int(2, 40)}, ` : '';
        const head = `${smtp}: ${qid}: to=<${rcpt}>, ${origTo}relay=${RELAY}, ${connUse}delay=${fmtDelay(delay)}, delays=${delays}`;
        if (roll < pSent) {
          lines.push({
            t,
            text: `${head}, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as ${shortQueueId(t + 17, serial * 5 + k)})`,
          });
          delta.delivered++;
        } else if (roll < pSent + pDeferred) {
          const reason = random.chance(0.6)
            ? `451 4.7.1 <${rcpt}>: Recipient address rejected: Greylisted, see https://grey.example/ (in reply to RCPT TO command)`
            : '421 4.7.0 Too many concurrent connections from this client, try again later (in reply to MAIL FROM command)';
          lines.push({ t, text: `${head}, dsn=4.7.1, status=deferred (host ${RELAY.slice(0, -5)} said: ${reason})` });
          delta.deferrals++;
          next.push(rcpt);
        } else {
          const reason = random.chance(0.7)
            ? `550 5.1.1 <${rcpt}>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)`
            : '552 5.2.2 Mailbox full, quota exceeded (in reply to end of DATA command)';
          lines.push({ t, text: `${head}, dsn=5.1.1, status=bounced (host ${RELAY.slice(0, -5)} said: ${reason})` });
          delta.bounced++;
          bounced = true;
        }
      }
      if (next.length > 0 && !deferredOnce) {
        deferredOnce = true;
        delta.deferredMessages++;
      }
      t += random.int(1, 30) * MS;
      // qmgr gives up on a message only after it has tried every recipient once more.
      const expired = next.length > 0 && t - arrival >= config.maxQueueLifetime;
      if (expired) {
        lines.push({
          t,
          text: `${name}/qmgr[${qmgrPid}]: ${qid}: from=<${sender}>, status=expired, returned to sender`,
        });
        delta.expired++;
      }
      if ((bounced || expired) && !notification) t = notify(plan, qid, t, sender);
      if (next.length === 0 || expired) {
        lines.push({ t: t + random.int(1, 5) * MS, text: `${name}/qmgr[${qmgrPid}]: ${qid}: removed` });
        return;
      }
      const backoff = Math.min(4000, 300 * 2 ** attempt) * SECOND + random.int(0, 120) * SECOND;
      if (attempt >= 1 && random.chance(0.04)) {
        const at = t + random.int(1, Math.floor(backoff / SECOND)) * SECOND;
        const postsuper = `${name}/postsuper[${pid(4100, 50)}]`;
        lines.push(
          { t: at, text: `${postsuper}: ${qid}: removed` },
          { t: at + 40, text: `${postsuper}: Deleted: 1 message` },
        );
        delta.postsuperRemoved++;
        return;
      }
      remaining = next;
      t += backoff;
    }
  }

  /** A bounce notification to `sender` for message `qid`: a new queue file with the null sender. */
  function notify(plan: Plan, qid: string, t: number, sender: string): number {
    const ndr = queueId(t + 2 * MS);
    const day = new Date(t / 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
    plan.lines.push(
      { t: t + 2 * MS, text: `${name}/cleanup[${pid(1801, 4)}]: ${ndr}: message-id=<${day}.${ndr}@${fqdn}>` },
      { t: t + 3 * MS, text: `${name}/bounce[${pid(3001, 3)}]: ${qid}: sender non-delivery notification: ${ndr}` },
      {
        t: t + 5 * MS,
        text: `${name}/qmgr[${qmgrPid}]: ${ndr}: from=<>, size=${random.int(2400, 9000)}, nrcpt=1 (queue active)`,
      },
    );
    plan.delta.notifications++;
    deliver(plan, ndr, t + 2 * MS, t + 5 * MS, '', 0, [sender], `${name}/smtp`);
    return t + 6 * MS;
  }

  /** One tenant's SMTP session: connect, TLS, 1–3 messages, disconnect. */
  function session(t0: number): Plan {
    const plan = newPlan();
    const { lines, delta } = plan;
    const tenant = random.skewed(config.tenants);
    const own = domains[tenant]!;
    const viaPort25 = random.chance(0.25);
    const smtpd = `${name}/${viaPort25 ? '' : 'submission/'}smtpd[${pid(5001, 20)}]`;
    const address = ip(random);
    const client = `${viaPort25 ? 'mta' : 'app'}${random.int(1, 4)}.${own[0]}[${address}]`;
    const service =
      tenant % 7 === 3 ? `${name}/rp_slow/smtp` : tenant % 11 === 5 ? `${name}/rp_bulk/smtp` : `${name}/smtp`;
    let t = t0;
    if (viaPort25) {
      const port = random.int(30_000, 60_000);
      lines.push({
        t,
        text: `${name}/postscreen[${pid(900, 3)}]: CONNECT from [${address}]:${port} to [192.0.2.10]:25`,
      });
      lines.push({ t: (t += 2 * MS), text: `${name}/postscreen[${pid(900, 3)}]: PASS OLD [${address}]:${port}` });
    }
    lines.push({ t: (t += random.int(1, 5) * MS), text: `${smtpd}: connect from ${client}` });
    if (random.chance(0.85)) {
      lines.push({
        t: (t += random.int(20, 60) * MS),
        text: `${smtpd}: Anonymous TLS connection established from ${client}: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256`,
      });
    }
    const count = random.chance(0.7) ? 1 : random.chance(0.66) ? 2 : 3;
    let rcptTotal = 0;
    for (let m = 0; m < count; m++) {
      t += random.int(10, 300) * MS;
      const qid = queueId(t);
      const domain = random.pick(own);
      const shown = random.chance(0.05) ? domain.toUpperCase() : domain;
      const sender = `${random.pick(LOCALS)}@${shown}`;
      const n = random.chance(0.75) ? 1 : random.chance(0.8) ? random.int(2, 5) : random.int(6, 20);
      const rcpts = Array.from({ length: n }, recipient);
      const size = messageSize();
      const sasl = viaPort25 ? '' : `, sasl_method=PLAIN, sasl_username=${domain.replace(/\./g, '-')}`;
      lines.push({ t, text: `${smtpd}: ${qid}: client=${client}${sasl}` });
      lines.push({
        t: (t += random.int(20, 400) * MS),
        text: `${name}/cleanup[${pid(1801, 4)}]: ${qid}: message-id=<${random.int(1e8, 9e8)}.${m}@${domain}>`,
      });
      if (tenant % 3 === 0)
        lines.push({
          t: (t += 2 * MS),
          text: `opendkim[612]: ${qid}: DKIM-Signature field added (s=rp2026, d=${domain})`,
        });
      const arrival = t;
      lines.push({
        t: (t += random.int(1, 8) * MS),
        text: `${name}/qmgr[${qmgrPid}]: ${qid}: from=<${sender}>, size=${size}, nrcpt=${n} (queue active)`,
      });
      delta.received++;
      delta.recipients += n;
      delta.bytes += size;
      delta.receivedFrom.push(domain);
      rcptTotal += n;
      deliver(plan, qid, arrival, t, sender, size, rcpts, service);
    }
    const auth = viaPort25 ? '' : ' auth=1';
    lines.push({
      t: (t += random.int(5, 80) * MS),
      text: `${smtpd}: disconnect from ${client} ehlo=2 starttls=1${auth} mail=${count} rcpt=${rcptTotal} data=${count} quit=1 commands=${5 + (auth ? 1 : 0) + 2 * count + rcptTotal}`,
    });
    return plan;
  }

  /** Local mail (cron, an app using sendmail): pickup, sometimes a local alias forwarding it on. */
  function pickup(t0: number): Plan {
    const plan = newPlan();
    const { lines, delta } = plan;
    const qid = queueId(t0);
    const user = random.pick(['root', 'www-data', 'relayplane']);
    const sender = `${user}@${fqdn}`;
    const size = random.int(600, 4000);
    let t = t0;
    lines.push({ t, text: `${name}/pickup[${pid(1500, 2)}]: ${qid}: uid=${user === 'root' ? 0 : 33} from=<${user}>` });
    lines.push({
      t: (t += random.int(1, 9) * MS),
      text: `${name}/cleanup[${pid(1801, 4)}]: ${qid}: message-id=<${random.int(1e8, 9e8)}@${fqdn}>`,
    });
    const arrival = t;
    lines.push({
      t: (t += random.int(1, 9) * MS),
      text: `${name}/qmgr[${qmgrPid}]: ${qid}: from=<${sender}>, size=${size}, nrcpt=1 (queue active)`,
    });
    delta.received++;
    delta.recipients++;
    delta.bytes += size;
    delta.receivedFrom.push(fqdn);
    if (random.chance(0.6)) {
      deliver(plan, qid, arrival, t, sender, size, ['ops@ops.example'], `${name}/smtp`);
      return plan;
    }
    // root's mail goes through the local aliases to the operators: a new message, no origin line.
    const copy = queueId(t + 3 * MS);
    lines.push({
      t: t + 3 * MS,
      text: `${name}/cleanup[${pid(1801, 4)}]: ${copy}: message-id=<${random.int(1e8, 9e8)}@${fqdn}>`,
    });
    lines.push({
      t: t + 5 * MS,
      text: `${name}/qmgr[${qmgrPid}]: ${copy}: from=<${sender}>, size=${size + 400}, nrcpt=1 (queue active)`,
    });
    lines.push({
      t: t + 6 * MS,
      text: `${name}/local[${pid(2701, 2)}]: ${qid}: to=<root@${fqdn}>, orig_to=<root>, relay=local, delay=0.02, delays=0.01/0/0/0.01, dsn=2.0.0, status=sent (forwarded as ${copy})`,
    });
    lines.push({ t: t + 7 * MS, text: `${name}/qmgr[${qmgrPid}]: ${qid}: removed` });
    delta.forwarded++;
    deliver(plan, copy, t + 3 * MS, t + 5 * MS, sender, size + 400, ['ops@ops.example'], `${name}/smtp`);
    return plan;
  }

  /** A line about nothing that is counted (also pads the log to its exact length). */
  function noiseLine(t: number): string {
    const address = ip(random, '198.51.100');
    switch (random.int(0, 4)) {
      case 0:
        return `${name}/smtpd[${pid(5001, 20)}]: warning: hostname ${random.pick(FIRST)}.dyn.example does not resolve to address ${address}: Name or service not known`;
      case 1:
        return `${name}/postscreen[${pid(900, 3)}]: DISCONNECT [${address}]:${random.int(30_000, 60_000)}`;
      case 2:
        return `${name}/smtpd[${pid(5001, 20)}]: lost connection after CONNECT from unknown[${address}]`;
      case 3:
        return `${name}/anvil[1203]: statistics: max cache size ${random.int(1, 40)} at ${stats(t)}`;
      default:
        return `${name}/tlsmgr[1190]: warning: request to update table btree:/var/lib/postfix/smtpd_scache in non-${name} directory /var/lib/postfix`;
    }
  }

  /** Connections that deliver nothing: relay attempts, password guessing, pregreet bots. */
  function rejected(t0: number): Plan {
    const plan = newPlan();
    const address = ip(random, '198.51.100');
    const smtpd = `${name}/smtpd[${pid(5001, 20)}]`;
    let t = t0;
    const kind = random.int(0, 9);
    if (kind < 4) {
      const victim = recipient();
      plan.lines.push(
        { t, text: `${smtpd}: connect from unknown[${address}]` },
        {
          t: (t += random.int(50, 900) * MS),
          text: `${smtpd}: NOQUEUE: reject: RCPT from unknown[${address}]: 554 5.7.1 <${victim}>: Relay access denied; from=<spam@bulk${random.int(1, 99)}.example> to=<${victim}> proto=ESMTP helo=<User>`,
        },
        {
          t: (t += random.int(5, 200) * MS),
          text: `${smtpd}: disconnect from unknown[${address}] ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1 commands=4/5`,
        },
      );
    } else if (kind < 7) {
      plan.lines.push(
        { t, text: `${name}/submission/smtpd[${pid(6001, 10)}]: connect from unknown[${address}]` },
        {
          t: (t += random.int(100, 2000) * MS),
          text: `${name}/submission/smtpd[${pid(6001, 10)}]: warning: unknown[${address}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6`,
        },
        {
          t: (t += random.int(5, 200) * MS),
          text: `${name}/submission/smtpd[${pid(6001, 10)}]: lost connection after AUTH from unknown[${address}]`,
        },
        {
          t: (t += 1 * MS),
          text: `${name}/submission/smtpd[${pid(6001, 10)}]: disconnect from unknown[${address}] ehlo=1 auth=0/1 commands=1/2`,
        },
      );
    } else if (kind < 9) {
      const port = random.int(30_000, 60_000);
      plan.lines.push(
        { t, text: `${name}/postscreen[${pid(900, 3)}]: CONNECT from [${address}]:${port} to [192.0.2.10]:25` },
        {
          t: (t += random.int(10, 90) * MS),
          text: `${name}/postscreen[${pid(900, 3)}]: PREGREET 11 after 0.07 from [${address}]:${port}: EHLO User\\r\\n`,
        },
        {
          t: (t += random.int(1, 9) * MS),
          text: `${name}/postscreen[${pid(900, 3)}]: DISCONNECT [${address}]:${port}`,
        },
      );
    } else if (random.chance(0.02)) {
      // A line cut short when the log was rotated, and one from a program that is not Postfix.
      plan.lines.push({ t, text: `${name}/smtpd[${pid(5001, 20)}]: disconnect fr` });
      plan.lines.push({
        t: t + 1,
        text: `systemd[1]: Started session-${random.int(1, 9999)}.scope - Session of User root.`,
      });
    } else {
      plan.lines.push({ t, text: noiseLine(t) });
    }
    return plan;
  }

  /** anvil/scache statistics every ten minutes and a configuration reload (a deploy) now and then. */
  function periodic(t: number): Plan {
    const plan = newPlan();
    if (t >= nextStatsAt) {
      const at = stats(t);
      plan.lines.push(
        {
          t,
          text: `${name}/anvil[1203]: statistics: max connection rate ${random.int(2, 30)}/60s for (submission:${ip(random)}) at ${at}`,
        },
        {
          t: t + 1,
          text: `${name}/anvil[1203]: statistics: max connection count ${random.int(1, 8)} for (submission:${ip(random)}) at ${at}`,
        },
        {
          t: t + 2,
          text: `${name}/scache[1210]: statistics: domain lookup hits=${random.int(100, 900)} miss=${random.int(1, 40)} success=${random.int(85, 99)}%`,
        },
      );
      nextStatsAt = t + 600 * SECOND;
    }
    if (t >= nextReloadAt) {
      if (nextReloadAt > 0)
        plan.lines.push({
          t: t + 3,
          text: `${name}/master[1150]: reload -- version 3.7.11, configuration /etc/${name}`,
        });
      nextReloadAt = t + random.int(1800, 5400) * SECOND;
    }
    return plan;
  }

  return {
    tenantOfDomain,
    noiseLine,
    next(t: number): Plan {
      if (t >= nextStatsAt || t >= nextReloadAt) {
        const plan = periodic(t);
        if (plan.lines.length > 0) return plan;
      }
      const roll = random.next();
      if (roll < 0.62) return session(t);
      if (roll < 0.65) return pickup(t);
      return rejected(t);
    },
  };
}
