/**
 * docker-compose.yml starts as the README says: it is valid YAML whose every `${VAR}` is in the
 * README's table of what the compose file reads, with the generation commands the README gives.
 * Where the compose plugin is installed, `docker compose config` validates it too.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { parse } from 'yaml';

const root = path.resolve(import.meta.dirname, '..', '..');
const composeText = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
const start = readme.indexOf('## Production deployment');
const production = readme.slice(start, readme.indexOf('\n## ', start + 1));
const variables = [...new Set([...composeText.matchAll(/\$\{([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]!))].sort();

it('is YAML with the services the README names', () => {
  const compose = parse(composeText) as {
    services: Record<string, unknown>;
    secrets: Record<string, { file: string }>;
  };
  expect(Object.keys(compose.services).sort()).toEqual(['api', 'postfix-node', 'postgres']);
  expect(compose.secrets.relayplane_ssh_key!.file).toBe('${RELAYPLANE_SSH_KEY_FILE:-./relayplane_ssh_key}');
});

it('reads only variables and files the README lists, and the README writes each required one', () => {
  expect(variables).toEqual([
    'POSTGRES_PASSWORD',
    'RELAYPLANE_JWT_SECRET',
    'RELAYPLANE_MASTER_KEY',
    'RELAYPLANE_NODE_AUTHORIZED_KEY',
    'RELAYPLANE_SSH_KEY_FILE',
  ]);
  for (const v of variables) expect(production, v).toMatch(new RegExp(`^\\| \`${v}\` \\|`, 'm'));
  expect(production).toMatch(/^\| `\.\/relayplane_ssh_key` \|/m);
  // Every variable the compose file requires (${VAR:?…}) is written to .env by the README's commands.
  for (const [, v] of composeText.matchAll(/\$\{([A-Z_][A-Z0-9_]*):\?/g))
    expect(production, v).toMatch(new RegExp(`^${v}=`, 'm'));
  expect(production).toContain("ssh-keygen -q -t ed25519 -N '' -f ./relayplane_ssh_key");
  // The password goes into DATABASE_URL as is: hex only.
  expect(composeText).toContain('postgresql://relayplane:${POSTGRES_PASSWORD}@postgres:5432/relayplane');
  expect(production).toMatch(/^POSTGRES_PASSWORD=\$\(openssl rand -hex \d+\)$/m);
});

const composePlugin = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' }).status === 0;
if (!composePlugin) console.warn('docker compose config skipped: the docker compose plugin is not installed');

it.skipIf(!composePlugin)("passes docker compose config with the README's variables", () => {
  const env = {
    ...process.env,
    POSTGRES_PASSWORD: 'a'.repeat(48),
    RELAYPLANE_JWT_SECRET: 'b'.repeat(64),
    RELAYPLANE_MASTER_KEY: 'c'.repeat(44),
    RELAYPLANE_NODE_AUTHORIZED_KEY: 'ssh-ed25519 AAAA x',
  };
  const r = spawnSync('docker', ['compose', '-f', path.join(root, 'docker-compose.yml'), 'config', '--quiet'], {
    encoding: 'utf8',
    env,
  });
  expect(r.status, r.stderr).toBe(0);
});
