/**
 * The sync job while nodes change under it, on the lab (real sshd + Postfix nodes): a node deleted
 * or re-addressed during a deploy or a reconcile, and drift shown from the moment it is found
 * until it is repaired. Each run is held at a known point by a barrier on the node's side (its
 * staging `tar -x` waits on a FIFO the test releases), never by time. Deploys go one node at a
 * time (concurrency 1, nodes in name order), so "before its turn" is a fact, not a race.
 */
import { appendFile, readFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { stagingBarrier, type NodeBarrier } from '../lab/barrier.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { waitUntil } from '../lab/util.js';

const labOk = labGate('sync under change lab tests');

interface NodeRunBody {
  nodeId: string | null;
  nodeName: string;
  state: string;
  error: string | null;
  steps: Array<{ step: string; detail?: string }>;
}
interface DeploymentBody {
  id: string;
  version: string;
  reason: string;
  state: string;
  createdAt: string;
  finishedAt: string | null;
  nodes: NodeRunBody[];
}
interface NodeBody {
  id: string;
  name: string;
  liveVersion: string | null;
  desiredVersion: string | null;
  drift: boolean;
  driftFiles: string[];
  lastError: string | null;
}

// A deploy validates each node for seconds on a loaded machine, and nodes go one at a time here.
describe.skipIf(!labOk)('the sync job while nodes change under it', () => {
  let sink: SmartHost;
  // a and b are registered (a's turn comes first); s1 and s2 are spare addresses to move them to.
  let a: PostfixNode;
  let b: PostfixNode;
  let s1: PostfixNode;
  let s2: PostfixNode;
  let barrier: NodeBarrier;
  let t: TestApp;
  let headers: Record<string, string>;
  const ids: Record<string, string> = {};

  const request = (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
  const api = async (method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: object) => {
    const response = await request(method, url, payload);
    if (response.statusCode >= 300) throw new Error(`${method} ${url} → ${response.statusCode}: ${response.body}`);
    return response.statusCode === 204 ? undefined : response.json();
  };
  const liveVersion = (n: PostfixNode): string | null => {
    const f = path.join(n.configDir, 'relayplane', 'current', 'VERSION');
    return existsSync(f) ? readFileSync(f, 'utf8').trim() : null;
  };
  const node = (name: string): Promise<NodeBody> => api('GET', `/v1/nodes/${ids[name]}`);
  /** Deployments created after `since`, oldest first. */
  const deploymentsSince = async (since: Date, reason: string): Promise<DeploymentBody[]> => {
    const { items } = (await api('GET', '/v1/deployments?limit=20')) as { items: DeploymentBody[] };
    return items.filter((d) => d.reason === reason && new Date(d.createdAt) >= since).reverse();
  };
  const runOf = (d: DeploymentBody, name: string) => d.nodes.find((n) => n.nodeName === name);
  const register = async (n: PostfixNode) => {
    const created = await api('POST', '/v1/nodes', {
      name: n.name,
      sshHost: '127.0.0.1',
      sshPort: n.ssh.port,
      hostKey: n.ssh.hostKeyFingerprint,
      configDir: n.configDir,
    });
    ids[n.name] = created.id;
  };
  const moveTo = (name: string, target: PostfixNode) =>
    api('PATCH', `/v1/nodes/${ids[name]}`, {
      sshPort: target.ssh.port,
      hostKey: target.ssh.hostKeyFingerprint,
      configDir: target.configDir,
    });
  /** Every registered node runs the desired version, in sync, and the worker has nothing left to do. */
  const converged = async () => {
    await waitUntil(
      async () => {
        await t.app.syncWorker!.idle();
        const { items } = (await api('GET', '/v1/nodes')) as { items: NodeBody[] };
        return items.every(
          (n) => !n.drift && n.lastError === null && n.liveVersion !== null && n.liveVersion === n.desiredVersion,
        );
      },
      120_000,
      'every node to run the desired version',
      100,
    );
    await t.app.syncWorker!.idle();
  };
  /** A config change the worker deploys by itself (main.cf), which stages and postmaps tables on every node. */
  const changeConfig = async () => {
    const { version: _v, updatedAt: _u, ...settings } = await api('GET', '/v1/settings');
    await api('PUT', '/v1/settings', { ...settings, maximalBackoffSeconds: settings.maximalBackoffSeconds + 60 });
  };
  /**
   * A config change whose deploy is held on its first node (the barrier) while `act` runs, then
   * released; returns when the change's deployment started and what `act` returned.
   */
  const duringHeldChange = async <T>(act: () => Promise<T>): Promise<[Date, T]> => {
    await barrier.arm();
    const since = new Date();
    await changeConfig();
    await barrier.reached();
    const value = await act();
    expect(await barrier.release()).toBe(true);
    return [since, value];
  };
  let edits = 0;
  /** A hand edit of a live map (source and .db), as an operator on the node would make it. */
  const handEdit = async (n: PostfixNode) => {
    const live = path.join(n.configDir, 'relayplane', 'current');
    const original = readFileSync(path.join(live, 'sasl_passwd'), 'utf8');
    const edited = original.replace(/^@a\.test .*$/m, `@a.test userA:by-hand-${++edits}`);
    expect(edited).not.toBe(original);
    const r = await n.exec(
      `cd ${live} && printf '%s' '${edited.replace(/'/g, `'\\''`)}' > sasl_passwd && postmap hash:sasl_passwd`,
    );
    expect(r.code, r.stderr).toBe(0);
  };
  const sshLogLength = (n: PostfixNode) => readFileSync(n.sshLogPath, 'utf8').length;
  const loggedInSince = (n: PostfixNode, offset: number) =>
    /Accepted publickey/.test(readFileSync(n.sshLogPath, 'utf8').slice(offset));
  const foreignKeyErrors = () => t.logs.filter((line) => /foreign key|P2003|sync job failed/i.test(line));

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    [a, b, s1, s2] = (await Promise.all(
      ['uc-a', 'uc-b', 'uc-s1', 'uc-s2'].map((name) =>
        startPostfixNode({ name, sinkRelayhost: sink.nexthop, tlsCaCerts: [sink.caCertPem] }),
      ),
    )) as [PostfixNode, PostfixNode, PostfixNode, PostfixNode];
    // The control plane has one key: a's lab client key, authorized on the others too.
    const key = await readFile(`${a.ssh.privateKeyPath}.pub`, 'utf8');
    for (const n of [b, s1, s2]) await appendFile(path.join(n.baseDir, 'ssh', 'authorized_keys'), key);
    barrier = await stagingBarrier(a);
    t = await createTestApp({
      ssh: {
        privateKeyPath: a.ssh.privateKeyPath,
        connectTimeoutMs: 3000,
        retry: { attempts: 2, baseDelayMs: 100 },
        concurrency: 1,
        remotePath: barrier.remotePath,
      },
      sync: { debounceMs: 300, reconcileIntervalMs: 3_600_000, leaderPollMs: 200 },
    });
    headers = (await tokenFor(t.app, ['admin'])).headers;
    const { version: _v, updatedAt: _u, ...settings } = await api('GET', '/v1/settings');
    await api('PUT', '/v1/settings', { ...settings, inetProtocols: 'ipv4', addressPreference: 'ipv4' });
    const tenant = await api('POST', '/v1/tenants', { name: 'UC', slug: 'uc' });
    const relay = await api('POST', '/v1/relays', {
      name: 'sink',
      host: '127.0.0.1',
      port: sink.port,
      tls: 'starttls',
      verify: false,
    });
    const domain = await api('POST', `/v1/tenants/${tenant.id}/domains`, { name: 'a.test', relayId: relay.id });
    await api('PATCH', `/v1/domains/${domain.id}`, { status: 'verified' });
    await api('POST', `/v1/relays/${relay.id}/credentials`, { username: 'userA', secret: 'pw-a', domainId: domain.id });
    for (const n of [a, b]) await register(n);
    await converged();
  });

  // A failed test must not leave the next one a held deploy, a missing node or a run in progress.
  afterEach(async () => {
    await barrier.release();
    await a.startSsh();
    await t.app.syncWorker!.idle();
    const { items } = (await api('GET', '/v1/nodes')) as { items: NodeBody[] };
    for (const n of [a, b]) if (!items.some((x) => x.name === n.name)) await register(n);
    t.app.syncWorker!.enqueue('reconcile');
    await converged();
  }, 180_000);

  afterAll(async () => {
    await barrier?.release().catch(() => false);
    await t?.close();
    await Promise.allSettled([a, b, s1, s2].map((n) => n?.stop()));
    await stopAllLabNodes();
    await sink?.close();
  });

  it('a drifted map shows drift and its files from the moment the reconcile finds it until the repair; the repair is recorded', async () => {
    await handEdit(a);
    await barrier.arm();
    const since = new Date();
    t.app.syncWorker!.enqueue('reconcile');
    await barrier.reached();
    // The repair holds at its staging postmap: the drift is already visible.
    expect(await node('uc-a')).toMatchObject({ drift: true, driftFiles: ['sasl_passwd'] });
    const listed = ((await api('GET', '/v1/nodes')) as { items: NodeBody[] }).items.find((n) => n.name === 'uc-a');
    expect(listed).toMatchObject({ drift: true, driftFiles: ['sasl_passwd'] });
    expect(await node('uc-b')).toMatchObject({ drift: false, driftFiles: [] });

    expect(await barrier.release()).toBe(true);
    await t.app.syncWorker!.idle();
    expect(await node('uc-a')).toMatchObject({ drift: false, driftFiles: [], lastError: null });
    const [repair] = await deploymentsSince(since, 'reconcile');
    expect(repair?.state, JSON.stringify(repair)).toBe('succeeded');
    const run = runOf(repair!, 'uc-a')!;
    expect(run.state).toBe('live');
    expect(run.steps.find((s) => s.step === 'verify-live')?.detail).toMatch(
      /files differ from the release: sasl_passwd/,
    );
    expect(run.steps.find((s) => s.step === 'repair-files')?.detail).toBe('restored sasl_passwd');
    expect(runOf(repair!, 'uc-b')!.state).toBe('unchanged');
  });

  it('a repair that fails after the drift was found (node unreachable) leaves drift, its files and lastError', async () => {
    await handEdit(a);
    await barrier.arm();
    const since = new Date();
    t.app.syncWorker!.enqueue('reconcile');
    await barrier.reached();
    await a.stopSsh(); // also ends the held session
    await t.app.syncWorker!.idle();
    const down = await node('uc-a');
    expect(down).toMatchObject({ drift: true, driftFiles: ['sasl_passwd'] });
    expect(down.lastError).toMatch(/^drifted sasl_passwd, not repaired: /);
    const [failed] = await deploymentsSince(since, 'reconcile');
    expect(failed?.state, JSON.stringify(failed)).toBe('partial');
    expect(runOf(failed!, 'uc-a')).toMatchObject({
      state: 'failed',
      error: expect.stringMatching(/^drifted sasl_passwd, not repaired: /),
    });

    await a.startSsh();
    t.app.syncWorker!.enqueue('reconcile');
    await t.app.syncWorker!.idle();
    expect(await node('uc-a')).toMatchObject({ drift: false, driftFiles: [], lastError: null });
  });

  it('a node deleted while a reconcile runs against another node is skipped at its turn: nothing sent, the run recorded', async () => {
    await handEdit(a);
    await barrier.arm();
    const since = new Date();
    t.app.syncWorker!.enqueue('reconcile');
    await barrier.reached();
    const offset = sshLogLength(b);
    await api('DELETE', `/v1/nodes/${ids['uc-b']}`);
    expect(await barrier.release()).toBe(true);
    await t.app.syncWorker!.idle();
    const [d] = await deploymentsSince(since, 'reconcile');
    expect(d?.state, JSON.stringify(d)).toBe('succeeded');
    expect(runOf(d!, 'uc-a')).toMatchObject({ nodeId: ids['uc-a'], state: 'live' });
    expect(runOf(d!, 'uc-b')).toMatchObject({
      nodeId: null,
      state: 'skipped',
      error: expect.stringMatching(/deleted before its turn/),
    });
    expect(loggedInSince(b, offset)).toBe(false);
    expect(foreignKeyErrors()).toEqual([]);
  });

  it('a node deleted while a reconcile repairs it: the reconcile completes and keeps its run by name', async () => {
    await handEdit(a);
    await barrier.arm();
    const since = new Date();
    t.app.syncWorker!.enqueue('reconcile');
    await barrier.reached();
    await api('DELETE', `/v1/nodes/${ids['uc-a']}`);
    expect(await barrier.release()).toBe(true);
    await t.app.syncWorker!.idle();
    const [d] = await deploymentsSince(since, 'reconcile');
    expect(d?.state, JSON.stringify(d)).toBe('succeeded');
    expect(runOf(d!, 'uc-a')).toMatchObject({ nodeId: null, state: 'live', error: null });
    expect(runOf(d!, 'uc-b')).toMatchObject({ nodeId: ids['uc-b'], state: 'unchanged' });
    expect(foreignKeyErrors()).toEqual([]);
  });

  it('a node deleted while a deploy runs against another node is skipped at its turn: nothing sent', async () => {
    const before = liveVersion(b);
    const [since, offset] = await duringHeldChange(async () => {
      const offset = sshLogLength(b);
      await api('DELETE', `/v1/nodes/${ids['uc-b']}`);
      return offset;
    });
    const d = await waitUntil(
      async () => (await deploymentsSince(since, 'change')).find((x) => x.finishedAt !== null),
      120_000,
      'the change deployment',
      100,
    );
    expect(d.state, JSON.stringify(d)).toBe('succeeded');
    expect(runOf(d, 'uc-a')).toMatchObject({ nodeId: ids['uc-a'], state: 'live' });
    expect(runOf(d, 'uc-b')).toMatchObject({
      nodeId: null,
      state: 'skipped',
      error: expect.stringMatching(/deleted before its turn/),
    });
    expect(liveVersion(b)).toBe(before);
    expect(loggedInSince(b, offset)).toBe(false);
    expect(foreignKeyErrors()).toEqual([]);
  });

  it('a node deleted while its own deploy runs: the deploy completes and its run is recorded by name', async () => {
    const [since] = await duringHeldChange(() => api('DELETE', `/v1/nodes/${ids['uc-a']}`));
    const d = await waitUntil(
      async () => (await deploymentsSince(since, 'change')).find((x) => x.finishedAt !== null),
      120_000,
      'the change deployment',
      100,
    );
    expect(d.state, JSON.stringify(d)).toBe('succeeded');
    expect(runOf(d, 'uc-a')).toMatchObject({ nodeId: null, state: 'live', error: null });
    expect(liveVersion(a)).toBe(d.version);
    expect(runOf(d, 'uc-b')).toMatchObject({ nodeId: ids['uc-b'], state: 'live' });
    expect(foreignKeyErrors()).toEqual([]);
  });

  it('a node re-addressed before its turn is deployed at its new address only', async () => {
    const before = liveVersion(b);
    const [since, offset] = await duringHeldChange(async () => {
      const offset = sshLogLength(b);
      await moveTo('uc-b', s1);
      return offset;
    });
    await converged();
    const [d] = await deploymentsSince(since, 'change');
    expect(d?.state, JSON.stringify(d)).toBe('succeeded');
    expect(runOf(d!, 'uc-b')).toMatchObject({ nodeId: ids['uc-b'], state: 'live' });
    expect(liveVersion(s1)).toBe(d!.version);
    expect(liveVersion(b)).toBe(before);
    expect(loggedInSince(b, offset)).toBe(false);
    expect(await node('uc-b')).toMatchObject({ liveVersion: d!.version, drift: false });
  });

  it('a node re-addressed during its own deploy: that run is skipped, and the new address is deployed right after', async () => {
    const [since] = await duringHeldChange(() => moveTo('uc-a', s2));
    await converged();
    const [held, redo] = await deploymentsSince(since, 'change');
    expect(held?.state, JSON.stringify(held)).toBe('succeeded');
    expect(runOf(held!, 'uc-a')).toMatchObject({
      nodeId: ids['uc-a'],
      state: 'skipped',
      error: expect.stringMatching(/re-addressed during its deploy/),
    });
    // The old address did get the deploy it was in the middle of; the new one gets it next.
    expect(liveVersion(a)).toBe(held!.version);
    expect(redo, 'a second change run for the new address').toBeDefined();
    expect(runOf(redo!, 'uc-a')).toMatchObject({ state: 'live' });
    expect(liveVersion(s2)).toBe(held!.version);
    expect(await node('uc-a')).toMatchObject({ liveVersion: held!.version, drift: false, lastError: null });
    expect(foreignKeyErrors()).toEqual([]);
  });
});
