import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { expect, it } from 'vitest';
import { createSecretBox } from '../../src/lib/secret-box.js';
import { usePrismaDatabase } from '../helpers/database.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const masterKey = randomBytes(32);
const db = usePrismaDatabase();

function cli(args: string[], stdin: string) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts'), ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_URL: db.database.url,
        RELAYPLANE_JWT_SECRET: randomBytes(32).toString('hex'),
        RELAYPLANE_MASTER_KEY: masterKey.toString('base64'),
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

it('rotates a relay credential from the shell, reading the secret from stdin', { timeout: 60_000 }, async () => {
  const relay = await db.prisma.relay.create({
    data: { name: 'up', host: 'smtp.up.test', port: 587, tls: 'starttls' },
  });
  const first = await cli(
    ['credentials', 'rotate', '--relay', relay.id, '--username', 'platform', '--json'],
    'first secret: with colon\n',
  );
  expect(first.code, first.stderr).toBe(0);
  const one = JSON.parse(first.stdout);
  expect(one).toMatchObject({ status: 'active', username: 'platform' });
  expect(first.stdout + first.stderr).not.toContain('first secret');

  const second = await cli(
    ['credentials', 'rotate', '--relay', relay.id, '--username', 'platform2', '--json'],
    'second-secret',
  );
  expect(second.code, second.stderr).toBe(0);
  const two = JSON.parse(second.stdout);
  expect(two.status).toBe('active');
  const rows = await db.prisma.relayCredential.findMany({
    where: { relayId: relay.id },
    orderBy: { createdAt: 'asc' },
  });
  expect(rows.map((row) => row.status)).toEqual(['retiring', 'active']);
  const box = createSecretBox(masterKey);
  expect(
    box.open(
      {
        ciphertext: Buffer.from(rows[1]!.secretCiphertext),
        nonce: Buffer.from(rows[1]!.secretNonce),
        keyId: rows[1]!.secretKeyId,
      },
      rows[1]!.id,
    ),
  ).toBe('second-secret');
  const audit = await db.prisma.auditEvent.findMany({ where: { resourceType: 'credential' } });
  expect(audit.every((event) => event.actorKeyId === 'cli')).toBe(true);

  const empty = await cli(['credentials', 'rotate', '--relay', relay.id, '--username', 'x'], '');
  expect(empty.code).toBe(1);
  expect(empty.stderr.trim()).toBe('relayplane: no secret on standard input: pipe it in (see --help)');
  const missing = await cli(
    ['credentials', 'rotate', '--relay', '00000000-0000-4000-8000-000000000000', '--username', 'x'],
    's',
  );
  expect(missing.code).toBe(1);
  expect(missing.stderr.trim()).toBe('relayplane: relay 00000000-0000-4000-8000-000000000000 not found');
});
