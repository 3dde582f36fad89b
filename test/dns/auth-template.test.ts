/** Provider templates: validation of a template and of a domain's values, and their expansion. */
import { describe, expect, it } from 'vitest';
import {
  expectedRecords,
  templateErrors,
  templateRecords,
  toBindZone,
  valueError,
  type AuthTemplate,
} from '../../src/dns/index.js';

const SES: AuthTemplate = {
  variables: [
    { name: 'token1', kind: 'label' },
    { name: 'mailfrom', kind: 'label' },
  ],
  records: [
    {
      purpose: 'dkim',
      type: 'CNAME',
      name: '{token1}._domainkey',
      value: '{token1}.dkim.amazonses.com',
      required: true,
    },
    {
      purpose: 'return_path',
      type: 'MX',
      name: '{mailfrom}',
      value: 'feedback-smtp.eu-west-1.amazonses.com',
      priority: 10,
      required: false,
    },
    {
      purpose: 'return_path',
      type: 'TXT',
      name: '{mailfrom}',
      value: 'v=spf1 include:amazonses.com ~all',
      required: false,
    },
  ],
};

describe('valueError', () => {
  it.each<[Parameters<typeof valueError>[0], string, string | null]>([
    ['label', 'abc-123_x', null],
    ['label', 'a.b', 'must be one DNS label (letters, digits, "-", "_"; at most 63)'],
    ['label', 'a b', 'must be one DNS label (letters, digits, "-", "_"; at most 63)'],
    ['label', 'x\u0000', 'must be one DNS label (letters, digits, "-", "_"; at most 63)'],
    ['label', 'x'.repeat(64), 'must be one DNS label (letters, digits, "-", "_"; at most 63)'],
    ['hostname', 's1.domainkey.u1.wl.sendgrid.net.', null],
    ['hostname', 'single', 'must be a host name (DNS labels separated by dots)'],
    ['hostname', 'a..b', 'must be a host name (DNS labels separated by dots)'],
    ['dkimKey', 'k=rsa; p=MIGf', null],
    ['dkimKey', 'k=rsa;\tp=MIGf', 'must be printable ASCII (spaces only between tags)'],
    ['dkimKey', 'k=rsa; p=MIGf\n', 'must be printable ASCII (spaces only between tags)'],
    ['dkimKey', 'k=rsa; p=', 'must be a DKIM key record with a key (p= is empty)'],
    ['dkimKey', 'k=rsa', 'must be a DKIM key record: has no p= key (RFC 6376 §3.6.1: required)'],
  ])('%s %j', (kind, value, error) => {
    expect(valueError(kind, value)).toBe(error);
  });
});

describe('templateErrors', () => {
  it('accepts the SES template', () => {
    expect(templateErrors(SES)).toEqual([]);
  });
  it('names every problem with its field', () => {
    const bad: AuthTemplate = {
      variables: [
        { name: 'Tok', kind: 'label' },
        { name: 'key', kind: 'dkimKey' },
        { name: 'key', kind: 'label' },
      ],
      records: [
        { purpose: 'dkim', type: 'CNAME', name: '{nope}._domainkey', value: 'x.example', required: true },
        { purpose: 'dkim', type: 'CNAME', name: '{key}._domainkey', value: '{key}.example', required: true },
        { purpose: 'return_path', type: 'MX', name: 'bounce', value: 'mx.example', required: true },
        { purpose: 'dkim', type: 'TXT', name: 'bad name!', value: 'k=rsa; p=x', required: true },
        { purpose: 'dkim', type: 'TXT', name: 'sel._domainkey', value: 'k=rsa; p=x', required: true },
        { purpose: 'dkim', type: 'CNAME', name: 'sel._domainkey', value: 'x.example', required: true },
      ],
    };
    expect(templateErrors(bad).map((e) => `${e.field}: ${e.message}`)).toEqual([
      'body/authTemplate/variables/0/name: must be a lower-case identifier (a-z, 0-9, _)',
      'body/authTemplate/variables/2/name: is declared twice',
      'body/authTemplate/records/0/name: uses {nope}, which is not a declared variable',
      'body/authTemplate/records/1/name: {key} is a DKIM key: only a TXT value may use it',
      'body/authTemplate/records/1/value: {key} is a DKIM key: only a TXT value may use it',
      'body/authTemplate/records/2/priority: an MX record needs a priority (0-65535)',
      'body/authTemplate/records/3/name: must be "@" or DNS labels (placeholders allowed)',
      'body/authTemplate/records/5/name: a CNAME name cannot hold another record',
    ]);
  });
});

describe('templateRecords', () => {
  it('expands the values; a record without its values keeps the placeholders and lists them', () => {
    expect(templateRecords('Shop.Example', SES, { token1: 'abc' })).toEqual([
      {
        purpose: 'dkim',
        type: 'CNAME',
        host: 'abc._domainkey.shop.example',
        value: 'abc.dkim.amazonses.com',
        required: true,
      },
      {
        purpose: 'return_path',
        type: 'MX',
        host: '{mailfrom}.shop.example',
        value: 'feedback-smtp.eu-west-1.amazonses.com',
        priority: 10,
        required: false,
        unset: ['mailfrom'],
      },
      {
        purpose: 'return_path',
        type: 'TXT',
        host: '{mailfrom}.shop.example',
        value: 'v=spf1 include:amazonses.com ~all',
        required: false,
        unset: ['mailfrom'],
      },
    ]);
  });

  it('joins the static records; a long TXT key gets its strings; the MX exports with its priority', () => {
    const key = `k=rsa; p=${'A'.repeat(400)}`;
    const template: AuthTemplate = {
      variables: [
        { name: 'key', kind: 'dkimKey' },
        { name: 'mailfrom', kind: 'label' },
      ],
      records: [
        { purpose: 'dkim', type: 'TXT', name: 'mx._domainkey', value: '{key}', required: true },
        ...SES.records.slice(1),
      ],
    };
    const records = expectedRecords({
      domain: 'shop.example',
      verificationToken: 't',
      relay: { spfInclude: 'mailgun.org', dkim: [], returnPath: null, template },
      fallbackRelay: null,
      authValues: { key, mailfrom: 'mail' },
    });
    const dkim = records.find((r) => r.purpose === 'dkim')!;
    expect(dkim).toMatchObject({ host: 'mx._domainkey.shop.example', value: key });
    expect(dkim.strings?.join('')).toBe(key);
    expect(toBindZone('shop.example', records)).toContain(
      'mail.shop.example.\t3600\tIN\tMX\t10 feedback-smtp.eu-west-1.amazonses.com.\n',
    );
  });
});
