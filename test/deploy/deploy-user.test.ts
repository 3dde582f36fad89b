/**
 * A node whose SSH user is a dedicated deploy user, not root: the connection's shell runs as root
 * through `sudo -n /bin/sh`, with exactly the sudoers rules README.md gives. A user without them
 * fails with sudo's own reason, before anything is written.
 *
 * Creates two system users (kept: harmless without rights) and one sudoers file (removed after).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle } from '../../src/deploy/index.js';
import { connectNode, type NodeConnection } from '../../src/ssh/index.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { buildBundle } from './bundles.js';

const DEPLOY_USER = 'rplabdeploy';
const NO_SUDO_USER = 'rplabnosudo';
const SUDOERS = '/etc/sudoers.d/relayplane-lab-deploy';
const labOk = labGate('deploy user through sudo', ['sudo', 'useradd', 'visudo']) && process.getuid?.() === 0;

function ensureUser(name: string): void {
  try {
    execFileSync('id', [name], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/bin/sh', name]);
  }
  // No password, but not locked ('!'): sshd without PAM refuses even key logins to locked accounts.
  execFileSync('usermod', ['--password', '*', name]);
}

describe.skipIf(!labOk)('a node reached as a deploy user with sudo rights', () => {
  let sink: SmartHost;
  let node: PostfixNode;
  const connections: NodeConnection[] = [];

  beforeAll(async () => {
    ensureUser(DEPLOY_USER);
    ensureUser(NO_SUDO_USER);
    // README.md, "Nodes and deployments": the rules a deploy user needs.
    const rules = `Defaults:${DEPLOY_USER} env_keep += "MAIL_CONFIG"\n${DEPLOY_USER} ALL=(root) NOPASSWD: /bin/sh\n`;
    writeFileSync(SUDOERS, rules, { mode: 0o440 });
    execFileSync('visudo', ['-cf', SUDOERS]);
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    node = await startPostfixNode({ name: 'deployuser', sinkRelayhost: sink.nexthop, tlsCaCerts: [sink.caCertPem] });
    // sshd reads a user's authorized keys as that user: let them reach the lab's (public keys only).
    const sshDir = path.join(node.baseDir, 'ssh');
    for (const dir of [node.baseDir, sshDir]) chmodSync(dir, 0o711);
    chmodSync(path.join(sshDir, 'authorized_keys'), 0o644);
  });

  afterAll(async () => {
    for (const c of connections) c.close();
    if (existsSync(SUDOERS)) rmSync(SUDOERS);
    await node?.stop();
    await stopAllLabNodes();
    await sink?.close();
  });

  const connectAs = async (username: string) => {
    const conn = await connectNode({ ...node.ssh, username, hostKey: node.ssh.hostKeyFingerprint });
    connections.push(conn);
    return conn;
  };

  it('deploys as root through sudo: the release is root-owned and live', async () => {
    const conn = await connectAs(DEPLOY_USER);
    const who = await conn.exec('id -u; echo "$MAIL_CONFIG"');
    expect(who.stdout).toBe(`0\n${node.configDir}\n`);
    const outcome = await deployBundle(
      conn,
      buildBundle([{ domain: 'a.test', nexthop: sink.nexthop, user: 'u', password: 'p' }]),
      { configDir: node.configDir },
    );
    expect(outcome.state, outcome.error).toBe('live');
    const secret = statSync(`${node.configDir}/relayplane/current/sasl_passwd`);
    expect({ uid: secret.uid, mode: secret.mode & 0o777 }).toEqual({ uid: 0, mode: 0o600 });
  });

  it('a user without the sudo rule fails with sudo reason, and nothing is written', async () => {
    const conn = await connectAs(NO_SUDO_USER);
    const before = statSync(`${node.configDir}/relayplane/current/VERSION`).mtimeMs;
    const outcome = await deployBundle(
      conn,
      buildBundle([{ domain: 'b.test', nexthop: sink.nexthop, user: 'u', password: 'p' }]),
      { configDir: node.configDir },
    );
    expect(outcome.state).toBe('failed');
    expect(outcome.error).toMatch(/remote shell on .* ended: .*sudo/);
    expect(statSync(`${node.configDir}/relayplane/current/VERSION`).mtimeMs).toBe(before);
  });
});
