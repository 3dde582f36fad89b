/**
 * The deployer against real Postfix nodes over real SSH (test/lab): bundles built by hand go live,
 * mail follows them, bad bundles never reach the live config, a failure after the switch rolls
 * back, and a wrong host key stops everything before a byte is sent.
 */
import { existsSync, readFileSync, readdirSync, statSync, watch } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHANGE_STEPS,
  deployBundle,
  type Bundle,
  type DeployEvent,
  type DeployOptions,
  type DeployOutcome,
} from '../../src/deploy/index.js';
import { HostKeyMismatchError, connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { wrapCommand } from '../lab/command-wrapper.js';
import { postmapTables } from '../../src/deploy/node-checks.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { waitForDelivery } from '../lab/delivery.js';
import { sendMail } from '../lab/submit.js';
import { buildBundle, service, type Route } from './bundles.js';

const labOk = labGate('deployer lab tests');

// Tests here run up to seven full deploys each (SSH sessions, postmap, postfix check, reload):
// 7 s on a quiet machine, over 30 s on a loaded one. Their waits end on events; the lab project's
// timeout (vitest.config.ts) only stops a hang.
describe.skipIf(!labOk)('deployBundle on a real Postfix node', () => {
  let sink: SmartHost;
  let sh1: SmartHost;
  let sh2: SmartHost;
  let node: PostfixNode;
  let fresh: PostfixNode; // a second node that never had a release
  let conn: NodeConnection;
  const connections: NodeConnection[] = [];
  let v2: Bundle;

  const routesV1 = (): Route[] => [
    { domain: 'a.test', nexthop: sh1.nexthop, user: 'userA', password: 'pw A:1' },
    { domain: 'c.test', nexthop: sh2.nexthop, user: 'userC', password: 'pwC', implicitTls: true },
  ];
  // v2: a.test gets a new credential, c.test moves to sh1 (rp_smtps and its map go away).
  const routesV2 = (): Route[] => [
    { domain: 'a.test', nexthop: sh1.nexthop, user: 'userA2', password: 'pwA2' },
    { domain: 'c.test', nexthop: sh1.nexthop, user: 'userC', password: 'pwC' },
  ];

  const opts = (n: PostfixNode, extra: Partial<DeployOptions> = {}): DeployOptions => ({
    configDir: n.configDir,
    ...extra,
  });
  const connect = async (n: PostfixNode): Promise<NodeConnection> => {
    const c = await connectNode({ ...n.ssh, hostKey: n.ssh.hostKeyLine });
    connections.push(c);
    return c;
  };
  const remote = async (c: NodeConnection, cmd: string): Promise<string> => {
    const r = await c.exec(cmd);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };
  const liveVersion = (n: PostfixNode): string | null => {
    const f = path.join(n.configDir, 'relayplane', 'current', 'VERSION');
    return existsSync(f) ? readFileSync(f, 'utf8').trim() : null;
  };
  const releases = (n: PostfixNode): string[] => {
    const dir = path.join(n.configDir, 'relayplane', 'releases');
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  };
  /** main.cf, master.cf and what postconf says about them. */
  const configSnapshot = async (c: NodeConnection, n: PostfixNode) => ({
    mainCf: readFileSync(path.join(n.configDir, 'main.cf'), 'utf8'),
    masterCf: readFileSync(path.join(n.configDir, 'master.cf'), 'utf8'),
    postconf: await remote(c, 'postconf -n; postconf -M; postconf -P'),
  });
  const reloadCount = (n: PostfixNode) =>
    (readFileSync(n.maillogPath, 'utf8').match(/master\[\d+\]: reload -- /g) ?? []).length;
  const expectLive = (o: DeployOutcome) => expect(o, JSON.stringify(o, null, 1)).toMatchObject({ state: 'live' });

  /**
   * A connection counting the deployer's waits: a command sent while none was outstanding, for
   * which the deployer waited on the node.
   */
  const countingWaits = (c: NodeConnection) => {
    let outstanding = 0;
    let waits = 0;
    const track = <T>(p: Promise<T>): Promise<T> => {
      if (outstanding++ === 0) waits++;
      return p.finally(() => outstanding--);
    };
    const counting: NodeConnection = {
      host: c.host,
      exec: (cmd, o) => track(c.exec(cmd, o)),
      execBytes: (cmd, o) => track(c.execBytes(cmd, o)),
      writeFile: (p, content, m) => track(c.writeFile(p, content, m)),
      close: () => c.close(),
    };
    return { counting, waits: () => waits };
  };

  /** Sends one message and returns the smart host's record of it. */
  async function deliver(n: PostfixNode, from: string, host: SmartHost) {
    const sent = await sendMail(n, { from, to: ['rcpt@dest.test'], subject: `via ${host.name}` });
    return waitForDelivery(n, sent, host);
  }

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    sh1 = await startSmartHost({
      name: 'sh1',
      tls: 'starttls',
      users: { userA: 'pw A:1', userA2: 'pwA2', userC: 'pwC' },
    });
    sh2 = await startSmartHost({ name: 'sh2', tls: 'implicit', users: { userC: 'pwC' } });
    const cas = [sink.caCertPem, sh1.caCertPem, sh2.caCertPem];
    [node, fresh] = (await Promise.all(
      ['dep1', 'dep2'].map((name) => startPostfixNode({ name, sinkRelayhost: sink.nexthop, tlsCaCerts: cas })),
    )) as [PostfixNode, PostfixNode];
    conn = await connect(node);
  });

  afterAll(async () => {
    for (const c of connections) c.close();
    await Promise.allSettled([node?.stop(), fresh?.stop()]);
    await stopAllLabNodes();
    await Promise.allSettled([sink, sh1, sh2].map((h) => h?.close()));
  });

  it('refuses a wrong pinned host key before authenticating: nothing reaches the node', async () => {
    const sshLogBefore = readFileSync(fresh.sshLogPath, 'utf8').length;
    const mainBefore = readFileSync(path.join(fresh.configDir, 'main.cf'), 'utf8');
    // node's (real, but other) host key pinned for fresh: a mismatch.
    const err = await connectNode({ ...fresh.ssh, hostKey: node.ssh.hostKeyLine }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostKeyMismatchError);
    expect((err as HostKeyMismatchError).presentedFingerprint).toBe(fresh.ssh.hostKeyFingerprint);
    expect((err as HostKeyMismatchError).retryable).toBe(false);
    await expect(connectNode({ ...fresh.ssh, hostKey: `SHA256:${'A'.repeat(43)}` })).rejects.toBeInstanceOf(
      HostKeyMismatchError,
    );
    const sshLog = readFileSync(fresh.sshLogPath, 'utf8').slice(sshLogBefore);
    expect(sshLog).not.toMatch(/Accepted publickey/);
    expect(existsSync(path.join(fresh.configDir, 'relayplane'))).toBe(false);
    expect(readFileSync(path.join(fresh.configDir, 'main.cf'), 'utf8')).toBe(mainBefore);
    // The fingerprint form of the pin works as well as the key line.
    const ok = await connectNode({ ...fresh.ssh, hostKey: fresh.ssh.hostKeyFingerprint });
    expect((await ok.exec('echo ok')).stdout).toBe('ok\n');
    ok.close();
  });

  it('creates secret files 0600 from their first byte (umask 077, temp name, rename)', async () => {
    const dir = path.join(node.baseDir, 'write-test');
    await remote(conn, `mkdir -m 0755 ${dir}`);
    const seen: Array<{ name: string; mode: number }> = [];
    const watcher = watch(dir, (_event, name) => {
      if (name === null) return;
      try {
        seen.push({ name: String(name), mode: statSync(path.join(dir, String(name))).mode & 0o777 });
      } catch {
        /* already renamed */
      }
    });
    // The shell creates the temp file before `cat` fills it: a `cat` that waits first keeps it there,
    // empty, long enough for the watcher to see the mode it was created with.
    const remotePath = await wrapCommand(
      path.join(node.baseDir, 'slow-cat'),
      'cat',
      (real) => `#!/bin/sh\nsleep 0.3\nexec ${real} "$@"\n`,
    );
    const slow = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyLine, remotePath });
    try {
      await slow.writeFile(path.join(dir, 'secret'), 'x'.repeat(1024 * 1024), 0o600);
      await slow.writeFile(path.join(dir, 'public'), 'hello\n', 0o644);
    } finally {
      slow.close();
      watcher.close();
    }
    expect(seen.some((s) => /^\.secret\.tmp-[0-9a-f]+$/.test(s.name))).toBe(true);
    for (const s of seen.filter((x) => x.name.includes('secret'))) expect(s.mode, s.name).toBe(0o600);
    expect(statSync(path.join(dir, 'public')).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir).sort()).toEqual(['public', 'secret']);
  });

  it('deploys a first bundle: mail from a.test reaches sh1 as userA, c.test goes through the implicit-TLS service', async () => {
    const v1 = buildBundle(routesV1());
    const t0 = Date.now();
    const outcome = await deployBundle(conn, v1, opts(node));
    console.info(
      `first deploy: ${Date.now() - t0} ms`,
      outcome.steps.map((s) => `${s.step}=${s.finishedAt.getTime() - s.startedAt.getTime()}`).join(' '),
    );
    expectLive(outcome);
    expect(outcome).toMatchObject({ version: v1.version, previousVersion: null, changed: true });
    expect(outcome.steps.map((s) => s.step)).toEqual(CHANGE_STEPS);
    expect(liveVersion(node)).toBe(v1.version);
    expect(await remote(conn, 'postconf -h sender_dependent_relayhost_maps')).toBe(
      `hash:${node.configDir}/relayplane/current/sender_relay\n`,
    );

    const a = await deliver(node, 'app@a.test', sh1);
    expect(a.authUser).toBe('userA');
    const c = await deliver(node, 'app@c.test', sh2);
    expect(c.authUser).toBe('userC');

    // Secrets are 0600 (source and .db) inside the release; other tables 0644.
    const modes = await remote(
      conn,
      `cd ${node.configDir}/relayplane/current && stat -c '%a %n' sasl_passwd sasl_passwd.db sender_relay sender_relay.db`,
    );
    expect(modes).toBe('600 sasl_passwd\n600 sasl_passwd.db\n644 sender_relay\n644 sender_relay.db\n');
  });

  it('deploying the same bundle again touches nothing', async () => {
    const v1 = buildBundle(routesV1());
    const before = await configSnapshot(conn, node);
    const reloads = reloadCount(node);
    const t0 = Date.now();
    const outcome = await deployBundle(conn, v1, opts(node));
    console.info(`no-op deploy: ${Date.now() - t0} ms`);
    expectLive(outcome);
    expect(outcome.changed).toBe(false);
    expect(outcome.previousVersion).toBe(v1.version);
    expect(outcome.steps.map((s) => s.step)).toEqual(['check-bundle', 'read-node', 'verify-live']);
    expect(await configSnapshot(conn, node)).toEqual(before);
    expect(reloadCount(node)).toBe(reloads);
  });

  it('deploys a changed bundle: new credential and relay, the dropped service and parameter are removed', async () => {
    const v1 = buildBundle(routesV1());
    v2 = buildBundle(routesV2());
    const events: string[] = [];
    // The staging dir is private (0700) from the moment it exists until it is promoted.
    const releasesDir = path.join(node.configDir, 'relayplane', 'releases');
    const staged: Array<{ name: string; mode: number }> = [];
    const watcher = watch(releasesDir, (_event, name) => {
      try {
        // First sight of each staging dir: its mode at creation (promotion chmods it 0755 before the rename).
        if (name === null || !String(name).includes('.tmp-') || staged.some((s) => s.name === String(name))) return;
        staged.push({ name: String(name), mode: statSync(path.join(releasesDir, String(name))).mode & 0o777 });
      } catch {
        /* promoted already */
      }
    });
    // Every exec is a command of the node's shell: one per step, but promote and switch share one and
    // prune's listing comes with the verify.
    let execs = 0;
    const counting: NodeConnection = {
      host: conn.host,
      exec: (c, o) => (execs++, conn.exec(c, o)),
      execBytes: (c, o) => (execs++, conn.execBytes(c, o)),
      writeFile: (p, c, m) => (execs++, conn.writeFile(p, c, m)),
      close: () => conn.close(),
    };
    const t0 = Date.now();
    const outcome = await deployBundle(
      counting,
      v2,
      opts(node, { log: (e) => e.type === 'state' && events.push(e.to) }),
    ).finally(() => watcher.close());
    console.info(
      `changed deploy (warm connection): ${Date.now() - t0} ms`,
      outcome.steps.map((s) => `${s.step}=${s.finishedAt.getTime() - s.startedAt.getTime()}`).join(' '),
    );
    expect(staged.length).toBeGreaterThan(0);
    for (const s of staged) expect(s.mode, s.name).toBe(0o700);
    expectLive(outcome);
    expect(outcome.previousVersion).toBe(v1.version);
    expect(events).toEqual(['checked', 'staged', 'validated', 'switched', 'applied', 'reloaded', 'live']);
    expect(execs).toBe(8);
    expect(outcome.steps.find((s) => s.step === 'apply')?.detail).toMatch(
      /remove sender_dependent_default_transport_maps.*remove rp_smtps\/unix/,
    );
    expect(await remote(conn, 'postconf -M; postconf -n')).not.toMatch(
      /rp_smtps|sender_dependent_default_transport_maps/,
    );

    expect((await deliver(node, 'next@a.test', sh1)).authUser).toBe('userA2');
    expect((await deliver(node, 'next@c.test', sh1)).authUser).toBe('userC');
    expect(releases(node)).toEqual([v1.version, v2.version].sort());
  });

  it('refuses bundles that fail validation; the node keeps running the previous version', async () => {
    const before = await configSnapshot(conn, node);
    const dupKey = buildBundle(routesV2(), { saslPasswd: '@a.test userA2:pwA2\n@A.test other:pw\n' });
    const unknownParam = buildBundle(routesV2(), { mainCf: { relayplane_no_such_param: 'yes' } });
    const badLevel = buildBundle(routesV2(), { mainCf: { smtp_tls_security_level: 'mayb' } });
    const badBool = buildBundle(routesV2(), { masterCf: [service('rp_x', 'smtp', { smtp_tls_wrappermode: 'yess' })] });
    const badTimeout = buildBundle(routesV2(), { mainCf: { smtp_connect_timeout: 'soon' } });
    const noDaemon = buildBundle(routesV2(), { masterCf: [service('rp_y', 'no-such-daemon', {})] });
    const cases: Array<[Bundle, string, RegExp]> = [
      [dupKey, 'check-bundle', /sasl_passwd: line 2: duplicate key "@a.test"/],
      [badLevel, 'check-bundle', /smtp_tls_security_level = mayb: not a TLS security level/],
      [unknownParam, 'validate', /unknown parameter relayplane_no_such_param/],
      [badBool, 'validate', /smtp_tls_wrappermode = yess: expected yes or no/],
      [badTimeout, 'validate', /smtp_connect_timeout = soon: expected a time/],
      [noDaemon, 'validate', /command no-such-daemon not found/],
    ];
    for (const [bundle, step, error] of cases) {
      const outcome = await deployBundle(conn, bundle, opts(node));
      expect(outcome.state, JSON.stringify(outcome)).toBe('failed');
      expect(outcome.error).toMatch(error);
      expect(outcome.steps.at(-1)).toMatchObject({ step, ok: false });
      // A bundle refused by the pure checks never opens a channel to the node.
      expect(outcome.previousVersion).toBe(step === 'check-bundle' ? null : v2.version);
    }
    // Deploying with the wrong configDir: refused before anything is written, and still an outcome.
    expect(await deployBundle(conn, v2, { configDir: 'etc/postfix' })).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/normalized absolute path/),
    });
    expect(await deployBundle(conn, v2, { configDir: '/etc/postfix' })).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/acts on config_directory .*, not \/etc\/postfix/),
    });
    // postmap's own warnings are failures too (the backstop behind the bundle check).
    const scratch = path.join(node.baseDir, 'postmap-test');
    await remote(conn, `mkdir -p ${scratch} && printf '@a.test x\\n@a.test y\\n' > ${scratch}/sasl_passwd`);
    expect(await postmapTables(conn, scratch, dupKey)).toEqual([expect.stringMatching(/duplicate entry: "@a.test"/)]);

    expect(liveVersion(node)).toBe(v2.version);
    expect(releases(node).filter((r) => r !== v2.version && r !== buildBundle(routesV1()).version)).toEqual([]);
    expect(await configSnapshot(conn, node)).toEqual(before);
    expect((await deliver(node, 'still@a.test', sh1)).authUser).toBe('userA2');
  });

  it('with the version the node last ran as a hint, sends steps ahead: three waits until live instead of ten, same steps and states', async () => {
    const { counting, waits } = countingWaits(conn);
    const v1 = buildBundle(routesV1());
    const events: string[] = [];
    let waitsUntilLive = 0;
    const log = (e: DeployEvent) => {
      if (e.type !== 'state') return;
      events.push(e.to);
      if (e.to === 'live') waitsUntilLive = waits();
    };
    const back = await deployBundle(counting, v1, opts(node, { expectedLiveVersion: v2.version, log }));
    expectLive(back);
    expect(events).toEqual(['checked', 'staged', 'validated', 'switched', 'applied', 'reloaded', 'live']);
    expect(back.steps.map((s) => s.step)).toEqual(CHANGE_STEPS);
    // Steps sent ahead are timed from when the one before them was done.
    for (const [i, s] of back.steps.entries())
      if (i > 0) expect(s.startedAt.getTime()).toBeGreaterThanOrEqual(back.steps[i - 1]!.finishedAt.getTime());
    expect(waitsUntilLive).toBe(3); // read-node+stage+postmap, validate, promote…verify
    expect(waits()).toBe(3); // prune had nothing to remove: read-node listed the releases
    expect((await deliver(node, 'hint@a.test', sh1)).authUser).toBe('userA');

    // Refused by validate after staging was sent ahead: the staged release is gone, v1 still live.
    const refused = await deployBundle(
      conn,
      buildBundle(routesV2(), { mainCf: { relayplane_no_such_param: 'yes' } }),
      opts(node, { expectedLiveVersion: v1.version }),
    );
    expect(refused).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/unknown parameter relayplane_no_such_param/),
    });
    expect(liveVersion(node)).toBe(v1.version);
    expect(releases(node).filter((r) => r.includes('.tmp-'))).toEqual([]);

    // A wrong hint (the node already runs the bundle): the staging sent ahead is removed, nothing else changes.
    const before = await configSnapshot(conn, node);
    const same = await deployBundle(conn, v1, opts(node, { expectedLiveVersion: v2.version }));
    expect(same).toMatchObject({ state: 'live', changed: false });
    expect(same.steps.map((s) => s.step)).toEqual(['check-bundle', 'read-node', 'stage', 'postmap', 'verify-live']);
    expect(releases(node).filter((r) => r.includes('.tmp-'))).toEqual([]);
    expect(await configSnapshot(conn, node)).toEqual(before);

    expectLive(await deployBundle(conn, v2, opts(node, { expectedLiveVersion: v1.version })));
    expect(liveVersion(node)).toBe(v2.version);
  });

  it('decides the validate of a tables-only delta on the node: two waits until live, same steps and states', async () => {
    const { counting, waits } = countingWaits(conn);
    const next = buildBundle([
      ...routesV2(),
      { domain: 'd.test', nexthop: sh1.nexthop, user: 'userC', password: 'pwC' },
    ]);
    const events: string[] = [];
    const log = (e: DeployEvent) => {
      if (e.type === 'state') events.push(e.to);
    };
    const outcome = await deployBundle(counting, next, opts(node, { expectedLiveVersion: v2.version, base: v2, log }));
    expectLive(outcome);
    expect(events).toEqual(['checked', 'staged', 'validated', 'switched', 'applied', 'reloaded', 'live']);
    expect(outcome.steps.map((s) => s.step)).toEqual(CHANGE_STEPS);
    expect(outcome.steps.find((s) => s.step === 'stage')?.detail).toMatch(/^delta from/);
    expect(outcome.steps.find((s) => s.step === 'validate')?.detail).toMatch(/checked on the node/);
    expect(waits()).toBe(2); // read-node+stage+postmap, validate+promote…verify
    expect((await deliver(node, 'tables@d.test', sh1)).authUser).toBe('userC');
    expectLive(await deployBundle(conn, v2, opts(node, { expectedLiveVersion: next.version, base: next })));
  });

  it('repairs a live release whose main.cf/master.cf was changed by hand', async () => {
    await remote(conn, `postconf -X smtp_tls_policy_maps && postconf -M 'rp_stray/unix=rp_stray unix - - n - - smtp'`);
    const outcome = await deployBundle(conn, v2, opts(node));
    expectLive(outcome);
    expect(outcome.changed).toBe(true);
    expect(outcome.steps.map((s) => s.step)).toEqual([
      'check-bundle',
      'read-node',
      'verify-live',
      'apply',
      'reload',
      'verify',
      'prune',
    ]);
    expect(outcome.steps[2]?.detail).toMatch(/config differs: set smtp_tls_policy_maps; remove rp_stray\/unix/);
    expect(await remote(conn, 'postconf -h smtp_tls_policy_maps')).toBe(
      `hash:${node.configDir}/relayplane/current/tls_policy\n`,
    );
    expect(await remote(conn, 'postconf -M')).not.toMatch(/rp_stray/);
  });

  it('rolls back when Postfix logs a fatal error after the reload', async () => {
    const before = await configSnapshot(conn, node);
    // Passes every check before the switch (an integer where an integer is due), but Postfix
    // refuses line_length_limit < 512 when the daemon starts: the wakeup makes master start it now.
    const bad = buildBundle(routesV2(), {
      masterCf: [service('rp_canary', 'pickup', { line_length_limit: '100' }, '60')],
    });
    const outcome = await deployBundle(conn, bad, opts(node));
    expect(outcome.state, JSON.stringify(outcome)).toBe('rolled_back');
    expect(outcome.error).toMatch(/fatal: invalid line_length_limit/);
    expect(outcome.steps.map((s) => `${s.step}:${s.ok}`).slice(-2)).toEqual(['verify:false', 'rollback:true']);
    expect(liveVersion(node)).toBe(v2.version);
    expect(releases(node)).not.toContain(bad.version);
    expect(await configSnapshot(conn, node)).toEqual(before);
    expect((await deliver(node, 'after-rollback@a.test', sh1)).authUser).toBe('userA2');
  });

  it('runs postfix check with the verify of a deploy that edits master.cf: a failed check rolls it back', async () => {
    // A `postfix` first in the session's PATH whose `check` fails; every other use runs the real one.
    const remotePath = await wrapCommand(
      path.join(node.baseDir, 'failing-check'),
      'postfix',
      (real) =>
        `#!/bin/sh\nif [ "$1" = check ]; then echo 'postfix/postfix-script: fatal: the lab says no' >&2; exit 1; fi\nexec ${real} "$@"\n`,
    );
    const failing = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyLine, remotePath });
    try {
      const before = await configSnapshot(failing, node);
      const edited = buildBundle(routesV2(), {
        masterCf: [service('rp_extra', 'smtp', { smtp_tls_security_level: 'may' })],
      });
      const outcome = await deployBundle(failing, edited, opts(node));
      expect(outcome.state, JSON.stringify(outcome)).toBe('rolled_back');
      expect(outcome.error).toMatch(/postfix check exit 1: .*the lab says no/);
      expect(outcome.steps.find((s) => s.step === 'validate')?.ok).toBe(true);
      expect(outcome.steps.map((s) => `${s.step}:${s.ok}`).slice(-2)).toEqual(['verify:false', 'rollback:true']);
      expect(liveVersion(node)).toBe(v2.version);
      expect(await configSnapshot(conn, node)).toEqual(before);
    } finally {
      failing.close();
    }
  });

  it('rolls a first release back to no release at all', async () => {
    const c = await connect(fresh);
    const before = await configSnapshot(c, fresh);
    const bad = buildBundle(routesV1(), {
      masterCf: [service('rp_canary', 'pickup', { line_length_limit: '100' }, '60')],
    });
    const outcome = await deployBundle(c, bad, opts(fresh));
    expect(outcome.state, JSON.stringify(outcome)).toBe('rolled_back');
    expect(outcome.previousVersion).toBeNull();
    expect(existsSync(path.join(fresh.configDir, 'relayplane', 'current'))).toBe(false);
    expect(releases(fresh)).toEqual([]);
    expect(await configSnapshot(c, fresh)).toEqual(before);
    // The node's own catch-all route still works.
    const sent = await sendMail(fresh, { from: 'x@a.test', to: ['rcpt@dest.test'] });
    expect((await waitForDelivery(fresh, sent, sink)).authUser).toBeUndefined();
  });

  it('prunes old releases, keeping the live and the previous one', async () => {
    const versions: string[] = [];
    for (let i = 0; i < 4; i++) {
      const b = buildBundle(routesV2(), {
        files: { note: { content: `release ${i}\n`, mode: 0o644, secret: false, mapType: null } },
      });
      const { counting, waits } = countingWaits(conn);
      const expectedLiveVersion = versions.at(-1) ?? v2.version;
      const outcome = await deployBundle(counting, b, opts(node, { keepReleases: 3, expectedLiveVersion }));
      expectLive(outcome);
      versions.push(b.version);
      if (i === 3) {
        expect(outcome.steps.find((s) => s.step === 'prune')?.detail).toBe('removed 1');
        // The prune went with the verify: no wait of its own.
        expect(waits()).toBe(3);
      }
    }
    expect(releases(node)).toEqual(versions.slice(-3).sort());
    // keepReleases: 1 still keeps the previous release for a rollback.
    expectLive(await deployBundle(conn, v2, opts(node, { keepReleases: 1 })));
    expect(releases(node)).toEqual([versions[3]!, v2.version].sort());
    expect((await deliver(node, 'pruned@a.test', sh1)).authUser).toBe('userA2');
  });
});
