/**
 * The records to publish exported as a BIND zone fragment (`Accept: text/dns`) and as CSV: the
 * fragment, wrapped in a minimal zone, parses with BIND's own parser (named-checkzone), and what it
 * reads back is exactly the records the JSON view gives.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, tokenFor, type TestApp } from '../helpers/app.js';
import { createDomain, createRelay, createTenant } from '../helpers/fixtures.js';
import { findBinary, toolGate } from '../lab/requirements.js';

const KEY = `v=DKIM1; k=rsa; p=${'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'.repeat(9)}`;
const ok = toolGate('zone export checked by named-checkzone', ['named-checkzone']);

interface JsonRecord {
  purpose: string;
  type: string;
  host: string;
  name: string;
  value: string;
  required: boolean;
}

describe.skipIf(!ok)('DNS records export', () => {
  let t: TestApp;
  let headers: Record<string, string>;
  let domainId: string;
  let dir: string;

  beforeAll(async () => {
    // Nothing here queries DNS; a resolver that answers nothing keeps traffic on the machine.
    t = await createTestApp({ dnsServers: ['127.0.0.1:9'] });
    headers = (await tokenFor(t.app, ['admin'])).headers;
    const tenant = await createTenant(t.app, headers);
    const relay = await createRelay(t.app, headers, {
      spfInclude: '_spf.mailer.test',
      dkim: [
        { selector: 'mlr1', type: 'CNAME', value: 'mlr1.dkim.mailer.test' },
        { selector: 'k1', type: 'TXT', value: KEY },
      ],
      returnPath: { host: 'bounces', value: 'rp.mailer.test' },
    });
    domainId = (await createDomain(t.app, headers, tenant.id, { name: 'export.test', relayId: relay.id })).id;
    dir = mkdtempSync(path.join(os.tmpdir(), 'relayplane-zone-'));
  });
  afterAll(async () => {
    await t?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  const get = (accept?: string) =>
    t.app.inject({
      method: 'GET',
      url: `/v1/domains/${domainId}/dns-records`,
      headers: { ...headers, ...(accept === undefined ? {} : { accept }) },
    });

  it('JSON records carry their name relative to the zone', async () => {
    const records = (await get()).json<{ records: JsonRecord[] }>().records;
    expect(records.map((r) => [r.host, r.name])).toEqual([
      ['_relayplane.export.test', '_relayplane'],
      ['export.test', '@'],
      ['mlr1._domainkey.export.test', 'mlr1._domainkey'],
      ['k1._domainkey.export.test', 'k1._domainkey'],
      ['_dmarc.export.test', '_dmarc'],
      ['bounces.export.test', 'bounces'],
    ]);
  });

  it('text/dns is a zone fragment named-checkzone accepts, giving back every record', async () => {
    const json = (await get()).json<{ records: JsonRecord[] }>().records;
    const response = await get('text/dns');
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers['content-type']).toBe('text/dns; charset=utf-8');
    const fragment = response.body;
    // Absolute names with trailing dots, CNAME targets too; the long key in ≤255-byte strings.
    expect(fragment).toMatch(/^mlr1\._domainkey\.export\.test\.\t3600\tIN\tCNAME\tmlr1\.dkim\.mailer\.test\.$/m);
    const keyLine = fragment.split('\n').find((l) => l.startsWith('k1._domainkey.export.test.'))!;
    const strings = [...keyLine.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
    expect(strings.length).toBeGreaterThan(1);
    expect(strings.every((s) => Buffer.byteLength(s) <= 255)).toBe(true);
    expect(strings.join('')).toBe(KEY);

    const zone = path.join(dir, 'export.test.zone');
    writeFileSync(
      zone,
      [
        '$TTL 3600',
        '@ IN SOA ns.export.test. hostmaster.export.test. 1 3600 600 86400 3600',
        '@ IN NS ns.export.test.',
        'ns IN A 192.0.2.53',
        fragment,
      ].join('\n'),
    );
    const checked = spawnSync(findBinary('named-checkzone')!, ['-q', '-D', '-o', '-', 'export.test', zone], {
      encoding: 'utf8',
    });
    expect(checked.status, checked.stderr + checked.stdout).toBe(0);
    // named-checkzone -D prints the zone as BIND read it: one line per record, absolute names.
    const read = checked.stdout.split('\n').filter((l) => /\sIN\s(TXT|CNAME)\s/.test(l));
    const parsed = read.map((line) => {
      const [name, , , type, ...rest] = line.split(/\s+/);
      const rdata = rest.join(' ');
      const value =
        type === 'TXT'
          ? [...rdata.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1')).join('')
          : rdata;
      return [name!.replace(/\.$/, ''), type, value.replace(/\.$/, '')];
    });
    expect(parsed.sort()).toEqual(json.map((r) => [r.host, r.type, r.value]).sort());
  });

  it("a template's MX and MAIL FROM TXT export as records named-checkzone accepts", async () => {
    const tenant = await createTenant(t.app, headers);
    const relay = await createRelay(t.app, headers, {
      spfInclude: 'amazonses.com',
      authTemplate: {
        variables: [{ name: 'token1', kind: 'label' }],
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
            name: 'mail',
            value: 'feedback-smtp.eu-west-1.amazonses.com',
            priority: 10,
            required: true,
          },
          {
            purpose: 'return_path',
            type: 'TXT',
            name: 'mail',
            value: 'v=spf1 include:amazonses.com ~all',
            required: true,
          },
        ],
      },
    });
    const id = (await createDomain(t.app, headers, tenant.id, { name: 'ses-export.test', relayId: relay.id })).id;
    expect(
      (
        await t.app.inject({
          method: 'PUT',
          url: `/v1/domains/${id}/authentication`,
          headers,
          payload: { values: { token1: 'tok1' } },
        })
      ).statusCode,
    ).toBe(200);
    const fragment = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/domains/${id}/dns-records`,
        headers: { ...headers, accept: 'text/dns' },
      })
    ).body;
    expect(fragment).toContain('mail.ses-export.test.\t3600\tIN\tMX\t10 feedback-smtp.eu-west-1.amazonses.com.\n');
    expect(fragment).toContain('tok1._domainkey.ses-export.test.\t3600\tIN\tCNAME\ttok1.dkim.amazonses.com.\n');
    const zone = path.join(dir, 'ses-export.test.zone');
    writeFileSync(
      zone,
      [
        '$TTL 3600',
        '@ IN SOA ns.ses-export.test. hostmaster.ses-export.test. 1 3600 600 86400 3600',
        '@ IN NS ns.ses-export.test.',
        'ns IN A 192.0.2.53',
        fragment,
      ].join('\n'),
    );
    const checked = spawnSync(findBinary('named-checkzone')!, ['-q', '-D', '-o', '-', 'ses-export.test', zone], {
      encoding: 'utf8',
    });
    expect(checked.status, checked.stderr + checked.stdout).toBe(0);
    expect(checked.stdout).toMatch(
      /^mail\.ses-export\.test\.\s+3600\s+IN\s+MX\s+10 feedback-smtp\.eu-west-1\.amazonses\.com\.$/m,
    );
  });

  it('text/csv has a header and one row per record, quoted where needed', async () => {
    const response = await get('text/csv, application/json;q=0.5');
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers['content-type']).toBe('text/csv; charset=utf-8');
    const lines = response.body.split('\r\n');
    expect(lines[0]).toBe('purpose,type,host,name,value,required,valid,reason');
    expect(lines[1]).toMatch(
      /^ownership,TXT,_relayplane\.export\.test,_relayplane,relayplane-verification=[0-9a-f]+,true,,not checked yet$/,
    );
    expect(lines[2]).toBe('spf,TXT,export.test,@,v=spf1 include:_spf.mailer.test ~all,true,,not checked yet');
    expect(lines.length).toBe(8); // header, six records, the final CRLF
  });

  it('anything else gets JSON; another tenant still gets 404', async () => {
    expect((await get('text/html')).headers['content-type']).toMatch(/^application\/json/);
    const other = (await tokenFor(t.app, ['tenant'], (await createTenant(t.app, headers)).id)).headers;
    const r = await t.app.inject({
      method: 'GET',
      url: `/v1/domains/${domainId}/dns-records`,
      headers: { ...other, accept: 'text/dns' },
    });
    expect(r.statusCode).toBe(404);
  });
});
