/**
 * The pure compiler: determinism, the tables for a realistic snapshot (also checked by real
 * postmap in postfix-integration.test.ts), and the routing, credential and limit decisions.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Bundle as DeployBundle } from '../../src/deploy/bundle.js';
import {
  DIR_PLACEHOLDER,
  compile,
  explainRoute,
  isValidSaslSecret,
  renderBundle,
  type Bundle,
  type Snapshot,
} from '../../src/postfix/index.js';
import { serviceSyslogName } from '../../src/postfix/compiler.js';
import { planRoutes } from '../../src/postfix/plan.js';
import { senderAccessEntries } from '../../src/postfix/tables.js';
import { snapshotArb } from './arbitraries.js';
import { credential, domain, policy, relay, richSnapshot, settings, snapshot, tenant, withSecret } from './fixtures.js';

const lines = (b: Bundle, file: string) => (b.files[file]?.content ?? '').split('\n').filter(Boolean);
const service = (b: Bundle, name: string) => b.masterCf.find((s) => s.name === name);

describe('determinism', () => {
  it('shuffled input arrays give a byte-identical bundle', () => {
    const reference = compile(richSnapshot());
    fc.assert(
      fc.property(
        fc.record({
          tenants: fc.shuffledSubarray(richSnapshot().tenants, { minLength: 3, maxLength: 3 }),
          domains: fc.shuffledSubarray(richSnapshot().domains, { minLength: 7, maxLength: 7 }),
          relays: fc.shuffledSubarray(richSnapshot().relays, { minLength: 4, maxLength: 4 }),
          credentials: fc.shuffledSubarray(richSnapshot().credentials, { minLength: 4, maxLength: 4 }),
          destinationPolicies: fc.shuffledSubarray(richSnapshot().destinationPolicies, { minLength: 2, maxLength: 2 }),
        }),
        (parts) => {
          const b = compile({ ...richSnapshot(), ...parts });
          expect(b.version).toBe(reference.version);
          expect(b).toEqual(reference);
        },
      ),
    );
  });

  it("the version is the sha256 of the canonical JSON of each file's sha256, main.cf and master.cf", () => {
    const byKey = <T>(record: Record<string, T>) =>
      Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const canonicalVersion = (b: Bundle) =>
      createHash('sha256')
        .update(
          JSON.stringify({
            files: byKey(b.files).map(([name, f]) => [
              name,
              f.mode,
              f.secret,
              f.mapType,
              createHash('sha256').update(f.content, 'utf8').digest('hex'),
            ]),
            mainCf: byKey(b.mainCf),
            masterCf: [...b.masterCf]
              .sort((x, y) => (x.name < y.name ? -1 : 1))
              .map((s) => [
                s.name,
                s.type,
                s.private,
                s.unpriv,
                s.chroot,
                s.wakeup,
                s.maxproc,
                s.command,
                byKey(s.options),
              ]),
          }),
        )
        .digest('hex');
    const rich = compile(richSnapshot());
    expect(rich.version).toBe(canonicalVersion(rich));
    fc.assert(
      fc.property(snapshotArb, (s) => {
        let b: Bundle;
        try {
          b = compile(s);
        } catch {
          return;
        }
        expect(b.version).toBe(canonicalVersion(b));
      }),
      { numRuns: 50 },
    );
  });

  it('a change anywhere changes the version', () => {
    const base = compile(richSnapshot()).version;
    const changed = richSnapshot();
    changed.credentials[1] = { ...changed.credentials[1]!, secret: 'rotated' };
    expect(compile(changed).version).not.toBe(base);
  });
});

describe('tables of a realistic snapshot', () => {
  const b = compile(richSnapshot());

  it('matches the reviewed snapshot', () => {
    expect({ files: b.files, mainCf: b.mainCf, masterCf: b.masterCf, warnings: b.warnings }).toMatchSnapshot();
  });

  it('secret files are 0600 and marked secret; nothing else is', () => {
    for (const [name, f] of Object.entries(b.files)) {
      expect(f.secret, name).toBe(name.startsWith('sasl_'));
      expect(f.mode, name).toBe(f.secret ? 0o600 : 0o644);
    }
  });

  it('every nexthop is bracketed, and no main.cf value routes around the sender tables', () => {
    for (const l of lines(b, 'sender_relay'))
      for (const n of l.split(' ')[1]!.split(',')) expect(n).toMatch(/^\[[^\]]+\]:\d+$/);
    expect(b.mainCf).toMatchObject({ transport_maps: '', relay_domains: '', relayhost: '', smtp_fallback_relay: '' });
    expect(b.mainCf.default_transport).toMatch(/^retry:4\.7\.1 /);
  });

  it('each secret file has a masked rendering: key for key, the value replaced whole by username and fingerprint', () => {
    // Secrets any map can carry, with what once slipped through a masking pattern (U+2028/2029).
    const hostile = fc
      .string({
        unit: fc.oneof(
          fc.constantFrom(':', '#', ' ', '\\', '"', "'", '\u2028', '\u2029', '😀', '𝔘'),
          fc.string({ unit: 'grapheme', maxLength: 1 }),
        ),
        minLength: 1,
        maxLength: 40,
      })
      .filter(isValidSaslSecret);
    const base = richSnapshot();
    fc.assert(
      fc.property(
        fc.array(hostile, { minLength: base.credentials.length, maxLength: base.credentials.length }),
        (secrets) => {
          const rows = { ...base, credentials: base.credentials.map((c, i) => withSecret(c, secrets[i]!)) };
          const byUser = new Map(rows.credentials.map((c) => [c.username, c]));
          const compiled = compile(rows);
          for (const [name, f] of Object.entries(compiled.files)) {
            if (!f.secret) {
              expect(f.masked, name).toBeUndefined();
              continue;
            }
            const real = f.content.split('\n');
            const masked = f.masked!.split('\n');
            expect(masked.length, name).toBe(real.length);
            masked.forEach((line, i) => {
              if (line === '') return expect(real[i]).toBe('');
              const key = real[i]!.slice(0, real[i]!.indexOf(' '));
              const user = line.slice(key.length + 1, line.indexOf(':', key.length + 1));
              expect(line).toBe(`${key} ${user}:sha:${byUser.get(user)!.fingerprint}`);
            });
            for (const secret of secrets) if ([...secret].length >= 6) expect(f.masked).not.toContain(secret);
          }
        },
      ),
      { numRuns: 60, seed: 20 },
    );
  });

  it('is assignable to the deployer’s Bundle contract', () => {
    const forDeployer: DeployBundle = b;
    expect(forDeployer.version).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('credentials', () => {
  const shared = (creds: Snapshot['credentials'], extra: Partial<Snapshot> = {}) =>
    compile(
      snapshot({
        tenants: [tenant('t1'), tenant('t2')],
        relays: [relay('sh', { host: 'smtp.shared.test' })],
        domains: [
          domain('d1', 't1', 'one.example', { relayId: 'sh' }),
          domain('d2', 't2', 'two.example', { relayId: 'sh' }),
          domain('d3', 't2', 'three.example', { relayId: 'sh' }),
        ],
        credentials: creds,
        ...extra,
      }),
    );

  it('two tenants on one smart host each send their own credential', () => {
    const b = shared([credential('c1', 'sh', 'd1', 'u1', 's1'), credential('c2', 'sh', 'd2', 'u2', 's2')]);
    expect(lines(b, 'sasl_passwd')).toEqual(['@one.example u1:s1', '@two.example u2:s2']);
    expect(b.mainCf.smtp_sender_dependent_authentication).toBe('yes');
  });

  it('a domain without its own credential never picks another domain’s; it is warned about', () => {
    const b = shared([credential('c1', 'sh', 'd1', 'u1', 's1')]);
    expect(lines(b, 'sasl_passwd')).toEqual(['@one.example u1:s1']);
    expect(b.warnings.join('\n')).toMatch(
      /three\.example sends to relay \[smtp\.shared\.test\]:587 without authentication/,
    );
    // And nothing keyed by nexthop or host that an unlisted sender could fall through to.
    expect(b.files.sasl_passwd?.content).not.toMatch(/^\[/m);
  });

  it('a relay-wide credential serves every domain without its own; a domain-scoped one wins', () => {
    const b = shared([credential('cw', 'sh', null, 'wide', 'w'), credential('c2', 'sh', 'd2', 'u2', 's2')]);
    expect(lines(b, 'sasl_passwd')).toEqual(['@one.example wide:w', '@three.example wide:w', '@two.example u2:s2']);
  });

  it('primary and fallback with different credentials: one map per service keyed by nexthop, never @domain', () => {
    const b = compile(
      snapshot({
        tenants: [tenant('t1')],
        relays: [relay('p', { host: 'p.test' }), relay('f', { host: 'f.test' })],
        domains: [
          domain('d1', 't1', 'one.example', { relayId: 'p', fallbackRelayId: 'f' }),
          domain('d2', 't1', 'two.example', { relayId: 'p', fallbackRelayId: 'f' }),
        ],
        credentials: [credential('cp', 'p', 'd1', 'up', 'sp'), credential('cf', 'f', null, 'uf', 'sf')],
      }),
    );
    expect(lines(b, 'sasl_passwd')).toEqual([]);
    expect(lines(b, 'sender_relay')).toContain('@one.example [p.test]:587,[f.test]:587');
    // one.example and two.example differ on p (own vs none), so each gets its own service.
    const svc = lines(b, 'sender_service').map((l) => l.split(' ')[1]!.replace(/:$/, ''));
    expect(new Set(svc).size).toBe(2);
    const one = service(b, svc[0]!)!;
    expect(one.options).toMatchObject({
      smtp_sender_dependent_authentication: 'no',
      smtp_sasl_password_maps: `hash:${DIR_PLACEHOLDER}/sasl_${one.name}`,
    });
    expect(lines(b, `sasl_${one.name}`)).toEqual(['[f.test]:587 uf:sf', '[p.test]:587 up:sp']);
    expect(lines(b, `sasl_${svc[1]}`)).toEqual(['[f.test]:587 uf:sf']);
  });

  it('a service that has no credential cannot authenticate at all', () => {
    const b = compile(
      snapshot({
        tenants: [tenant('t1')],
        relays: [
          relay('p', {
            limits: { concurrency: 3, rateDelaySeconds: null, recipientsPerMessage: null, connectionReuseSeconds: 30 },
          }),
        ],
        domains: [domain('d1', 't1', 'one.example', { relayId: 'p' })],
      }),
    );
    const [s] = b.masterCf;
    expect(s?.options).toEqual({
      smtp_connection_reuse_time_limit: '30s',
      smtp_sasl_auth_enable: 'no',
      syslog_name: serviceSyslogName(s!.name),
    });
    expect(b.mainCf[`${s?.name}_destination_concurrency_limit`]).toBe('3');
  });
});

describe('a connection reuse time where per-sender SASL turns caching off', () => {
  it('compiles without the reuse time and says why', () => {
    const b = compile(
      snapshot({
        tenants: [tenant('t1'), tenant('t2')],
        relays: [
          relay('r1', {
            limits: {
              concurrency: null,
              rateDelaySeconds: null,
              recipientsPerMessage: null,
              connectionReuseSeconds: 60,
            },
          }),
        ],
        domains: [
          domain('d1', 't1', 'one.example', { relayId: 'r1' }),
          domain('d2', 't2', 'two.example', { relayId: 'r1' }),
        ],
        credentials: [credential('c1', 'r1', 'd1'), credential('c2', 'r1', 'd2')],
      }),
    );
    const [s] = b.masterCf;
    expect(s?.options.smtp_connection_reuse_time_limit).toBeUndefined();
    expect(s?.options.smtp_sasl_password_maps).toBeUndefined();
    expect(lines(b, 'sasl_passwd')).toEqual(['@one.example user-c1:secret-c1', '@two.example user-c2:secret-c2']);
    expect(b.warnings.some((w) => w.includes('connectionReuseSeconds does not apply'))).toBe(true);
  });
});

describe('relays sharing a [host]:port with different TLS policies', () => {
  // A tenant's private relay on a shared relay's host:port, one verifying and one opportunistic.
  const shared = () =>
    snapshot({
      tenants: [tenant('t1'), tenant('t2')],
      relays: [
        relay('r1', { host: 'same.test', verify: true }),
        relay('r2', { host: 'same.test', tls: 'opportunistic', tenantId: 't2' }),
        relay('r3', { host: 'other.test' }),
      ],
      domains: [
        domain('d1', 't1', 'one.example', { relayId: 'r1' }),
        domain('d2', 't2', 'two.example', { relayId: 'r2' }),
        domain('d3', 't1', 'three.example', { relayId: 'r3', fallbackRelayId: 'r1' }),
      ],
    });

  it('compiles: each relay row keeps its own policy through a TLS policy map of its service', () => {
    const b = compile(shared());
    expect(lines(b, 'tls_policy')).toEqual(['[other.test]:587 encrypt']);
    const routes = planRoutes(shared()).routes;
    const one = routes.get('one.example')!;
    const two = routes.get('two.example')!;
    const three = routes.get('three.example')!;
    for (const [route, expected] of [
      [one, ['[same.test]:587 secure']],
      [two, ['[same.test]:587 may']],
      [three, ['[other.test]:587 encrypt', '[same.test]:587 secure']],
    ] as const) {
      expect(route.service).toMatch(/^rp_r_/);
      expect(route.tlsPolicyMap).toBe(`tls_${route.service}`);
      expect(lines(b, route.tlsPolicyMap)).toEqual(expected);
      expect(service(b, route.service)?.options.smtp_tls_policy_maps).toBe(
        `hash:${DIR_PLACEHOLDER}/tls_${route.service}`,
      );
    }
    expect(new Set([one.service, two.service, three.service]).size).toBe(3);
    expect(explainRoute(shared(), 'a@two.example', 'r@gmail.test').matched).toContainEqual({
      table: two.tlsPolicyMap,
      key: '[same.test]:587',
      value: 'may',
    });
  });

  it('a nexthop reached with one policy stays in the global map and on smtp', () => {
    const one = snapshot({ ...shared(), domains: shared().domains.filter((d) => d.id !== 'd2') });
    const b = compile(one);
    expect(lines(b, 'tls_policy')).toEqual(['[other.test]:587 encrypt', '[same.test]:587 secure']);
    expect(planRoutes(one).routes.get('one.example')?.service).toBe('smtp');
    expect(Object.keys(b.files).filter((name) => name.startsWith('tls_rp_'))).toEqual([]);
  });
});

describe('senders without a route', () => {
  const b = compile(
    snapshot({
      tenants: [tenant('ok'), tenant('off', { status: 'suspended' })],
      relays: [relay('r')],
      domains: [
        domain('d1', 'off', 'suspended.example', { relayId: 'r' }),
        domain('d2', 'ok', 'disabled.example', { relayId: 'r', status: 'disabled', compileOverride: true }),
        domain('d3', 'ok', 'failed.example', { relayId: 'r', status: 'failed' }),
        domain('d4', 'ok', 'forced.example', { relayId: 'r', status: 'pending', compileOverride: true }),
      ],
      credentials: [credential('c1', 'r', 'd1'), credential('c2', 'r', 'd2')],
    }),
  );

  it('get no transport, relay or credential entry, and are refused at submission with a reason', () => {
    expect(lines(b, 'sender_transport')).toEqual(['@forced.example smtp:']);
    expect(lines(b, 'sender_relay')).toEqual(['@forced.example [r.relay.test]:587']);
    expect(lines(b, 'sasl_passwd')).toEqual([]);
    expect(lines(b, 'sender_access')).toEqual([
      '<> REJECT Relayplane: a null sender cannot be routed to a tenant relay',
      'disabled.example REJECT Relayplane: sender domain disabled.example is disabled',
      'failed.example REJECT Relayplane: sender domain failed.example is failed, not verified',
      'forced.example OK',
      'suspended.example REJECT Relayplane: the tenant of sender domain suspended.example is suspended',
    ]);
    // Everyone else, after the table: no fully-qualified domain first, then the catch-all.
    expect(b.mainCf.smtpd_sender_restrictions).toBe(
      'reject_non_fqdn_sender, check_sender_access hash:{{dir}}/sender_access, check_sender_access static:{REJECT Relayplane: the sender domain is not configured on this relay}',
    );
    expect(b.mainCf.parent_domain_matches_subdomains).not.toContain('smtpd_access_maps');
    expect(b.warnings).toContain(
      'domain forced.example is pending but compiled because an administrator set compileOverride',
    );
  });

  it('sender_access lists every configured domain once in name order, whatever order the plan maps hold', () => {
    const plan = planRoutes(richSnapshot());
    const expected = senderAccessEntries(plan);
    const keys = expected.map(([key]) => key);
    expect(keys).toEqual([...keys].sort());
    expect(keys.filter((key) => key !== '<>').length).toBe(plan.routes.size + plan.unrouted.size);
    const reversed = {
      ...plan,
      routes: new Map([...plan.routes].reverse()),
      unrouted: new Map([...plan.unrouted].reverse()),
    };
    expect(senderAccessEntries(reversed)).toEqual(expected);
  });

  it('mail already queued is held by retry:, never sent directly or via a relay', () => {
    const e = explainRoute(
      snapshot({
        tenants: [tenant('off', { status: 'suspended' })],
        relays: [relay('r')],
        domains: [domain('d1', 'off', 's.example', { relayId: 'r' })],
      }),
      'a@s.example',
      'b@gmail.test',
    );
    expect(e).toMatchObject({ outcome: 'rejected', service: 'retry', nexthops: [], credentialId: null });
    const bounce = explainRoute(snapshot(), '', 'a@s.example');
    expect(bounce).toMatchObject({ outcome: 'rejected', service: 'retry', nexthops: [] });
    expect(bounce.matched[0]).toEqual({ table: 'sender_access', key: '<>', value: expect.stringMatching(/^REJECT /) });
    expect(bounce.reason).toContain('554 5.7.1');
  });

  it('explains which restriction refuses a sender, and with which reply', () => {
    const snap = snapshot({
      tenants: [tenant('off', { status: 'suspended' })],
      relays: [relay('r')],
      domains: [domain('d1', 'off', 's.example', { relayId: 'r' })],
    });
    const first = (sender: string) => explainRoute(snap, sender, 'b@gmail.test');
    expect(first('a.example').matched[0]).toEqual({
      table: 'main.cf',
      key: 'smtpd_sender_restrictions',
      value: 'reject_non_fqdn_sender',
    });
    expect(first('x@localhost').reason).toContain('504 5.5.2');
    expect(first('x@s.example').matched[0]).toEqual({
      table: 'sender_access',
      key: 's.example',
      value: 'REJECT Relayplane: the tenant of sender domain s.example is suspended',
    });
    expect(first('x@s.example').reason).toContain('554 5.7.1');
    expect(first('x@[192.0.2.1]').matched[0]?.value).toBe(
      'check_sender_access static:{REJECT Relayplane: the sender domain is not configured on this relay}',
    );
    expect(first('').matched[0]).toEqual({
      table: 'sender_access',
      key: '<>',
      value: 'REJECT Relayplane: a null sender cannot be routed to a tenant relay',
    });
  });
});

describe('direct delivery', () => {
  it('uses smtp with an empty nexthop and no relayhost, and never authenticates', () => {
    const snap = snapshot({
      tenants: [tenant('t1')],
      relays: [relay('r')],
      domains: [
        domain('d1', 't1', 'direct.example', { route: 'direct' }),
        domain('d2', 't1', 'slow.example', {
          route: 'direct',
          limits: { concurrency: 1, rateDelaySeconds: 5, recipientsPerMessage: null },
        }),
      ],
      credentials: [credential('c', 'r', null)],
      destinationPolicies: [policy('p', '.gmail.test', { tls: 'secure' })],
    });
    const b = compile(snap);
    expect(lines(b, 'sender_transport')[0]).toBe('@direct.example smtp:');
    expect(lines(b, 'sender_relay')).toEqual([]);
    expect(b.masterCf[0]?.options).toEqual({
      smtp_sasl_auth_enable: 'no',
      syslog_name: serviceSyslogName(b.masterCf[0]!.name),
    });
    expect(lines(b, 'tls_policy')).toEqual(['.gmail.test secure']);
    expect(explainRoute(snap, 'a@direct.example', 'b@mx.gmail.test')).toMatchObject({
      outcome: 'direct',
      nexthops: ['mx.gmail.test'],
      tlsPolicy: 'secure',
      destinationPolicyId: 'p',
    });
    expect(explainRoute(snap, 'a@direct.example', 'b@gmail.test')).toMatchObject({
      tlsPolicy: 'may',
      destinationPolicyId: null,
    });
  });
});

describe('limits', () => {
  const limited = (over: Partial<Snapshot>) =>
    compile(
      snapshot({
        tenants: [tenant('t1')],
        relays: [relay('r')],
        domains: [domain('d1', 't1', 'one.example', { relayId: 'r' })],
        ...over,
      }),
    );

  it('domain fields override tenant defaults one by one; relays combine most restrictively', () => {
    const b = limited({
      tenants: [tenant('t1', { defaultLimits: { concurrency: 4, rateDelaySeconds: null, recipientsPerMessage: 10 } })],
      relays: [
        relay('r', {
          limits: { concurrency: 2, rateDelaySeconds: null, recipientsPerMessage: 50, connectionReuseSeconds: null },
        }),
      ],
      domains: [
        domain('d1', 't1', 'one.example', {
          relayId: 'r',
          limits: { concurrency: 8, rateDelaySeconds: null, recipientsPerMessage: null },
        }),
      ],
    });
    const name = b.masterCf[0]?.name ?? '';
    expect(name).toMatch(/^rp_d_[0-9a-f]{12}$/);
    expect(b.mainCf).toMatchObject({
      [`${name}_destination_concurrency_limit`]: '2',
      [`${name}_destination_recipient_limit`]: '10',
    });
    expect(b.mainCf[`${name}_destination_rate_delay`]).toBeUndefined();
  });

  it('a delay from one side and a concurrency from the other: the delay serializes delivery', () => {
    const snap = snapshot({
      tenants: [tenant('t1')],
      relays: [
        relay('r', {
          limits: { concurrency: null, rateDelaySeconds: 3, recipientsPerMessage: null, connectionReuseSeconds: null },
        }),
      ],
      domains: [
        domain('d1', 't1', 'one.example', {
          relayId: 'r',
          limits: { concurrency: 5, rateDelaySeconds: null, recipientsPerMessage: null },
        }),
      ],
    });
    expect(explainRoute(snap, 'a@one.example', 'b@x.test').limits).toMatchObject({
      concurrency: 1,
      rateDelaySeconds: 3,
      params: { concurrency: 5, rateDelaySeconds: 3 },
    });
  });

  it('relay limits without domain limits share one queue per relay; implicit TLS gets wrapper mode', () => {
    const b = compile(
      snapshot({
        tenants: [tenant('t1'), tenant('t2')],
        relays: [relay('r', { port: 465, tls: 'implicit', verify: true })],
        domains: [
          domain('d1', 't1', 'one.example', { relayId: 'r' }),
          domain('d2', 't2', 'two.example', { relayId: 'r' }),
        ],
      }),
    );
    expect(b.masterCf).toHaveLength(1);
    expect(b.masterCf[0]?.options).toMatchObject({ smtp_tls_wrappermode: 'yes', smtp_tls_security_level: 'encrypt' });
    expect(lines(b, 'tls_policy')).toEqual(['[r.relay.test]:465 secure']);
    expect(new Set(lines(b, 'sender_service').map((l) => l.split(' ')[1]))).toEqual(
      new Set([`${b.masterCf[0]?.name}:`]),
    );
  });

  it("a service of a sender's own is listed first, in sender_service; sender_transport lists every routed sender", () => {
    const snap = snapshot({
      tenants: [tenant('t1'), tenant('t2')],
      relays: [relay('r', { port: 465, tls: 'implicit', verify: true }), relay('o')],
      domains: [
        domain('d1', 't1', 'one.example', { relayId: 'r' }),
        domain('d2', 't2', 'two.example', { relayId: 'o' }),
      ],
    });
    const b = compile(snap);
    const own = b.masterCf[0]!.name;
    expect(b.mainCf.sender_dependent_default_transport_maps).toBe(
      `hash:${DIR_PLACEHOLDER}/sender_service, hash:${DIR_PLACEHOLDER}/sender_transport`,
    );
    expect(lines(b, 'sender_service')).toEqual([`@one.example ${own}:`]);
    expect(lines(b, 'sender_transport')).toEqual(['@one.example smtp:', '@two.example smtp:']);
    expect(explainRoute(snap, 'a@one.example', 'b@x.test').matched).toContainEqual({
      table: 'sender_service',
      key: '@one.example',
      value: `${own}:`,
    });
    expect(explainRoute(snap, 'a@two.example', 'b@x.test').matched).toContainEqual({
      table: 'sender_transport',
      key: '@two.example',
      value: 'smtp:',
    });
  });

  it('destination concurrency is never turned into a transport_maps entry, only warned about', () => {
    const b = limited({ destinationPolicies: [policy('p', 'gmail.test', { concurrency: 2, tls: 'encrypt' })] });
    expect(b.mainCf.transport_maps).toBe('');
    expect(lines(b, 'tls_policy')).toContain('gmail.test encrypt');
    expect(
      b.warnings.some((w) => w.startsWith('destination policy gmail.test: concurrency and rate delay are not applied')),
    ).toBe(true);
  });
});

describe('what explain says at the edges', () => {
  it('names implicit TLS and says when no SASL is used', () => {
    const snap = snapshot({
      tenants: [tenant('t1')],
      relays: [relay('imp', { tls: 'implicit', port: 465 }), relay('st')],
      domains: [
        domain('d1', 't1', 'imp.example', { relayId: 'imp' }),
        domain('d2', 't1', 'bare.example', { relayId: 'st' }),
        domain('d3', 't1', 'direct.example', { route: 'direct' }),
      ],
      credentials: [credential('c1', 'imp', 'd1')],
    });
    expect(explainRoute(snap, 'a@imp.example', 'b@x.test')).toMatchObject({ implicitTls: true, credentialId: 'c1' });
    const bare = explainRoute(snap, 'a@bare.example', 'b@x.test');
    expect(bare).toMatchObject({ implicitTls: false, credentialId: null });
    expect(bare.reason).toMatch(/no SASL is used: no credential exists/);
    expect(bare.reason).not.toMatch(/SASL by sender/);
    expect(explainRoute(snap, 'a@direct.example', 'b@x.test').implicitTls).toBe(false);
  });
});

describe('a relay inet_protocols leaves unreachable', () => {
  it('is a problem of the domain: quarantined, and explained as refused for now', () => {
    const snap = snapshot({
      tenants: [tenant('t1')],
      relays: [relay('six', { host: '::1', port: 2606 }), relay('four', { host: '127.0.0.1', port: 2604 })],
      domains: [
        domain('d1', 't1', 'six.example', { relayId: 'six' }),
        domain('d2', 't1', 'four.example', { relayId: 'four' }),
      ],
      settings: settings({ inetProtocols: 'ipv4' }),
    });
    const b = compile(snap);
    expect(b.quarantine.map((q) => q.resourceId)).toEqual(['d1']);
    expect(b.quarantine[0]?.problems[0]?.message).toMatch(
      /relay \[::1\]:2606 is an IPv6 address but inetProtocols is ipv4/,
    );
    expect(explainRoute(snap, 'a@six.example', 'b@x.test')).toMatchObject({ outcome: 'rejected', nexthops: [] });
    expect(explainRoute(snap, 'a@four.example', 'b@x.test')).toMatchObject({
      outcome: 'relay',
      nexthops: ['[127.0.0.1]:2604'],
    });
    expect(compile({ ...snap, settings: settings({ inetProtocols: 'all' }) }).quarantine).toEqual([]);
  });
});

describe('a TLS-only destination policy', () => {
  it('warns that relayed mail ignores it', () => {
    const snap = snapshot({
      tenants: [tenant('t1')],
      relays: [relay('st')],
      domains: [
        domain('d2', 't1', 'bare.example', { relayId: 'st' }),
        domain('d3', 't1', 'direct.example', { route: 'direct' }),
      ],
      destinationPolicies: [policy('p', 'gmail.test', { tls: 'encrypt' })],
    });
    expect(compile(snap).warnings).toContain(
      'destination policy gmail.test: relayed mail ignores its TLS level encrypt (the TLS policy of the hop to the relay applies); only direct deliveries use it',
    );
  });
});

describe('certificate verification of a relay', () => {
  it("is `secure` for a host name and `verify` for an IP literal (Postfix's secure matches names only), with a warning that says so", () => {
    const snap = snapshot({
      tenants: [tenant('t1')],
      relays: [
        relay('n', { verify: true }),
        relay('v4', { host: '10.0.0.5', verify: true }),
        relay('v6', { host: '2001:db8::25', verify: true, port: 465 }),
      ],
      domains: [
        domain('d1', 't1', 'n.example', { relayId: 'n' }),
        domain('d2', 't1', 'v4.example', { relayId: 'v4' }),
        domain('d3', 't1', 'v6.example', { relayId: 'v6' }),
      ],
      settings: settings({ inetProtocols: 'all' }),
    });
    const b = compile(snap);
    expect(lines(b, 'tls_policy')).toEqual([
      '[10.0.0.5]:587 verify',
      '[2001:db8::25]:465 verify',
      '[n.relay.test]:587 secure',
    ]);
    expect(explainRoute(snap, 'a@v4.example', 'r@x.test').tlsPolicy).toBe('verify');
    const warning = b.warnings.find((w) => w.includes('[10.0.0.5]:587'));
    expect(warning).toMatch(
      /`secure` level matches names, never addresses, so it gets level `verify`: .*lists 10\.0\.0\.5 as an IP address subjectAltName/,
    );
    expect(b.warnings.some((w) => w.includes('[n.relay.test]:587'))).toBe(false);
  });
});

describe('explainRoute', () => {
  it('never contains a secret', () => {
    const snap = richSnapshot();
    for (const d of [...snap.domains.map((x) => x.name), 'unknown.example']) {
      const text = JSON.stringify(explainRoute(snap, `a@${d}`, 'b@gmail.test'));
      for (const c of snap.credentials) expect(text).not.toContain(c.secret);
    }
  });
});

describe('renderBundle', () => {
  it('puts the release directory into every path and refuses unsafe ones', () => {
    const b = compile(richSnapshot());
    const r = renderBundle(b, '/etc/postfix/relayplane/current/');
    expect(JSON.stringify(r)).not.toContain(DIR_PLACEHOLDER);
    expect(r.mainCf.sender_dependent_relayhost_maps).toBe('hash:/etc/postfix/relayplane/current/sender_relay');
    expect(r.version).toBe(b.version);
    for (const bad of ['relative', '/a b', '/a,b', '/$x', '/a/../b', '/a\n'])
      expect(() => renderBundle(b, bad), bad).toThrow(/unsafe release directory/);
  });

  it('keeps the settings in main.cf', () => {
    const b = compile(
      snapshot({
        settings: settings({
          defaultConcurrency: 1,
          defaultRateDelaySeconds: 2,
          inetProtocols: 'all',
          addressPreference: 'ipv6',
        }),
      }),
    );
    expect(b.mainCf).toMatchObject({
      default_destination_concurrency_limit: '1',
      default_destination_rate_delay: '2s',
      inet_protocols: 'all',
      smtp_address_preference: 'ipv6',
    });
  });
});
