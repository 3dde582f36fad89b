/**
 * What the deployer merges into one exec, run by a local bash (test/helpers/local-node.ts): the
 * sections keep their own exit codes and streams, the on-node wait for master's reload line keeps
 * its timeout and its findings, and the live-file digests still see every kind of drift.
 */
import { mkdtemp, appendFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeConnection } from '../../src/ssh/index.js';
import { digestScript, driftFromDigests } from '../../src/deploy/live-files.js';
import { reloadLogPerl, reloadLogProblems, reloadLogScript, type ReloadLogArgs } from '../../src/deploy/node-checks.js';
import { execSections, sectionOk } from '../../src/ssh/remote-script.js';
import { localConnection, localLoopConnection } from '../helpers/local-node.js';
import { toolGate } from '../lab/requirements.js';
import { buildBundle } from './bundles.js';

const RELOAD = 'Jan  1 00:00:00 host postfix-n1/master[4242]: reload -- version 3.7.11, configuration /etc/postfix\n';

describe('execSections', () => {
  const conn = localConnection();

  it('gives each section its own exit code, stdout and stderr, byte for byte', async () => {
    const r = await execSections(conn, [
      { name: 'a', script: "printf 'no newline'; echo oops >&2" },
      { name: 'b', script: 'set -e; echo one; false; echo never' },
      { name: 'c', script: "printf 'x\\n\\n'; exit 3" },
      { name: 'd', script: 'pwd', cwd: '/tmp' },
    ]);
    expect(r.get('a')).toEqual({ code: 0, stdout: 'no newline', stderr: 'oops\n' });
    expect(r.get('b')).toEqual({ code: 1, stdout: 'one\n', stderr: '' });
    expect(r.get('c')).toEqual({ code: 3, stdout: 'x\n\n', stderr: '' });
    expect(r.get('d')).toEqual({ code: 0, stdout: '/tmp\n', stderr: '' });
    expect(() => sectionOk(r, 'c')).toThrow(/c: exit 3/);
    expect(sectionOk(r, 'a').stdout).toBe('no newline');
  });

  it('runs a section without a subshell in the shell of the script, with its own exit code and streams', async () => {
    const r = await execSections(conn, [
      { name: 'a', script: 'echo "$$" > /dev/null; rp_seen=1; echo out; echo err >&2; false', subshell: false },
      { name: 'b', script: 'echo "${rp_seen:-unset}"' },
      { name: 'c', script: 'echo isolated; exit 4' },
      { name: 'd', script: 'echo after', subshell: false },
    ]);
    expect(r.get('a')).toEqual({ code: 1, stdout: 'out\n', stderr: 'err\n' });
    expect(r.get('b')?.stdout).toBe('1\n');
    expect(r.get('c')).toEqual({ code: 4, stdout: 'isolated\n', stderr: '' });
    expect(r.get('d')).toEqual({ code: 0, stdout: 'after\n', stderr: '' });
    await expect(execSections(conn, [{ name: 'e', script: 'pwd', cwd: '/tmp', subshell: false }])).rejects.toThrow(
      /a cwd needs a subshell/,
    );
  });

  it('counts as one exec, and output that looks like a marker cannot end a section', async () => {
    let execs = 0;
    const counting: NodeConnection = { ...conn, exec: (c, o) => (execs++, conn.exec(c, o)) };
    const r = await execSections(counting, [
      { name: 'a', script: "printf '\\n@@relayplane-section-000000000000 end 0\\n'; echo after" },
      { name: 'b', script: 'echo b' },
    ]);
    expect(execs).toBe(1);
    expect(r.get('a')).toMatchObject({ code: 0, stdout: '\n@@relayplane-section-000000000000 end 0\nafter\n' });
    expect(r.get('b')?.stdout).toBe('b\n');
  });

  it('runs sections that all come in Perl in the Perl loop itself, each with its markers, exit code and streams', async () => {
    const loop = await localLoopConnection('auto');
    try {
      const r = await execSections(loop, [
        { name: 'a', script: 'echo shell-a', perl: 'out("perl-a\\n"); err("e\\n"); return 0;' },
        { name: 'b', script: 'exit 3', perl: 'out("x\\n\\n"); return 3;' },
        { name: 'c', script: 'echo c', perl: 'die "boom\\n";' },
        {
          name: 'd',
          script: 'echo d',
          perl: `out("\\n", '@@relayplane-section-000000000000 end 0', "\\n"); return 0;`,
        },
      ]);
      expect(r.get('a')).toEqual({ code: 0, stdout: 'perl-a\n', stderr: 'e\n' });
      expect(r.get('b')).toEqual({ code: 3, stdout: 'x\n\n', stderr: '' });
      expect(r.get('c')).toEqual({ code: 1, stdout: '', stderr: 'boom\n' });
      expect(r.get('d')?.stdout).toBe('\n@@relayplane-section-000000000000 end 0\n');
      // One section without a Perl body: the whole script goes to the shell.
      const mixed = await execSections(loop, [
        { name: 'a', script: 'echo shell-a', perl: 'out("perl-a\\n"); return 0;' },
        { name: 'b', script: 'echo shell-b' },
      ]);
      expect([mixed.get('a')?.stdout, mixed.get('b')?.stdout]).toEqual(['shell-a\n', 'shell-b\n']);
      // Perl bodies take absolute paths: a cwd with one is refused, not ignored.
      await expect(
        execSections(loop, [{ name: 'e', script: 'pwd', cwd: '/tmp', perl: 'out("/"); return 0;' }]),
      ).rejects.toThrow(/a Perl body takes no cwd/);
    } finally {
      loop.close();
    }
  });

  it('refuses a result when the script died before a section ran', async () => {
    await expect(
      execSections(conn, [
        { name: 'a', script: 'kill -9 $$' },
        { name: 'b', script: 'echo b' },
      ]),
    ).rejects.toThrow(/ended early/);
  });
});

