/**
 * Proves the end-to-end lab harness: two loopback smart hosts (STARTTLS and implicit TLS), a
 * catch-all sink, and two real Postfix nodes configured by hand over SSH (pinned host key) the way
 * the control plane will: sender_dependent_relayhost_maps + sasl_passwd (+ a sender-dependent
 * transport for the implicit-TLS host), postmap, postconf, postfix reload.
 */
import { randomBytes } from 'node:crypto';
import type { NodeSSH } from 'node-ssh';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMaillog, waitForLog, waitForLogLine } from './log.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from './postfix-node.js';
import { labGate } from './requirements.js';
import { startSmartHost, type SmartHost } from './smart-host.js';
import { connectNodeSsh, sshFingerprint } from './ssh.js';
import { sendMail } from './submit.js';

const labOk = labGate('lab tests');

const USERS_SH1 = { userA: 'pwA', userB: 'p@ss:w rd' }; // only the first ':' splits user and password
const USERS_SH2 = { userC: 'pwC' };

describe.skipIf(!labOk)('lab harness: real Postfix nodes relaying to loopback smart hosts', () => {
  let sink: SmartHost | undefined;
  let sh1: SmartHost | undefined;
  let sh2: SmartHost | undefined;
  const nodes: PostfixNode[] = [];
  const sessions = new Map<string, NodeSSH>();
  const run = randomBytes(3).toString('hex');

  const host = (h: SmartHost | undefined): SmartHost => {
    if (h === undefined) throw new Error('smart host not started');
    return h;
  };

  beforeAll(async () => {
    sink = await startSmartHost({ name: 'sink', tls: 'starttls', users: {}, authOptional: true });
    sh1 = await startSmartHost({ name: 'sh1', tls: 'starttls', users: { ...USERS_SH1 } });
    sh2 = await startSmartHost({ name: 'sh2', tls: 'implicit', users: { ...USERS_SH2 } });
    const cas = [sink.caCertPem, sh1.caCertPem, sh2.caCertPem];
    const started = await Promise.allSettled(
      ['node1', 'node2'].map((name) => startPostfixNode({ name, sinkRelayhost: host(sink).nexthop, tlsCaCerts: cas })),
    );
    for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  });

  afterAll(async () => {
    for (const s of sessions.values()) s.dispose();
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await stopAllLabNodes();
    await Promise.allSettled([sink, sh1, sh2].map((h) => h?.close()));
  });

  it('pins the SSH host key, refuses a wrong fingerprint, and sessions act on the node instance', async () => {
    for (const node of nodes) {
      // The helper's fingerprint of the raw key equals what ssh-keygen -lf printed.
      const raw = Buffer.from(node.ssh.hostKeyLine.split(' ')[1]!, 'base64');
      expect(sshFingerprint(raw)).toBe(node.ssh.hostKeyFingerprint);

      await expect(connectNodeSsh(node, { expectedFingerprint: `SHA256:${'A'.repeat(43)}` })).rejects.toThrow();

      const ssh = await connectNodeSsh(node);
      sessions.set(node.name, ssh);
      const r = await ssh.execCommand('echo "$MAIL_CONFIG"; postconf -h config_directory syslog_name; id -u');
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n')).toEqual([node.configDir, node.configDir, node.syslogName, '0']);
    }
  });

  it('configures sender-dependent routes and credentials over SSH (postmap, postconf, reload)', async () => {
    await Promise.all(
      nodes.map(async (node) => {
        const ssh = sessions.get(node.name) ?? (await connectNodeSsh(node));
        sessions.set(node.name, ssh);
        const put = async (file: string, content: string) => {
          const r = await ssh.execCommand(`umask 077; cat > "$MAIL_CONFIG/${file}"`, { stdin: content });
          expect(r.code, r.stderr).toBe(0);
        };
        await put(
          'sender_relay',
          [
            `@a.test ${host(sh1).nexthop}`,
            `@b.test ${host(sh1).nexthop}`,
            `@c.test ${host(sh2).nexthop}`,
            `@d.test ${host(sh1).nexthop}`,
            '',
          ].join('\n'),
        );
        await put(
          'sasl_passwd',
          [
            `@a.test userA:${USERS_SH1.userA}`,
            `@b.test userB:${USERS_SH1.userB}`,
            `@c.test userC:${USERS_SH2.userC}`,
            '@d.test userA:wrong-password',
            '',
          ].join('\n'),
        );
        await put('sender_transport', '@c.test smtps-out:\n');
        const script = [
          'set -e',
          'D="$MAIL_CONFIG"',
          'postmap "hash:$D/sender_relay" "hash:$D/sasl_passwd" "hash:$D/sender_transport"',
          `postconf -M 'smtps-out/unix=smtps-out unix - - n - - smtp'`,
          `postconf -P 'smtps-out/unix/smtp_tls_wrappermode=yes' 'smtps-out/unix/smtp_tls_security_level=encrypt' 'smtps-out/unix/syslog_name=${node.syslogName}/smtps-out'`,
          'postconf -e "sender_dependent_relayhost_maps = hash:$D/sender_relay" "smtp_sasl_password_maps = hash:$D/sasl_passwd" "sender_dependent_default_transport_maps = hash:$D/sender_transport"',
          'postfix reload',
          'postmap -q @c.test "hash:$D/sender_transport"',
          'postmap -q @b.test "hash:$D/sasl_passwd"',
        ].join('\n');
        const r = await ssh.execCommand(script);
        expect(r.code, r.stderr).toBe(0);
        // postmap exits 0 on warnings: its stderr must not have any.
        expect(r.stderr).not.toMatch(/postmap: warning/);
        expect(r.stdout.split('\n')).toEqual(['smtps-out:', `userB:${USERS_SH1.userB}`]);
        expect(await node.postconf(['-P', 'smtps-out/unix/smtp_tls_wrappermode'])).toBe(
          'smtps-out/unix/smtp_tls_wrappermode = yes\n',
        );
        // Like the control plane should: confirm in the log that master took the reload.
        await waitForLogLine(node, /\/master\[\d+\]: reload -- version/, 5000);
      }),
    );
  });

  it('relays each tenant through its smart host with its own SASL user (STARTTLS and implicit TLS)', async () => {
    const cases = [
      { domain: 'a.test', sh: () => host(sh1), user: 'userA', service: 'smtp' },
      { domain: 'b.test', sh: () => host(sh1), user: 'userB', service: 'smtp' },
      { domain: 'c.test', sh: () => host(sh2), user: 'userC', service: 'smtps-out/smtp' },
    ];
    await Promise.all(
      nodes.flatMap((node) =>
        cases.map(async (c) => {
          const from = `app-${run}@${c.domain}`;
          const to = `bob-${node.name}@dest.test`;
          const sent = await sendMail(node, { from, to: [to], subject: `${node.name} ${c.domain}` });
          expect(sent.queueId).toMatch(/^[0-9A-F]+$/);
          const msg = await c.sh().waitFor((m) => m.messageId === sent.messageId, 15_000);
          expect(msg.authUser).toBe(c.user);
          expect(msg.mailFrom).toBe(from);
          expect(msg.rcptTo).toEqual([to]);
          expect(msg.tlsProtocol).toMatch(/^TLSv1\.[23]$/);
          expect(msg.data).toContain(`Subject: ${node.name} ${c.domain}`);

          const entry = await waitForLog(node, (e) => e.queueId === sent.queueId && e.status !== 'deferred', 10_000);
          expect(entry).toMatchObject({
            status: 'sent',
            dsn: '2.0.0',
            to,
            from,
            service: c.service,
            relay: `127.0.0.1[127.0.0.1]:${c.sh().port}`,
            messageId: sent.messageId,
          });
          expect(entry.statusText).toBe(`250 2.0.0 Ok: queued as ${msg.id}`);
        }),
      ),
    );
    // One AUTH per message: sender-dependent authentication disables connection caching.
    expect(host(sh1).authAttempts.filter((a) => a.ok)).toHaveLength(4);
    expect(
      host(sh2)
        .authAttempts.filter((a) => a.ok)
        .map((a) => a.user),
    ).toEqual(['userC', 'userC']);
    expect(host(sink).received).toHaveLength(0);
    // The smart host certificates are trusted through smtp_tls_CAfile.
    expect(await readMaillog(nodes[0]!)).toMatch(/Trusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]/);
  });

  it('maps smart host replies to bounced / deferred, and bounce notices go to the sink', async () => {
    const node = nodes[0]!;
    const from = `bounce-test-${run}@a.test`;
    const rejected = await sendMail(node, { from, to: ['reject-me@dest.test'] });
    const deferred = await sendMail(node, { from, to: ['defer-me@dest.test'] });
    const [bounced, deferredEntry] = await Promise.all([
      waitForLog(node, (e) => e.queueId === rejected.queueId),
      waitForLog(node, (e) => e.queueId === deferred.queueId),
    ]);
    expect(bounced).toMatchObject({ status: 'bounced', dsn: '5.1.1', to: 'reject-me@dest.test', from });
    expect(deferredEntry).toMatchObject({ status: 'deferred', dsn: '4.2.0', to: 'defer-me@dest.test', from });

    // The non-delivery notice (null sender, no sender-dependent route) uses the catch-all relayhost.
    const notice = await host(sink).waitFor((m) => m.mailFrom === '' && m.rcptTo.includes(from), 15_000);
    expect(notice.authUser).toBeUndefined();
    expect(notice.data).toContain('reject-me@dest.test');

    const queue = await node.queue();
    expect(queue.map((q) => q.queue_id)).toContain(deferred.queueId);
  });

  it('follows run-time smart host modes, wrong credentials defer with 4.7.8, and a flush retries', async () => {
    const node = nodes[1]!;
    const wrong = await sendMail(node, { from: `x-${run}@d.test`, to: ['carol@dest.test'] });
    const wrongEntry = await waitForLog(node, (e) => e.queueId === wrong.queueId);
    expect(wrongEntry).toMatchObject({ status: 'deferred', dsn: '4.7.8' });
    expect(host(sh1).authAttempts).toContainEqual(expect.objectContaining({ user: 'userA', ok: false }));

    host(sh2).setMode('defer');
    const later = await sendMail(node, { from: `y-${run}@c.test`, to: ['dave@dest.test'] });
    const first = await waitForLog(node, (e) => e.queueId === later.queueId);
    expect(first).toMatchObject({ status: 'deferred', service: 'smtps-out/smtp' });

    host(sh2).setMode('accept');
    await node.flushQueue();
    const retried = await waitForLog(node, (e) => e.queueId === later.queueId && e.status === 'sent', 15_000);
    expect(retried.service).toBe('smtps-out/smtp');
    const msg = await host(sh2).waitFor((m) => m.messageId === later.messageId);
    expect(msg.authUser).toBe('userC');

    host(sh2).setMode('drop');
    const dropped = await sendMail(node, { from: `z-${run}@c.test`, to: ['erin@dest.test'] });
    expect(await waitForLog(node, (e) => e.queueId === dropped.queueId)).toMatchObject({
      status: 'deferred',
      statusText: expect.stringContaining('lost connection'),
    });
    host(sh2).setMode('reject', 'data');
    const refused = await sendMail(node, { from: `z-${run}@c.test`, to: ['frank@dest.test'] });
    expect(await waitForLog(node, (e) => e.queueId === refused.queueId)).toMatchObject({
      status: 'bounced',
      dsn: '5.6.0',
    });
    host(sh2).setMode('accept');
  });

  it('made no DNS lookups and kept every connection on loopback', async () => {
    for (const node of nodes) {
      const log = await readMaillog(node);
      expect(log).not.toMatch(/Name service error|Host or domain name not found|type=(MX|A|AAAA)|getaddrinfo|DNS/);
      for (const line of log.split('\n')) {
        const relay = / relay=([^,]+),/.exec(line)?.[1];
        if (relay !== undefined) expect(relay).toMatch(/^(127\.0\.0\.1\[127\.0\.0\.1\]:\d+|none)$/);
      }
    }
  });
});
