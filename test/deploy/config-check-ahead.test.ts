/**
 * validate's postconf checks of an edited main.cf/master.cf, run beside postmap when the live
 * release foresees the plan (src/deploy/config-check-ahead.ts), on a real Postfix node: the checks
 * run once, their verdict is validate's (a bad value still refuses the release), and a node whose
 * config was edited by hand since (another plan) is checked again for the plan read-node found.
 */
import { readFile, rm } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { deployBundle, type Bundle, type DeployOutcome } from '../../src/deploy/index.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { wrapCommand } from '../lab/command-wrapper.js';
import { buildBundle, type Route } from './bundles.js';

const labOk = labGate('config checks beside postmap');

describe.skipIf(!labOk)('config checks beside postmap, on a real Postfix node', () => {
  let sink: SmartHost;
  let node: PostfixNode;
  let conn: NodeConnection;
  let current: Bundle | undefined;
  /** Every postconf the deployer's session ran, one line of arguments each. */
  let postconfLog: string;

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    node = await startPostfixNode({ name: 'ahead', sinkRelayhost: sink.nexthop, tlsCaCerts: [sink.caCertPem] });
    // postconf through a wrapper first in the session's PATH that logs its arguments, then runs it.
    postconfLog = path.join(node.baseDir, 'postconf.log');
    const remotePath = await wrapCommand(
      path.join(node.baseDir, 'logging-bin'),
      'postconf',
      (real) => `#!/bin/sh\necho "$*" >> ${postconfLog}\nexec ${real} "$@"\n`,
    );
    conn = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint, remotePath });
  });

  afterAll(async () => {
    conn?.close();
    await node?.stop();
    await stopAllLabNodes();
    await sink?.close();
  });

  beforeEach(async () => {
    await rm(postconfLog, { force: true });
  });

  const routes = (): Route[] => [
    { domain: 'a.test', nexthop: sink.nexthop, user: 'u1', password: 'pw u1 a.test' },
    { domain: 'b.test', nexthop: sink.nexthop, user: 'u2', password: 'pw u2 b.test' },
  ];
  const bundleWith = (mainCf: Record<string, string>): Bundle => buildBundle(routes(), { mainCf });

  /** Deploys as the sync worker does: the node's last version as the hint, its bundle as the base. */
  async function deployNext(next: Bundle): Promise<DeployOutcome> {
    const outcome = await deployBundle(conn, next, {
      configDir: node.configDir,
      expectedLiveVersion: current?.version ?? null,
      base: current,
      deltaSendWholeUpTo: 0,
    });
    if (outcome.state === 'live') current = next;
    return outcome;
  }

  const detail = (o: DeployOutcome, step: string) => o.steps.find((s) => s.step === step)?.detail;
  /** The staged main.cf/master.cf checks the session ran (`postconf -nx` starts each). */
  const checkRuns = async () =>
    (await readFile(postconfLog, 'utf8').catch(() => '')).split('\n').filter((l) => / -nx$/.test(l));
  const liveRelease = () => path.join(node.configDir, 'relayplane', 'current');

  it('checks the edited main.cf once, beside postmap, when the live release foresees the plan', async () => {
    expect((await deployNext(bundleWith({ smtp_connect_timeout: '17s' }))).state).toBe('live');
    await rm(postconfLog, { force: true });

    const outcome = await deployNext(bundleWith({ smtp_connect_timeout: '19s', smtp_helo_timeout: '41s' }));
    expect(outcome.state, outcome.error).toBe('live');
    expect(detail(outcome, 'validate')).toBe('main.cf and master.cf checked beside postmap');
    expect(await checkRuns()).toHaveLength(1);
    expect(await node.postconf(['-h', 'smtp_connect_timeout', 'smtp_helo_timeout'])).toBe('19s\n41s\n');
    // apply installed the checked files and took the scratch copies out of the release.
    expect(existsSync(path.join(liveRelease(), '.relayplane', 'check'))).toBe(false);
  });

  it('refuses a parameter Postfix does not know, found beside postmap: the live release stays', async () => {
    const before = current!;
    const outcome = await deployNext(
      bundleWith({ smtp_connect_timeout: '19s', smtp_helo_timeout: '43s', relayplane_no_such_param: 'x' }),
    );
    expect(outcome.state).toBe('failed');
    expect(outcome.steps.at(-1)).toMatchObject({ step: 'validate', ok: false });
    expect(outcome.error).toMatch(/unknown parameter relayplane_no_such_param/);
    expect(await checkRuns()).toHaveLength(1);
    expect(readFileSync(path.join(liveRelease(), 'VERSION'), 'utf8').trim()).toBe(before.version);
    expect(await node.postconf(['-h', 'smtp_helo_timeout'])).toBe('41s\n');
    const releases = readdirSync(path.join(node.configDir, 'relayplane', 'releases'));
    expect(releases.filter((r) => r.includes('.tmp-'))).toEqual([]);
  });

  it('checks again, for the plan read-node found, a node whose main.cf was edited by hand since', async () => {
    // The next bundle sets a parameter the admin has just set to the same value: read-node's plan
    // lacks it, the one foreseen from the live release does not.
    await node.postconf(['-e', 'smtp_data_done_timeout=700s']);
    const outcome = await deployNext(
      bundleWith({ smtp_connect_timeout: '23s', smtp_helo_timeout: '41s', smtp_data_done_timeout: '700s' }),
    );
    expect(outcome.state, outcome.error).toBe('live');
    expect(detail(outcome, 'validate')).toBeUndefined();
    expect(detail(outcome, 'apply')).toBe('set smtp_connect_timeout');
    expect(await checkRuns()).toHaveLength(2);
    expect(await node.postconf(['-h', 'smtp_connect_timeout', 'smtp_data_done_timeout'])).toBe('23s\n700s\n');
    expect(existsSync(path.join(liveRelease(), '.relayplane', 'check'))).toBe(false);
  });

  it('takes the checks of a plan that turned out empty out of the release', async () => {
    // Foreseen: set smtp_connect_timeout; found: nothing (the admin set it already).
    await node.postconf(['-e', 'smtp_connect_timeout=29s']);
    const outcome = await deployNext(
      bundleWith({ smtp_connect_timeout: '29s', smtp_helo_timeout: '41s', smtp_data_done_timeout: '700s' }),
    );
    expect(outcome.state, outcome.error).toBe('live');
    expect(detail(outcome, 'validate')).toBe('tables only: main.cf and master.cf unchanged');
    expect(await checkRuns()).toHaveLength(1);
    expect(existsSync(path.join(liveRelease(), '.relayplane', 'check'))).toBe(false);
  });
});
