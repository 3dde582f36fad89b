/**
 * Everything the compiler refuses: one test per refusal, each checking the problem's code and the
 * resource it blames. (service_name_collision needs a 48-bit sha256 prefix collision and
 * unsafe_output is the belt-and-braces check behind the validators: neither is reachable from input.)
 */
import { describe, expect, it } from 'vitest';
import { CompileError, type CompileProblem, type Snapshot } from '../../src/postfix/index.js';
import { compileStrict as compile } from '../../src/postfix/compiler.js';
import { credential, domain, policy, relay, settings, snapshot, tenant } from './fixtures.js';

function problems(snap: Snapshot): CompileProblem[] {
  try {
    compile(snap);
  } catch (err) {
    if (err instanceof CompileError) return [...err.problems];
    throw err;
  }
  throw new Error('compile() accepted the snapshot');
}

function expectProblem(snap: Snapshot, expected: Partial<CompileProblem>): CompileProblem {
  const found = problems(snap);
  const hit = found.find((p) =>
    Object.entries(expected).every(([k, v]) => (p as unknown as Record<string, unknown>)[k] === v),
  );
  expect(hit, `${JSON.stringify(expected)} in ${JSON.stringify(found, null, 1)}`).toBeDefined();
  return hit!;
}

const base = (over: Partial<Snapshot> = {}) =>
  snapshot({
    tenants: [tenant('t1'), tenant('t2')],
    relays: [relay('r1')],
    domains: [domain('d1', 't1', 'one.example', { relayId: 'r1' })],
    ...over,
  });

const NO_LIMITS = { concurrency: null, rateDelaySeconds: null, recipientsPerMessage: null };

