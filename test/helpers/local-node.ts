/**
 * A NodeConnection that runs its commands in a local bash instead of over SSH: the same shell
 * commands (stat, head, tail, postconf) against real files, for fast tests of what runs on a node.
 * The SSH transport itself is proven by the lab tests (test/lab, test/e2e).
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import type { ExecResult, NodeConnection } from '../../src/ssh/index.js';

function run(command: string, stdin?: string | Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code: code ?? 255, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }),
    );
    child.stdin.end(stdin);
  });
}

export function localConnection(): NodeConnection {
  return {
    host: 'localhost',
    async exec(command, options = {}): Promise<ExecResult> {
      const r = await run(
        options.cwd === undefined ? command : `cd '${options.cwd}' && { ${command}\n}`,
        options.stdin,
      );
      return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
    },
    execBytes: (command) => run(command),
    async writeFile(path, content, mode) {
      await writeFile(path, content, { mode });
    },
    close() {},
  };
}
