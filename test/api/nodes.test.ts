/**
 * Nodes and deployments through the API on a real PostgreSQL, without Postfix: validation, ETags,
 * admin-only access, the deployment queue, the sync worker's leader election and its handling of
 * an unreachable node. The lab proves the deploys themselves (test/deploy/sync-worker.test.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, tokenFor } from '../helpers/app.js';
import { createCredential, createDomain, createRelay, createTenant } from '../helpers/fixtures.js';

const HOST_KEY_LINE = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
const fingerprint = `SHA256:${'Q'.repeat(43)}`;

let t: TestApp;
let admin: Awaited<ReturnType<typeof tokenFor>>;
let keyDir: string;
let keyPath: string | undefined;

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

function sshKeygen(file: string): boolean {
  try {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  keyDir = mkdtempSync(path.join(os.tmpdir(), 'relayplane-nodes-test-'));
  keyPath = sshKeygen(path.join(keyDir, 'id')) ? path.join(keyDir, 'id') : undefined;
  t = await createTestApp();
  admin = await tokenFor(t.app, ['admin']);
});
afterAll(async () => {
  await t?.close();
  rmSync(keyDir, { recursive: true, force: true });
});

const post = (url: string, payload?: object, headers = admin.headers) =>
  t.app.inject({ method: 'POST', url, headers, ...(payload === undefined ? {} : { payload }) });

describe('nodes', () => {
  it('registers a node with a pinned key line, shows desired and live versions, and drift', async () => {
    const created = await post('/v1/nodes', {
      name: 'mx1',
      sshHost: 'MX1.Example.NET',
      sshPort: 2222,
      hostKey: `${HOST_KEY_LINE} root@mx1`,
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.headers.etag).toBe('"1"');
    const node = created.json();
    expect(node).toMatchObject({
      name: 'mx1',
      sshHost: 'mx1.example.net',
      sshPort: 2222,
      sshUser: 'root',
      hostKey: HOST_KEY_LINE,
      configDir: '/etc/postfix',
      enabled: true,
      liveVersion: null,
      drift: true,
      lastError: null,
    });
    expect(node.hostKeyFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(node.desiredVersion).toMatch(/^[0-9a-f]{64}$/);
    const config = await t.app.inject({ method: 'GET', url: '/v1/config', headers: admin.headers });
    expect(node.desiredVersion).toBe(config.json().version);

    const list = await t.app.inject({ method: 'GET', url: '/v1/nodes', headers: admin.headers });
    expect(list.statusCode).toBe(200);
    expect(list.json().items.map((n: { id: string }) => n.id)).toContain(node.id);
    const audit = await t.app.inject({
      method: 'GET',
      url: `/v1/audit-events?resourceType=node`,
      headers: admin.headers,
    });
    expect(audit.json().items.map((e: { action: string }) => e.action)).toContain('node.created');
  });

  it.each([
    [{ hostKey: 'not a key' }, 'body/hostKey'],
    [{ hostKey: 'ssh-dss AAAAB3NzaC1kc3MAAACBAP' }, 'body/hostKey'],
    // An ed25519 label on an RSA blob.
    [{ hostKey: 'ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ' }, 'body/hostKey'],
    [{ hostKey: 'SHA256:tooshort' }, 'body/hostKey'],
    [{ sshHost: '[::1]' }, 'body/sshHost'],
    [{ sshHost: 'bad host' }, 'body/sshHost'],
    [{ configDir: 'etc/postfix' }, 'body/configDir'],
    [{ configDir: '/etc/../root' }, 'body/configDir'],
    [{ configDir: '/etc/post fix' }, 'body/configDir'],
    [{ configDir: '/etc/postfix/' }, 'body/configDir'],
    [{ sshUser: 'ro ot' }, 'body/sshUser'],
  ])('refuses %j', async (override, field) => {
    const response = await post('/v1/nodes', {
      name: `n-${Math.random()}`,
      sshHost: '127.0.0.1',
      hostKey: fingerprint,
      ...override,
    });
    expect(response.statusCode, response.body).toBe(400);
    expect(JSON.stringify(response.json())).toContain(field);
  });

  it('refuses a second node with the same name, and tenants outright', async () => {
    expect((await post('/v1/nodes', { name: 'dup', sshHost: '10.0.0.1', hostKey: fingerprint })).statusCode).toBe(201);
    const again = await post('/v1/nodes', { name: 'dup', sshHost: '10.0.0.2', hostKey: fingerprint });
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('node-name-taken');
    const tenant = await createTenant(t.app, admin.headers);
    const own = await tokenFor(t.app, ['tenant'], tenant.id);
    expect((await t.app.inject({ method: 'GET', url: '/v1/nodes', headers: own.headers })).statusCode).toBe(403);
    expect((await post('/v1/deployments', undefined, own.headers)).statusCode).toBe(403);
  });

  it('updates with If-Match; a new address forgets the live version; deletes', async () => {
    const node = (await post('/v1/nodes', { name: 'edit-me', sshHost: '192.0.2.10', hostKey: fingerprint })).json();
    await t.prisma.node.update({ where: { id: node.id }, data: { liveVersion: 'a'.repeat(64) } });
    const stale = await t.app.inject({
      method: 'PATCH',
      url: `/v1/nodes/${node.id}`,
      headers: { ...admin.headers, 'if-match': '"7"' },
      payload: { enabled: false },
    });
    expect(stale.statusCode).toBe(412);
    const disabled = await t.app.inject({
      method: 'PATCH',
      url: `/v1/nodes/${node.id}`,
      headers: { ...admin.headers, 'if-match': '"1"' },
      payload: { enabled: false },
    });
    expect(disabled.statusCode, disabled.body).toBe(200);
    expect(disabled.headers.etag).toBe('"2"');
    expect(disabled.json()).toMatchObject({ enabled: false, liveVersion: 'a'.repeat(64) });
    const moved = await t.app.inject({
      method: 'PATCH',
      url: `/v1/nodes/${node.id}`,
      headers: admin.headers,
      payload: { sshHost: '192.0.2.11' },
    });
    expect(moved.json()).toMatchObject({ sshHost: '192.0.2.11', liveVersion: null });
    expect(
      (await t.app.inject({ method: 'PATCH', url: `/v1/nodes/${node.id}`, headers: admin.headers, payload: {} }))
        .statusCode,
    ).toBe(400);
    expect(
      (
        await t.app.inject({
          method: 'DELETE',
          url: `/v1/nodes/${node.id}`,
          headers: { ...admin.headers, 'if-match': '"1"' },
        })
      ).statusCode,
    ).toBe(412);
    expect(
      (await t.app.inject({ method: 'DELETE', url: `/v1/nodes/${node.id}`, headers: admin.headers })).statusCode,
    ).toBe(204);
    expect(
      (await t.app.inject({ method: 'GET', url: `/v1/nodes/${node.id}`, headers: admin.headers })).statusCode,
    ).toBe(404);
  });

  it('check: needs the control plane key; reports an unreachable node as an answer', async () => {
    const node = (
      await post('/v1/nodes', {
        name: 'unreachable',
        sshHost: '127.0.0.1',
        sshPort: await closedPort(),
        hostKey: fingerprint,
      })
    ).json();
    const noKey = await post(`/v1/nodes/${node.id}/check`);
    expect(noKey.statusCode).toBe(422);
    expect(noKey.json().code).toBe('ssh-key-missing');
    if (keyPath === undefined) return; // no ssh-keygen here
    const withKey = await createTestApp({ shareWith: t, ssh: { privateKeyPath: keyPath, connectTimeoutMs: 2000 } });
    try {
      const adminB = await tokenFor(withKey.app, ['admin']);
      const check = await withKey.app.inject({
        method: 'POST',
        url: `/v1/nodes/${node.id}/check`,
        headers: adminB.headers,
      });
      expect(check.statusCode, check.body).toBe(200);
      expect(check.json()).toMatchObject({
        ok: false,
        reachable: false,
        hostKey: { pinned: fingerprint, presented: null, matches: null },
      });
      expect(check.json().problems.join(' ')).toMatch(/ECONNREFUSED/);
      const after = (
        await withKey.app.inject({ method: 'GET', url: `/v1/nodes/${node.id}`, headers: adminB.headers })
      ).json();
      expect(after.lastError).toMatch(/ECONNREFUSED/);
      expect(after.lastCheckAt).not.toBeNull();
      expect(JSON.stringify(withKey.logs)).not.toContain('PRIVATE KEY');
    } finally {
      await withKey.close();
    }
  });
});

describe('deployments', () => {
  it('queues a manual deployment (202), lists newest first with a cursor, reads one', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await post('/v1/deployments');
      expect(response.statusCode, response.body).toBe(202);
      expect(response.json()).toMatchObject({
        reason: 'manual',
        state: 'pending',
        requestedBy: admin.key.id,
        nodes: [],
        error: null,
      });
      ids.push(response.json().id);
    }
    const first = await t.app.inject({ method: 'GET', url: '/v1/deployments?limit=2', headers: admin.headers });
    expect(first.statusCode).toBe(200);
    const page1 = first.json();
    expect(page1.items.map((d: { id: string }) => d.id)).toEqual([ids[2], ids[1]]);
    const second = await t.app.inject({
      method: 'GET',
      url: `/v1/deployments?limit=2&cursor=${page1.next_cursor}`,
      headers: admin.headers,
    });
    expect(second.json().items.map((d: { id: string }) => d.id)[0]).toBe(ids[0]);
    expect(
      (await t.app.inject({ method: 'GET', url: '/v1/deployments?cursor=bogus', headers: admin.headers })).statusCode,
    ).toBe(400);
    const one = await t.app.inject({ method: 'GET', url: `/v1/deployments/${ids[0]}`, headers: admin.headers });
    expect(one.json()).toMatchObject({ id: ids[0], version: page1.items[0].version });
    expect(
      (
        await t.app.inject({
          method: 'GET',
          url: `/v1/deployments/${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`,
          headers: admin.headers,
        })
      ).statusCode,
    ).toBe(404);
    const audit = await t.app.inject({
      method: 'GET',
      url: '/v1/audit-events?resourceType=deployment',
      headers: admin.headers,
    });
    expect(audit.json().items.filter((e: { action: string }) => e.action === 'deployment.requested')).toHaveLength(3);
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toContain('relayplane_node_deploy_duration_seconds');
  });
});

describe('the sync worker without Postfix', () => {
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    const ssh = {
      privateKeyPath: keyPath ?? '/nonexistent',
      connectTimeoutMs: 1000,
      retry: { attempts: 2, baseDelayMs: 50 },
    };
    a = await createTestApp({ ssh, sync: { debounceMs: 100, leaderPollMs: 200 } });
    b = await createTestApp({ ssh, sync: { debounceMs: 100, leaderPollMs: 200 }, shareWith: a });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  const waitFor = async <T>(fn: () => Promise<T | undefined | false>, what: string, ms = 10_000): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it('elects one leader among two API processes; the other takes over when it goes', async () => {
    await waitFor(async () => a.app.syncWorker!.isLeader || b.app.syncWorker!.isLeader, 'a leader');
    expect(a.app.syncWorker!.isLeader && b.app.syncWorker!.isLeader).toBe(false);
    const [leader, follower] = a.app.syncWorker!.isLeader ? [a, b] : [b, a];
    await leader.app.syncWorker!.stop();
    await waitFor(async () => follower.app.syncWorker!.isLeader, 'the follower to lead');
    await leader.app.syncWorker!.start();
    await new Promise((r) => setTimeout(r, 500));
    expect(leader.app.syncWorker!.isLeader).toBe(false);
  });

  it('retires a replaced credential at once when no node is enabled', async () => {
    const adminA = await tokenFor(a.app, ['admin']);
    const tenant = await createTenant(a.app, adminA.headers);
    const relay = await createRelay(a.app, adminA.headers, { host: '127.0.0.1', port: 2525 });
    const domain = await createDomain(a.app, adminA.headers, tenant.id, { relayId: relay.id });
    const first = await createCredential(a.app, adminA.headers, relay.id, { domainId: domain.id });
    const second = await createCredential(a.app, adminA.headers, relay.id, { domainId: domain.id });
    await a.app.inject({ method: 'POST', url: `/v1/credentials/${second.id}/activate`, headers: adminA.headers });
    const retired = await waitFor(async () => {
      const row = await a.prisma.relayCredential.findUnique({ where: { id: first.id } });
      return row?.status === 'retired' ? row : undefined;
    }, 'the old credential to be retired');
    expect(retired.retiredAt).not.toBeNull();
  });

  it('a change deploys to every enabled node; an unreachable one fails after bounded retries; requests are serialized', async () => {
    const adminA = await tokenFor(a.app, ['admin']);
    const adminB = await tokenFor(b.app, ['admin']);
    const port = await closedPort();
    await a.app.inject({
      method: 'POST',
      url: '/v1/nodes',
      headers: adminA.headers,
      payload: { name: 'down', sshHost: '127.0.0.1', sshPort: port, hostKey: fingerprint },
    });
    const change = await waitFor(
      async () =>
        (await a.prisma.deployment.findFirst({
          where: { reason: 'change', state: { in: ['failed', 'partial', 'succeeded'] } },
          include: { nodes: true },
        })) ?? undefined,
      'a change deployment',
    );
    expect(change.state).toBe('failed');
    expect(change.nodes).toEqual([
      expect.objectContaining({ nodeName: 'down', state: 'failed', attempts: keyPath === undefined ? 0 : 2 }),
    ]);
    expect(change.nodes[0]!.error).toMatch(keyPath === undefined ? /cannot be read/ : /ECONNREFUSED/);

    // Two deploys asked for at the same moment, through both processes: one deployer runs them one after the other.
    const [r1, r2] = await Promise.all([
      a.app.inject({ method: 'POST', url: '/v1/deployments', headers: adminA.headers }),
      b.app.inject({ method: 'POST', url: '/v1/deployments', headers: adminB.headers }),
    ]);
    expect([r1.statusCode, r2.statusCode]).toEqual([202, 202]);
    const done = await waitFor(async () => {
      const rows = await a.prisma.deployment.findMany({
        where: { id: { in: [r1.json().id, r2.json().id] } },
        orderBy: { startedAt: 'asc' },
      });
      return rows.every((r) => r.finishedAt !== null) ? rows : undefined;
    }, 'both manual deployments');
    expect(done[0]!.finishedAt!.getTime()).toBeLessThanOrEqual(done[1]!.startedAt!.getTime());
    const node = (await a.app.inject({ method: 'GET', url: '/v1/nodes', headers: adminA.headers }))
      .json()
      .items.find((n: { name: string }) => n.name === 'down');
    expect(node).toMatchObject({ drift: true, liveVersion: null });
    expect(node.lastError).not.toBeNull();
    const metrics = await b.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/relayplane_deployments_total\{reason="(change|manual)",state="failed"\}/);
  });
});
