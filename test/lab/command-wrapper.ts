/**
 * A node command replaced in a lab test's SSH sessions: a script of the same name in a directory of
 * its own, put first in the PATH the control plane gives its sessions (SshSettings.remotePath,
 * RELAYPLANE_NODE_PATH). The node's own programs and every other session still run the real one.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_REMOTE_PATH } from '../../src/ssh/index.js';
import { runOk } from './util.js';

/**
 * Writes `<dir>/<command>` (mode 0755) from `script`, which is given the real command's path, and
 * returns the remotePath that puts it first.
 */
export async function wrapCommand(dir: string, command: string, script: (real: string) => string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const real = (await runOk('sh', ['-c', `command -v ${command}`])).stdout.trim();
  const file = path.join(dir, command);
  await writeFile(file, script(real));
  await chmod(file, 0o755);
  return `${dir}:${DEFAULT_REMOTE_PATH}`;
}
