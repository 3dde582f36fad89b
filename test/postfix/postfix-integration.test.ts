/**
 * The compiled bundle of a realistic snapshot inside a real Postfix config dir: postmap builds every
 * table without a warning, postconf accepts every parameter and service without a warning,
 * `postfix check` passes, each table answers what explainRoute() says, and a running smtpd refuses
 * exactly the senders the plan leaves unrouted.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile, explainRoute, planRoutes, type Bundle } from '../../src/postfix/index.js';
import { askPostfix, differences, readConfig } from './emulate.js';
import { richSnapshot } from './fixtures.js';
import {
  POSTCONF,
  POSTFIX,
  POSTMAP,
  postfixInstanceGate,
  postfixToolsGate,
  run,
  runClean,
  smtpDialogue,
  stageBundle,
  startInstance,
  type StagedConfig,
} from './postfix-harness.js';

const title = 'compiled bundle in real Postfix';

const PAIRS: Array<[string, string]> = [
  ['alice@a.example', 'bob@gmail.test'],
  ['alice+tag@a.example', 'bob@sub.yahoo.test'],
  ['Carol@A.Example', 'x@other.test'],
  ['x@a2.example', 'bob@gmail.test'],
  ['x@b.example', 'bob@gmail.test'],
  ['x@direct.example', 'bob@gmail.test'],
  ['x@direct.example', 'bob@mx.sub.yahoo.test'],
  ['x@direct.example', 'bob@yahoo.test'],
  ['x@open.example', 'bob@gmail.test'],
  ['x@c.example', 'bob@gmail.test'],
  ['x@pending.example', 'bob@gmail.test'],
  ['x@sub.a.example', 'bob@gmail.test'],
  ['x@unknown.example', 'bob@gmail.test'],
  ['', 'alice@a.example'],
  // No domain (smtpd would append $myorigin and judge it as a sender of the node's own domain), and a
  // single-label domain: refused by reject_non_fqdn_sender before the table.
  ['a.example', 'bob@gmail.test'],
  ['x@localhost', 'bob@gmail.test'],
  ['x@[192.0.2.1]', 'bob@gmail.test'],
];

describe.skipIf(!postfixToolsGate(title))(title, () => {
  const snap = richSnapshot();
  let bundle: Bundle;
  let cfg: StagedConfig;

  beforeAll(async () => {
    bundle = compile(snap);
    cfg = await stageBundle(bundle);
  });
  afterAll(async () => {
    await cfg?.cleanup();
  });

  it('postconf takes every parameter and service without a warning', async () => {
    const params = await cfg.postconf(['-n']);
    for (const [k, v] of Object.entries(cfg.rendered.mainCf))
      expect(params).toContain(v === '' ? `${k} =` : `${k} = ${v}`);
    const services = await cfg.postconf(['-M']);
    const overrides = await cfg.postconf(['-P']);
    for (const s of cfg.rendered.masterCf) {
      expect(services).toMatch(new RegExp(`^${s.name}\\s+unix\\s+-\\s+-\\s+n\\s+-\\s+-\\s+smtp`, 'm'));
      for (const [k, v] of Object.entries(s.options)) expect(overrides).toContain(`${s.name}/unix/${k} = ${v}`);
    }
    // qmgr knows the per-service limits (postconf would warn "unused parameter" otherwise).
    const limited = Object.keys(cfg.rendered.mainCf).filter((k) => k.startsWith('rp_'));
    expect(limited.length).toBeGreaterThan(0);
    await runClean(POSTCONF ?? 'postconf', ['-c', cfg.etc, '-x', '-h', ...limited]);
  });

  it('postfix check passes', async () => {
    const r = await run(POSTFIX ?? 'postfix', ['-c', cfg.etc, 'check']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('postmap -s dumps exactly the source entries of every hash table', async () => {
    for (const [name, file] of Object.entries(bundle.files)) {
      if (file.mapType !== 'hash') continue;
      const dump = await runClean(POSTMAP ?? 'postmap', ['-c', cfg.etc, '-s', cfg.mapSpec(name)]);
      const asLines = (text: string) =>
        text
          .split('\n')
          .filter(Boolean)
          .map((l) => l.replace('\t', ' '))
          .sort();
      expect(asLines(dump), name).toEqual(asLines(file.content));
    }
  });

  it('secret tables and their .db files are 0600', async () => {
    for (const [name, file] of Object.entries(bundle.files)) {
      const mode = (await stat(path.join(cfg.etc, name))).mode & 0o777;
      expect(mode, name).toBe(file.mode);
      if (file.secret && file.mapType === 'hash')
        expect((await stat(path.join(cfg.etc, `${name}.db`))).mode & 0o077, `${name}.db`).toBe(0);
    }
  });

  it('every table entry explainRoute() quotes is what postmap -q answers', async () => {
    const plan = planRoutes(snap);
    for (const [sender, recipient] of PAIRS) {
      const e = explainRoute(plan, sender, recipient);
      for (const m of e.matched) {
        if (m.table === 'main.cf' && m.key === 'smtpd_sender_restrictions') {
          // The one restriction of the list that decided.
          expect(cfg.rendered.mainCf[m.key]?.split(', '), sender).toContain(m.value);
          continue;
        }
        if (m.table === 'main.cf') {
          expect(cfg.rendered.mainCf[m.key], `${sender}: ${m.key}`).toBe(m.value);
          continue;
        }
        const answer = (await cfg.query(cfg.mapSpec(m.table), [m.key])).values().next().value;
        if (m.value.endsWith(':********'))
          expect(answer?.startsWith(m.value.replace(/\*+$/, '')), `${sender} ${m.table} ${m.key}`).toBe(true);
        else expect(answer, `${sender} ${m.table} ${m.key}`).toBe(m.value);
      }
    }
  });

  it('Postfix lookup order over the real tables agrees with explainRoute()', async () => {
    const plan = planRoutes(snap);
    const answers = await askPostfix(cfg, await readConfig(cfg), PAIRS);
    PAIRS.forEach(([sender, recipient], i) => {
      const e = explainRoute(plan, sender, recipient);
      const a = answers[i];
      expect(a, sender).toBeDefined();
      if (a !== undefined) expect(differences(snap, e, a), `${sender} → ${recipient}`).toEqual([]);
    });
    // Spot checks of the decisions, straight from Postfix's answers.
    const by = (sender: string) => answers[PAIRS.findIndex(([s]) => s === sender)];
    expect(by('alice@a.example')?.sasl['[smtp.shared.test]:587']).toBe('alice@shared:pa ss:wo#rd"é');
    expect(by('x@b.example')?.sasl['[smtp.shared.test]:587']).toBe('bob@shared:b-secret');
    expect(by('x@a2.example')?.sasl).toEqual({
      '[mail.a-provider.test]:465': 'a-main:a-main-secret',
      '[backup.a-provider.test]:465': 'a-backup:a-backup-secret',
    });
    expect(by('x@direct.example')).toMatchObject({
      outcome: 'direct',
      nexthops: ['gmail.test'],
      tls: { 'gmail.test': 'verify' },
    });
    expect(by('x@c.example')?.outcome).toBe('rejected');
    expect(by('')).toMatchObject({
      outcome: 'rejected',
      reply: '554 5.7.1',
      decidedBy: { table: 'sender_access', key: '<>' },
    });
  });

  describe.skipIf(!postfixInstanceGate('running smtpd'))('running smtpd', () => {
    it('accepts routed senders and refuses every unrouted one with 5.7.1 at RCPT', async () => {
      const stop = await startInstance(cfg);
      try {
        const rcpt = async (sender: string) => {
          const [, , reply] = await smtpDialogue(cfg.smtpPort, [
            'EHLO client.lab.test',
            `MAIL FROM:<${sender}>`,
            'RCPT TO:<bob@gmail.test>',
            'QUIT',
          ]);
          return reply ?? '';
        };
        for (const sender of [
          'alice@a.example',
          'alice+tag@a.example',
          'Carol@A.EXAMPLE',
          'x@direct.example',
          'x@a2.example',
        ]) {
          expect(await rcpt(sender), sender).toMatch(/^250 /);
        }
        for (const [sender, text] of [
          ['x@c.example', 'tenant of sender domain c.example is suspended'],
          ['x@pending.example', 'pending.example is pending, not verified'],
          ['x@sub.a.example', 'not configured'],
          ['x@unknown.example', 'not configured'],
          ['x@[192.0.2.1]', 'not configured'],
          ['', 'null sender'],
        ] as const) {
          const reply = await rcpt(sender);
          expect(reply, sender).toMatch(/^554 5\.7\.1 /);
          expect(reply, sender).toContain(text);
        }
        for (const sender of ['a.example', 'x@localhost']) {
          expect(await rcpt(sender), sender).toMatch(/^504 5\.5\.2 .*need fully-qualified address/);
        }
      } finally {
        await stop();
      }
      const log = await run('cat', [path.join(cfg.base, 'log', 'maillog')]);
      expect(log.stdout).not.toMatch(/warning|fatal|panic|error:/i);
    });

    it("refuses a sender without a domain even where the node's own domain ($myorigin) is a tenant's", async () => {
      // smtpd completes a bare address with $myorigin before the table lookup: without
      // reject_non_fqdn_sender, `MAIL FROM:<someone>` passed here as someone@a.example (250).
      const own = await stageBundle({ ...bundle, mainCf: { ...bundle.mainCf, myorigin: 'a.example' } });
      const stop = await startInstance(own);
      try {
        const [, , reply] = await smtpDialogue(own.smtpPort, [
          'EHLO client.lab.test',
          'MAIL FROM:<someone>',
          'RCPT TO:<bob@gmail.test>',
          'QUIT',
        ]);
        expect(reply).toMatch(/^504 5\.5\.2 .*need fully-qualified address/);
      } finally {
        await stop();
        await own.cleanup();
      }
    });
  });
});
