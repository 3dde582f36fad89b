/**
 * The verify's read of the live release in Perl (liveStatePerl, run by a local Perl loop) prints
 * exactly what its shell script prints (liveStateScript with the config known, run by sh), for
 * every shape `current` can take: our link, a link through linked directories, a dangling link, a
 * link to a file, no link, and a VERSION without its newline.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeLayout } from '../../src/deploy/layout.js';
import { liveStatePerl } from '../../src/deploy/live-state-perl.js';
import { liveStateScript, type LiveState } from '../../src/deploy/postfix-config.js';
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
});
