/**
 * Map encoding: the validators' rules, the Postfix behaviour that makes each rule necessary (shown
 * with real postmap), and fast-check round trips: whatever a validator accepts survives
 * postmap + `postmap -q` byte for byte.
 */
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isMapSafeKey,
  isMapSafeValue,
  isValidDestinationPattern,
  isValidDomainName,
  isValidRelayHost,
  isValidSaslSecret,
  isValidSaslUsername,
} from '../../src/postfix/index.js';
import { MapEncodingError, renderHashMap, saslPasswordValue } from '../../src/postfix/map-encoding.js';
import { POSTMAP, postfixToolsGate, run, runClean } from './postfix-harness.js';

describe('validators', () => {
  it('domain names: lower-case ASCII DNS names with two or more labels', () => {
    for (const ok of ['a.example', 'xn--bcher-kva.example', 'mail-1.sub.example.co.uk', `${'a'.repeat(63)}.example`])
      expect(isValidDomainName(ok), ok).toBe(true);
    for (const bad of [
      '',
      'example',
      'A.example',
      'a.example.',
      '.a.example',
      'a..example',
      '-a.example',
      'a-.example',
      'a_b.example',
      'a.example\nevil.example',
      'a.example evil',
      'a.example\u0000',
      'ä.example',
      '1.2.3.4',
      `${'a'.repeat(64)}.example`,
      `${'a.'.repeat(127)}example`,
    ]) {
      expect(isValidDomainName(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('destination patterns and relay hosts', () => {
    expect(isValidDestinationPattern('.yahoo.example')).toBe(true);
    expect(isValidDestinationPattern('..yahoo.example')).toBe(false);
    expect(isValidDestinationPattern('.com')).toBe(false);
    for (const ok of ['smtp.provider.example', 'localhost', '192.0.2.1', '2001:db8::25'])
      expect(isValidRelayHost(ok), ok).toBe(true);
    for (const bad of [
      '[192.0.2.1]',
      'SMTP.example',
      'fe80::1%eth0',
      '2001:DB8::1',
      '999.1.1.1',
      'smtp.example\n',
      'smtp example',
      'host:25',
    ])
      expect(isValidRelayHost(bad), bad).toBe(false);
  });

  it('SASL usernames: no whitespace, no ":", no control characters', () => {
    for (const ok of ['user', 'user@example.com', 'apikey', 'ü-sér', '#hash', '"quoted"'])
      expect(isValidSaslUsername(ok), ok).toBe(true);
    for (const bad of ['', 'us er', 'user\n', 'a:b', 'tab\tuser', 'nb\u00a0sp', 'x'.repeat(256), '\ud800'])
      expect(isValidSaslUsername(bad), JSON.stringify(bad)).toBe(false);
  });

  it('SASL secrets: inner spaces, ":", "#", quotes and non-ASCII yes; controls and edge whitespace no', () => {
    for (const ok of ['pa ss:wo rd', '#start', 'quo"te\'s', 'ünï€ødé 😀', 'a:b:c', 'in\u00a0ner', '$1\\n'])
      expect(isValidSaslSecret(ok), ok).toBe(true);
    for (const bad of [
      '',
      ' lead',
      'trail ',
      'new\nline',
      'cr\r',
      'tab\tx',
      'nul\u0000',
      'del\u007f',
      'c1\u0085',
      'nbsp\u00a0',
      '\u2028x',
      'lone\ud800',
      'x'.repeat(1025),
    ]) {
      expect(isValidSaslSecret(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('map keys: printable ASCII, no upper case, not a comment', () => {
    expect(isMapSafeKey('@a.example')).toBe(true);
    expect(isMapSafeKey('[smtp.example]:587')).toBe(true);
    for (const bad of ['', '#x', '@A.example', 'a b', 'a\nb', '@ä.example', '@a\\b', '@"a', '@a:'])
      expect(isMapSafeKey(bad), JSON.stringify(bad)).toBe(false);
    expect(isMapSafeValue(' x')).toBe(false);
  });
});

describe('validators agree with their definitions as regular expressions', () => {
  // The validators take loops and ASCII fast paths (they run on every key and value of 100,000
  // domains); these are the rules they implement, as first written.
  const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
  const dnsName = (name: string, minLabels: number) =>
    name.length > 0 &&
    name.length <= 253 &&
    new RegExp(`^${LABEL}(?:\\.${LABEL})*$`).test(name) &&
    name.split('.').length >= minLabels &&
    !/^\d+$/.test(name.split('.').at(-1) ?? '');
  const reference = {
    key: (k: string) =>
      k.length > 0 &&
      k.length <= 1024 &&
      /^[\x21\x23-\x40\x5b\x5d-\x7e]+$/.test(k) &&
      !k.startsWith('#') &&
      !k.endsWith(':'),
    value: (v: string) => v.length > 0 && v.length <= 4096 && !/[\p{Cc}\p{Cs}]/u.test(v) && !/^\s|\s$/u.test(v),
    username: (u: string) => u.length > 0 && u.length <= 255 && !/[\s:\p{Cc}\p{Cs}]/u.test(u),
  };
  const edgy = fc.constantFrom(
    ' ',
    ':',
    '#',
    '"',
    '\\',
    '.',
    '-',
    '@',
    '\t',
    '\n',
    '\u007f',
    '\u0085',
    '\u00a0',
    '\u2028',
    '\ud800',
    'é',
    'A',
    'z',
    '0',
    '9',
    '~',
    '!',
  );
  const text = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.string({ unit: edgy, maxLength: 12 }),
    fc.string({ unit: fc.constantFrom('a', 'b', '0', '1', '-', '.'), maxLength: 70 }),
    fc.domain(),
  );

  it('keys, values, usernames and domain names', () => {
    fc.assert(
      fc.property(text, (t) => {
        expect(isMapSafeKey(t)).toBe(reference.key(t));
        expect(isMapSafeValue(t)).toBe(reference.value(t));
        expect(isValidSaslUsername(t)).toBe(reference.username(t));
        expect(isValidDomainName(t)).toBe(dnsName(t, 2));
        expect(isValidRelayHost(t) || !dnsName(t, 1)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('rendering refuses injection', () => {
  it('a key or value that would splice a second entry never reaches a map', () => {
    expect(() => renderHashMap([['@a.example\n@evil.example', 'x']])).toThrow(MapEncodingError);
    expect(() => renderHashMap([['@a.example', 'user:pw\n@evil.example evil:pw']])).toThrow(MapEncodingError);
    expect(() => renderHashMap([['@a.example', 'x\n continued']])).toThrow(MapEncodingError);
    expect(() =>
      renderHashMap([
        ['@a.example', 'x'],
        ['@a.example', 'y'],
      ]),
    ).toThrow(/duplicate/);
    expect(
      renderHashMap([
        ['@b.example', 'b'],
        ['@a.example', 'a'],
      ]),
    ).toBe('@a.example a\n@b.example b\n');
  });
});

const title = 'round trips through real postmap';

describe.skipIf(!postfixToolsGate(title))(title, () => {
  let dir: string;
  const configs: string[] = [];
  let counter = 0;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'relayplane-mapenc-'));
    // Nodes may run with smtputf8_enable yes (Postfix 3.7 default) or no: both must round-trip.
    for (const utf8 of ['yes', 'no']) {
      const conf = path.join(dir, `conf-${utf8}`);
      await run('mkdir', ['-p', conf]);
      await writeFile(path.join(conf, 'main.cf'), `compatibility_level = 3.6\nsmtputf8_enable = ${utf8}\n`);
      await writeFile(path.join(conf, 'master.cf'), '');
      const past = new Date(Date.now() - 60_000); // a "hot" main.cf makes every postconf read doze
      await utimes(path.join(conf, 'main.cf'), past, past);
      configs.push(conf);
    }
  });
  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** postmap a source text in both configs; returns `postmap -q -` answers per config. */
  async function roundTrip(source: string, keys: string[]): Promise<Array<Map<string, string>>> {
    const results: Array<Map<string, string>> = [];
    for (const conf of configs) {
      const file = path.join(dir, `map-${counter++}`);
      await writeFile(file, source);
      await runClean(POSTMAP ?? 'postmap', ['-c', conf, `hash:${file}`]);
      const r = await run(
        POSTMAP ?? 'postmap',
        ['-c', conf, '-q', '-', `hash:${file}`],
        keys.map((k) => `${k}\n`).join(''),
      );
      expect(r.stderr).toBe('');
      const found = new Map<string, string>();
      for (const line of r.stdout.split('\n')) {
        const tab = line.indexOf('\t');
        if (tab > 0) found.set(line.slice(0, tab), line.slice(tab + 1));
      }
      results.push(found);
    }
    return results;
  }

  it('shows the Postfix behaviour each rule guards against', async () => {
    const raw =
      '@a.example u:x\ty\n@b.example u:trail \t \n@c.example u:cr\r\n@d.example u:first\n second\n#@e.example u:comment\n@F.EXAMPLE u:upper\n' +
      '@g.example u:nul\u0000after\n';
    const keys = ['@a.example', '@b.example', '@c.example', '@d.example', '@e.example', '@f.example', '@g.example'];
    // Key quoting: `\` escapes the space (the key runs on), an unbalanced `"` drops the line.
    const file = path.join(dir, 'behaviour');
    await writeFile(file, '@h\\ x u:escaped\n@i"x u:quote\n');
    const built = await run(POSTMAP ?? 'postmap', ['-c', configs[0] ?? '', `hash:${file}`]);
    expect(built.code).toBe(0); // exit 0 despite the warning
    expect(built.stderr).toMatch(/unbalanced '"'/);
    expect((await runClean(POSTMAP ?? 'postmap', ['-c', configs[0] ?? '', '-s', `hash:${file}`])).trim()).toBe(
      '@h\\ x\tu:escaped',
    );
    const [found] = await roundTrip(raw, keys);
    expect(found?.get('@b.example')).toBe('u:trail'); // trailing whitespace stripped
    expect(found?.get('@c.example')).toBe('u:cr'); // CR stripped
    expect(found?.get('@d.example')).toBe('u:first second'); // a line starting with whitespace continues the entry
    expect(found?.has('@e.example')).toBe(false); // `#` at line start is a comment
    expect(found?.get('@f.example')).toBe('u:upper'); // keys are folded to lower case
    expect(found?.get('@g.example')).toBe('u:nul'); // NUL truncates
    expect(found?.get('@a.example')).toBe('u:x\ty'); // inner tab kept (refused anyway: invisible)
    // And what the encoder produces instead: one entry per line, exactly as meant.
    expect(
      await roundTrip(renderHashMap([['@a.example', saslPasswordValue('u', 'pa ss:wo#rd"é')]]), ['@a.example']),
    ).toEqual([new Map([['@a.example', 'u:pa ss:wo#rd"é']]), new Map([['@a.example', 'u:pa ss:wo#rd"é']])]);
  });

  const interesting = fc.constantFrom(
    ' ',
    ':',
    '#',
    '"',
    "'",
    '\\',
    '$',
    '\t',
    '\r',
    '\n',
    '\u0000',
    'é',
    '€',
    '😀',
    '\u00a0',
    '\u2028',
    '\ufeff',
    '\ud800',
    'A',
    'z',
    '0',
    '@',
    '[',
    ']',
  );
  const anyText = fc.oneof(
    fc.string({ unit: 'binary', minLength: 1, maxLength: 24 }),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
    fc.string({ unit: interesting, minLength: 1, maxLength: 16 }),
  );

  it(
    'accepted SASL usernames and secrets survive postmap + postmap -q byte for byte',
    { timeout: 60_000 },
    async () => {
      let accepted = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(anyText, anyText), { minLength: 20, maxLength: 60 }), async (pairs) => {
          const entries = pairs
            .filter(([u, s]) => isValidSaslUsername(u) && isValidSaslSecret(s))
            .map(([u, s], i): [string, string] => [`@d${i}.example`, saslPasswordValue(u, s)]);
          accepted += entries.length;
          for (const found of await roundTrip(
            renderHashMap(entries),
            entries.map(([k]) => k),
          )) {
            for (const [key, value] of entries) {
              const got = found.get(key);
              expect(got, key).toBe(value);
              // Postfix splits at the first ':'; usernames never contain one.
              const [user, ...rest] = (got ?? '').split(':');
              expect(`${user}:${rest.join(':')}`).toBe(value);
            }
            expect(found.size).toBe(entries.length);
          }
        }),
        { numRuns: 25 },
      );
      expect(accepted).toBeGreaterThan(100);
    },
  );

  it('accepted domain names and keys survive as keys', { timeout: 60_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.domain(),
            anyText.map((t) => `@${t}`),
          ),
          { minLength: 20, maxLength: 60 },
        ),
        async (names) => {
          const keys = [...new Set(names.map((n) => (n.startsWith('@') ? n : `@${n}`)).filter((k) => isMapSafeKey(k)))];
          const domains = names.filter(isValidDomainName);
          for (const d of domains) expect(isMapSafeKey(`@${d}`)).toBe(true);
          const entries = keys.map((k, i): [string, string] => [k, `v${i}`]);
          for (const found of await roundTrip(renderHashMap(entries), keys)) {
            for (const [key, value] of entries) expect(found.get(key), key).toBe(value);
          }
        },
      ),
      { numRuns: 15 },
    );
  });
});
