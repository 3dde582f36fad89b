/**
 * The SPF record to publish given the published one: the relays' includes merged in before `all`
 * or `redirect=`, everything else kept as written; warnings for risky terms.
 */
import { describe, expect, it } from 'vitest';
import { mergeSpf, parseSpf } from '../../src/dns/index.js';

describe('mergeSpf', () => {
  it.each<[string, string[], string[], string]>([
    ['none published: a new record', [], ['mailgun.org'], 'v=spf1 include:mailgun.org ~all'],
    [
      'none among other TXT records',
      ['google-site-verification=x'],
      ['mailgun.org'],
      'v=spf1 include:mailgun.org ~all',
    ],
    [
      '~all kept, the include before it',
      ['v=spf1 include:_spf.google.com ~all'],
      ['mailgun.org'],
      'v=spf1 include:_spf.google.com include:mailgun.org ~all',
    ],
    [
      '-all kept',
      ['v=spf1 ip4:192.0.2.1 mx -all'],
      ['mailgun.org'],
      'v=spf1 ip4:192.0.2.1 mx include:mailgun.org -all',
    ],
    [
      'redirect= kept, the include before it',
      ['v=spf1 mx redirect=_spf.shop.example'],
      ['mailgun.org'],
      'v=spf1 mx include:mailgun.org redirect=_spf.shop.example',
    ],
    [
      'only redirect=',
      ['v=spf1 redirect=_spf.shop.example'],
      ['mailgun.org'],
      'v=spf1 include:mailgun.org redirect=_spf.shop.example',
    ],
    ['no all, no redirect: appended', ['v=spf1 a'], ['mailgun.org'], 'v=spf1 a include:mailgun.org'],
    [
      'modifiers and terms after all kept as written',
      ['v=spf1 a exp=explain.%{d} -all foo=bar'],
      ['mailgun.org'],
      'v=spf1 a exp=explain.%{d} include:mailgun.org -all foo=bar',
    ],
    [
      'both relays',
      ['v=spf1 ~all'],
      ['_spf.provider.test', '_spf.backup.test'],
      'v=spf1 include:_spf.provider.test include:_spf.backup.test ~all',
    ],
    [
      'case and spacing of the rest kept',
      ['V=SPF1  Include:_SPF.Google.com  ~ALL'],
      ['mailgun.org'],
      'V=SPF1 Include:_SPF.Google.com include:mailgun.org ~ALL',
    ],
    [
      'an include with another qualifier becomes a pass',
      ['v=spf1 ?include:mailgun.org -all'],
      ['mailgun.org'],
      'v=spf1 include:mailgun.org -all',
    ],
    [
      'an include after all moves before it',
      ['v=spf1 a -all include:mailgun.org'],
      ['mailgun.org'],
      'v=spf1 a include:mailgun.org -all',
    ],
  ])('%s', (_, published, includes, value) => {
    const merged = mergeSpf(published, includes);
    expect(merged).toMatchObject({ value, changed: true, note: null });
    expect(parseSpf(merged.value).ok).toBe(true);
  });

  it('a record that already includes the relay (any case, trailing dot) is kept unchanged', () => {
    const published = 'v=spf1 include:_spf.google.com include:MAILGUN.org. ~all';
    expect(mergeSpf([published], ['mailgun.org'])).toEqual({
      value: published,
      changed: false,
      warnings: [],
      note: null,
    });
  });

  it('two published records: merged into the first, with a note to publish it in their place', () => {
    expect(mergeSpf(['v=spf1 a -all', 'v=spf1 include:_spf.google.com ~all'], ['mailgun.org'])).toEqual({
      value: 'v=spf1 a include:mailgun.org -all',
      changed: true,
      warnings: [],
      note: '2 SPF records are published (a permerror): publish this one in their place',
    });
  });

  it('an invalid published record is replaced by a new one, with the reason', () => {
    expect(mergeSpf(['v=spf1 ip4:1.2.3.4/33 ~all'], ['mailgun.org'])).toEqual({
      value: 'v=spf1 include:mailgun.org ~all',
      changed: true,
      warnings: [],
      note: 'the published SPF record is invalid (invalid ip4 network "1.2.3.4/33"): publish this one in its place',
    });
  });

  it.each<[string, string, RegExp[]]>([
    ['+all', 'v=spf1 include:mailgun.org +all', [/^"\+all" lets every host/]],
    ['bare all (a pass)', 'v=spf1 include:mailgun.org all', [/^"\+all" lets every host/]],
    ['?all', 'v=spf1 include:mailgun.org ?all', [/^"\?all" makes mail from any other host neutral/]],
    [
      'ptr, once however often',
      'v=spf1 ptr ptr:shop.example include:mailgun.org -all',
      [/^"ptr" is slow, unreliable and deprecated/],
    ],
    ['ptr and +all', 'v=spf1 ptr include:mailgun.org +all', [/^"ptr"/, /^"\+all"/]],
  ])('warns on %s', (_, published, patterns) => {
    const { warnings } = mergeSpf([published], ['mailgun.org']);
    expect(warnings).toHaveLength(patterns.length);
    patterns.forEach((p, i) => expect(warnings[i]).toMatch(p));
  });

  it('no warning for ~all, -all, or terms after all (never evaluated)', () => {
    expect(mergeSpf(['v=spf1 include:mailgun.org ~all'], ['mailgun.org']).warnings).toEqual([]);
    expect(mergeSpf(['v=spf1 include:mailgun.org -all ptr +all'], ['mailgun.org']).warnings).toEqual([]);
  });
});
