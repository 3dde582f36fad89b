/**
 * The incremental compiler must give exactly what compile() gives, for every snapshot in a sequence
 * of changes: the same bundle (version, files, parameters, services, warnings) or the same refusal.
 * Unchanged rows are passed as the same objects, as the snapshot loader does; changed rows as new
 * objects, some of them equal in content to the old ones.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CompileError, compile, explainRoute, type Snapshot } from '../../src/postfix/index.js';
import { planWithQuarantine } from '../../src/postfix/quarantine.js';
import { createIncrementalCompiler } from '../../src/postfix/incremental.js';
import { pairsFor, snapshotArb } from './arbitraries.js';
import { credential, domain, fingerprintOf, relay, snapshot, tenant, withSecret } from './fixtures.js';

type Outcome = { bundle: ReturnType<typeof compile> } | { refused: CompileError['problems'] };

function outcome(run: () => ReturnType<typeof compile>): Outcome {
  try {
    return { bundle: run() };
  } catch (error) {
    if (!(error instanceof CompileError)) throw error;
    return { refused: error.problems };
  }
}

/** Rows of `previous` kept (same object), replaced by `other`'s row of the same id, copied, or dropped; some of `other`'s new ids added. */
function mixRows<T extends { id: string }>(previous: readonly T[], other: readonly T[], pick: () => number): T[] {
  const others = new Map(other.map((row) => [row.id, row]));
  const ids = new Set(previous.map((row) => row.id));
  const rows: T[] = [];
  for (const row of previous) {
    const choice = pick();
    if (choice < 6) rows.push(row);
    else if (choice === 6) rows.push(others.get(row.id) ?? row);
    else if (choice === 7) rows.push({ ...row });
    // 8: dropped
  }
  for (const row of other) if (!ids.has(row.id) && pick() >= 6) rows.push(row);
  return pick() % 2 === 0 ? rows : rows.reverse();
}

/**
 * One change. Scopes 0-3: domains and credentials (relay-wide ones included); 4, 5, 6: tenants,
 * relays or destination policies alone, with credentials; 7: all of those together; 8: everything,
 * the settings too.
 */
function change(previous: Snapshot, other: Snapshot, scope: number, picks: number[]): Snapshot {
  let i = 0;
  const pick = () => picks[i++ % picks.length] ?? 0;
  const next: Snapshot = { ...previous, credentials: mixRows(previous.credentials, other.credentials, pick) };
  if (scope <= 3 || scope >= 7) next.domains = mixRows(previous.domains, other.domains, pick);
  if (scope === 4 || scope >= 7) next.tenants = mixRows(previous.tenants, other.tenants, pick);
  if (scope === 5 || scope >= 7) next.relays = mixRows(previous.relays, other.relays, pick);
  if (scope === 6 || scope >= 7)
    next.destinationPolicies = mixRows(previous.destinationPolicies, other.destinationPolicies, pick);
  if (scope === 8) next.settings = other.settings;
  return next;
}

