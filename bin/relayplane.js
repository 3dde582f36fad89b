#!/usr/bin/env node
// The `relayplane` command: runs the compiled CLI (`npm run build` produces dist/).
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/main.js', import.meta.url);
if (!existsSync(compiled)) {
  process.stderr.write('relayplane: not built yet: run npm run build (or npm start)\n');
  process.exit(1);
}
await import(compiled.href);
