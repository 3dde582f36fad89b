import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

// A panel's view of @relayplane/client: packed (its `prepare` builds it), installed from the
// tarball into an empty project from the npm cache, type-checked and run against a live server.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PACKAGE = path.join(ROOT, 'packages', 'client');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
/** Hang guard only: every step ends when its process exits. */
const STEP_GUARD_MS = 600_000;

/**
 * The environment without what an outer `npm test` sets about its own package and run, so nested
 * npm runs are not steered by it; npm configuration (npm_config_cache, a registry) is kept.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const outer = /^npm_(?:package_|lifecycle_|command$|config_local_prefix$)/i;
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !outer.test(name)));
  return { ...env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
}

function run(command: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env: cleanEnv(), maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error)
        reject(new Error(`${command} ${args.join(' ')} (in ${cwd}) failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const PANEL_SCRIPT = `import { createRelayplaneClient, type Problem } from '@relayplane/client';

const [baseUrl, apiKey] = process.argv.slice(2) as [string, string];
const relayplane = createRelayplaneClient({ baseUrl, apiKey });

const tenant = await relayplane.POST('/v1/tenants', { body: { name: 'Panel Co', slug: 'panel-co', externalRef: 'crm-42' } });
if (tenant.error) throw new Error(tenant.error.detail);
const tenantId: string = tenant.data.id;
const usage = await relayplane.GET('/v1/tenants/{tenantId}/usage/summary', { params: { path: { tenantId }, query: { month: '2026-11' } } });

const refused = createRelayplaneClient({ baseUrl, apiKey: 'rpk_wrong' });
const denied = await refused.GET('/v1/tenants');
const problem: Problem | undefined = denied.error;

// Compile-time checks: a path the API lacks and a body missing a required field are type errors.
export function neverCalled() {
  // @ts-expect-error: openapi.yaml has no such path
  void relayplane.GET('/v1/no-such-path');
  // @ts-expect-error: a tenant needs a slug
  void relayplane.POST('/v1/tenants', { body: { name: 'No slug' } });
}

console.log(JSON.stringify({ tenantId, usage: usage.data ?? usage.error, refused: problem ?? null, refusedData: denied.data ?? null }));
`;

/**
 * An empty panel project depending on the tarball. `npm install --offline <tarball>` would need
 * the registry's metadata for openapi-fetch's range, which `npm ci` never caches, so the panel's
 * lockfile names the versions the root's lockfile holds (tarballs found by integrity).
 */
function writePanelProject(project: string, tarballName: string) {
  const rootLock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version: string; integrity: string; dependencies?: Record<string, string> }>;
  };
  const locked = (name: string) => {
    const { version, integrity, dependencies } = rootLock.packages[`node_modules/${name}`]!;
    return { version, integrity, ...(dependencies === undefined ? {} : { dependencies }) };
  };
  const manifest = JSON.parse(readFileSync(path.join(PACKAGE, 'package.json'), 'utf8')) as {
    version: string;
    dependencies: Record<string, string>;
  };
  const spec = `file:../${tarballName}`;
  writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'panel', private: true, type: 'module', dependencies: { '@relayplane/client': spec } }),
  );
  writeFileSync(
    path.join(project, 'package-lock.json'),
    JSON.stringify({
      name: 'panel',
      lockfileVersion: 3,
      requires: true,
      packages: {
        '': { name: 'panel', dependencies: { '@relayplane/client': spec } },
        'node_modules/@relayplane/client': {
          version: manifest.version,
          resolved: spec,
          dependencies: manifest.dependencies,
        },
        'node_modules/openapi-fetch': locked('openapi-fetch'),
        'node_modules/openapi-typescript-helpers': locked('openapi-typescript-helpers'),
      },
    }),
  );
}

let work: string;
let tarball: string;
let project: string;
let t: TestApp;
let baseUrl: string;

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'relayplane-client-'));
  await run('npm', ['pack', '--pack-destination', work], PACKAGE);
  const packed = readdirSync(work).filter((name) => name.endsWith('.tgz'));
  expect(packed).toHaveLength(1);
  tarball = path.join(work, packed[0]!);

  project = path.join(work, 'panel');
  mkdirSync(project);
  writePanelProject(project, path.basename(tarball));
  // From the npm cache only (no registry): openapi-fetch's tarball is there since the root's npm ci.
  await run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], project);

  t = await createTestApp();
  baseUrl = await t.app.listen({ host: '127.0.0.1', port: 0 });
}, STEP_GUARD_MS);

afterAll(async () => {
  await t?.close();
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

it('packs the built client and its README, not its sources', async () => {
  const files = (await run('tar', ['-tzf', tarball], work)).split('\n').filter(Boolean).sort();
  expect(files).toEqual(
    expect.arrayContaining([
      'package/package.json',
      'package/README.md',
      'package/dist/index.js',
      'package/dist/index.d.ts',
    ]),
  );
  expect(files.filter((file) => file.startsWith('package/src/'))).toEqual([]);
});

it('installs with openapi-fetch as its only dependency, none of the server', () => {
  const installed = readdirSync(path.join(project, 'node_modules'))
    .flatMap((name) =>
      name.startsWith('@')
        ? readdirSync(path.join(project, 'node_modules', name)).map((scoped) => `${name}/${scoped}`)
        : [name],
    )
    .filter((name) => !name.startsWith('.'))
    .sort();
  expect(installed).toEqual(['@relayplane/client', 'openapi-fetch', 'openapi-typescript-helpers']);
  expect(existsSync(path.join(project, 'node_modules', 'fastify'))).toBe(false);
  const manifest = JSON.parse(
    readFileSync(path.join(project, 'node_modules', '@relayplane', 'client', 'package.json'), 'utf8'),
  ) as { dependencies: Record<string, string> };
  expect(Object.keys(manifest.dependencies)).toEqual(['openapi-fetch']);
});

/** The README's examples, in order, as one module (they share their variables). */
function readmeExamples(): string {
  const readme = readFileSync(path.join(PACKAGE, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);
  expect(blocks.length).toBeGreaterThanOrEqual(4);
  return blocks.join('\n');
}

it(
  'type-checks a panel script and the README examples, and runs the script: a tenant created, usage read, a bad key a 401 problem',
  async () => {
    writeFileSync(path.join(project, 'panel.ts'), PANEL_SCRIPT);
    writeFileSync(path.join(project, 'readme-examples.ts'), readmeExamples());
    writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          outDir: 'out',
          // The panel's own Node typings would come from its @types/node; the root's stand in for them.
          typeRoots: [path.join(ROOT, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['panel.ts', 'readme-examples.ts'],
      }),
    );
    await run(process.execPath, [TSC, '-p', project], project);

    const key = await t.app.services.apiKeys.create(null, { name: 'panel', scopes: ['admin'] });
    const output = await run(process.execPath, [path.join(project, 'out', 'panel.js'), baseUrl, key.key], project);
    const result = JSON.parse(output) as {
      tenantId: string;
      usage: { tenantId: string; month: string };
      refused: unknown;
      refusedData: unknown;
    };
    expect(await t.prisma.tenant.findUnique({ where: { id: result.tenantId } })).toMatchObject({
      slug: 'panel-co',
      externalRef: 'crm-42',
    });
    expect(result.usage).toMatchObject({ tenantId: result.tenantId, month: '2026-11' });
    expect(result.refused).toMatchObject({ status: 401, code: 'unauthorized' });
    expect(result.refusedData).toBeNull();
  },
  STEP_GUARD_MS,
);
