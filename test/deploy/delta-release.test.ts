/**
 * Releases built on a real Postfix node from the live one plus a delta (src/deploy/delta-release.ts):
 * for random sequences of changes, every delta-built release answers exactly what a full build of
 * the same bundle answers (the SHA-256 of every source and of every table's sorted `postmap -s`
 * dump, as the drift check compares them); a hand-edited base falls back to a full release; a
 * failure in the middle of a delta leaves the live release as it was.
 */
import { appendFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle, type Bundle, type DeployOutcome } from '../../src/deploy/index.js';
import { SEND_WHOLE_UP_TO } from '../../src/deploy/bundle-delta.js';
import { driftedFiles } from '../../src/deploy/live-files.js';
import { SHELL_READ_LINES } from '../../src/deploy/node-checks.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { runOk } from '../lab/util.js';
import { wrapCommand } from '../lab/command-wrapper.js';
import { sendMail } from '../lab/submit.js';
import { waitForDelivery } from '../lab/delivery.js';
import { buildBundle, type Route } from './bundles.js';

const labOk = labGate('delta releases');

describe.skipIf(!labOk)('delta releases on a real Postfix node', () => {
  let sink: SmartHost;
  let node: PostfixNode;
  let conn: NodeConnection;
  const connections: NodeConnection[] = [];

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    node = await startPostfixNode({ name: 'delta', sinkRelayhost: sink.nexthop, tlsCaCerts: [sink.caCertPem] });
    conn = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint });
    connections.push(conn);
  });

  afterAll(async () => {
    for (const c of connections) c.close();
    await node?.stop();
    await stopAllLabNodes();
    await sink?.close();
  });

  /** Sorted by domain, as the compiler writes its tables. */
  const bundleOf = (domains: Array<[string, string]>): Bundle =>
    buildBundle(
      [...domains]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([domain, user]): Route => ({ domain, nexthop: sink.nexthop, user, password: `pw ${user} ${domain}` })),
    );
  const stage = (o: DeployOutcome) => o.steps.find((s) => s.step === 'stage')?.detail ?? '';
  const releasesDir = () => path.join(node.configDir, 'relayplane', 'releases');
  const live = () => path.join(node.configDir, 'relayplane', 'current');
  let current: Bundle | undefined;
  /** The shard size `current` was laid out with (undefined: the default, under which these tables stay whole). */
  let currentShardSize: number | undefined;

  /**
   * Deploys as the sync worker does: the node's last version as the hint, its bundle as the base.
   * These tables are small: unless a test says otherwise every changed one is patched on the node
   * (sendWholeUpTo 0), as a large one would be, and goes whole (shardSize undefined).
   */
  async function deployNext(
    next: Bundle,
    c = conn,
    sendWholeUpTo: number | undefined = 0,
    shardSize?: number,
  ): Promise<DeployOutcome> {
    const outcome = await deployBundle(c, next, {
      configDir: node.configDir,
      expectedLiveVersion: current?.version ?? null,
      // A base laid out otherwise than the next release is not the node's: no delta from it.
      base: currentShardSize === shardSize ? current : undefined,
      deltaSendWholeUpTo: sendWholeUpTo,
      shardSize,
    });
    if (outcome.state === 'live') [current, currentShardSize] = [next, shardSize];
    return outcome;
  }

  /** The node runs `domains`' bundle (deployed unless it already does): the base of the next delta. */
  async function runningOn(domains: Array<[string, string]>): Promise<Bundle> {
    const bundle = bundleOf(domains);
    if (current?.version !== bundle.version || currentShardSize !== undefined)
      expect((await deployNext(bundle)).state).toBe('live');
    return bundle;
  }

  /**
   * A session on the node whose `command` is a wrapper first in its PATH: `when` is a `case` branch
   * on the arguments (` $* `, blank-padded) that may use `$real`; any other call runs the real one.
   * File work (`mv`, `ln`) runs as a command only in the shell loop (the Perl loop does it itself):
   * a wrapper of it gets a session on the shell loop, as on a node without perl.
   */
  async function withWrapper(name: string, when: string, command = 'postmap'): Promise<NodeConnection> {
    const remotePath = await wrapCommand(
      path.join(node.baseDir, name),
      command,
      (real) => `#!/bin/sh\nreal=${real}\ncase " $* " in ${when};; esac\nexec "$real" "$@"\n`,
    );
    const remoteLoop = command === 'postmap' ? 'auto' : 'sh';
    const wrapped = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint, remotePath, remoteLoop });
    connections.push(wrapped);
    return wrapped;
  }

  /** A delta refused at its postmap: nothing after it ran, `base` is still live as it was, no staging left. */
  async function expectRefusedAtPostmap(outcome: DeployOutcome, base: Bundle, error: RegExp): Promise<void> {
    expect(outcome.state).toBe('failed');
    expect(outcome.steps.find((s) => s.step === 'stage')?.detail).toMatch(/^delta/);
    expect(outcome.steps.at(-1)).toMatchObject({ step: 'postmap', ok: false });
    expect(outcome.error).toMatch(error);
    expect(outcome.previousVersion).toBe(base.version);
    expect(readFileSync(path.join(live(), 'VERSION'), 'utf8').trim()).toBe(base.version);
    expect(await driftedFiles(conn, live(), base)).toEqual([]);
    expect(readdirSync(releasesDir()).filter((r) => r.includes('.tmp-'))).toEqual([]);
  }

  const inode = (version: string, file: string) => statSync(path.join(releasesDir(), version, file)).ino;

  it('answers exactly as a full build, for random sequences of onboarding, rotation and removal', async () => {
    const domain = fc.stringMatching(/^[a-h]{1,3}\.(test|example)$/);
    const config = fc.uniqueArray(fc.tuple(domain, fc.constantFrom('u1', 'u2', 'u3')), {
      selector: ([d]) => d,
      minLength: 1,
      maxLength: 12,
    });
    let deltas = 0;
    let shardedDeltas = 0;
    // Whole tables, or (as large ones go) shards: 200 characters make 2 to 4 of the largest here.
    for (const shardSize of [undefined, 200]) {
      await fc.assert(
        // Changed tables patched on the node, or (small ones, as by default) sent whole.
        fc.asyncProperty(
          fc.array(config, { minLength: 2, maxLength: 5 }),
          fc.constantFrom(0, SEND_WHOLE_UP_TO),
          async (sequence, sendWholeUpTo) => {
            for (const domains of sequence) {
              const next = bundleOf(domains);
              if (next.version === current?.version && shardSize === currentShardSize) continue;
              const outcome = await deployNext(next, conn, sendWholeUpTo, shardSize);
              expect(outcome.state, `${outcome.error} ${JSON.stringify(outcome.steps)}`).toBe('live');
              // The base is what this test deployed: a delta is never refused (a wrong splice or merge would be).
              expect(stage(outcome)).not.toMatch(/refused/);
              if (stage(outcome).startsWith('delta')) deltas++;
              if (shardSize !== undefined && next.files.sender_relay!.content.length > shardSize) {
                expect(existsSync(path.join(live(), 'sender_relay.1.db'))).toBe(true);
                if (stage(outcome).startsWith('delta')) shardedDeltas++;
              }
              expect(await driftedFiles(conn, live(), next, shardSize)).toEqual([]);
              // The delta's inputs hold secret lines: none is left in the release.
              expect(existsSync(path.join(live(), '.relayplane', 'delta'))).toBe(false);
            }
          },
        ),
        { numRuns: 3 },
      );
    }
    expect(deltas).toBeGreaterThan(3);
    expect(shardedDeltas).toBeGreaterThan(0);
    expect(readdirSync(releasesDir()).filter((r) => r.includes('.tmp-'))).toEqual([]);
  });

  it('routes, authenticates and admits by sender through the unions of a table laid out as shards', async () => {
    const names = Array.from({ length: 40 }, (_, i) => `s${String(i).padStart(2, '0')}.test`);
    const users = Object.fromEntries(names.map((d, i) => [`user${i}`, `pw ${d}`]));
    const relay = await startSmartHost({ name: 'sharded', tls: 'starttls', users });
    try {
      const routes = names.map((domain, i): Route => ({
        domain,
        nexthop: relay.nexthop,
        user: `user${i}`,
        password: `pw ${domain}`,
      }));
      const access = names.map((d) => `${d} OK\n`).join('');
      const bundle = buildBundle(routes, {
        files: { sender_access: { content: access, mode: 0o644, secret: false, mapType: 'hash' } },
        // Only the listed domains may send: smtpd looks the sender's domain up in the union.
        mainCf: { smtpd_sender_restrictions: 'check_sender_access hash:{{dir}}/sender_access, reject' },
      });
      const outcome = await deployNext(bundle, conn, 0, 200);
      expect(outcome.state, outcome.error).toBe('live');
      const relayMaps = await node.postconf(['-h', 'sender_dependent_relayhost_maps']);
      expect(relayMaps).toMatch(/^unionmap:\{hash:\S+\/sender_relay\.0,hash:\S+\/sender_relay\.1,/);
      const restrictions = await node.postconf(['-h', 'smtpd_sender_restrictions']);
      expect(restrictions).toMatch(/^check_sender_access unionmap:\{hash:\S+\/sender_access\.0,/);
      // Senders of domains in different shards: each reaches the relay as its own user.
      for (const i of [0, 17, 39]) {
        const sent = await sendMail(node, { from: `app@${names[i]!}`, to: ['rcpt@dest.test'] });
        expect((await waitForDelivery(node, sent, relay)).authUser).toBe(`user${i}`);
      }
      await expect(sendMail(node, { from: 'app@unlisted.test', to: ['rcpt@dest.test'] })).rejects.toThrow(
        /554|reject/i,
      );
      expect(await driftedFiles(conn, live(), bundle, 200)).toEqual([]);
    } finally {
      await relay.close();
    }
  });

  it('repairs a live release of the whole-table layout to shards, as after an upgrade', async () => {
    const domains = Array.from({ length: 12 }, (_, i): [string, string] => [`up${i}.test`, 'u1']);
    const bundle = await runningOn(domains);
    expect(await node.postconf(['-h', 'sender_dependent_relayhost_maps'])).toMatch(/^hash:/);
    // The same version, laid out with shards: the node's files and main.cf differ from it.
    const outcome = await deployNext(bundle, conn, 0, 200);
    expect(outcome.state, outcome.error).toBe('live');
    expect(outcome.steps.map((st) => st.step)).toContain('repair-files');
    expect(await node.postconf(['-h', 'sender_dependent_relayhost_maps'])).toMatch(/^unionmap:\{hash:/);
    expect(await driftedFiles(conn, live(), bundle, 200)).toEqual([]);
    expect(readFileSync(path.join(live(), 'VERSION'), 'utf8').trim()).toBe(bundle.version);
    // main.cf reads back as the unions were written: the next reconcile finds nothing to repair.
    const again = await deployNext(bundle, conn, 0, 200);
    expect(again).toMatchObject({ state: 'live', changed: false });
  });

  /** A session whose `commands` log each call (`<command> <arguments>`, a line each) before they run. */
  async function withLoggedCalls(
    name: string,
    commands = ['postmap', 'tar'],
    remoteLoop: 'auto' | 'sh' = 'auto',
  ): Promise<{ logged: NodeConnection; calls: (command: string) => string[] }> {
    const dir = path.join(node.baseDir, name);
    const log = path.join(dir, 'calls');
    let remotePath = '';
    for (const command of commands)
      remotePath = await wrapCommand(
        dir,
        command,
        (real) => `#!/bin/sh\necho ${command} "$*" >> ${log}\nexec ${real} "$@"\n`,
      );
    const logged = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint, remotePath, remoteLoop });
    connections.push(logged);
    const calls = (command: string) =>
      (existsSync(log) ? readFileSync(log, 'utf8') : '')
        .split('\n')
        .filter((call) => call.startsWith(`${command} `))
        .map((call) => call.slice(command.length + 1));
    return { logged, calls };
  }

  /** `count` domains, each with its own user name of `userLength` characters. */
  const domainsWithUsers = (count: number, user: string, userLength: number) =>
    Array.from({ length: count }, (_, i): [string, string] => [`g${i}.test`, `${user}${i}`.padEnd(userLength, 'x')]);

  /**
   * Every credential of `count` domains changed at once (user names of `userLength` characters):
   * the delta's shards sent whole (sendWholeUpTo 4 MB) to a session that logs its `postmap` and
   * `tar` calls; the release answers as a full build. Returns the tar calls and the builds.
   */
  async function rotateEveryCredential(count: number, userLength: number, name: string) {
    expect((await deployNext(bundleOf(domainsWithUsers(count, 'u', userLength)), conn, 4 << 20)).state).toBe('live');
    const { logged, calls } = await withLoggedCalls(name);
    const next = bundleOf(domainsWithUsers(count, 'v', userLength));
    const outcome = await deployNext(next, logged, 4 << 20);
    expect(outcome.state, outcome.error).toBe('live');
    expect(stage(outcome)).toMatch(/^delta .* \d+ sent whole/);
    expect(await driftedFiles(conn, live(), next)).toEqual([]);
    return { tar: calls('tar'), builds: calls('postmap').filter((call) => call.startsWith('hash:')) };
  }

  it('sends the shards of a delta under 2 MiB as they are and builds them with one postmap', async () => {
    // 12,000 credentials of ≈ 100 characters a line: ≈ 1.2 MB of sasl_passwd shards.
    const { tar, builds } = await rotateEveryCredential(12_000, 40, 'whole-calls');
    // Under GZIP_OVER: no gzip on the node.
    expect(tar).toEqual([expect.not.stringMatching(/ -z /)]);
    // Under SPLIT_BUILD_OVER in all: every shard in one postmap (each costs the node its start-up).
    expect(builds).toEqual([expect.stringMatching(/^hash:sasl_passwd\.0 hash:sasl_passwd\.1( |$)/)]);
  });

  it('sends a large delta gzipped and builds it with two postmaps side by side: it answers as a full build', async () => {
    // 30,000 credentials of ≈ 140 characters a line: ≈ 4 MB of shards.
    const { tar, builds } = await rotateEveryCredential(30_000, 60, 'split-calls');
    expect(tar).toEqual([expect.stringMatching(/ -z /)]);
    // Past SPLIT_BUILD_OVER in all: two postmaps side by side, the shards shared between them.
    expect(builds).toHaveLength(2);
    const shards = builds.flatMap((call) => call.split(' ')).sort();
    expect(shards).toEqual(Array.from({ length: shards.length }, (_, i) => `hash:sasl_passwd.${i}`).sort());
    expect(shards.length).toBeGreaterThan(2);
  });

  it('links the unchanged files of the base release, and writes the changed tables anew', async () => {
    const before = await runningOn([
      ['a.test', 'u1'],
      ['b.test', 'u2'],
    ]);
    const next = bundleOf([
      ['a.test', 'u1'],
      ['b.test', 'u3'],
    ]);
    const outcome = await deployNext(next);
    expect(outcome.state, outcome.error).toBe('live');
    expect(stage(outcome)).toMatch(/^delta .* 1 table\(s\) changed .* linked/);
    for (const file of ['sender_relay', 'sender_relay.db'])
      expect(inode(next.version, file), file).toBe(inode(before.version, file));
    for (const file of ['sasl_passwd', 'sasl_passwd.db'])
      expect(inode(next.version, file), file).not.toBe(inode(before.version, file));
    expect(await driftedFiles(conn, live(), next)).toEqual([]);
    expect(await driftedFiles(conn, path.join(releasesDir(), before.version), before)).toEqual([]);
  });

  it.each([
    ['shell', 'one mv', 'sh'],
    ['Perl', 'no process', 'auto'],
  ] as const)(
    'makes a release live by renaming the link its archive brought (%s loop: %s)',
    async (_l, _s, remoteLoop) => {
      await runningOn([['a.test', 'u1']]);
      const { logged, calls } = await withLoggedCalls(`switch-calls-${remoteLoop}`, ['ln', 'mv'], remoteLoop);
      const next = bundleOf([
        ['a.test', 'u1'],
        ['b.test', 'u2'],
      ]);
      const outcome = await deployNext(next, logged);
      expect(outcome.state, outcome.error).toBe('live');
      expect(calls('ln').filter((call) => call.startsWith('-s'))).toEqual([]);
      const renamed = `-T ${path.join(releasesDir(), next.version, '.relayplane', 'current')} ${live()}`;
      // The Perl loop promotes and switches with no `mv` at all.
      expect(calls('mv')).toEqual(remoteLoop === 'sh' ? expect.arrayContaining([renamed]) : []);
      expect(readlinkSync(live())).toBe(`releases/${next.version}`);
      expect(existsSync(path.join(releasesDir(), next.version, '.relayplane', 'current'))).toBe(false);
      expect(await driftedFiles(conn, live(), next)).toEqual([]);
    },
  );

  it('sends small changed tables whole and builds them with one postmap, probing their changed keys', async () => {
    const before = await runningOn([
      ['a.test', 'u1'],
      ['b.test', 'u2'],
    ]);
    const next = bundleOf([
      ['a.test', 'u1'],
      ['b.test', 'u3'],
      ['c.test', 'u1'],
    ]);
    const outcome = await deployNext(next, conn, SEND_WHOLE_UP_TO);
    expect(outcome.state, outcome.error).toBe('live');
    expect(stage(outcome)).toMatch(/^delta .* 2 table\(s\) changed \(\d+ entries; 0 spliced, 0 merged, 2 sent whole\)/);
    expect(outcome.steps.find((s) => s.step === 'validate')?.ok).toBe(true);
    expect(await driftedFiles(conn, live(), next)).toEqual([]);
    expect(inode(next.version, 'tls_policy.db')).toBe(inode(before.version, 'tls_policy.db'));
  });

  it('merges many scattered changes with comm and sort -m, and splices a few', async () => {
    const users = (rotated: (i: number) => boolean) =>
      bundleOf(
        Array.from({ length: 40 }, (_, i): [string, string] => [
          `m${String(i).padStart(2, '0')}.test`,
          rotated(i) ? 'u2' : 'u1',
        ]),
      );
    const before = users(() => false);
    if (current?.version !== before.version) expect((await deployNext(before)).state).toBe('live');
    const scattered = users((i) => i % 3 === 0);
    const merged = await deployNext(scattered);
    expect(merged.state, merged.error).toBe('live');
    expect(stage(merged)).toMatch(/^delta .* changed \(\d+ entries; 0 spliced, 1 merged, 0 sent whole\)/);
    expect(await driftedFiles(conn, live(), scattered)).toEqual([]);
    const few = users((i) => i % 3 === 0 || i === 38);
    const spliced = await deployNext(few);
    expect(spliced.state, spliced.error).toBe('live');
    expect(stage(spliced)).toMatch(/^delta .* changed \(\d+ entries; 1 spliced, 0 merged, 0 sent whole\)/);
    expect(await driftedFiles(conn, live(), few)).toEqual([]);
  });

  it('reads main.cf and master.cf again after the reload only when the deploy edited them', async () => {
    const scripts: string[] = [];
    const recording: NodeConnection = Object.assign(Object.create(conn) as NodeConnection, {
      exec: (command: string, options?: Parameters<NodeConnection['exec']>[1]) => {
        scripts.push(command);
        return conn.exec(command, options);
      },
    });
    const verifyScript = () => scripts.find((script) => script.includes('begin live-state')) ?? '';
    const tablesOnly = bundleOf([
      ['a.test', 'u1'],
      ['v.test', 'u1'],
    ]);
    if (current?.version !== tablesOnly.version) expect((await deployNext(tablesOnly)).state).toBe('live');
    scripts.length = 0;
    const rotated = bundleOf([
      ['a.test', 'u1'],
      ['v.test', 'u2'],
    ]);
    const outcome = await deployNext(rotated, recording);
    expect(outcome.state, outcome.error).toBe('live');
    expect(verifyScript()).toMatch(/cd -P/);
    expect(verifyScript()).not.toMatch(/postconf -n/);

    scripts.length = 0;
    const edited = buildBundle(
      [
        { domain: 'a.test', nexthop: sink.nexthop, user: 'u1', password: 'pw u1 a.test' },
        { domain: 'v.test', nexthop: sink.nexthop, user: 'u2', password: 'pw u2 v.test' },
      ],
      { mainCf: { smtp_connect_timeout: '17s' } },
    );
    const withMainCf = await deployNext(edited, recording);
    expect(withMainCf.state, withMainCf.error).toBe('live');
    expect(verifyScript()).toMatch(/postconf -n/);
    expect(await node.postconf(['-h', 'smtp_connect_timeout'])).toBe('17s\n');
  });

  it('builds on a hand-edited base never: the node refuses the delta and gets a full release', async () => {
    const before = bundleOf([
      ['a.test', 'u1'],
      ['b.test', 'u1'],
      ['c.test', 'u2'],
    ]);
    expect((await deployNext(before)).state).toBe('live');
    await appendFile(path.join(live(), 'sender_relay'), '@hand.test [127.0.0.1]:9\n');
    const next = bundleOf([
      ['a.test', 'u1'],
      ['b.test', 'u3'],
      ['c.test', 'u2'],
    ]);
    const outcome = await deployNext(next);
    expect(outcome.state, outcome.error).toBe('live');
    expect(stage(outcome)).toMatch(/full release: the node refused the delta \(base-drifted\)/);
    expect(await driftedFiles(conn, live(), next)).toEqual([]);
  });

  it('refuses a delta whose rebuilt table is not the next version, while its other tables build beside it', async () => {
    const before = await runningOn([
      ['a.test', 'u1'],
      ['b.test', 'u2'],
    ]);
    // The control plane's idea of the base is wrong about one table (the node's files are intact,
    // so the manifest check passes): sasl_passwd is rebuilt from the node's base and cannot match.
    const believed = {
      ...bundleOf([
        ['a.test', 'u1'],
        ['b.test', 'u3'],
      ]),
      version: before.version,
    };
    const next = bundleOf([
      ['a.test', 'u1'],
      ['b.test', 'u3'],
      ['c.test', 'u1'],
    ]);
    const outcome = await deployBundle(conn, next, {
      configDir: node.configDir,
      expectedLiveVersion: before.version,
      base: believed,
      deltaSendWholeUpTo: 0,
    });
    expect(outcome.state, outcome.error).toBe('live');
    current = next;
    expect(stage(outcome)).toMatch(/full release: the node refused the delta \(digest-mismatch\)/);
    expect(await driftedFiles(conn, live(), next)).toEqual([]);
    expect(readdirSync(releasesDir()).filter((r) => r.includes('.tmp-'))).toEqual([]);
  });

  it('keeps a manifest of each release; a base whose .db alone was rebuilt by hand is refused too', async () => {
    const before = bundleOf([
      ['a.test', 'u1'],
      ['b.test', 'u2'],
    ]);
    expect((await deployNext(before)).state).toBe('live');
    const manifest = (await runOk('cat', [path.join(live(), '.relayplane', 'files.stat')])).stdout;
    const listed = manifest
      .trim()
      .split('\n')
      .map((l) => l.split(' ').at(-1));
    expect(listed).toEqual(
      Object.keys(before.files)
        .flatMap((n) => [n, `${n}.db`])
        .sort(),
    );
    // A delta on an intact base is built on it.
    const next = bundleOf([
      ['a.test', 'u1'],
      ['b.test', 'u3'],
    ]);
    const built = await deployNext(next);
    expect(built.state, built.error).toBe('live');
    expect(stage(built)).toMatch(/^delta from /);
    // postmap run by hand on the live release: the sources are as they were, the .db files are new.
    const rebuilt = await node.exec(`postmap hash:${path.join(live(), 'sender_relay')}`);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const after = await deployNext(before);
    expect(after.state, after.error).toBe('live');
    expect(stage(after)).toMatch(/full release: the node refused the delta \(base-drifted\)/);
    expect(await driftedFiles(conn, live(), before)).toEqual([]);
    // A table repaired in place by a reconcile: the manifest follows, the next delta builds on it.
    await appendFile(path.join(live(), 'sender_relay'), '@hand.test [127.0.0.1]:9\n');
    const repaired = await deployNext(before);
    expect(repaired.steps.map((s) => s.step)).toContain('repair-files');
    const onRepaired = await deployNext(next);
    expect(onRepaired.state, onRepaired.error).toBe('live');
    expect(stage(onRepaired)).toMatch(/^delta from /);
  });

  it('checks a long manifest (a release of many shards) by cmp: an intact base is built on, a hand-built shard refused', async () => {
    const previous = current!;
    const domains = Array.from({ length: 40 }, (_, i): [string, string] => [`m${i}.test`, `u${i}`]);
    const shardSize = 256;
    const before = bundleOf(domains);
    expect((await deployNext(before, conn, 0, shardSize)).state).toBe('live');
    const manifest = readFileSync(path.join(live(), '.relayplane', 'files.stat'), 'utf8')
      .trim()
      .split('\n');
    expect(manifest.length).toBeGreaterThan(SHELL_READ_LINES);
    const next = bundleOf([...domains, ['m-new.test', 'u-new']]);
    const built = await deployNext(next, conn, 0, shardSize);
    expect(built.state, built.error).toBe('live');
    expect(stage(built)).toMatch(/^delta from /);
    const shard = readdirSync(live()).find((f) => /^sender_relay\.\d+$/.test(f))!;
    const rebuilt = await node.exec(`postmap hash:${path.join(live(), shard)}`);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const after = await deployNext(before, conn, 0, shardSize);
    expect(after.state, after.error).toBe('live');
    expect(stage(after)).toMatch(/full release: the node refused the delta \(base-drifted\)/);
    expect(await driftedFiles(conn, live(), before, shardSize)).toEqual([]);
    // The tests after this one build on the small release it found.
    expect((await deployNext(previous)).state).toBe('live');
  });

  it('a failure in the middle of a delta leaves the live release untouched', async () => {
    // postmap -i fails on the node; everything else is real.
    const failing = await withWrapper('failing-bin', '*" -i "*) echo "postmap: fatal: injected failure" >&2; exit 1');
    const base = current!;
    const digestsBefore = await driftedFiles(conn, live(), base);
    const outcome = await deployNext(
      bundleOf([
        ['a.test', 'u2'],
        ['b.test', 'u3'],
        ['c.test', 'u2'],
        ['d.test', 'u1'],
      ]),
      failing,
    );
    expect(digestsBefore).toEqual([]);
    await expectRefusedAtPostmap(outcome, base, /injected failure/);
  });

  it('a promote that fails switches nothing: the live release stays as it was, no staging is left', async () => {
    const base = await runningOn([
      ['a.test', 'u1'],
      ['b.test', 'u2'],
    ]);
    // The rename of the staging dir to its release dir fails; promote and switch are one command.
    const failing = await withWrapper('failing-promote', '*".tmp-"*) echo "mv: injected failure" >&2; exit 1', 'mv');
    const outcome = await deployNext(
      bundleOf([
        ['a.test', 'u1'],
        ['b.test', 'u3'],
      ]),
      failing,
    );
    expect(outcome.state).toBe('failed');
    expect(outcome.steps.at(-1)).toMatchObject({ step: 'promote', ok: false });
    expect(outcome.error).toMatch(/injected failure/);
    expect(readlinkSync(live())).toBe(`releases/${base.version}`);
    expect(await driftedFiles(conn, live(), base)).toEqual([]);
    expect(readdirSync(releasesDir()).filter((r) => r.includes('.tmp-'))).toEqual([]);
  });

  it('a switch that fails after the promote rolls back: the live release stays as it was', async () => {
    const base = await runningOn([
      ['a.test', 'u1'],
      ['b.test', 'u2'],
    ]);
    // The rename of the release's own link over current fails (the rollback makes a link of its own).
    const failing = await withWrapper(
      'failing-switch',
      '*"/.relayplane/current "*) echo "mv: injected failure" >&2; exit 1',
      'mv',
    );
    const outcome = await deployNext(
      bundleOf([
        ['a.test', 'u1'],
        ['b.test', 'u3'],
      ]),
      failing,
    );
    expect(outcome.state, outcome.error).toBe('rolled_back');
    expect(outcome.steps.find((s) => s.step === 'promote')?.ok).toBe(true);
    expect(outcome.steps.find((s) => s.step === 'switch')).toMatchObject({ ok: false });
    expect(outcome.error).toMatch(/injected failure/);
    expect(readlinkSync(live())).toBe(`releases/${base.version}`);
    expect(await driftedFiles(conn, live(), base)).toEqual([]);
  });

  it('never switches to a build the control plane refused, even one the node ran without an error exit', async () => {
    // postmap -i patches the table and exits 0, with a warning the control plane does not accept.
    const warning = await withWrapper(
      'warning-bin',
      '*" -i "*) "$real" "$@"; echo "postmap: warning: injected" >&2; exit 0',
    );
    const base = await runningOn([
      ['a.test', 'u2'],
      ['c.test', 'u2'],
    ]);
    const outcome = await deployNext(
      bundleOf([
        ['a.test', 'u2'],
        ['b.test', 'u3'],
        ['c.test', 'u2'],
      ]),
      warning,
    );
    await expectRefusedAtPostmap(outcome, base, /injected/);
  });

  it('refuses a delta whose staged tables answer a changed key wrongly, as patched and as sent whole', async () => {
    // postmap -q answers the new key with a stale value.
    const stale = await withWrapper(
      'stale-bin',
      `*" -q - "*) "$real" "$@" | sed 's/^@e\\.test\\t.*/@e.test\\tstale/'; exit 0`,
    );
    const base = await runningOn([
      ['a.test', 'u2'],
      ['c.test', 'u2'],
      ['d.test', 'u1'],
    ]);
    const next = bundleOf([
      ['a.test', 'u2'],
      ['b.test', 'u3'],
      ['c.test', 'u2'],
      ['e.test', 'u1'],
    ]);
    for (const sendWholeUpTo of [0, SEND_WHOLE_UP_TO]) {
      const outcome = await deployNext(next, stale, sendWholeUpTo);
      expect(outcome.state).toBe('failed');
      expect(stage(outcome)).toMatch(/^delta /);
      const validate = outcome.steps.find((s) => s.step === 'validate');
      expect(validate?.ok).toBe(false);
      // One union over the changed tables: the key's answer names them all, and shows no secret.
      expect(outcome.error).toMatch(
        /sasl_passwd, (\w+, )*sender_relay(, \w+)*: postmap -q @e\.test → \(secret value differs\), expected the new entry/,
      );
      expect(outcome.error).not.toContain('stale');
      expect(outcome.previousVersion).toBe(base.version);
      expect(await driftedFiles(conn, live(), base)).toEqual([]);
      expect(readdirSync(releasesDir()).filter((r) => r.includes('.tmp-'))).toEqual([]);
    }
  });
});
