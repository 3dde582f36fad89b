import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { expect, it } from 'vitest';

// `engines` must be true for what runs: every package the server (or the typed client) can load
// must accept the oldest Node the manifest admits. Development tools are not walked: the Prisma
// CLI's `prisma dev` needs @prisma/streams-local (Node >= 22), and Relayplane never runs it.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Manifest {
  name: string;
  version: string;
  engines?: { node?: string };
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as Manifest;
}

/** Where Node finds `name` from `dir`: the nearest node_modules up to the repository root. */
function installedDir(name: string, from: string): string | null {
  for (let dir = from; dir.startsWith(ROOT); dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === ROOT) break;
  }
  return null;
}

/** Packages reachable at run time from `names`: dependencies, installed optional ones, required peers. */
function runtimeClosure(names: string[], from: string): Map<string, Manifest> {
  const seen = new Map<string, Manifest>();
  const queue = names.map((name) => ({ name, from, optional: false }));
  while (queue.length > 0) {
    const { name, from: requirer, optional } = queue.shift()!;
    const dir = installedDir(name, requirer);
    if (dir === null) {
      if (!optional) throw new Error(`${name} (needed from ${path.relative(ROOT, requirer) || '.'}) is not installed`);
      continue;
    }
    if (seen.has(dir)) continue;
    const manifest = readManifest(dir);
    seen.set(dir, manifest);
    const optionalPeers = new Set(
      Object.entries(manifest.peerDependenciesMeta ?? {})
        .filter(([, meta]) => meta.optional)
        .map(([peer]) => peer),
    );
    for (const dep of Object.keys(manifest.dependencies ?? {})) queue.push({ name: dep, from: dir, optional: false });
    for (const dep of Object.keys(manifest.optionalDependencies ?? {}))
      queue.push({ name: dep, from: dir, optional: true });
    for (const dep of Object.keys(manifest.peerDependencies ?? {}))
      if (!optionalPeers.has(dep)) queue.push({ name: dep, from: dir, optional: false });
  }
  return seen;
}

function refusing(minimum: string, closure: Map<string, Manifest>): string[] {
  return [...closure.values()]
    .filter((manifest) => manifest.engines?.node !== undefined && !semver.satisfies(minimum, manifest.engines.node))
    .map((manifest) => `${manifest.name}@${manifest.version} wants node ${manifest.engines!.node}`);
}

it('every package the server loads accepts the oldest Node its engines admit', () => {
  const root = readManifest(ROOT);
  const minimum = semver.minVersion(root.engines!.node!)!.version;
  expect(minimum).toBe('20.19.0');
  const closure = runtimeClosure(
    [...Object.keys(root.dependencies ?? {}), ...Object.keys(root.optionalDependencies ?? {})],
    ROOT,
  );
  expect(closure.size).toBeGreaterThan(50);
  expect(refusing(minimum, closure)).toEqual([]);
});

it('the typed client and its dependency accept the oldest Node its engines admit', () => {
  const dir = path.join(ROOT, 'packages', 'client');
  const client = readManifest(dir);
  const minimum = semver.minVersion(client.engines!.node!)!.version;
  const closure = runtimeClosure(Object.keys(client.dependencies ?? {}), dir);
  expect([...closure.values()].map((manifest) => manifest.name).sort()).toEqual([
    'openapi-fetch',
    'openapi-typescript-helpers',
  ]);
  expect(refusing(minimum, closure)).toEqual([]);
});

it('the walk would see a dependency that wants a newer Node', () => {
  // The Prisma CLI's tree holds the one known case (the README's note on `npm ci`'s EBADENGINE):
  // walked from the CLI, it is found. Should Prisma drop it, this fails: drop the note too.
  const closure = runtimeClosure(['prisma'], ROOT);
  expect(refusing('20.19.0', closure).join('\n')).toMatch(/@prisma\/streams-local@\S+ wants node >=22/);
});
