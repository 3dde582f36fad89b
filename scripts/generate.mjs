#!/usr/bin/env node
// `npm run generate`: the Prisma client (src/generated/prisma) and, when openapi.yaml exists, the
// API types (src/generated/api.ts, copied to packages/client/src/generated/api.ts for the typed
// client). `--client-only`: the client's API types alone (its build). Works offline: `prisma generate` does not need the native
// schema engine, but the CLI insists on locating one, so it gets a stub (unless one is configured).
// Quiet on success (one line); on failure prints the tool's output and exits non-zero.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const clientOnly = process.argv.includes('--client-only');
const serverTypes = path.join('src', 'generated', 'api.ts');
const clientTypes = path.join('packages', 'client', 'src', 'generated', 'api.ts');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);

/** Runs a node_modules/.bin tool with this Node, capturing its output. */
function run(label, tool, args, env) {
  return new Promise((resolve) => {
    let entry;
    try {
      entry = realpathSync(bin(tool));
    } catch {
      resolve({ label, ok: false, output: `${bin(tool)} not found: run npm install` });
      return;
    }
    const child = spawn(process.execPath, [entry, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', (error) => resolve({ label, ok: false, output: `${output}${error.message}` }));
    child.on('close', (code, signal) =>
      resolve({ label, ok: code === 0, output: code === 0 ? output : `${output}\n(exit ${code ?? signal})` }),
    );
  });
}

let stubDir;
function schemaEngineStub() {
  if (process.env.PRISMA_SCHEMA_ENGINE_BINARY) return process.env.PRISMA_SCHEMA_ENGINE_BINARY;
  if (process.platform !== 'win32' && existsSync('/bin/true')) return '/bin/true';
  stubDir = mkdtempSync(path.join(os.tmpdir(), 'relayplane-generate-'));
  const stub = path.join(stubDir, process.platform === 'win32' ? 'schema-engine.cmd' : 'schema-engine');
  writeFileSync(stub, process.platform === 'win32' ? '@exit /b 0\r\n' : '#!/bin/sh\nexit 0\n');
  chmodSync(stub, 0o755);
  return stub;
}

const env = {
  ...process.env,
  PRISMA_SCHEMA_ENGINE_BINARY: schemaEngineStub(),
  PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING: '1',
  PRISMA_HIDE_UPDATE_MESSAGE: '1',
  CHECKPOINT_DISABLE: '1',
};

const jobs = clientOnly ? [] : [run('prisma client', 'prisma', ['generate'], env)];
if (existsSync(path.join(root, 'openapi.yaml'))) {
  jobs.push(
    run(
      clientOnly ? 'client api types' : 'api types',
      'openapi-typescript',
      ['openapi.yaml', '-o', clientOnly ? clientTypes : serverTypes],
      env,
    ),
  );
}

let results;
try {
  results = await Promise.all(jobs);
} finally {
  if (stubDir !== undefined) rmSync(stubDir, { recursive: true, force: true });
}

const failed = results.filter((r) => !r.ok);
if (failed.length > 0) {
  for (const r of failed) process.stderr.write(`generate: ${r.label} failed:\n${r.output.trim()}\n`);
  process.exit(1);
}
if (clientOnly) {
  process.stdout.write(`generated: ${results.map((r) => r.label).join(', ')}\n`);
  process.exit(0);
}
// The typed client (packages/client) is generated from the same spec: a copy, not a second run.
if (existsSync(path.join(root, serverTypes))) {
  mkdirSync(path.dirname(path.join(root, clientTypes)), { recursive: true });
  copyFileSync(path.join(root, serverTypes), path.join(root, clientTypes));
}
const clientFile = path.join(root, 'src', 'generated', 'prisma', 'client.ts');
if (!existsSync(clientFile)) {
  process.stderr.write(`generate: prisma generate succeeded but ${path.relative(root, clientFile)} is missing\n`);
  process.exit(1);
}
process.stdout.write(`generated: ${results.map((r) => r.label).join(', ')}\n`);
