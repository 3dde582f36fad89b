/**
 * A deploy's file work done by the node's Perl loop itself (commands' Perl bodies, see
 * src/ssh/remote-shell.ts) on a real Postfix node: deploys leave the same releases whether the
 * Perl loop or the shell loop (a node without perl) ran them, and a write or rename the node
 * refuses fails its step in both alike: a promote that cannot write switches nothing, a switch that
 * cannot rename leaves `current` as it was. The refusals are real: `chattr +i` (immutable, which
 * root cannot write through either) on the directory the step must change.
 */
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { lutimes, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle, nodeLayout, type Bundle, type DeployOutcome } from '../../src/deploy/index.js';
import { driftedFiles } from '../../src/deploy/live-files.js';
import { promoteAndSwitch, pruneReleases, removeReleaseDir, stageRelease } from '../../src/deploy/release-store.js';
import { reloadPostfix } from '../../src/deploy/reload-steps.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { HANG_GUARD_MS, runOk, waitUntil } from '../lab/util.js';
import { buildBundle } from './bundles.js';

const labOk = labGate('file work in the Perl loop');

describe.skipIf(!labOk)('file work in the Perl loop on a real Postfix node', () => {
  let sink: SmartHost;
  let node: PostfixNode;
  const loops: Record<'perl' | 'shell', NodeConnection> = {} as Record<'perl' | 'shell', NodeConnection>;
  let current: Bundle | undefined;
  let made = 0;

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'perl-sink', tls: 'starttls', users: {}, authOptional: true });
    node = await startPostfixNode({ name: 'perlwork', sinkRelayhost: sink.nexthop, tlsCaCerts: [sink.caCertPem] });
    loops.perl = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint });
    loops.shell = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint, remoteLoop: 'sh' });
  });

  afterAll(async () => {
    for (const c of Object.values(loops)) c?.close();
    await node?.stop();
    await stopAllLabNodes();
    await sink?.close();
  });

  const layout = () => nodeLayout(node.configDir);
  const live = () => layout().current;
  /** A bundle no earlier one had: one more domain each time. */
  const nextBundle = (): Bundle => {
    made += 1;
    return buildBundle(
      Array.from({ length: made }, (_, i) => ({
        domain: `d${String(i).padStart(3, '0')}.test`,
        nexthop: sink.nexthop,
        user: `u${i}`,
        password: `pw${i}`,
      })),
    );
  };

  /** Deploys as the sync worker does (a delta from the last bundle), through one loop or the other. */
  async function deployNext(loop: 'perl' | 'shell'): Promise<{ outcome: DeployOutcome; bundle: Bundle }> {
    const bundle = nextBundle();
    const outcome = await deployBundle(loops[loop], bundle, {
      configDir: node.configDir,
      expectedLiveVersion: current?.version ?? null,
      base: current,
      deltaSendWholeUpTo: 0,
      keepReleases: 2,
    });
    if (outcome.state === 'live') current = bundle;
    return { outcome, bundle };
  }

  it('deploys, switches and prunes alike through the Perl loop and the shell loop', async () => {
    for (const loop of ['perl', 'shell', 'perl', 'shell', 'perl'] as const) {
      const { outcome, bundle } = await deployNext(loop);
      expect(outcome.state, `${loop}: ${outcome.error}`).toBe('live');
      expect(readlinkSync(live())).toBe(`releases/${bundle.version}`);
      const release = layout().release(bundle.version);
      expect(readFileSync(path.join(release, 'VERSION'), 'utf8')).toBe(`${bundle.version}\n`);
      expect(statSync(release).mode & 0o777, loop).toBe(0o755);
      // The link the archive brought was renamed over `current`; the delta's inputs are gone.
      expect(existsSync(path.join(release, '.relayplane', 'current')), loop).toBe(false);
      expect(existsSync(path.join(release, '.relayplane', 'delta')), loop).toBe(false);
      expect(await driftedFiles(loops.perl, live(), bundle)).toEqual([]);
      // keepReleases 2: the live release and the one before it, nothing staged left.
      expect(readdirSync(layout().releases).length, loop).toBeLessThanOrEqual(2);
    }
  });

  /** A release staged as a deploy stages it, with `dir` (a path under it) made immutable for `run`. */
  async function withImmutable<T>(
    loop: 'perl' | 'shell',
    under: (staging: string) => string,
    run: (staging: string, bundle: Bundle) => Promise<T>,
  ): Promise<T> {
    const bundle = nextBundle();
    const staging = await stageRelease(loops[loop], layout(), bundle);
    const dir = under(staging);
    await runOk('chattr', ['+i', dir]);
    try {
      return await run(staging, bundle);
    } finally {
      for (const d of [dir, dir.replace(staging, layout().release(bundle.version))])
        if (existsSync(d)) await runOk('chattr', ['-i', d]);
      for (const d of [staging, layout().release(bundle.version)])
        if (existsSync(d)) await removeReleaseDir(loops.perl, layout(), d);
    }
  }

  it.each(['perl', 'shell'] as const)('a promote the node cannot write switches nothing (%s loop)', async (loop) => {
    if (current === undefined) await deployNext(loop);
    const before = readlinkSync(live());
    await withImmutable(
      loop,
      (staging) => staging,
      async (staging, bundle) => {
        const sent = promoteAndSwitch(loops[loop], layout(), staging, bundle.version);
        await expect(sent.promoted).rejects.toThrow(/^promote: exit 90: .*VERSION/);
        await expect(sent.switched).rejects.toThrow(/skipped/);
        expect(readlinkSync(live())).toBe(before);
        expect(existsSync(layout().release(bundle.version))).toBe(false);
      },
    );
    // The connection runs what comes next.
    expect((await loops[loop].exec('exit 0')).code).toBe(0);
  });

  it.each(['perl', 'shell'] as const)(
    'a switch the node cannot rename leaves current as it was (%s loop)',
    async (loop) => {
      if (current === undefined) await deployNext(loop);
      const before = readlinkSync(live());
      await withImmutable(
        loop,
        (staging) => path.join(staging, '.relayplane'),
        async (_staging, bundle) => {
          const sent = promoteAndSwitch(loops[loop], layout(), _staging, bundle.version);
          expect(await sent.promoted).toBe(layout().release(bundle.version));
          const failed = await sent.switched.then(
            () => undefined,
            (err: unknown) => err as Error & { exitCode?: number },
          );
          expect(failed?.message).toMatch(/^switch: exit 1: /);
          expect(failed?.exitCode).toBe(1);
          expect(readlinkSync(live())).toBe(before);
        },
      );
    },
  );

  it.each(['perl', 'shell'] as const)(
    'reloads by signalling master, or through postfix reload when its pid file names no master (%s loop)',
    async (loop) => {
      if (current === undefined) await deployNext(loop);
      const release = layout().release(current!.version);
      // A queue directory whose master.pid names pid 1 (not master): the reload is left to `postfix reload`.
      const elsewhere = path.join(node.baseDir, `no-master-${loop}`);
      await mkdir(path.join(elsewhere, 'pid'), { recursive: true });
      await writeFile(path.join(elsewhere, 'pid', 'master.pid'), '          1\n');
      // postfix-script logs its refresh before it signals master; the deployer's own signal logs none.
      for (const [queueDirectory, viaPostfix] of [
        [node.queueDir, false],
        [elsewhere, true],
      ] as const) {
        const size = statSync(node.maillogPath).size;
        const reloaded = await reloadPostfix(loops[loop], {
          maillog: node.maillogPath,
          release,
          queueDirectory,
          restart: false,
          ifPreviousOk: false,
        });
        // The log's size before the reload, saved where the verify reads it.
        expect(reloaded.offset).toBe(size);
        expect(readFileSync(path.join(release, '.relayplane', 'reload-offset'), 'utf8')).toBe(`${size}\n`);
        const since = await waitUntil(
          () => {
            const text = readFileSync(node.maillogPath, 'utf8').slice(size);
            return /master\[\d+\]: reload -- /.test(text) && text;
          },
          HANG_GUARD_MS,
          "master's reload line in the log",
        );
        expect(/postfix-script\[\d+\]: refreshing the Postfix mail system/.test(since), since).toBe(viaPostfix);
      }
    },
  );

  it.each(['perl', 'shell'] as const)(
    'prunes releases past the newest kept and staging dirs left for 10 minutes, nothing else (%s loop)',
    async (loop) => {
      while (readdirSync(layout().releases).length < 2) await deployNext(loop);
      const releases = layout().releases;
      const hex = (c: string) => c.repeat(64);
      // An old release (older than every other), an old and a fresh staging dir, and a link to a
      // directory outside named like an old staging dir: only find's `-type d` matches are removed.
      const old = path.join(releases, hex('0'));
      const oldStaging = path.join(releases, `${hex('1')}.tmp-aaaa`);
      const freshStaging = path.join(releases, `${hex('2')}.tmp-bbbb`);
      const outside = path.join(node.baseDir, `outside-${loop}`);
      const link = path.join(releases, `${hex('3')}.tmp-cccc`);
      for (const dir of [old, oldStaging, freshStaging, outside])
        await mkdir(path.join(dir, 'sub'), { recursive: true });
      await writeFile(path.join(outside, 'sub', 'kept'), 'x');
      await symlink(outside, link);
      const longAgo = new Date(Date.now() - 3_600_000);
      for (const p of [old, oldStaging, outside]) await utimes(p, longAgo, longAgo);
      await lutimes(link, longAgo, longAgo);
      const protect = [current!.version, null];
      const removed = await pruneReleases(loops[loop], layout(), 2, protect);
      expect(removed).toEqual([hex('0')]);
      for (const gone of [old, oldStaging]) expect(existsSync(gone), gone).toBe(false);
      expect(existsSync(freshStaging)).toBe(true);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readFileSync(path.join(outside, 'sub', 'kept'), 'utf8')).toBe('x');
      expect(readdirSync(releases).filter((r) => /^[0-9a-f]{64}$/.test(r))).toHaveLength(2);
      await rm(freshStaging, { recursive: true });
      await rm(link);
    },
  );
});
