import { readdirSync } from 'node:fs';
import path from 'node:path';

// `npm run bench` runs every bench/*.bench.ts; `npm run bench -- api-read` runs one.
const wanted = process.argv.slice(2);
const dir = import.meta.dirname;
const all = readdirSync(dir)
  .filter((file) => file.endsWith('.bench.ts'))
  .sort();
const selected = wanted.length === 0 ? all : all.filter((file) => wanted.some((name) => file.startsWith(name)));
if (selected.length === 0) {
  process.stderr.write(`no benchmark matches ${wanted.join(' ')}; have: ${all.join(', ')}\n`);
  process.exit(1);
}
for (const file of selected) {
  process.stdout.write(`\n== ${file}\n`);
  await import(path.join(dir, file));
}