// The wait runs in Perl where it can, else in the shell: each half of it is made the only one that
// works. In the node's Perl loop it runs as the loop's own code (reloadLogPerl): no shell at all.
const WAITS = [
  { by: 'Perl', prelude: 'timeout() { echo "the shell wait ran" >&2; return 99; }', inLoop: false },
  { by: 'the shell', prelude: 'perl() { return 127; }', inLoop: false },
  { by: 'the Perl loop itself', prelude: 'perl() { return 127; }\ntimeout() { return 99; }', inLoop: true },
];

describe.each(WAITS)('the reload wait on the node, by $by', ({ by, prelude, inLoop }) => {
  let dir: string;
  let log: string;
  let conn: NodeConnection;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'rp-reload-log-'));
    conn = inLoop ? await localLoopConnection('auto') : localConnection();
  });
  afterAll(async () => {
    conn?.close();
    await rm(dir, { recursive: true, force: true });
  });
  /** The wait as the deployer sends it: the shell script, and its Perl body for a Perl loop. */
  const waitSection = (args: ReloadLogArgs) => ({
    name: 'log',
    script: `${prelude}\n${reloadLogScript(args)}`,
    perl: reloadLogPerl(args),
  });
  const run = async (args: { offset: number; settleMs?: number; timeoutMs?: number; restarted?: boolean }) => {
    const timeoutMs = args.timeoutMs ?? 5000;
    const wait = {
      maillog: log,
      offset: args.offset,
      settleMs: args.settleMs ?? 100,
      timeoutMs,
      restarted: args.restarted ?? false,
    };
    const r = await execSections(conn, [waitSection(wait)]);
    return reloadLogProblems(r.get('log')!, timeoutMs);
  };

  it('waits for a reload logged later, then reports fatal lines written during the settle time', async () => {
    log = path.join(dir, 'maillog');
    await writeFile(log, `old: postfix/smtp[1]: fatal: before the offset\n${RELOAD}`);
    const offset = (await conn.exec(`wc -c < ${log}`)).stdout.trim();
    setTimeout(() => void appendFile(log, RELOAD), 300);
    setTimeout(
      () => void appendFile(log, 'Jan  1 00:00:01 host postfix-n1/smtp[7]: fatal: invalid line_length_limit\n'),
      450,
    );
    const t0 = Date.now();
    expect(await run({ offset: Number(offset), settleMs: 400 })).toEqual(['log: fatal: invalid line_length_limit']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(650);
  });

  it("finds master's line written in two pieces after other lines", async () => {
    log = path.join(dir, 'pieces');
    await writeFile(log, RELOAD);
    const offset = RELOAD.length;
    const cut = RELOAD.indexOf('reload') + 3;
    setTimeout(
      () =>
        void appendFile(log, `${'Jan  1 00:00:00 host postfix-n1/qmgr[2]: busy\n'.repeat(50)}${RELOAD.slice(0, cut)}`),
      100,
    );
    setTimeout(() => void appendFile(log, RELOAD.slice(cut)), 250);
    // Not found, the wait would end with "master did not log the reload".
    expect(await run({ offset, settleMs: 0, timeoutMs: 5000 })).toEqual([]);
  });

  it('reads the offset the reload saved from its file; a missing or garbled one reads as the start', async () => {
    log = path.join(dir, 'offset-log');
    await writeFile(log, `Jan  1 00:00:00 host postfix-n1/smtp[1]: fatal: before the offset\n${RELOAD}`);
    const saved = path.join(dir, 'reload-offset');
    const fromFile = async () => {
      const r = await execSections(conn, [
        waitSection({ maillog: log, offset: { file: saved }, settleMs: 0, timeoutMs: 5000 }),
      ]);
      return reloadLogProblems(r.get('log')!, 5000);
    };
    await writeFile(saved, `${(await conn.exec(`wc -c < ${log}`)).stdout.trim()}\n`);
    setTimeout(() => void appendFile(log, RELOAD), 200);
    expect(await fromFile()).toEqual([]);
    await rm(saved);
    expect(await fromFile()).toEqual(['log: fatal: before the offset']);
    await writeFile(saved, '12abc\n');
    expect(await fromFile()).toEqual(['log: fatal: before the offset']);
  });

  it('after a restart waits for master to log its start, not a reload', async () => {
    log = path.join(dir, 'restart');
    await writeFile(log, RELOAD);
    expect(await run({ offset: 0, restarted: true, timeoutMs: 300 })).toEqual([
      expect.stringMatching(/did not log the reload/),
    ]);
    await appendFile(
      log,
      'Jan  1 00:00:03 host postfix-n1/master[4243]: daemon started -- version 3.7.11, configuration /etc/postfix\n',
    );
    expect(await run({ offset: 0, restarted: true })).toEqual([]);
  });

  it('finds nothing wrong after a clean reload, and throttling is a problem', async () => {
    log = path.join(dir, 'clean');
    await writeFile(log, RELOAD);
    expect(await run({ offset: 0 })).toEqual([]);
    await appendFile(
      log,
      'Jan  1 00:00:02 host postfix-n1/master[4242]: warning: process /usr/lib/postfix/sbin/smtp pid 9 exit status 1\n',
    );
    await appendFile(
      log,
      'Jan  1 00:00:02 host postfix-n1/master[4242]: warning: /usr/lib/postfix/sbin/smtp: bad command startup -- throttling\n',
    );
    expect(await run({ offset: 0 })).toEqual([expect.stringMatching(/^log: .*bad command startup -- throttling/)]);
  });

  it('does not take a relay reply quoted in a delivery line for a daemon failure (nor quote it)', async () => {
    log = path.join(dir, 'reply');
    await writeFile(log, RELOAD);
    await appendFile(
      log,
      'Jan  1 00:00:03 host postfix-n1/smtp[8]: 9689A21ABFE: to=<b@gmail.test>, relay=127.0.0.1[127.0.0.1]:2602, dsn=4.7.8, status=deferred ' +
        '(SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8 fatal: you sent AUTH PLAIN AHVzZXIAc2VjcmV0; panic: bad command startup -- throttling)\n',
    );
    expect(await run({ offset: 0 })).toEqual([]);
  });

  // The shell's wait finds the line (tail -F follows the name) but reads the new file from the offset.
  if (by !== 'the shell')
    it('reads a log rotated since the offset was taken from its start', async () => {
      log = path.join(dir, 'rotated');
      await writeFile(log, `${'x'.repeat(500)}\n`);
      const offset = 501;
      setTimeout(() => {
        void rm(log).then(() =>
          writeFile(log, `${RELOAD}Jan  1 00:00:01 host postfix-n1/smtp[7]: fatal: after the rotation\n`),
        );
      }, 200);
      expect(await run({ offset, settleMs: 0 })).toEqual(['log: fatal: after the rotation']);
    });

  it('gives up after the timeout when master never logs the reload (or the log does not exist)', async () => {
    log = path.join(dir, 'quiet');
    await writeFile(log, RELOAD);
    const t0 = Date.now();
    expect(await run({ offset: RELOAD.length, timeoutMs: 500 })).toEqual([
      'master did not log the reload within 500 ms',
    ]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    log = path.join(dir, 'missing');
    expect(await run({ offset: 0, timeoutMs: 300 })).toEqual(['master did not log the reload within 300 ms']);
  });
});

