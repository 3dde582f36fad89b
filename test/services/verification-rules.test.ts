/**
 * The pure rules behind domain verification's newer transitions: how long DNS failures may leave
 * records unknown, and when a route gives DMARC nothing to pass on. (The API tests drive the same
 * rules against a real DNS server: test/api/domain-verification.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import type { RecordCheck } from '../../src/dns/index.js';
import type { Relay } from '../../src/generated/prisma/client.js';
import { alignmentWarnings } from '../../src/services/dmarc-alignment.js';
import { boundUnknown, nextStatus } from '../../src/services/verification-rules.js';

const check = (purpose: RecordCheck['purpose'], valid: boolean | null, required = true): RecordCheck => ({
  purpose,
  type: 'TXT',
  host: `${purpose}.bound.test`,
  value: 'v',
  required,
  valid,
  observed: [],
  reason: valid === null ? 'DNS lookup failed: SERVFAIL' : null,
  checkedAt: '2026-12-04T00:00:00.000Z',
});
const at = new Date('2026-12-04T12:00:00Z');
const ago = (s: number) => new Date(at.getTime() - s * 1000);

describe('boundUnknown', () => {
  it('starts the count at the first unknown check and keeps it while records stay unknown', () => {
    expect(boundUnknown([check('dmarc', null)], null, at, 600).uncheckableSince).toEqual(at);
    const kept = boundUnknown([check('dmarc', null), check('spf', true)], ago(599), at, 600);
    expect(kept.uncheckableSince).toEqual(ago(599));
    expect(kept.checks[0]?.valid).toBeNull();
  });

  it('ends the count when every required record answered; unknown optional records do not count', () => {
    expect(boundUnknown([check('dmarc', false), check('return_path', null, false)], ago(9999), at, 600)).toMatchObject({
      uncheckableSince: null,
    });
  });

  it('turns unknown required records wrong once the limit passed, so verified degrades and degraded fails', () => {
    const bounded = boundUnknown(
      [check('dmarc', null), check('spf', true), check('return_path', null, false)],
      ago(600),
      at,
      600,
    );
    expect(bounded.checks.map((c) => c.valid)).toEqual([false, true, null]);
    expect(bounded.checks[0]?.reason).toBe(
      `could not be checked since ${ago(600).toISOString()} (over 600 s): DNS lookup failed: SERVFAIL`,
    );
    const settings = { pendingTimeoutSeconds: 1e6, degradedGraceSeconds: 3600 };
    expect(nextStatus('verified', bounded.checks, { statusChangedAt: ago(10), now: at }, settings)).toBe('degraded');
    expect(nextStatus('degraded', bounded.checks, { statusChangedAt: ago(3600), now: at }, settings)).toBe('failed');
  });
});

describe('alignmentWarnings', () => {
  const relay = (over: Partial<Relay>) => ({ name: 'r', spfInclude: null, dkim: [], ...over }) as unknown as Relay;
  const domain = { name: 'a.test', route: 'relay' as const };

  it('warns for each relay of the route that declares neither an SPF include nor DKIM', () => {
    expect(alignmentWarnings(domain, [{ field: 'relayId', relay: relay({ spfInclude: '_spf.r.test' }) }])).toEqual([]);
    expect(
      alignmentWarnings(domain, [
        { field: 'relayId', relay: relay({ dkim: [{ selector: 's', type: 'CNAME', value: 's.r.test' }] as never }) },
      ]),
    ).toEqual([]);
    // DKIM from a provider template (per-domain CNAMEs) counts; a template without required DKIM does not.
    const template = (required: boolean) =>
      ({
        variables: [],
        records: [{ purpose: 'dkim', type: 'CNAME', name: 't._domainkey', value: 't.dkim.r.test', required }],
      }) as never;
    expect(alignmentWarnings(domain, [{ field: 'relayId', relay: relay({ authTemplate: template(true) }) }])).toEqual(
      [],
    );
    expect(
      alignmentWarnings(domain, [{ field: 'relayId', relay: relay({ authTemplate: template(false) }) }]),
    ).toHaveLength(1);
    const warned = alignmentWarnings(domain, [
      { field: 'relayId', relay: relay({ spfInclude: '_spf.r.test' }) },
      { field: 'fallbackRelayId', relay: relay({ name: 'bare' }) },
    ]);
    expect(warned.map((w) => [w.code, w.message.startsWith('the relay of fallbackRelayId (bare)')])).toEqual([
      ['no-dmarc-pass', true],
    ]);
  });

  it('warns for a direct route', () => {
    expect(alignmentWarnings({ name: 'a.test', route: 'direct' }, [])).toHaveLength(1);
  });
});
