/**
 * The delta probe asks every changed key of every changed table in one `postmap -q` over a
 * `unionmap:`; the answers expected are built from the bundle as the union builds them. The real
 * Postfix answers these scripts in test/deploy/delta-release.test.ts; here, the reading of answers.
 */
import { describe, expect, it } from 'vitest';
import { SEND_WHOLE_UP_TO, bundleDelta } from '../../src/deploy/bundle-delta.js';
import { SENT_TABLE_PROBES, deltaProbeProblems, deltaProbeScript } from '../../src/deploy/delta-probe.js';
import { buildBundle, type Route } from './bundles.js';

const route = (domain: string, user = `u-${domain}`): Route => ({
  domain,
  nexthop: '[127.0.0.1]:2525',
  user,
  password: `pw ${domain}`,
});

const base = buildBundle([route('a.test'), route('b.test'), route('c.test')]);
const next = buildBundle([route('a.test'), route('b.test', 'rotated'), route('d.test')]);
const delta = bundleDelta(base, next, { sendWholeUpTo: 0 })!;
const staging = '/etc/relayplane/releases/next.tmp-1';
const section = (i: number) => `@@relayplane-delta-probe@@ ${i}`;
/** What a union of the staged tables answers when the delta was applied right. */
const rightAnswers = [
  section(0),
  '@b.test\trotated:pw b.test,[127.0.0.1]:2525',
  '@d.test\tu-d.test:pw d.test,[127.0.0.1]:2525',
  '',
].join('\n');

describe('delta probe', () => {
  it('asks every changed key of the changed tables in one union, in the tables order', () => {
    expect(Object.keys(delta.tables)).toEqual(['sasl_passwd', 'sender_relay']);
    const script = deltaProbeScript(staging, delta);
    expect(script.match(/postmap -q/g)).toHaveLength(1);
    expect(script).toContain(`'unionmap:{hash:${staging}/sasl_passwd, hash:${staging}/sender_relay}'`);
    for (const key of ['@b.test', '@c.test', '@d.test']) expect(script).toContain(`\n${key}\n`);
  });

  it('asks a table sent whole at SENT_TABLE_PROBES of its changed keys, spread over them; a patched one at all', () => {
    const names = Array.from({ length: 100 }, (_, i) => `d${String(i).padStart(3, '0')}.test`);
    const before = buildBundle(names.map((d) => route(d)));
    // 25 of 100 rotated: a delta (a table rewritten more than half would be sent as in a full release).
    const rotated = names.slice(0, 25);
    const after = buildBundle(names.map((d, i) => route(d, i < 25 ? `rotated-${d}` : undefined)));
    const probed = (sendWholeUpTo: number) => {
      const script = deltaProbeScript(staging, bundleDelta(before, after, { sendWholeUpTo })!);
      return rotated.filter((d) => script.includes(`\n@${d}\n`));
    };
    const sampled = probed(SEND_WHOLE_UP_TO);
    expect(sampled).toHaveLength(SENT_TABLE_PROBES);
    expect(sampled[0]).toBe(rotated[0]);
    expect(sampled.at(-1)).toBe(rotated.at(-1));
    expect(probed(0)).toEqual(rotated);
  });

  it('looks up the values expected at the changed keys once for every node deploying the delta', () => {
    const own = bundleDelta(base, next, { sendWholeUpTo: 0 })!;
    let reads = 0;
    const counted = {
      ...next,
      files: new Proxy(next.files, {
        get: (files, name) => (reads++, Reflect.get(files, name)),
      }),
    };
    expect(deltaProbeProblems(rightAnswers, counted, own, `${staging}-node1`)).toEqual([]);
    const first = reads;
    expect(first).toBeGreaterThan(0);
    expect(deltaProbeProblems(rightAnswers, counted, own, `${staging}-node2`)).toEqual([]);
    expect(reads).toBe(first);
  });

  it('accepts the answers a union gives: every holding table, in order, joined by commas', () => {
    expect(deltaProbeProblems(rightAnswers, next, delta, staging)).toEqual([]);
  });

  it('refuses a key one table answers wrongly, and a deleted key still answered, without showing secrets', () => {
    const stdout = [
      section(0),
      '@b.test\tu-b.test:pw b.test,[127.0.0.1]:2525',
      '@c.test\tu-c.test:pw c.test,[127.0.0.1]:2525',
      '@d.test\tu-d.test:pw d.test',
      '',
    ].join('\n');
    const problems = deltaProbeProblems(stdout, next, delta, staging);
    expect(problems).toEqual([
      'sasl_passwd, sender_relay: postmap -q @b.test → (secret value differs), expected the new entry',
      'sasl_passwd, sender_relay: postmap -q @d.test → (secret value differs), expected the new entry',
      'sasl_passwd, sender_relay: postmap -q @c.test still answers after its deletion',
    ]);
    expect(problems.join('\n')).not.toContain('pw ');
  });

  it("shows a public table's answer and the one expected", () => {
    const moved = buildBundle([route('a.test'), { ...route('b.test'), nexthop: '[127.0.0.2]:2525' }]);
    const full = bundleDelta(buildBundle([route('a.test')]), moved, { sendWholeUpTo: 0 })!;
    const relayOnly = { ...full, tables: { sender_relay: full.tables.sender_relay! } };
    const problems = deltaProbeProblems(`${section(0)}\n@b.test\t[127.0.0.1]:2525\n`, moved, relayOnly, staging);
    expect(problems).toEqual(['sender_relay: postmap -q @b.test → "[127.0.0.1]:2525", expected "[127.0.0.2]:2525"']);
  });

  it('asks each table alone when a staged path cannot go in a union list', () => {
    const odd = '/srv/relay plane/releases/next.tmp-1';
    const script = deltaProbeScript(odd, delta);
    expect(script.match(/postmap -q/g)).toHaveLength(2);
    expect(script).not.toContain('unionmap');
    const stdout = [
      section(0),
      '@b.test\trotated:pw b.test',
      '@d.test\tu-d.test:pw d.test',
      section(1),
      '@d.test\t[127.0.0.1]:2525',
      '',
    ].join('\n');
    expect(deltaProbeProblems(stdout, next, delta, odd)).toEqual([]);
  });
});
