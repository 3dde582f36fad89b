import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(ROOT, 'src/main.ts');

let dataDir: string;
let port: number;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

/** The environment of a fresh machine: no DATABASE_URL, so the embedded default is used. */
function cliEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RELAYPLANE_DATA_DIR: dataDir,
    RELAYPLANE_PORT: String(port),
    RELAYPLANE_LOG_LEVEL: 'info',
  };
  delete env.DATABASE_URL;
  delete env.RELAYPLANE_JWT_SECRET;
  delete env.RELAYPLANE_MASTER_KEY;
  return env;
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: cliEnv() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Server {
  child: ChildProcess;
  output: () => string;
}

/** Starts serve and resolves on its ready line (written once it listens), or rejects when it exits first. */
async function startServe(): Promise<Server> {
  // A process group of its own, like a shell's foreground job: Ctrl-C reaches every process in it.
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve'], {
    cwd: ROOT,
    env: cliEnv(),
    detached: true,
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (output.includes('"msg":"Relayplane is ready on ')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', () => reject(new Error(`serve exited early:\n${output}`)));
  });
  expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  return { child, output: () => output };
}

/** Stops serve as a terminal's Ctrl-C does: SIGINT to the whole process group (the embedded PostgreSQL included). */
async function stopServe(server: Server) {
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  process.kill(-server.child.pid!, 'SIGINT');
  await exited;
}

/** Log lines at warn (40) or above, which a normal start and a clean stop must not write. */
const warnings = (output: string) => output.split('\n').filter((line) => /"level":(4|5|6)0/.test(line));

async function postgresPid(): Promise<number | null> {
  try {
    return Number((await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return null;
  }
}

function alive(pid: number) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  const parent = await mkdtemp(path.join(os.tmpdir(), 'relayplane-cli-'));
  // As root the embedded server runs as user postgres, which must be able to enter the folder.
  await chmod(parent, 0o711);
  dataDir = path.join(parent, 'data');
  port = await freePort();
});
afterAll(async () => {
  await rm(path.dirname(dataDir), { recursive: true, force: true });
});

describe('relayplane serve on the embedded default', () => {
  it(
    'starts, serves, reuses its data on a second start, and stops PostgreSQL on shutdown',
    { timeout: 240_000 },
    async () => {
      const first = await startServe();
      expect(first.output()).toContain('initialising the embedded PostgreSQL');
      // One line for a person: where the API and its docs are, and the next step.
      expect(first.output()).toContain(
        `"msg":"Relayplane is ready on http://127.0.0.1:${port} (API docs: http://127.0.0.1:${port}/docs); next, create the first admin key: npx relayplane keys create --admin"`,
      );
      const pid = await postgresPid();
      expect(pid).not.toBeNull();
      expect(alive(pid!)).toBe(true);

      // The CLI finds the running embedded server and mints the first admin key.
      const created = await runCli(['keys', 'create', '--admin', '--json']);
      expect(created.code, created.stderr).toBe(0);
      const key = JSON.parse(created.stdout) as { id: string; key: string; scopes: string[] };
      expect(key.scopes).toEqual(['admin']);
      const token = await fetch(`http://127.0.0.1:${port}/v1/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ key: key.key }),
      });
      expect(token.status).toBe(200);

      for (const name of ['jwt-secret', 'master-key', 'postgres-password']) {
        const info = await stat(path.join(dataDir, 'secrets', name));
        expect(info.mode & 0o777).toBe(0o600);
        const value = (await readFile(path.join(dataDir, 'secrets', name), 'utf8')).trim();
        expect(first.output()).not.toContain(value);
      }
      expect(first.output()).toMatch(/"name":"jwt-secret".*"msg":"generated"/);

      await stopServe(first);
      expect(alive(pid!)).toBe(false);
      expect(warnings(first.output())).toEqual([]);

      const second = await startServe();
      expect(second.output()).not.toContain('initialising the embedded PostgreSQL');
      expect(second.output()).not.toContain('"msg":"generated"');
      const again = await fetch(`http://127.0.0.1:${port}/v1/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ key: key.key }),
      });
      expect(again.status).toBe(200);
      const listed = await runCli(['keys', 'list', '--json']);
      expect(JSON.parse(listed.stdout).map((item: { id: string }) => item.id)).toContain(key.id);
      await stopServe(second);
      expect(await postgresPid()).toBeNull();
      expect(second.output()).toContain(
        `"msg":"Relayplane is ready on http://127.0.0.1:${port} (API docs: http://127.0.0.1:${port}/docs)"`,
      );
      expect(warnings(second.output())).toEqual([]);
    },
  );

  it('fails with one clear line and a non-zero exit on bad configuration or usage', async () => {
    const badPort = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve'], {
        cwd: ROOT,
        env: { ...cliEnv(), RELAYPLANE_PORT: 'http' },
      });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    expect(badPort.code).toBe(1);
    expect(badPort.stderr.trim()).toBe(
      'relayplane: Invalid configuration: RELAYPLANE_PORT must be an integer between 0 and 65535 (got "http")',
    );
    const noScope = await runCli(['keys', 'create']);
    expect(noScope.code).toBe(1);
    expect(noScope.stderr.trim()).toBe('relayplane: say which key to create: --admin or --scope <scope...>');
    const help = await runCli(['keys', 'create', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--admin');
  });
});