describe('refusals', () => {
  it('invalid_settings', () => {
    expectProblem(base({ settings: settings({ defaultConcurrency: 0 }) }), {
      code: 'invalid_settings',
      resourceType: 'settings',
    });
    expectProblem(base({ settings: settings({ defaultConcurrency: 5, defaultRateDelaySeconds: 1 }) }), {
      code: 'invalid_settings',
    });
    expectProblem(base({ settings: settings({ maximalQueueLifetime: '5 days' }) }), { code: 'invalid_settings' });
    expectProblem(base({ settings: settings({ bounceQueueLifetime: '5d\nrelayhost = evil' }) }), {
      code: 'invalid_settings',
    });
    expectProblem(base({ settings: settings({ minimalBackoffTime: '2h', maximalBackoffTime: '1h' }) }), {
      code: 'invalid_settings',
    });
  });

  it('duplicate_id and duplicate_name', () => {
    expectProblem(base({ relays: [relay('r1'), relay('r1', { host: 'other.test' })] }), {
      code: 'duplicate_id',
      resourceType: 'relay',
      resourceId: 'r1',
    });
    expectProblem(
      base({
        domains: [
          domain('d1', 't1', 'one.example', { relayId: 'r1' }),
          domain('d2', 't2', 'one.example', { relayId: 'r1' }),
        ],
      }),
      {
        code: 'duplicate_name',
        resourceType: 'domain',
      },
    );
    expectProblem(base({ destinationPolicies: [policy('p1', 'gmail.test'), policy('p2', 'gmail.test')] }), {
      code: 'duplicate_name',
      resourceType: 'destinationPolicy',
    });
  });

  it('invalid_name: injection through a domain name or pattern', () => {
    expectProblem(base({ domains: [domain('d1', 't1', 'a.example\nevil.example', { relayId: 'r1' })] }), {
      code: 'invalid_name',
      resourceId: 'd1',
    });
    expectProblem(base({ domains: [domain('d1', 't1', 'a.example evil.example', { relayId: 'r1' })] }), {
      code: 'invalid_name',
      resourceId: 'd1',
    });
    expectProblem(base({ domains: [domain('d1', 't1', 'A.Example', { relayId: 'r1' })] }), {
      code: 'invalid_name',
      resourceId: 'd1',
    });
    expectProblem(base({ destinationPolicies: [policy('p1', 'gmail.test\n.evil.test')] }), {
      code: 'invalid_name',
      resourceId: 'p1',
    });
  });

  it('invalid_host and invalid_value', () => {
    expectProblem(base({ relays: [relay('r1', { host: 'smtp.test\n@evil.test' })] }), {
      code: 'invalid_host',
      resourceId: 'r1',
    });
    expectProblem(base({ relays: [relay('r1', { host: '[192.0.2.1]' })] }), { code: 'invalid_host', resourceId: 'r1' });
    expectProblem(base({ relays: [relay('r1', { port: 70000 })] }), { code: 'invalid_host', resourceId: 'r1' });
    expectProblem(base({ tenants: [tenant('t1', { status: 'frozen' as never })] }), {
      code: 'invalid_value',
      resourceType: 'tenant',
    });
    expectProblem(base({ relays: [relay('r1', { tls: 'ssl' as never })] }), {
      code: 'invalid_value',
      resourceType: 'relay',
    });
  });

  it('dangling_reference', () => {
    expectProblem(base({ domains: [domain('d1', 't1', 'one.example', { relayId: 'nope' })] }), {
      code: 'dangling_reference',
      resourceId: 'd1',
    });
    expectProblem(base({ domains: [domain('d1', 'nobody', 'one.example', { relayId: 'r1' })] }), {
      code: 'dangling_reference',
      resourceId: 'd1',
    });
    expectProblem(base({ credentials: [credential('c1', 'r1', 'nope')] }), {
      code: 'dangling_reference',
      resourceType: 'credential',
    });
    expectProblem(base({ relays: [relay('r1', { tenantId: 'nobody' })] }), {
      code: 'dangling_reference',
      resourceType: 'relay',
    });
  });

  it('relay_not_allowed: another tenant’s relay or credential scope', () => {
    const owned = [relay('r1'), relay('r2', { tenantId: 't1' })];
    expectProblem(base({ relays: owned, domains: [domain('d1', 't2', 'two.example', { relayId: 'r2' })] }), {
      code: 'relay_not_allowed',
      resourceId: 'd1',
    });
    expectProblem(
      base({ relays: owned, domains: [domain('d1', 't2', 'two.example', { relayId: 'r1', fallbackRelayId: 'r2' })] }),
      { code: 'relay_not_allowed' },
    );
    expectProblem(
      base({
        relays: owned,
        domains: [domain('d1', 't2', 'two.example', { relayId: 'r1' })],
        credentials: [credential('c1', 'r2', 'd1')],
      }),
      {
        code: 'relay_not_allowed',
        resourceType: 'credential',
      },
    );
  });

  it('route_inconsistent', () => {
    expectProblem(base({ domains: [domain('d1', 't1', 'one.example')] }), {
      code: 'route_inconsistent',
      resourceId: 'd1',
    });
    expectProblem(base({ domains: [domain('d1', 't1', 'one.example', { relayId: 'r1', fallbackRelayId: 'r1' })] }), {
      code: 'route_inconsistent',
    });
    const twin = [relay('r1', { host: 'same.test' }), relay('r2', { host: 'same.test' })];
    expectProblem(
      base({ relays: twin, domains: [domain('d1', 't1', 'one.example', { relayId: 'r1', fallbackRelayId: 'r2' })] }),
      { code: 'route_inconsistent' },
    );
  });

  it('route problems of unrouted domains do not block the others', () => {
    expect(() =>
      compile(
        base({
          domains: [
            domain('d1', 't1', 'one.example', { relayId: 'r1' }),
            domain('d2', 't1', 'two.example', { status: 'pending' }),
          ],
        }),
      ),
    ).not.toThrow();
  });

  it('fallback_tls_mismatch: implicit TLS is per service, not per nexthop', () => {
    const relays = [relay('r1', { port: 465, tls: 'implicit' }), relay('r2')];
    expectProblem(
      base({ relays, domains: [domain('d1', 't1', 'one.example', { relayId: 'r1', fallbackRelayId: 'r2' })] }),
      { code: 'fallback_tls_mismatch', resourceId: 'd1' },
    );
  });

  it('tls_opportunistic_verify', () => {
    expectProblem(base({ relays: [relay('r1', { tls: 'opportunistic', verify: true })] }), {
      code: 'tls_opportunistic_verify',
      resourceId: 'r1',
    });
  });

  it('invalid_limits', () => {
    expectProblem(
      base({ relays: [relay('r1', { limits: { ...NO_LIMITS, concurrency: 0, connectionReuseSeconds: null } })] }),
      { code: 'invalid_limits', resourceId: 'r1' },
    );
    expectProblem(base({ tenants: [tenant('t1', { defaultLimits: { ...NO_LIMITS, rateDelaySeconds: 1.5 } })] }), {
      code: 'invalid_limits',
      resourceType: 'tenant',
    });
    expectProblem(base({ relays: [relay('r1', { limits: { ...NO_LIMITS, connectionReuseSeconds: -1 } })] }), {
      code: 'invalid_limits',
    });
  });

  it('limits_conflict: a delay forces one delivery at a time; one recipient per message changes the unit', () => {
    const p = expectProblem(
      base({
        domains: [
          domain('d1', 't1', 'one.example', {
            relayId: 'r1',
            limits: { concurrency: 3, rateDelaySeconds: 2, recipientsPerMessage: null },
          }),
        ],
      }),
      {
        code: 'limits_conflict',
        resourceId: 'd1',
      },
    );
    expect(p.message).toMatch(/one message at a time/);
    expectProblem(
      base({
        relays: [
          relay('r1', {
            limits: { concurrency: 2, rateDelaySeconds: null, recipientsPerMessage: 1, connectionReuseSeconds: null },
          }),
        ],
      }),
      { code: 'limits_conflict', resourceId: 'r1' },
    );
    // Only when domain and relay limits meet in one service.
    expectProblem(
      base({
        relays: [relay('r1', { limits: { ...NO_LIMITS, rateDelaySeconds: 1, connectionReuseSeconds: null } })],
        domains: [
          domain('d1', 't1', 'one.example', { relayId: 'r1', limits: { ...NO_LIMITS, recipientsPerMessage: 1 } }),
        ],
      }),
      { code: 'limits_conflict', resourceId: 'd1' },
    );
  });

  it('duplicate_credential', () => {
    expectProblem(base({ credentials: [credential('c1', 'r1', 'd1'), credential('c2', 'r1', 'd1')] }), {
      code: 'duplicate_credential',
    });
  });

  it('invalid_credential: never echoing the secret', () => {
    for (const [username, secret] of [
      ['us er', 'ok'],
      ['user\n@evil.example', 'ok'],
      ['a:b', 'ok'],
      ['ok', 'pw\n@evil.example evil:pw'],
      ['ok', 'trailing '],
      ['ok', ''],
    ] as const) {
      const p = expectProblem(base({ credentials: [credential('c1', 'r1', 'd1', username, secret)] }), {
        code: 'invalid_credential',
        resourceId: 'c1',
      });
      if (secret !== 'ok' && secret !== '') expect(p.message).not.toContain(secret.trim());
    }
  });

  it('reports every problem at once, in a stable order', () => {
    const snap = base({
      relays: [relay('r1', { port: 0, tls: 'opportunistic', verify: true })],
      credentials: [credential('c1', 'r1', 'd1', 'a b')],
    });
    const first = problems(snap);
    expect(first.map((p) => p.code).sort()).toEqual(['invalid_credential', 'invalid_host', 'tls_opportunistic_verify']);
    expect(problems({ ...snap, credentials: [...snap.credentials].reverse() })).toEqual(first);
  });
});
