#!/usr/bin/env node
// `npm start`'s build step: runs `npm run build` only when something it reads changed since the
// last build (src/, openapi.yaml, prisma/schema.prisma, the tsconfigs, package-lock.json), so a
// restart with nothing changed starts at once. What the last build read is recorded in
// dist/.build-inputs as a digest of every input's path, size and modification time.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const STAMP = path.join(root, 'dist', '.build-inputs');
const INPUTS = [
  'src',
  'openapi.yaml',
  'prisma/schema.prisma',
  'tsconfig.json',
  'tsconfig.build.json',
  'package-lock.json',
  'scripts/generate.mjs',
];

/** Every input file under `rel`, generated output left out (the build writes it). */
function files(rel) {
  const full = path.join(root, rel);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return [rel];
  return readdirSync(full, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .filter((f) => !f.startsWith(path.join('src', 'generated') + path.sep));
}

function digest() {
  const hash = createHash('sha256');
  for (const f of INPUTS.flatMap(files).sort()) {
    const s = statSync(path.join(root, f));
    hash.update(`${f}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return hash.digest('hex');
}

const before = digest();
const built =
  existsSync(path.join(root, 'dist', 'main.js')) && existsSync(STAMP) && readFileSync(STAMP, 'utf8') === before;
if (!built) {
  const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
  writeFileSync(STAMP, before);
}
