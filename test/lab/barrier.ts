/**
 * A barrier on a lab node's side, to hold a deploy at a known point while a test changes things
 * under it. While armed, the next `tar -x` over SSH (the staging step of every deploy and repair,
 * full or delta: nothing else extracts) says it was reached and waits on a FIFO until the test
 * releases it. One hold per arm. (The FIFO is
 * opened read-write before `reached` appears, so a release right after it always finds a reader.)
 *
 * The wrapper is in `remotePath`, the PATH to give the control plane for its SSH sessions
 * (SshSettings.remotePath, RELAYPLANE_NODE_PATH): commands run with that PATH, not the login's.
 * It holds only in this node's sessions (their MAIL_CONFIG); other nodes and anything outside SSH
 * are untouched.
 */
import { constants, existsSync } from 'node:fs';
import { open, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { PostfixNode } from './postfix-node.js';
import { runOk, waitUntil } from './util.js';
import { wrapCommand } from './command-wrapper.js';

export interface NodeBarrier {
  /** The PATH (wrapper first) the control plane's sessions must run with for the barrier to hold. */
  remotePath: string;
  /** The next staging `tar -x` over SSH will hold. */
  arm(): Promise<void>;
  /** Resolves once a staging step holds at the barrier. */
  reached(timeoutMs?: number): Promise<void>;
  /** Lets a held staging step go on; false when none was holding (e.g. its session was killed). */
  release(): Promise<boolean>;
}

export async function stagingBarrier(node: PostfixNode): Promise<NodeBarrier> {
  const dir = path.join(node.baseDir, 'barrier');
  const bin = path.join(dir, 'bin');
  const armed = path.join(dir, 'armed');
  const reachedFile = path.join(dir, 'reached');
  const gate = path.join(dir, 'gate');
  const remotePath = await wrapCommand(
    bin,
    'tar',
    (real) => `#!/bin/sh
case " $* " in *" -x "*) ;; *) exec ${real} "$@" ;; esac
if [ "$MAIL_CONFIG" = ${node.configDir} ] && [ -e ${armed} ]; then
  rm -f ${armed}
  exec 3<> ${gate}
  : > ${reachedFile}
  read -r _ <&3
  exec 3<&-
fi
exec ${real} "$@"
`,
  );
  await runOk('mkfifo', [gate]);

  return {
    remotePath,
    async arm() {
      await rm(reachedFile, { force: true });
      await writeFile(armed, '');
    },
    reached(timeoutMs = 60_000) {
      return waitUntil(
        () => existsSync(reachedFile),
        timeoutMs,
        `a staging step to hold at ${node.name}'s barrier`,
        20,
      ).then(() => undefined);
    },
    async release() {
      await rm(armed, { force: true });
      // Non-blocking: with no reader holding, opening a FIFO for writing fails (ENXIO) instead of waiting.
      const handle = await open(gate, constants.O_WRONLY | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENXIO') return undefined;
        throw err;
      });
      if (handle === undefined) return false;
      try {
        await handle.write('go\n');
      } finally {
        await handle.close();
      }
      return true;
    },
  };
}