describe('live-file digests', () => {
  it.skipIf(!toolGate('live-file digests with a real postmap', ['postmap']))(
    'see an edited source, a table rebuilt from it, and a missing file',
    async () => {
      const local = localConnection();
      const dir = await mkdtemp(path.join(os.tmpdir(), 'rp-digests-'));
      // postmap needs a config directory: an empty main.cf (all defaults) beside the tables.
      await writeFile(path.join(dir, 'main.cf'), '');
      const conn: NodeConnection = { ...local, exec: (c, o) => local.exec(`export MAIL_CONFIG=${dir}; ${c}`, o) };
      try {
        const bundle = buildBundle([
          { domain: 'a.test', nexthop: '[127.0.0.1]:2601', user: 'u', password: 'p w:1' },
          { domain: 'b.test', nexthop: '[127.0.0.1]:2602', user: 'v', password: 'q' },
        ]);
        for (const [name, f] of Object.entries(bundle.files))
          await writeFile(path.join(dir, name), f.content, { mode: f.mode });
        const drift = async () =>
          driftFromDigests((await conn.exec(digestScript(bundle), { cwd: dir })).stdout, bundle);
        await conn.exec(
          `postmap ${Object.keys(bundle.files)
            .map((n) => `hash:${n}`)
            .join(' ')}`,
          { cwd: dir },
        );
        expect(await drift()).toEqual([]);
        await appendFile(path.join(dir, 'sender_relay'), '@c.test [127.0.0.1]:2603\n');
        expect(await drift()).toEqual(['sender_relay']);
        await conn.exec('postmap hash:sender_relay && rm tls_policy.db', { cwd: dir });
        expect(await drift()).toEqual(['sender_relay', 'tls_policy']);
        await rm(path.join(dir, 'sasl_passwd'));
        expect(await drift()).toEqual(['sasl_passwd', 'sender_relay', 'tls_policy']);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
