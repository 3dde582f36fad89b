/**
 * The whole path on the lab: config made through the API → sync worker (leader, debounce,
 * reconcile) → compiler → deployer over SSH → two real Postfix nodes → two real smart hosts that
 * require AUTH. What the smart hosts observe (the authenticated username of each message) is the
 * proof, never what the control plane believes. Faults: a node whose sshd is down, a wrong pinned
 * host key, two deploys at once, a hand-edited live map; and a credential rotation while mail flows.
 */
import { appendFile, readFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type ReceivedMessage, type SmartHost } from '../lab/smart-host.js';
import { sendMail } from '../lab/submit.js';
import { waitUntil } from '../lab/util.js';

const labOk = labGate('sync worker lab tests');

interface DeploymentBody {
  id: string;
  version: string;
  reason: string;
  state: string;
  startedAt: string | null;
  finishedAt: string | null;
  nodes: Array<{
    nodeName: string;
    state: string;
    attempts: number;
    error: string | null;
    steps: Array<{ step: string; detail?: string }>;
  }>;
}

describe.skipIf(!labOk)('sync worker on real Postfix nodes', () => {
  let sink: SmartHost;
  let sh1: SmartHost;
  let sh2: SmartHost;
  let n1: PostfixNode;
  let n2: PostfixNode;
  let t: TestApp;
  let headers: Record<string, string>;
  const ids: Record<string, string> = {};

  const api = async (method: 'GET' | 'POST' | 'PATCH' | 'PUT', url: string, payload?: object) => {
    const response = await t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
    if (response.statusCode >= 300) throw new Error(`${method} ${url} → ${response.statusCode}: ${response.body}`);
    return response.json();
  };
  const liveVersion = (n: PostfixNode): string | null => {
    const f = path.join(n.configDir, 'relayplane', 'current', 'VERSION');
    return existsSync(f) ? readFileSync(f, 'utf8').trim() : null;
  };
  const deployment = (id: string): Promise<DeploymentBody> => api('GET', `/v1/deployments/${id}`);
  const finished = (id: string) =>
    waitUntil(
      async () => {
        const d = await deployment(id);
        return d.finishedAt !== null ? d : undefined;
      },
      30_000,
      `deployment ${id} to finish`,
      100,
    );
  /** The newest deployment of a reason that finished after `since`. */
  const nextFinished = (reason: string, since: Date) =>
    waitUntil(
      async () => {
        const { items } = (await api('GET', '/v1/deployments?limit=10')) as { items: DeploymentBody[] };
        return items.find((d) => d.reason === reason && d.finishedAt !== null && new Date(d.finishedAt) > since);
      },
      30_000,
      `a ${reason} deployment`,
      100,
    );
  const deliver = async (n: PostfixNode, from: string, host: SmartHost): Promise<ReceivedMessage> => {
    const sent = await sendMail(n, { from, to: ['rcpt@dest.test'], subject: `${from} via ${n.name}` });
    return host.waitFor((m) => m.messageId === sent.messageId, 15_000);
  };
  const reconcile = async () => {
    t.app.syncWorker!.enqueue('reconcile');
    await t.app.syncWorker!.idle();
  };
  const stepsOf = (d: DeploymentBody, node: string) =>
    d.nodes.find((n) => n.nodeName === node)!.steps.map((s) => s.step);

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    sh1 = await startSmartHost({
      name: 'sh1',
      tls: 'starttls',
      users: { userA: 'pw-a', userA2: 'pw-a2', userB: 'pw-b' },
    });
    sh2 = await startSmartHost({ name: 'sh2', tls: 'implicit', users: { userC: 'pw-c' } });
    const cas = [sink.caCertPem, sh1.caCertPem, sh2.caCertPem];
    [n1, n2] = (await Promise.all(
      ['sync1', 'sync2'].map((name) => startPostfixNode({ name, sinkRelayhost: sink.nexthop, tlsCaCerts: cas })),
    )) as [PostfixNode, PostfixNode];
    // The control plane has ONE key: n1's lab client key, authorized on n2 too.
    await appendFile(
      path.join(n2.baseDir, 'ssh', 'authorized_keys'),
      await readFile(`${n1.ssh.privateKeyPath}.pub`, 'utf8'),
    );
    t = await createTestApp({
      ssh: {
        privateKeyPath: n1.ssh.privateKeyPath,
        connectTimeoutMs: 3000,
        retry: { attempts: 3, baseDelayMs: 200 },
        concurrency: 4,
      },
      // Reconcile is driven by the tests (enqueue) instead of a timer.
      sync: { debounceMs: 300, reconcileIntervalMs: 3_600_000, leaderPollMs: 200 },
    });
    headers = (await tokenFor(t.app, ['admin'])).headers;

    // The lab nodes are IPv4 only: inet_protocols must not change (that needs a restart).
    const { version: _v, updatedAt: _u, ...settings } = await api('GET', '/v1/settings');
    await api('PUT', '/v1/settings', { ...settings, inetProtocols: 'ipv4', addressPreference: 'ipv4' });
    const tenantA = await api('POST', '/v1/tenants', { name: 'A', slug: 'sync-a' });
    const tenantB = await api('POST', '/v1/tenants', { name: 'B', slug: 'sync-b' });
    const relay1 = await api('POST', '/v1/relays', {
      name: 'sh1',
      host: '127.0.0.1',
      port: sh1.port,
      tls: 'starttls',
      verify: false,
    });
    const relay2 = await api('POST', '/v1/relays', {
      name: 'sh2',
      host: '127.0.0.1',
      port: sh2.port,
      tls: 'implicit',
      verify: false,
    });
    const domains = [
      ['a.test', tenantA.id, relay1.id, 'userA', 'pw-a'],
      ['b.test', tenantB.id, relay1.id, 'userB', 'pw-b'],
      ['c.test', tenantA.id, relay2.id, 'userC', 'pw-c'],
    ] as const;
    for (const [name, tenantId, relayId, username, secret] of domains) {
      const domain = await api('POST', `/v1/tenants/${tenantId}/domains`, { name, relayId });
      await api('PATCH', `/v1/domains/${domain.id}`, { status: 'verified' });
      const credential = await api('POST', `/v1/relays/${relayId}/credentials`, {
        username,
        secret,
        domainId: domain.id,
      });
      ids[name] = domain.id;
      ids[`cred:${name}`] = credential.id;
    }
    ids.relay1 = relay1.id;
    // Let the worker finish the change runs those writes caused (no node yet) before nodes exist.
    await new Promise((r) => setTimeout(r, 400));
    await t.app.syncWorker!.idle();
    for (const n of [n1, n2]) {
      const node = await api('POST', '/v1/nodes', {
        name: n.name,
        sshHost: '127.0.0.1',
        sshPort: n.ssh.port,
        hostKey: n.ssh.hostKeyFingerprint,
        configDir: n.configDir,
      });
      ids[n.name] = node.id;
    }
  });

  afterAll(async () => {
    await t?.close();
    await Promise.allSettled([n1?.stop(), n2?.stop()]);
    await stopAllLabNodes();
    await Promise.allSettled([sink, sh1, sh2].map((h) => h?.close()));
  });

  it('registering the nodes deploys to both; each smart host sees the right authenticated user per tenant domain', async () => {
    // Nodes were registered at the end of beforeAll: the worker deploys to them by itself.
    await waitUntil(
      async () => {
        const { items } = await api('GET', '/v1/nodes');
        return (
          items.length === 2 &&
          items.every((n: { drift: boolean; liveVersion: string | null }) => !n.drift && n.liveVersion !== null)
        );
      },
      30_000,
      'both nodes to run the desired version',
      100,
    );
    // A node is live once its own run ends; its deployment is finished just after the last one.
    await waitUntil(
      async () => {
        const { items } = (await api('GET', '/v1/deployments?limit=10')) as { items: DeploymentBody[] };
        return items.length > 0 && items.every((d) => d.finishedAt !== null);
      },
      10_000,
      'the deployment to finish',
      50,
    );
    const { items: runs } = (await api('GET', '/v1/deployments?limit=10')) as { items: DeploymentBody[] };
    expect(
      runs.every((d) => d.reason === 'change' && d.state === 'succeeded'),
      JSON.stringify(runs),
    ).toBe(true);
    for (const name of ['sync1', 'sync2'])
      expect(runs.some((d) => d.nodes.some((n) => n.nodeName === name && n.state === 'live'))).toBe(true);
    const done = runs[0]!;
    // Each node's run is recorded as it ended: its attempts and the deployer's steps, in order.
    for (const name of ['sync1', 'sync2']) {
      expect(done.nodes.find((n) => n.nodeName === name)).toMatchObject({ state: 'live', attempts: 1, error: null });
      expect(stepsOf(done, name)).toEqual(expect.arrayContaining(['read-node', 'stage', 'switch', 'reload', 'verify']));
      expect(stepsOf(done, name).indexOf('stage')).toBeLessThan(stepsOf(done, name).indexOf('reload'));
    }
    expect(liveVersion(n1)).toBe(done.version);
    expect(liveVersion(n2)).toBe(done.version);
    for (const n of [n1, n2]) {
      expect((await deliver(n, `app@a.test`, sh1)).authUser).toBe('userA');
      expect((await deliver(n, `app@b.test`, sh1)).authUser).toBe('userB');
      expect((await deliver(n, `app@c.test`, sh2)).authUser).toBe('userC');
    }
    const { items } = await api('GET', '/v1/nodes');
    for (const node of items)
      expect(node).toMatchObject({
        drift: false,
        liveVersion: done.version,
        desiredVersion: done.version,
        lastError: null,
      });
    // An unrouted sender is refused at the node's door (nothing leaves for it).
    await expect(sendMail(n1, { from: 'x@unknown.test', to: ['rcpt@dest.test'] })).rejects.toThrow(/554 5\.7\.1/);
  });

  it('two deploys requested at once run one after the other (one leader, one advisory lock)', async () => {
    const [d1, d2] = await Promise.all([api('POST', '/v1/deployments'), api('POST', '/v1/deployments')]);
    const [a, b] = (await Promise.all([finished(d1.id), finished(d2.id)])).sort((x, y) =>
      x.startedAt!.localeCompare(y.startedAt!),
    );
    expect(new Date(a!.finishedAt!).getTime()).toBeLessThanOrEqual(new Date(b!.startedAt!).getTime());
    for (const d of [a!, b!]) expect(d.nodes.map((n) => n.state)).toEqual(['unchanged', 'unchanged']);
    const locks = await t.prisma.$queryRaw<Array<{ n: bigint }>>`SELECT count(*) AS n FROM pg_locks
      WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
    expect(Number(locks[0]!.n)).toBe(1);
  });

  it('a node whose sshd is down: the other is updated; the down one converges on the next reconcile', async () => {
    await n2.stopSsh();
    const since = new Date();
    const before = liveVersion(n2);
    // A config change (main.cf) → the worker deploys by itself, debounced.
    const { version: _v, updatedAt: _u, ...settings } = await api('GET', '/v1/settings');
    await api('PUT', '/v1/settings', { ...settings, maximalBackoffSeconds: settings.maximalBackoffSeconds + 60 });
    const change = await nextFinished('change', since);
    expect(change.state, JSON.stringify(change)).toBe('partial');
    const down = change.nodes.find((n) => n.nodeName === 'sync2')!;
    expect(down).toMatchObject({ state: 'failed', attempts: 3 });
    expect(down.error).toMatch(/ECONNREFUSED/);
    expect(liveVersion(n1)).toBe(change.version);
    expect(liveVersion(n2)).toBe(before);
    expect((await api('GET', `/v1/nodes/${ids.sync2}`)).drift).toBe(true);

    await n2.startSsh();
    const reconcileSince = new Date();
    await reconcile();
    const repaired = await nextFinished('reconcile', reconcileSince);
    expect(repaired.nodes.map((n) => [n.nodeName, n.state])).toEqual([
      ['sync1', 'unchanged'],
      ['sync2', 'live'],
    ]);
    expect(liveVersion(n2)).toBe(change.version);
    expect(await api('GET', `/v1/nodes/${ids.sync2}`)).toMatchObject({
      drift: false,
      lastError: null,
      liveVersion: change.version,
    });
  });

  it('a wrong pinned host key: refused before authenticating, nothing sent, never retried', async () => {
    const node = await api('GET', `/v1/nodes/${ids.sync2}`);
    const sshLogBefore = readFileSync(n2.sshLogPath, 'utf8').length;
    const liveBefore = liveVersion(n2);
    await t.app.inject({
      method: 'PATCH',
      url: `/v1/nodes/${ids.sync2}`,
      headers,
      payload: { hostKey: n1.ssh.hostKeyLine },
    });
    const check = await api('POST', `/v1/nodes/${ids.sync2}/check`);
    expect(check).toMatchObject({
      ok: false,
      reachable: true,
      hostKey: { matches: false, presented: n2.ssh.hostKeyFingerprint },
    });
    const d = await finished((await api('POST', '/v1/deployments')).id);
    const refused = d.nodes.find((n) => n.nodeName === 'sync2')!;
    expect(refused).toMatchObject({ state: 'failed', attempts: 1 });
    expect(refused.error).toMatch(/host key mismatch/);
    expect(readFileSync(n2.sshLogPath, 'utf8').slice(sshLogBefore)).not.toMatch(/Accepted publickey/);
    expect(liveVersion(n2)).toBe(liveBefore);
    await api('PATCH', `/v1/nodes/${ids.sync2}`, { hostKey: node.hostKey });
    await reconcile();
    expect(await api('GET', `/v1/nodes/${ids.sync2}`)).toMatchObject({ drift: false, lastError: null });
  });

  it('a hand edit of a live map is found as drift and repaired by the reconcile', async () => {
    const live = path.join(n1.configDir, 'relayplane', 'current');
    const original = readFileSync(path.join(live, 'sasl_passwd'), 'utf8');
    const edited = original.replace(/^@a\.test .*$/m, '@a.test userA:wrong-password');
    expect(edited).not.toBe(original);
    const r = await n1.exec(
      `cd ${live} && printf '%s' '${edited.replace(/'/g, `'\\''`)}' > sasl_passwd && postmap hash:sasl_passwd`,
    );
    expect(r.code, r.stderr).toBe(0);
    const since = new Date();
    await reconcile();
    const d = await nextFinished('reconcile', since);
    expect(d.nodes.find((n) => n.nodeName === 'sync1')!.state).toBe('live');
    expect(stepsOf(d, 'sync1')).toEqual(expect.arrayContaining(['verify-live', 'repair-files', 'reload', 'verify']));
    expect(d.nodes.find((n) => n.nodeName === 'sync1')!.steps.find((s) => s.step === 'verify-live')!.detail).toMatch(
      /files differ from the release: sasl_passwd/,
    );
    expect(d.nodes.find((n) => n.nodeName === 'sync2')!.state).toBe('unchanged');
    expect(readFileSync(path.join(live, 'sasl_passwd'), 'utf8')).toBe(original);
    expect((await deliver(n1, 'after-repair@a.test', sh1)).authUser).toBe('userA');
  });

  it('rotates a credential while mail flows: the smart host sees the new user after the deploy, no message lost', async () => {
    const staged = await api('POST', `/v1/relays/${ids.relay1}/credentials`, {
      username: 'userA2',
      secret: 'pw-a2',
      domainId: ids['a.test'],
    });
    expect(staged.status).toBe('staged');
    const sent: Array<{ messageId: string; at: number }> = [];
    let flowing = true;
    const flow = (async () => {
      for (let i = 0; flowing && i < 200; i++) {
        const n = i % 2 === 0 ? n1 : n2;
        const s = await sendMail(n, { from: `flow${i}@a.test`, to: ['rcpt@dest.test'], subject: `flow ${i}` });
        sent.push({ messageId: s.messageId, at: Date.now() });
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const since = new Date();
    await api('POST', `/v1/credentials/${staged.id}/activate`);
    expect((await api('GET', `/v1/credentials/${ids['cred:a.test']}`)).status).toBe('retiring');
    const change = await nextFinished('change', since);
    expect(change.state, JSON.stringify(change)).toBe('succeeded');
    const deployedAt = Date.now();
    await new Promise((r) => setTimeout(r, 500));
    flowing = false;
    await flow;
    // Every message arrived, each authenticated as one of the two users; those sent after the deploy as the new one.
    const received = await Promise.all(sent.map((s) => sh1.waitFor((m) => m.messageId === s.messageId, 20_000)));
    expect(received).toHaveLength(sent.length);
    for (const m of received) expect(['userA', 'userA2']).toContain(m.authUser);
    const after = sent.map((s, i) => ({ ...s, user: received[i]!.authUser })).filter((s) => s.at > deployedAt);
    expect(after.length).toBeGreaterThan(0);
    for (const s of after) expect(s.user).toBe('userA2');
    expect((await deliver(n2, 'post-rotation@a.test', sh1)).authUser).toBe('userA2');
    // Every enabled node runs a version without the old credential: it is retired.
    const old = await waitUntil(
      async () => {
        const c = await api('GET', `/v1/credentials/${ids['cred:a.test']}`);
        return c.status === 'retired' ? c : undefined;
      },
      10_000,
      'the old credential to be retired',
    );
    expect(old.retiredAt).not.toBeNull();
    const audit = await api('GET', '/v1/audit-events?resourceType=deployment&limit=100');
    expect(audit.items.map((e: { action: string }) => e.action)).toEqual(
      expect.arrayContaining(['deployment.requested', 'deployment.finished']),
    );
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/relayplane_node_deploys_total\{outcome="live"\} \d+/);
  });
});
