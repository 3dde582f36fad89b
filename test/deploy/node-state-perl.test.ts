/**
 * The node's state reads in Perl (node-state-perl.ts, run by a local Perl loop) print exactly what
 * their shell scripts print (postfix-config.ts, run by sh): the verify's read of the live release
 * for every shape `current` can take (our link, a link through linked directories, a dangling
 * link, a link to a file, no link, a VERSION without its newline), and read-node's whole read
 * with a stub postconf: the same fingerprint as `cksum`, the known one answered without postconf,
 * a failing postconf's exit code, and an edit within the second of the last read still seen.
 */
import { statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeLayout } from '../../src/deploy/layout.js';
import { liveStatePerl, nodeStatePerl } from '../../src/deploy/node-state-perl.js';
import { liveStateScript, nodeStateScript, type LiveState } from '../../src/deploy/postfix-config.js';
import { DEFAULT_REMOTE_PATH } from '../../src/ssh/index.js';
import type { NodeConnection } from '../../src/ssh/index.js';
import { localConnection, localLoopConnection } from '../helpers/local-node.js';

const VERSION = 'a'.repeat(64);
const known = {} as LiveState['config'];

describe('liveStatePerl', () => {
  let dir: string;
  let perl: NodeConnection & { runsPerl: boolean };
  const shell = localConnection();

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'rp-live-state-'));
    perl = await localLoopConnection('auto');
  });
  afterAll(async () => {
    perl?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A config dir named `name`, shaped by `make(root)` (root: its relayplane dir); both reads of it. */
  async function bothReads(name: string, make: (root: string) => Promise<void>) {
    const configDir = path.join(dir, name);
    await mkdir(path.join(configDir, 'relayplane', 'releases'), { recursive: true });
    await make(path.join(configDir, 'relayplane'));
    const layout = nodeLayout(configDir);
    const bySh = await shell.exec(liveStateScript(layout, known));
    const byPerl = await perl.exec('echo the shell ran; exit 1', { perl: liveStatePerl(layout) });
    return { bySh, byPerl };
  }

  const release = async (root: string, version = VERSION, content = `${version}\n`) => {
    await mkdir(path.join(root, 'releases', version), { recursive: true });
    await writeFile(path.join(root, 'releases', version, 'VERSION'), content);
  };

  it.each([
    [
      'our link',
      async (root: string) => {
        await release(root);
        await symlink(`releases/${VERSION}`, path.join(root, 'current'));
      },
    ],
    [
      'a link with .. and a linked releases dir',
      async (root: string) => {
        await release(path.join(root, '..', 'elsewhere'));
        await rm(path.join(root, 'releases'), { recursive: true });
        await symlink('../elsewhere/releases', path.join(root, 'releases'));
        await symlink(`releases/../releases/${VERSION}`, path.join(root, 'current'));
      },
    ],
    [
      'a dangling link',
      async (root: string) => {
        await symlink('releases/gone', path.join(root, 'current'));
      },
    ],
    [
      'a link to a file',
      async (root: string) => {
        await writeFile(path.join(root, 'file'), 'x');
        await symlink('file', path.join(root, 'current'));
      },
    ],
    [
      'a directory, no link',
      async (root: string) => {
        await mkdir(path.join(root, 'current'));
        await writeFile(path.join(root, 'current', 'VERSION'), `${VERSION}\n`);
      },
    ],
    ['no current', async () => {}],
    [
      'a VERSION without its newline',
      async (root: string) => {
        await release(root, VERSION, VERSION);
        await symlink(`releases/${VERSION}`, path.join(root, 'current'));
      },
    ],
  ])('prints what the shell prints for %s', async (name, make) => {
    const { bySh, byPerl } = await bothReads(name.replace(/\W+/g, '-'), make);
    expect(perl.runsPerl).toBe(true);
    expect(byPerl).toEqual(bySh);
    expect(bySh.code).toBe(0);
  });

  it('reads the release through a config dir reached by a link', async () => {
    const real = path.join(dir, 'real-config');
    await mkdir(path.join(real, 'relayplane'), { recursive: true });
    await release(path.join(real, 'relayplane'));
    // Resolved, not its text: `..` is gone only where every link on the way (an absolute one too) was followed.
    await symlink(`releases/../releases/${VERSION}`, path.join(real, 'relayplane', 'current'));
    await symlink(real, path.join(dir, 'linked-config'));
    const layout = nodeLayout(path.join(dir, 'linked-config'));
    const byPerl = await perl.exec('exit 1', { perl: liveStatePerl(layout) });
    expect(byPerl).toEqual(await shell.exec(liveStateScript(layout, known)));
    expect(byPerl.stdout).toBe(`releases/${VERSION}\n@@relayplane@@\n${VERSION}\n`);
  });

  describe('the read of read-node', () => {
    let stub: string;
    let configDir: string;
    let loop: NodeConnection & { runsPerl: boolean };
    beforeAll(async () => {
      // A postconf that answers by its arguments, warns on stderr, and fails `-M` while `fail-M` exists.
      stub = path.join(dir, 'stub-bin');
      configDir = path.join(dir, 'read-node');
      await mkdir(stub, { recursive: true });
      await mkdir(path.join(configDir, 'relayplane', 'releases', VERSION), { recursive: true });
      await writeFile(
        path.join(stub, 'postconf'),
        `#!/bin/sh\necho "postconf: warning: a stub" >&2\n[ "$1" = -M ] && [ -e ${configDir}/fail-M ] && exit 3\necho "answer to $*"\n`,
      );
      await chmod(path.join(stub, 'postconf'), 0o755);
      await writeFile(path.join(configDir, 'main.cf'), 'relayhost = [127.0.0.1]:9\n');
      await writeFile(path.join(configDir, 'master.cf'), 'smtp inet n - y - - smtpd\n');
      await writeFile(path.join(configDir, 'relayplane', 'releases', VERSION, 'VERSION'), `${VERSION}\n`);
      await mkdir(path.join(configDir, 'relayplane', 'releases', VERSION, '.relayplane'));
      await writeFile(
        path.join(configDir, 'relayplane', 'releases', VERSION, '.relayplane', 'params'),
        'a\nb\npartial',
      );
      await symlink(`releases/${VERSION}`, path.join(configDir, 'relayplane', 'current'));
      loop = await localLoopConnection('auto', `${stub}:${DEFAULT_REMOTE_PATH}`);
    });
    afterAll(() => loop?.close());

    const both = async (known?: string, listReleases = false) => {
      const layout = nodeLayout(configDir);
      const bySh = await shell.exec(
        `PATH=${stub}:${DEFAULT_REMOTE_PATH}\n${nodeStateScript(layout, known, listReleases)}`,
      );
      const byPerl = await loop.exec('exit 1', { perl: nodeStatePerl(layout, known, listReleases) });
      expect(byPerl).toEqual(bySh);
      return byPerl;
    };
    const fingerprint = (stdout: string) => stdout.split('@@relayplane@@\n')[0]!.trim();

    it('prints what the shell prints, postconf answers and all, and the known fingerprint alone', async () => {
      const full = await both(undefined, true);
      expect(full.code).toBe(0);
      expect(full.stdout).toContain('answer to -n');
      expect(full.stdout).toMatch(new RegExp(`^[0-9.]+ ${VERSION}$`, 'm'));
      expect(full.stderr).toContain('postconf: warning: a stub');
      const known = await both(fingerprint(full.stdout));
      expect(known.stdout).toMatch(/@@relayplane-config-known@@\n$/);
      expect(known.stdout).not.toContain('answer to');
    });

    it("exits with a failing postconf's code, and fingerprints a missing file as cksum does", async () => {
      await writeFile(path.join(configDir, 'fail-M'), '');
      try {
        expect((await both()).code).toBe(3);
      } finally {
        await rm(path.join(configDir, 'fail-M'));
      }
      await rm(path.join(configDir, 'master.cf'));
      expect(fingerprint((await both()).stdout)).toMatch(/cksum: .*master\.cf: No such file or directory/);
      await writeFile(path.join(configDir, 'master.cf'), 'smtp inet n - y - - smtpd\n');
      // A file past what Perl sums itself is summed by cksum: the same line either way.
      await writeFile(path.join(configDir, 'main.cf'), `# ${'x'.repeat(10_000)}\nrelayhost = [127.0.0.1]:9\n`);
      expect(fingerprint((await both()).stdout)).toMatch(/^\d+ 10029 .*main\.cf$/m);
    });

    it('sees an edit made in the second of its last read: same size, same inode, same times to the second', async () => {
      const mainCf = path.join(configDir, 'main.cf');
      const versions = ['relayhost = [127.0.0.1]:9\n', 'relayhost = [127.0.0.2]:9\n'];
      const second = (ms: number) => Math.floor(ms / 1000);
      // Each edit rewrites the same number of bytes in place right after a read; both() holds the
      // Perl loop's fingerprint to the shell's `cksum`, so a sum kept past the edit fails it. Edits
      // until three of them fell in the very second of the read before them (the case the kept
      // sums must not be fooled by), which the first few nearly always do.
      await writeFile(mainCf, versions[0]!);
      let read = { from: Date.now(), to: 0 };
      await both();
      read.to = Date.now();
      let sameSecond = 0;
      for (let i = 1; sameSecond < 3 && i < 100; i++) {
        await writeFile(mainCf, versions[i % 2]!);
        const changed = second(statSync(mainCf).ctimeMs);
        if (second(read.from) === changed && second(read.to) === changed) sameSecond++;
        read = { from: Date.now(), to: 0 };
        expect(fingerprint((await both()).stdout)).toContain(String(versions[i % 2]!.length));
        read.to = Date.now();
      }
      expect(sameSecond).toBe(3);
    });
  });
});
