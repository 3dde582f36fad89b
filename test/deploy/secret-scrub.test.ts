/**
 * Node text about secret tables leaves the deployer without their data: a real postmap quoting a
 * sasl_passwd line (with a byte it shows as `?`, so the quote is not the secret), and any error a
 * deploy step ends with, in the outcome, its steps and its warnings.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployBundle } from '../../src/deploy/index.js';
import type { NodeConnection } from '../../src/ssh/index.js';
import { postmapTables } from '../../src/deploy/node-checks.js';
import { postmapStderr, redactBundleSecrets } from '../../src/deploy/secret-scrub.js';
import { localConnection } from '../helpers/local-node.js';
import { toolGate } from '../lab/requirements.js';
import { buildBundle } from './bundles.js';

const SECRET = 'pw-s3cret-value';
const bundle = buildBundle([{ domain: 'a.test', nexthop: '[127.0.0.1]:2601', user: 'userA', password: SECRET }]);

describe('postmapStderr', () => {
  it('drops what postmap quotes about a secret table, keeps a quoted key and what public tables say', () => {
    const stderr = [
      'postmap: warning: sasl_passwd, line 1: non-UTF-8 input "@a.test userA:pw-s3cr?t-value" -- ignoring this line',
      'postmap: warning: hash:sasl_passwd: duplicate entry: "@a.test"',
      'postmap: warning: sender_relay, line 2: non-UTF-8 input "@b.test [h?st]:25" -- ignoring this line',
      'postmap: fatal: something "with userA:pw-s3cret-value" and "more',
      `postmap: warning: unquoted userA:${SECRET} and ${SECRET}`,
    ].join('\n');
    expect(postmapStderr(stderr, bundle).split('\n')).toEqual([
      'postmap: warning: sasl_passwd, line 1: non-UTF-8 input "[redacted]" -- ignoring this line',
      'postmap: warning: hash:sasl_passwd: duplicate entry: "@a.test"',
      'postmap: warning: sender_relay, line 2: non-UTF-8 input "@b.test [h?st]:25" -- ignoring this line',
      'postmap: fatal: something "[redacted]"more',
      'postmap: warning: unquoted [redacted] and [redacted]',
    ]);
  });

  it('redactBundleSecrets knows the secrets from the secret files alone', () => {
    expect(redactBundleSecrets(`a userA:${SECRET} b ${SECRET} c [127.0.0.1]:2601`, bundle)).toBe(
      'a [redacted] b [redacted] c [127.0.0.1]:2601',
    );
  });
});

describe.skipIf(!toolGate('postmapTables with a real postmap', ['postmap']))(
  'postmapTables with a real postmap',
  () => {
    let dir: string;
    const mailConfig = process.env.MAIL_CONFIG;

    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'rp-scrub-'));
      // smtputf8_enable makes postmap check its input, and quote a line it ignores.
      await writeFile(path.join(dir, 'main.cf'), 'compatibility_level = 3.6\nsmtputf8_enable = yes\n');
      process.env.MAIL_CONFIG = dir;
    });
    afterAll(async () => {
      if (mailConfig === undefined) delete process.env.MAIL_CONFIG;
      else process.env.MAIL_CONFIG = mailConfig;
      await rm(dir, { recursive: true, force: true });
    });

    it('reports the line postmap refused without quoting it', async () => {
      for (const [name, file] of Object.entries(bundle.files))
        await writeFile(path.join(dir, name), file.content, { mode: file.mode });
      // As a node could hold it: one byte that is not UTF-8 in the middle of the secret.
      await writeFile(
        path.join(dir, 'sasl_passwd'),
        Buffer.concat([Buffer.from('@a.test userA:pw-s3cr'), Buffer.from([0xff]), Buffer.from('t-value\n')]),
        { mode: 0o600 },
      );
      const problems = await postmapTables(localConnection(), dir, bundle);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/sasl_passwd, line 1: non-UTF-8 input "\[redacted\]"/);
      expect(problems[0]).not.toMatch(/s3cr|t-value|userA:/);
    });
  },
);

describe('deployBundle', () => {
  it('ends a step that failed with node text quoting a secret: redacted in the outcome and its steps', async () => {
    const quoting: NodeConnection = {
      host: 'node.test',
      exec: () => Promise.reject(new Error(`lost while reading "@a.test userA:${SECRET}"`)),
      execBytes: () => Promise.reject(new Error('unused')),
      writeFile: () => Promise.reject(new Error('unused')),
      close() {},
    };
    const outcome = await deployBundle(quoting, bundle, { configDir: '/etc/postfix' });
    expect(outcome.state).toBe('failed');
    expect(outcome.error).toContain('[redacted]');
    expect(JSON.stringify(outcome)).not.toContain(SECRET);
  });
});
