/**
 * Domain onboarding end to end: a domain created through the API is not compiled while unverified,
 * so a real Postfix node refuses its senders and nothing leaves through any relay; once its DNS
 * records are published (a real DNS server, dnsmasq on loopback) and verified, the next deploy
 * routes its mail through its relay with its own credential.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { startDnsServer, type DnsServer, type ZoneRecord } from '../helpers/dns-server.js';
import { startPostfixNode, stopAllLabNodes, type PostfixNode } from '../lab/postfix-node.js';
import { labGate } from '../lab/requirements.js';
import { startSmartHost, type SmartHost } from '../lab/smart-host.js';
import { sendMail } from '../lab/submit.js';

const labOk = labGate('onboarding e2e', ['dnsmasq']);

describe.skipIf(!labOk)('onboarding: unverified mail stays, verified mail leaves through its relay', () => {
  let t: TestApp;
  let dns: DnsServer;
  let sink: SmartHost;
  let relayHost: SmartHost;
  let node: PostfixNode;
  let headers: Record<string, string>;

  const api = async <T = Record<string, unknown>>(method: 'GET' | 'POST' | 'PUT', url: string, payload?: object) => {
    const r = await t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
    if (r.statusCode >= 300) throw new Error(`${method} ${url} → ${r.statusCode}: ${r.body}`);
    return r.json<T>();
  };
  const deployed = async () => {
    await t.app.jobs.sync.handlers.runChange();
    const { items } = await api<{
      items: { liveVersion: string | null; desiredVersion: string | null; lastError: string | null }[];
    }>('GET', '/v1/nodes');
    expect(items[0]?.liveVersion, JSON.stringify(items[0])).toBe(items[0]?.desiredVersion);
  };

  beforeAll(async () => {
    dns = await startDnsServer([]);
    sink = await startSmartHost({ name: 'obsink', tls: 'starttls', users: {}, authOptional: true });
    relayHost = await startSmartHost({ name: 'obrelay', tls: 'starttls', users: { 'onboard-user': 'onboard pw' } });
    node = await startPostfixNode({
      name: 'onboard1',
      sinkRelayhost: sink.nexthop,
      tlsCaCerts: [sink.caCertPem, relayHost.caCertPem],
    });
    t = await createTestApp({
      dnsServers: [dns.server],
      ssh: {
        privateKeyPath: node.ssh.privateKeyPath,
        connectTimeoutMs: 3000,
        retry: { attempts: 2, baseDelayMs: 200 },
      },
    });
    headers = (await tokenFor(t.app, ['admin'])).headers;
    const { version: _v, updatedAt: _u, ...settings } = await api('GET', '/v1/settings');
    await api('PUT', '/v1/settings', { ...settings, inetProtocols: 'ipv4', addressPreference: 'ipv4' });
    await api('POST', '/v1/nodes', {
      name: node.name,
      sshHost: '127.0.0.1',
      sshPort: node.ssh.port,
      hostKey: node.ssh.hostKeyFingerprint,
      configDir: node.configDir,
    });
  });

  afterAll(async () => {
    await t?.close();
    await node?.stop();
    await stopAllLabNodes();
    await Promise.allSettled([sink?.close(), relayHost?.close(), dns?.stop()]);
  });

  it('refuses the sender until the domain is verified, then relays it with its credential', async () => {
    const tenant = await api<{ id: string }>('POST', '/v1/tenants', { name: 'Onboard', slug: 'onboard' });
    const relay = await api<{ id: string }>('POST', '/v1/relays', {
      name: 'obrelay',
      host: '127.0.0.1',
      port: relayHost.port,
      tls: 'starttls',
      verify: false,
      spfInclude: '_spf.obrelay.test',
      dkim: [{ selector: 'ob1', type: 'CNAME', value: 'ob1.dkim.obrelay.test' }],
    });
    const domain = await api<{
      id: string;
      status: string;
      dnsRecords: { type: string; host: string; value: string }[];
    }>('POST', `/v1/tenants/${tenant.id}/domains`, { name: 'onboard.test', relayId: relay.id });
    await api('POST', `/v1/relays/${relay.id}/credentials`, {
      username: 'onboard-user',
      secret: 'onboard pw',
      domainId: domain.id,
    });
    expect(domain.status).toBe('pending');
    await deployed();

    // Unverified: the node refuses the sender at submission; nothing reaches any relay or the sink.
    await expect(sendMail(node, { from: 'app@onboard.test', to: ['someone@dest.example.test'] })).rejects.toThrow(
      /554/,
    );
    expect([...relayHost.received, ...sink.received].filter((m) => m.mailFrom === 'app@onboard.test')).toEqual([]);

    // The customer publishes the records; verification routes the domain, the next deploy carries it.
    const zone: ZoneRecord[] = domain.dnsRecords.map((r) =>
      r.type === 'TXT'
        ? { type: 'TXT', name: r.host, value: r.value }
        : { type: 'CNAME', name: r.host, target: r.value },
    );
    zone.push({ type: 'TXT', name: '_spf.obrelay.test', value: 'v=spf1 ip4:127.0.0.1 -all' });
    await dns.setRecords(zone);
    const verified = await api<{ status: string }>('POST', `/v1/domains/${domain.id}/verify`);
    expect(verified.status).toBe('verified');
    await deployed();

    const sent = await sendMail(node, {
      from: 'app@onboard.test',
      to: ['someone@dest.example.test'],
      subject: 'verified now',
    });
    expect(sent.accepted).toEqual(['someone@dest.example.test']);
    const received = await relayHost.waitFor((m) => m.mailFrom === 'app@onboard.test', 15_000);
    expect(received.authUser).toBe('onboard-user');
    expect(sink.received.filter((m) => m.mailFrom === 'app@onboard.test')).toEqual([]);
  });

  it('reads the host key a node presents (to pin after comparing), without trusting or storing it', async () => {
    const scanned = await api<{ hostKey: string; fingerprint: string; sshPort: number }>(
      'POST',
      '/v1/nodes/scan-host-key',
      { sshHost: '127.0.0.1', sshPort: node.ssh.port },
    );
    expect(scanned).toMatchObject({
      hostKey: node.ssh.hostKeyLine,
      fingerprint: node.ssh.hostKeyFingerprint,
      sshPort: node.ssh.port,
    });
    const dead = await t.app.inject({
      method: 'POST',
      url: '/v1/nodes/scan-host-key',
      headers,
      payload: { sshHost: '127.0.0.1', sshPort: 9 },
    });
    expect(dead.statusCode).toBe(422);
    expect(dead.headers['content-type']).toMatch(/problem\+json/);
  });

  it('the node check reports whether the HELO name, its address and its PTR agree', async () => {
    const { items } = await api<{ items: { id: string }[] }>('GET', '/v1/nodes');
    const check = async () =>
      api<{ heloName: string; rdns: { ok: boolean; addresses: string[]; problems: string[] } }>(
        'POST',
        `/v1/nodes/${items[0]!.id}/check`,
      );
    const before = await check();
    expect(before.heloName).toBe((await node.postconf(['-xh', 'smtp_helo_name'])).trim());
    expect(before.rdns).toMatchObject({
      ok: false,
      problems: [`the HELO name ${before.heloName} has no address: no A/AAAA record (NXDOMAIN)`],
    });
    await dns.setRecords([{ type: 'A', name: before.heloName, address: '127.0.0.61' }]);
    expect((await check()).rdns).toMatchObject({ ok: true, addresses: ['127.0.0.61'], problems: [] });
  });
});
