/**
 * The deployer's pure parts: map parsing (compared with the real postmap when installed), bundle
 * checks, the postconf plan, shell quoting (through a real sh) and the tar writer (through tar).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkBundle, parseMapSource } from '../../src/deploy/index.js';
import { shellQuote } from '../../src/ssh/index.js';
import { typedValueProblem } from '../../src/deploy/bundle-checks.js';
import {
  desiredConfig,
  parseServiceParams,
  parseServices,
  planCommands,
  planConfig,
  type LiveConfig,
} from '../../src/deploy/postfix-config.js';
import { tarArchive } from '../../src/deploy/tar-archive.js';
import { toolGate } from '../lab/requirements.js';
import { buildBundle, service } from './bundles.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'relayplane-deploy-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const routes = [{ domain: 'a.test', nexthop: '[127.0.0.1]:2601', user: 'u', password: 'p' }];

describe('parseMapSource', () => {
  const samples = [
    '@a.test [127.0.0.1]:2601\n@B.Test   user:pa ss:wo rd  \r\n',
    '# comment\n\n  # indented comment\nk1 v1\n  continued\n\t\nk2 v2\n',
    '  leading x\nk v\n',
    'dup 1\nDUP 2\nnovalue\n',
  ];

  it('reads entries and problems like postmap', () => {
    expect(parseMapSource(samples[0]!).entries.map((e) => [e.key, e.value])).toEqual([
      ['@a.test', '[127.0.0.1]:2601'],
      ['@b.test', 'user:pa ss:wo rd'],
    ]);
    expect(parseMapSource(samples[1]!).entries.map((e) => [e.key, e.value])).toEqual([
      ['k1', 'v1  continued'],
      ['k2', 'v2'],
    ]);
    expect(parseMapSource(samples[2]!).problems).toEqual(['line 1: logical line must not start with whitespace']);
    expect(parseMapSource(samples[3]!).problems).toEqual([
      'line 2: duplicate key "dup" (first on line 1)',
      'line 3: expected format: key whitespace value',
    ]);
  });

  it.skipIf(!toolGate('parseMapSource vs postmap -s', ['postmap']))(
    'agrees with the real postmap -s on the same sources',
    () => {
      writeFileSync(path.join(tmp, 'main.cf'), 'compatibility_level = 3.6\n');
      // A main.cf younger than ~2 s makes every postmap wait for it to settle ("being edited" guard).
      const past = new Date(Date.now() - 10_000);
      utimesSync(path.join(tmp, 'main.cf'), past, past);
      samples.forEach((content, i) => {
        const file = path.join(tmp, `map${i}`);
        writeFileSync(file, content);
        const env = { ...process.env, MAIL_CONFIG: tmp };
        const r = execFileSync('sh', ['-c', `postmap -c ${tmp} hash:${file} 2>&1; postmap -c ${tmp} -s hash:${file}`], {
          env,
        }).toString();
        const dumped = r
          .split('\n')
          .filter((l) => l.includes('\t'))
          .sort();
        const parsed = parseMapSource(content);
        expect(dumped).toEqual(parsed.entries.map((e) => `${e.key}\t${e.value}`).sort());
        expect(/postmap: warning/.test(r)).toBe(parsed.problems.length > 0);
      });
    },
  );
});

describe('checkBundle', () => {
  it('accepts a realistic bundle', () => {
    expect(checkBundle(buildBundle([...routes, { ...routes[0]!, domain: 'c.test', implicitTls: true }]))).toEqual([]);
  });

  it('refuses what Postfix would accept and die on, or silently change', () => {
    const bad = buildBundle(routes, {
      mainCf: {
        smtp_tls_security_level: 'mayb',
        smtpd_tls_security_level: 'verify', // a server cannot verify
        queue_directory: '/tmp/q',
        relay_domains: ' a.test',
        transport_maps: 'hash:{{dir}}/missing',
        'Bad-Name': 'x',
      },
      masterCf: [service('smtps', 'smtp', {}), service('rp_z', '/usr/bin/evil', { syslog_name: 'a b' })],
      files: {
        'x.db': { content: '', mode: 0o644, secret: false, mapType: null },
        creds: { content: 'k v\n', mode: 0o644, secret: true, mapType: 'hash' },
        policy: {
          content: '[127.0.0.1]:1 encrypt\n[127.0.0.1]:2 requir\n',
          mode: 0o644,
          secret: false,
          mapType: 'hash',
        },
      },
    });
    bad.mainCf.lmtp_tls_policy_maps = 'hash:{{dir}}/policy';
    bad.version = 'not-a-hash';
    const problems = checkBundle(bad).join('\n');
    for (const p of [
      /version must be a sha256/,
      /smtp_tls_security_level = mayb: not a TLS security level/,
      /smtpd_tls_security_level = verify: not a TLS security level \(none, may, encrypt\)/,
      /queue_directory may not be set/,
      /relay_domains: value has leading or trailing blanks/,
      /refers to \{\{dir\}\}\/missing, which is not a bundle file/,
      /invalid parameter name "Bad-Name"/,
      /master.cf smtps: service names must match/,
      /master.cf rp_z: command must be a daemon name/,
      /rp_z: -o syslog_name: value contains whitespace/,
      /file "x.db": invalid or reserved name/,
      /file creds: a secret file must be 0600/,
      /policy line 2 .*"requir" is not a TLS security level/,
    ]) {
      expect(problems).toMatch(p);
    }
  });

  it('types values by their Postfix default', () => {
    expect(typedValueProblem('smtp_tls_wrappermode', 'YES', 'no')).toBeUndefined();
    expect(typedValueProblem('smtp_tls_wrappermode', 'yess', 'no')).toMatch(/expected yes or no/);
    expect(typedValueProblem('default_process_limit', '1k', '100')).toMatch(/expected an integer/);
    expect(typedValueProblem('smtp_connect_timeout', '45', '30s')).toBeUndefined();
    expect(typedValueProblem('smtp_connect_timeout', 'soon', '30s')).toMatch(/expected a time/);
    expect(typedValueProblem('compatibility_level', '3.6', '0')).toBeUndefined();
    expect(typedValueProblem('relayhost', 'anything', '')).toBeUndefined();
  });
});

describe('planConfig', () => {
  const bundle = buildBundle([{ ...routes[0]!, implicitTls: true }]);
  const desired = desiredConfig(bundle, '/etc/postfix/relayplane/current');

  it('renders {{dir}} as the live directory and touches only what differs', () => {
    expect(desired.params).toContainEqual([
      'sender_dependent_relayhost_maps',
      'hash:/etc/postfix/relayplane/current/sender_relay',
    ]);
    const live: LiveConfig = {
      params: new Map([
        ['sender_dependent_relayhost_maps', 'hash:/etc/postfix/relayplane/current/sender_relay'],
        ['old_managed_param', 'x'],
        ['admin_param', 'y'],
      ]),
      services: parseServices(
        'smtp unix - - n - - smtp\nrp_smtps unix - - n - - smtp -o smtp_tls_wrappermode=yes\nrp_gone unix - - n - - smtp\n',
      ),
      serviceParams: parseServiceParams('rp_smtps/unix/smtp_tls_wrappermode = yes\n'),
      managedParams: ['old_managed_param', 'sender_dependent_relayhost_maps'],
    };
    const plan = planConfig(desired, live);
    expect(plan.setParams.map(([k]) => k)).not.toContain('sender_dependent_relayhost_maps');
    expect(plan.removeParams).toEqual(['old_managed_param']); // never admin_param
    expect(plan.removeServices).toEqual(['rp_gone/unix']); // never smtp/unix
    expect(plan.writeServices.map((s) => s.key)).toEqual(['rp_smtps/unix']); // its -o list differs
    expect(planCommands(plan, '/tmp/check')).toEqual([
      'postconf -c /tmp/check -MX rp_gone/unix',
      'postconf -c /tmp/check -X old_managed_param',
      expect.stringMatching(/^postconf -c \/tmp\/check -e 'smtp_sasl_password_maps=hash:\/etc/),
      "postconf -c /tmp/check -M 'rp_smtps/unix=rp_smtps unix - - n - - smtp'",
      expect.stringMatching(/^postconf -c \/tmp\/check -P 'rp_smtps\/unix\/smtp_tls_wrappermode=yes'/),
    ]);
  });
});

describe('shellQuote', () => {
  it('passes any string through sh unchanged', () => {
    for (const s of [
      'plain',
      "it's",
      'a b',
      '$HOME',
      '`id`',
      '"q"',
      '\\',
      'x\ny',
      '-n',
      '',
      '*',
      '~root',
      'k=v;rm -rf /',
    ]) {
      expect(execFileSync('sh', ['-c', `printf %s ${shellQuote(s)}`]).toString()).toBe(s);
    }
    expect(() => shellQuote('a\0b')).toThrow(/NUL/);
  });
});

describe.skipIf(!toolGate('tarArchive through tar', ['tar']))('tarArchive', () => {
  it('extracts with real tar: names, contents, modes and links', () => {
    const dir = path.join(tmp, 'out');
    writeFileSync(
      path.join(tmp, 'a.tar'),
      tarArchive([
        { name: 'secret', mode: 0o600, content: 'p'.repeat(1000) },
        { name: 'meta/', mode: 0o755 },
        { name: 'meta/list', mode: 0o644, content: 'héllo\n' },
        { name: 'empty', mode: 0o644, content: '' },
        { name: 'meta/link', mode: 0o777, linkTo: '../secret' },
      ]),
    );
    execFileSync('sh', ['-c', `mkdir ${dir} && umask 077 && tar -x -m --no-same-owner -f ${tmp}/a.tar -C ${dir}`]);
    expect(statSync(path.join(dir, 'secret')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(dir, 'meta/list')).mode & 0o777).toBe(0o644);
    expect(readFileSync(path.join(dir, 'meta/list'), 'utf8')).toBe('héllo\n');
    expect(readFileSync(path.join(dir, 'secret'), 'utf8')).toHaveLength(1000);
    expect(readFileSync(path.join(dir, 'empty'), 'utf8')).toBe('');
    expect(readlinkSync(path.join(dir, 'meta/link'))).toBe('../secret');
    expect(() => tarArchive([{ name: '../x', mode: 0o644, content: '' }])).toThrow(/not allowed/);
    expect(() => tarArchive([{ name: 'l', mode: 0o777, linkTo: 'x'.repeat(101) }])).toThrow(/too long/);
  });
});
