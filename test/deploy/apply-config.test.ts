/**
 * apply on a real Postfix node (test/lab): the main.cf and master.cf that validate edited and
 * checked in the release are renamed into place while the live files still match what validate
 * read, and the result is byte for byte what the postconf edits give; a hand edit made after
 * validate is kept (the edits run on the live files instead).
 */
import { readFileSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeLayout, type NodeLayout } from '../../src/deploy/layout.js';
import { stagedConfigProblems, stagedConfigScript } from '../../src/deploy/validate-step.js';
import type { ConfigPlan, DesiredConfig } from '../../src/deploy/postfix-config.js';
import { applyCommand, restoreConfig, scratchDirOf } from '../../src/deploy/release-store.js';
import { connectNode, sh, type NodeConnection } from '../../src/ssh/index.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';

const labOk = labGate('apply lab tests');

const desired: DesiredConfig = {
  params: [['default_destination_concurrency_limit', '7']],
  services: [
    {
      key: 'rp_limited/unix',
      fields: 'rp_limited unix - - n - - smtp',
      params: [['smtp_tls_security_level', 'encrypt']],
    },
  ],
};
const plan: ConfigPlan = {
  setParams: desired.params,
  removeParams: [],
  writeServices: desired.services,
  removeServices: [],
};

describe.skipIf(!labOk)('apply of main.cf and master.cf on a real Postfix node', () => {
  let sink: SmartHost;
  let node: PostfixNode;
  let conn: NodeConnection;
  let layout: NodeLayout;
  let releases = 0;

  const live = (f: string) => path.join(node.configDir, f);
  const read = (f: string) => readFileSync(f, 'utf8');
  const run = async (cmd: string) => {
    const r = await conn.exec(cmd);
    expect(r.code, r.stderr).toBe(0);
    return r;
  };
  /** A release dir with validate's scratch dir in it, as the deployer leaves it before apply. */
  const validated = async (): Promise<string> => {
    const release = path.join(layout.releases, `${String(++releases).padStart(64, '0')}`);
    await run(sh('mkdir', '-p', path.join(release, '.relayplane')));
    const r = await run(
      stagedConfigScript({ scratchDir: scratchDirOf(release), configDir: node.configDir, plan, desired }),
    );
    expect(stagedConfigProblems(r, desired)).toEqual([]);
    return release;
  };

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    node = await startPostfixNode({ name: 'apply1', sinkRelayhost: sink.nexthop, tlsCaCerts: [sink.caCertPem] });
    conn = await connectNode({ ...node.ssh, hostKey: node.ssh.hostKeyLine });
    layout = nodeLayout(node.configDir);
  });

  afterAll(async () => {
    conn?.close();
    await node?.stop();
    await stopAllLabNodes();
    await sink?.close();
  });

  it('renames the checked files into place, the same bytes as the postconf edits, and keeps what it replaced', async () => {
    const original = { main: read(live('main.cf')), master: read(live('master.cf')) };
    const release = await validated();
    const checkedMain = statSync(path.join(scratchDirOf(release), 'main.cf')).ino;

    const r = await run(applyCommand(layout, release, plan, true));
    expect(r.stdout).toContain('backed-up');
    // Moved, not edited again: the live main.cf is the file validate checked.
    expect(statSync(live('main.cf')).ino).toBe(checkedMain);
    expect(existsSync(scratchDirOf(release))).toBe(false);
    expect(read(path.join(release, '.relayplane', 'before', 'main.cf'))).toBe(original.main);
    expect(read(path.join(release, '.relayplane', 'before', 'master.cf'))).toBe(original.master);
    // main.cf keeps the date validate gave it: Postfix does not wait for a file "being edited".
    expect(Date.now() - statSync(live('main.cf')).mtimeMs).toBeGreaterThan(5_000);
    const installed = { main: read(live('main.cf')), master: read(live('master.cf')) };

    // The same plan by postconf on the live files, from the same start.
    await restoreConfig(conn, layout, release);
    expect(read(live('main.cf'))).toBe(original.main);
    const edited = path.join(layout.releases, `${String(++releases).padStart(64, '0')}`);
    await run(sh('mkdir', '-p', path.join(edited, '.relayplane')));
    expect((await run(applyCommand(layout, edited, plan, false))).stdout).toContain('backed-up');
    expect({ main: read(live('main.cf')), master: read(live('master.cf')) }).toEqual(installed);
    expect(installed.main).toMatch(/^default_destination_concurrency_limit = 7$/m);
    expect(installed.master).toMatch(/^rp_limited +unix .*\n +-o smtp_tls_security_level=encrypt$/m);
    await restoreConfig(conn, layout, edited);
  });

  it('keeps a hand edit made after validate: the edits run on the live files', async () => {
    const release = await validated();
    await run(`${sh('postconf', '-c', node.configDir, '-e', 'relayplane_hand_edit=kept')}`);
    const handEdited = read(live('main.cf'));

    const r = await run(applyCommand(layout, release, plan, true));
    expect(r.stdout).toContain('backed-up');
    const now = read(live('main.cf'));
    expect(now).toMatch(/^relayplane_hand_edit = kept$/m);
    expect(now).toMatch(/^default_destination_concurrency_limit = 7$/m);
    expect(read(live('master.cf'))).toMatch(/^rp_limited +unix /m);
    // The backup is the live file as apply found it, and validate's copies are gone.
    expect(read(path.join(release, '.relayplane', 'before', 'main.cf'))).toBe(handEdited);
    expect(existsSync(scratchDirOf(release))).toBe(false);
    await restoreConfig(conn, layout, release);
    expect(read(live('main.cf'))).toBe(handEdited);
  });
});