describe('incremental compiler', () => {
  it('equals compile() over random sequences of changes', { timeout: 120_000 }, () => {
    const modes = { full: 0, incremental: 0, refused: 0, quarantined: 0 };
    const steps = fc.array(
      fc.record({
        other: snapshotArb,
        scope: fc.nat({ max: 8 }),
        picks: fc.array(fc.nat({ max: 8 }), { minLength: 1, maxLength: 30 }),
      }),
      {
        minLength: 1,
        maxLength: 8,
      },
    );
    fc.assert(
      fc.property(snapshotArb, steps, (first, changes) => {
        const compiler = createIncrementalCompiler();
        let current = first;
        for (const step of [null, ...changes]) {
          if (step !== null) current = change(current, step.other, step.scope, step.picks);
          const snap = current;
          // The same last-good rows as the incremental compiler holds: a quarantine falls back to them.
          const lastGood = compiler.lastGood;
          const expected = outcome(() => compile(snap, { lastGood }));
          const actual = outcome(() => compiler.compile(snap));
          expect(actual).toEqual(expected);
          // The kept plan explains every sender exactly as a plan made from scratch.
          if ('bundle' in actual) {
            const plan = planWithQuarantine(snap, lastGood).detailed.plan;
            for (const [sender, recipient] of pairsFor(snap))
              expect(explainRoute(compiler.plan!, sender, recipient)).toEqual(explainRoute(plan, sender, recipient));
            if (actual.bundle.quarantine.length > 0) modes.quarantined += 1;
          } else {
            expect(compiler.plan).toBeNull();
          }
          if ('refused' in actual) modes.refused += 1;
          else if (compiler.lastMode !== null) modes[compiler.lastMode] += 1;
        }
      }),
      { numRuns: Number(process.env.RP_INCREMENTAL_RUNS ?? 300) },
    );
    // Both paths must actually be taken, or this test proves nothing about the incremental one.
    expect(modes.incremental).toBeGreaterThan(100);
    expect(modes.full).toBeGreaterThan(50);
    // Nothing is refused whole any more: what cannot be expressed is quarantined.
    expect(modes.refused).toBe(0);
    expect(modes.quarantined).toBeGreaterThan(10);
  });

  it('keeps the relay groups of routes through a shared nexthop when one member changes', () => {
    // r1 and r2 share a [host]:port with other TLS levels, so a.example and c.example (via r0 then
    // r1) are a group even without limits: a's own credential splits it into a service each.
    const first = snapshot({
      tenants: [tenant('t0')],
      relays: [
        relay('r0', { host: 'smtp.one.test' }),
        relay('r1', { host: 'mx.shared.test' }),
        relay('r2', { host: 'mx.shared.test', verify: true }),
      ],
      domains: [
        domain('d0', 't0', 'a.example', { relayId: 'r0', fallbackRelayId: 'r1' }),
        domain('d1', 't0', 'b.example', { relayId: 'r2' }),
        domain('d2', 't0', 'c.example', { relayId: 'r0', fallbackRelayId: 'r1' }),
      ],
      credentials: [credential('c0', 'r0', 'd0')],
    });
    const compiler = createIncrementalCompiler();
    compiler.compile(first);
    const next = { ...first, domains: first.domains.map((d) => (d.id === 'd0' ? { ...d } : d)) };
    expect(compiler.compile(next)).toEqual(compile(next));
    expect(compiler.lastMode).toBe('incremental');
  });

  /** 2,000 domains on a plain relay, a limited relay (a generated service) and an implicit-TLS pair with fallbacks. */
  function fleet(): Snapshot {
    const limited = {
      concurrency: 5,
      rateDelaySeconds: null,
      recipientsPerMessage: null,
      connectionReuseSeconds: null,
    };
    const relays = [
      relay('plain', { host: 'smtp.plain.test' }),
      relay('limited', { host: 'smtp.limited.test', limits: limited }),
      relay('tls-a', { host: 'a.tls.test', port: 465, tls: 'implicit' }),
      relay('tls-b', { host: 'b.tls.test', port: 465, tls: 'implicit' }),
    ];
    const tenants = Array.from({ length: 200 }, (_, i) => tenant(`t${i}`));
    const domains = Array.from({ length: 2000 }, (_, i) =>
      domain(`d${i}`, `t${i % 200}`, `d${i}.fleet.test`, {
        relayId: ['plain', 'limited', 'tls-a'][i % 3]!,
        fallbackRelayId: i % 3 === 2 && i % 2 === 0 ? 'tls-b' : null,
        status: i % 50 === 0 ? 'pending' : 'verified',
      }),
    );
    const credentials = domains.filter((_, i) => i % 4 !== 3).map((d) => credential(`c-${d.id}`, d.relayId!, d.id));
    return snapshot({ tenants, relays, domains, credentials });
  }

  /** A compiler that compiled the fleet, and `step`: compile the next snapshot incrementally, exactly as compile() would. */
  function onFleet() {
    const compiler = createIncrementalCompiler();
    let current = fleet();
    const initial = compiler.compile(current);
    expect(compiler.lastMode).toBe('full');
    return {
      initial,
      get current() {
        return current;
      },
      step(next: Snapshot) {
        current = next;
        const bundle = compiler.compile(next);
        expect(bundle).toEqual(compile(next));
        expect(compiler.lastMode).toBe('incremental');
        return bundle;
      },
    };
  }

  it('warns about a domain it did not redo when its relay gains or loses credentials of other domains', () => {
    const run = onFleet();
    const { step } = run;
    const warning = /quiet\.fleet\.test sends to relay \[smtp\.quiet\.test\]:587 without authentication/;
    const onQuiet = (id: string, name: string) => domain(id, 't1', name, { relayId: 'quiet' });
    const start = step({
      ...run.current,
      relays: [...run.current.relays, relay('quiet', { host: 'smtp.quiet.test' })],
      domains: [...run.current.domains, onQuiet('quiet', 'quiet.fleet.test'), onQuiet('loud', 'loud.fleet.test')],
    });
    expect(start.warnings.some((w) => warning.test(w))).toBe(false);
    // Only loud.fleet.test changes (a credential of its own on the relay): quiet's route is kept as it was.
    const withOther = step({
      ...run.current,
      credentials: [...run.current.credentials, credential('c-loud', 'quiet', 'loud')],
    });
    expect(withOther.warnings.some((w) => warning.test(w))).toBe(true);
    const without = step({ ...run.current, credentials: run.current.credentials.filter((c) => c.id !== 'c-loud') });
    expect(without.warnings.some((w) => warning.test(w))).toBe(false);
  });

  it('takes the incremental path for onboarding, rotation, moves, disabling and deletion, with the same result', () => {
    const run = onFleet();
    const { step, initial } = run;

    const onboarded = domain('new', 't7', 'new.fleet.test', { relayId: 'limited' });
    const added = step({
      ...run.current,
      domains: [...run.current.domains, onboarded],
      credentials: [...run.current.credentials, credential('c-new', 'limited', 'new')],
    });
    expect(added.version).not.toBe(initial.version);
    expect(added.files.sasl_passwd?.content).toContain('@new.fleet.test ');

    // Rotation: a new credential object with a new secret.
    const rotated = step({
      ...run.current,
      credentials: run.current.credentials.map((c) => (c.id === 'c-d1' ? withSecret(c, 'rotated-secret') : c)),
    });
    expect(rotated.files.sasl_passwd?.content).toContain('@d1.fleet.test user-c-d1:rotated-secret\n');
    expect(rotated.files.sasl_passwd?.masked).toContain(
      `@d1.fleet.test user-c-d1:sha:${fingerprintOf('rotated-secret')}\n`,
    );

    // A domain moves from the plain relay into the implicit-TLS group with a fallback whose credentials differ: the group splits.
    step({
      ...run.current,
      domains: run.current.domains.map((d) =>
        d.id === 'd3' ? { ...d, relayId: 'tls-a', fallbackRelayId: 'tls-b' } : d,
      ),
    });

    // Disabled, renamed, deleted (with its credential), suspended-tenant's new domain.
    step({
      ...run.current,
      domains: run.current.domains.map((d) =>
        d.id === 'd4'
          ? { ...d, status: 'disabled' as const }
          : d.id === 'd5'
            ? { ...d, name: 'renamed.fleet.test' }
            : d,
      ),
    });
    step({
      ...run.current,
      domains: run.current.domains.filter((d) => d.id !== 'd6'),
      credentials: run.current.credentials.filter((c) => c.domainId !== 'd6'),
    });
    step({
      ...run.current,
      tenants: [...run.current.tenants, tenant('t-new', { status: 'suspended' })],
      domains: [...run.current.domains, domain('dn', 't-new', 'suspended.fleet.test', { relayId: 'plain' })],
    });

    // Equal content in new objects is still the same bundle.
    const copied = step({ ...run.current, domains: run.current.domains.map((d) => (d.id === 'd7' ? { ...d } : d)) });
    expect(copied.version).toBe(compile(run.current).version);
    // The same rows again, in new arrays and another order: the previous bundle, not compiled again.
    expect(
      step({ ...run.current, domains: [...run.current.domains].reverse(), tenants: [...run.current.tenants] }),
    ).toBe(copied);
  });

  it('takes the incremental path for tenant, relay, relay-wide credential and destination policy changes, with the same result', () => {
    const run = onFleet();
    const { step } = run;

    // Billing suspends a tenant: its ten domains lose their routes (sender_access rejects them).
    const suspended = step({
      ...run.current,
      tenants: run.current.tenants.map((t) => (t.id === 't3' ? { ...t, status: 'suspended' as const } : t)),
    });
    expect(suspended.files.sender_access?.content).toContain(
      '\nd3.fleet.test REJECT Relayplane: the tenant of sender domain d3.fleet.test is suspended\n',
    );
    expect(suspended.files.sender_relay?.content).not.toContain('@d3.fleet.test ');
    // Tenant default limits give each of its domains a service of its own.
    step({
      ...run.current,
      tenants: run.current.tenants.map((t) =>
        t.id === 't4'
          ? { ...t, defaultLimits: { concurrency: 2, rateDelaySeconds: null, recipientsPerMessage: null } }
          : t,
      ),
    });

    // An admin rotates the plain relay's platform credential: the domains there without their own get it.
    const wide = credential('wide-plain', 'plain', null);
    const added = step({ ...run.current, credentials: [...run.current.credentials, wide] });
    expect(added.files.sasl_passwd?.content).toContain('@d15.fleet.test user-wide-plain:');
    const rotated = step({
      ...run.current,
      credentials: run.current.credentials.map((c) => (c.id === 'wide-plain' ? withSecret(c, 'rotated-wide') : c)),
    });
    expect(rotated.files.sasl_passwd?.content).toContain('@d15.fleet.test user-wide-plain:rotated-wide\n');

    // A relay moves to another port and gets limits: new nexthop in every table of its domains.
    const moved = step({
      ...run.current,
      relays: run.current.relays.map((r) =>
        r.id === 'plain'
          ? {
              ...r,
              port: 2525,
              limits: {
                concurrency: 3,
                rateDelaySeconds: null,
                recipientsPerMessage: null,
                connectionReuseSeconds: null,
              },
            }
          : r,
      ),
    });
    expect(moved.files.sender_relay?.content).toContain('@d6.fleet.test [smtp.plain.test]:2525\n');
    expect(moved.files.tls_policy?.content).toContain('[smtp.plain.test]:2525 ');
    expect(moved.files.tls_policy?.content).not.toContain('[smtp.plain.test]:587 ');

    // A destination policy added, then changed.
    step({
      ...run.current,
      destinationPolicies: [
        ...run.current.destinationPolicies,
        { id: 'p1', pattern: 'gmail.test', tls: 'encrypt', concurrency: null, rateDelaySeconds: null },
      ],
    });
    const policy = step({
      ...run.current,
      destinationPolicies: run.current.destinationPolicies.map((p) =>
        p.id === 'p1' ? { ...p, tls: 'secure' as const } : p,
      ),
    });
    expect(policy.files.tls_policy?.content).toContain('gmail.test secure\n');
  });

  it('compiles fully when the settings or many domains change, and quarantines what compile() quarantines', () => {
    const compiler = createIncrementalCompiler();
    let current = fleet();
    compiler.compile(current);
    current = { ...current, settings: { ...current.settings, defaultConcurrency: 7 } };
    expect(compiler.compile(current)).toEqual(compile(current));
    expect(compiler.lastMode).toBe('full');

    // A relay removed while domains still use it: those domains are held (quarantined), by both alike.
    const orphaned = { ...current, relays: current.relays.filter((r) => r.id !== 'tls-b') };
    let lastGood = compiler.lastGood;
    const held = compiler.compile(orphaned);
    expect(held).toEqual(compile(orphaned, { lastGood }));
    expect(held.quarantine.map((u) => [u.resourceType, u.treatment])).toEqual(
      Array(held.quarantine.length).fill(['domain', 'held']),
    );
    expect(held.quarantine.length).toBeGreaterThan(300);
    compiler.compile(current);
    expect(compiler.lastMode).toBe('full');

    current = { ...current, domains: current.domains.map((d, i) => (i < 1500 ? { ...d } : d)) };
    expect(compiler.compile(current)).toEqual(compile(current));
    expect(compiler.lastMode).toBe('full');

    // A relay change reaches its domains: one relay's 667 of the 2,000 are redone incrementally;
    // two relays' 1,333 are more than REACHED_SHARE and MIN_BULK, so everything is compiled again.
    const moveRelays = (ids: string[], port: number) => ({
      ...current,
      relays: current.relays.map((r) => (ids.includes(r.id) ? { ...r, port } : r)),
    });
    current = moveRelays(['plain'], 2526);
    expect(compiler.compile(current)).toEqual(compile(current));
    expect(compiler.lastMode).toBe('incremental');
    current = moveRelays(['plain', 'limited'], 2527);
    expect(compiler.compile(current)).toEqual(compile(current));
    expect(compiler.lastMode).toBe('full');

    // A domain taking another's name: only that domain is quarantined, by both alike; the next
    // good change compiles in full (a quarantine keeps no incremental state), then incrementally.
    const duplicate = {
      ...current,
      domains: [...current.domains, domain('dup', 't1', 'd1.fleet.test', { relayId: 'plain' })],
    };
    lastGood = compiler.lastGood;
    const quarantined = compiler.compile(duplicate);
    expect(quarantined).toEqual(compile(duplicate, { lastGood }));
    expect(quarantined.quarantine).toEqual([
      expect.objectContaining({ resourceType: 'domain', resourceId: 'dup', treatment: 'held', tenantId: 't1' }),
    ]);
    expect(quarantined.files.sender_access?.content).toContain('d1.fleet.test OK\n');
    const good = {
      ...current,
      domains: [...current.domains, domain('ok', 't1', 'ok.fleet.test', { relayId: 'plain' })],
    };
    expect(compiler.compile(good)).toEqual(compile(good));
    expect(compiler.lastMode).toBe('full');
    const next = { ...good, domains: [...good.domains, domain('ok2', 't1', 'ok2.fleet.test', { relayId: 'plain' })] };
    expect(compiler.compile(next)).toEqual(compile(next));
    expect(compiler.lastMode).toBe('incremental');
  });
});
