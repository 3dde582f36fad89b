import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizeDestinationPattern, normalizeDomainName, normalizeHost } from '../../src/lib/names.js';
import { ValidationError } from '../../src/lib/errors.js';

/** punycode.js: RFC 3492 decoding only, no IDNA mapping, so it cannot hide a dropped character. */
const punycode = createRequire(import.meta.url)('punycode/punycode.js') as { toUnicode(domain: string): string };

function outcome(run: () => unknown): 'refused' | unknown {
  try {
    return run();
  } catch (error) {
    if (error instanceof ValidationError) return 'refused';
    throw error;
  }
}

/** Labels mixing ASCII, IDN letters, and the characters a parser might drop, map or cut at. */
const tricky = [
  '#',
  '/',
  '?',
  '\\',
  '@',
  ':',
  ' ',
  '%',
  '\u00ad',
  '\u200b',
  '\u200d',
  '\ufe0f',
  '\u3002',
  '\uff0e',
  '\uff03',
  '\uff0f',
  'ß',
  'İ',
  'Σ',
  'é',
  'e\u0301',
  '日',
  'Ａ',
  'x',
  '-',
  '1',
];
const label = fc
  .array(
    fc.oneof(
      fc.constantFrom(...tricky),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }),
      fc.stringMatching(/^[a-z0-9]{1,6}$/),
    ),
    { minLength: 1, maxLength: 5 },
  )
  .map((parts) => parts.join(''));
const name = fc.array(label, { minLength: 1, maxLength: 3 }).map((labels) => `${labels.join('.')}.example`);

describe('names are stored exactly as validated', () => {
  it('never drops or cuts a character: an accepted name decodes back to the input (case and NFC aside)', () => {
    fc.assert(
      fc.property(name, (input) => {
        const result = outcome(() => normalizeDomainName('name', input));
        if (result === 'refused') return;
        const { ascii } = result as { ascii: string };
        expect(ascii).toMatch(/^[a-z0-9.-]+$/);
        const decoded = punycode.toUnicode(ascii).split('.');
        const given = input.normalize('NFC').toLowerCase().split('.');
        expect(decoded).toHaveLength(given.length);
        expect(decoded).toEqual(given);
      }),
      { numRuns: 3000, seed: 20 },
    );
  });

  it('refuses every name holding a URL or address delimiter, wherever it is', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('#', '/', '?', '\\', '@', ':', ' ', '%', '[', ']'),
        fc.nat({ max: 16 }),
        (delimiter, at) => {
          const base = 'smtp.example.com';
          const position = at % (base.length + 1);
          const input = `${base.slice(0, position)}${delimiter}${base.slice(position)}`;
          expect(outcome(() => normalizeHost('host', input))).toBe('refused');
          expect(outcome(() => normalizeDomainName('name', input))).toBe('refused');
          expect(outcome(() => normalizeDestinationPattern('pattern', `.${input}`))).toBe('refused');
        },
      ),
      { numRuns: 500, seed: 20 },
    );
  });

  it.each([
    ['smtp.example.com#x'],
    ['smtp.example.com/x'],
    ['smtp.example.com?x'],
    ['smtp.example.com\\x'],
    ['user@smtp.example.com'],
    ['smtp.example.com:587'],
    ['exa\u00admple.com'], // soft hyphen: UTS #46 maps it to nothing
    ['x\ufe0f.example.com'], // variation selector: mapped to nothing
    ['ｅｘａｍｐｌｅ.com'], // full-width letters: mapped to ASCII
    ['example\u3002com'], // ideographic full stop: mapped to a dot
    ['smtp.example.com\uff03x'], // full-width number sign: mapped to '#'
    ['::1%lo'], // an IPv6 zone: Node's isIP accepts it, no nexthop can carry it
    ['fe80::1%eth0'],
  ])('refuses %j rather than storing another name', (input) => {
    expect(outcome(() => normalizeHost('host', input))).toBe('refused');
    expect(outcome(() => normalizeDomainName('name', input))).toBe('refused');
  });

  it('still converts IDNs to punycode and lower-cases', () => {
    expect(normalizeDomainName('name', 'Bücher.Example')).toEqual({
      ascii: 'xn--bcher-kva.example',
      unicode: 'bücher.example',
    });
    expect(normalizeDomainName('name', 'xn--bcher-kva.example').ascii).toBe('xn--bcher-kva.example');
    expect(normalizeDomainName('name', 'straße.example').ascii).toBe('xn--strae-oqa.example');
    expect(normalizeHost('host', 'SMTP.Example.COM')).toBe('smtp.example.com');
    expect(normalizeHost('host', '2001:DB8::1')).toBe('2001:db8::1');
    expect(normalizeDestinationPattern('pattern', '.日本.jp')).toBe('.xn--wgv71a.jp');
  });
});
