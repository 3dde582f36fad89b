/**
 * A node set up as admins' servers often are: root's `~/.bashrc` is slow (here `sleep 0.5`, like a
 * `pyenv init`) and sourced for every command sshd runs. The .bashrc appends a line to a file each
 * time it runs, so the test counts login shells instead of timing anything: a deploy (and the next
 * one on the same connection) starts the node's shell once, and the node check reports the cost.
 */
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle } from '../../src/deploy/index.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { connectNodeSsh } from '../lab/ssh.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { buildBundle } from './bundles.js';

const labOk = labGate('slow login shell');

describe.skipIf(!labOk)("a node whose login shell is slow (root's ~/.bashrc sleeps 0.5 s)", () => {
  let sink: SmartHost;
  let node: PostfixNode;
  let conn: NodeConnection | undefined;
  let starts: string;

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    node = await startPostfixNode({ name: 'slowlogin', sinkRelayhost: sink.nexthop, tlsCaCerts: [sink.caCertPem] });
    const home = path.join(node.baseDir, 'home');
    starts = path.join(home, 'shell-starts');
    await writeFile(starts, '');
    // Noise on stdout too, as a motd-ish dotfile would print.
    await appendFile(
      path.join(home, '.bashrc'),
      `sleep 0.5\necho started >> ${starts}\necho "Welcome to $(hostname)"\n`,
    );
  });

  afterAll(async () => {
    conn?.close();
    await node?.stop();
    await stopAllLabNodes();
    await sink?.close();
  });

  const startCount = async () => (await readFile(starts, 'utf8')).split('\n').filter((l) => l === 'started').length;

  it('sshd really runs the .bashrc for every command of a plain exec (what each deploy step paid before)', async () => {
    const ssh = await connectNodeSsh(node);
    try {
      const before = await startCount();
      for (let i = 0; i < 3; i++) expect((await ssh.execCommand('true')).code).toBe(0);
      expect((await startCount()) - before).toBe(3);
    } finally {
      ssh.dispose();
    }
  });

  it('a deploy, and the next one on the same connection, start the node shell once in all', async () => {
    const before = await startCount();
    conn = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyFingerprint });
    const route = { domain: 'a.test', nexthop: sink.nexthop, user: 'u', password: 'p' };
    const first = await deployBundle(conn, buildBundle([route]), { configDir: node.configDir });
    expect(first.state, first.error).toBe('live');
    expect(first.steps.length).toBeGreaterThanOrEqual(10);
    const second = await deployBundle(conn, buildBundle([route, { ...route, domain: 'b.test' }]), {
      configDir: node.configDir,
    });
    expect(second.state, second.error).toBe('live');
    expect(second.changed).toBe(true);
    // A change of tables only: main.cf and master.cf stay as they are, so postfix check is not run.
    expect(first.steps.find((x) => x.step === 'validate')?.detail).toBeUndefined();
    expect(second.steps.find((x) => x.step === 'validate')?.detail).toMatch(/tables only/);
    expect((await startCount()) - before).toBe(1);
    // The one start paid the .bashrc's sleep.
    expect(conn.shellStartMs?.()).toBeGreaterThanOrEqual(500);
  });

  it('the node check reports what the login costs and warns about it', async () => {
    const t: TestApp = await createTestApp({ ssh: { privateKeyPath: node.ssh.privateKeyPath } });
    try {
      const { headers } = await tokenFor(t.app, ['admin']);
      const created = await t.app.inject({
        method: 'POST',
        url: '/v1/nodes',
        headers,
        payload: {
          name: 'slowlogin',
          sshHost: node.ssh.host,
          sshPort: node.ssh.port,
          hostKey: node.ssh.hostKeyLine,
          configDir: node.configDir,
        },
      });
      expect(created.statusCode, created.body).toBe(201);
      const before = await startCount();
      const check = await t.app.inject({ method: 'POST', url: `/v1/nodes/${created.json().id}/check`, headers });
      expect(check.statusCode, check.body).toBe(200);
      const body = check.json();
      expect(body.ok, JSON.stringify(body.problems)).toBe(true);
      expect(body.login.shellStartMs).toBeGreaterThanOrEqual(500);
      expect(body.login.commandMs).toEqual(expect.any(Number));
      expect(body.warnings).toEqual([expect.stringMatching(/starting the node's shell took \d+ ms .*dotfiles/)]);
      expect((await startCount()) - before).toBe(1);
    } finally {
      await t.close();
    }
  });
});
