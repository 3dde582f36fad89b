/**
 * The layer rules of eslint.config.js (`no-restricted-imports`, one set per floor; ARCHITECTURE.md):
 * each forbidden import fails the lint when it appears in a file of that floor, the imports the
 * floor needs still pass, and src/ as it stands breaks none of them.
 */
import path from 'node:path';
import { ESLint } from 'eslint';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..', '..');
let eslint: ESLint;

beforeAll(() => {
  eslint = new ESLint({ cwd: root });
});

/** The layer findings for `source` linted as if it were the file `file` (relative to the root). */
async function layerFindings(file: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: path.join(root, file) });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

/** One import per line, each used so that no other rule complains. */
function importing(...specifiers: string[]): string {
  return specifiers.map((s, i) => `import * as m${i} from '${s}';\nexport const v${i} = m${i};\n`).join('');
}

const forbidden: Array<[file: string, specifier: string, because: RegExp]> = [
  ['src/routes/nodes/nodes.routes.ts', '../../repositories/node.repository.js', /only repositories/],
  ['src/routes/nodes/nodes.routes.ts', '../../db/prisma.js', /only repositories/],
  ['src/routes/context.ts', '../generated/prisma/client.js', /Prisma/],
  ['src/routes/context.ts', '@prisma/client', /Prisma/],
  ['src/services/node.service.ts', '../routes/context.js', /never the reverse/],
  ['src/services/node.service.ts', '../plugins/auth.js', /never the reverse/],
  ['src/repositories/node.repository.ts', '../services/node.service.js', /repositories are the floor/],
  ['src/repositories/node.repository.ts', '../routes/context.js', /repositories are the floor/],
  ['src/repositories/node.repository.ts', '../deploy/index.js', /repositories are the floor/],
  ['src/repositories/usage.repository.ts', '../usage/accumulator.js', /repositories are the floor/],
  ['src/repositories/node.repository.ts', '../ssh/index.js', /repositories are the floor/],
  ['src/postfix/compiler.ts', '../lib/errors.js', /compiler is pure/],
  ['src/postfix/compiler.ts', 'zod', /compiler is pure/],
  ['src/postfix/compiler.ts', 'fs', /compiler is pure/],
  ['src/deploy/node-sync.ts', '../services/index.js', /never import them/],
  ['src/deploy/node-sync.ts', '../repositories/node.repository.js', /never import them/],
  ['src/dns/verify.ts', '../services/domain.service.js', /never import them/],
  ['src/usage/log-reader.ts', '../services/usage.service.js', /never imports them/],
  ['src/usage/log-reader.ts', '../deploy/index.js', /through \.\.\/ssh\//],
  ['src/services/node.service.ts', '../jobs/index.js', /jobs use services, never the reverse/],
  ['src/jobs/sync.ts', '../routes/context.js', /never import routes or plugins/],
  ['src/jobs/sync.ts', '../plugins/auth.js', /never import routes or plugins/],
  ['src/repositories/node.repository.ts', '../jobs/sync.js', /repositories are the floor/],
  ['src/deploy/sync-worker.ts', '../jobs/index.js', /never import them/],
  ['src/usage/log-reader.ts', '../jobs/usage-collection.js', /never imports them/],
  ['src/config-engine/engine.ts', '../jobs/index.js', /only its thread entry/],
  ['src/config-engine/engine.ts', '../services/snapshot.service.js', /only its thread entry/],
  ['src/config-engine/bundle-store.ts', '../routes/context.js', /only its thread entry/],
  ['src/config-engine/thread.worker.ts', '../plugins/auth.js', /never imports routes, plugins or jobs/],
  ['src/repositories/node.repository.ts', '../config-engine/index.js', /repositories are the floor/],
  ['src/ssh/transport.ts', '../services/index.js', /bottom floor/],
  ['src/ssh/transport.ts', '../deploy/index.js', /bottom floor/],
  ['src/ssh/transport.ts', '../usage/log-reader.js', /bottom floor/],
];

describe('a forbidden import fails the lint', () => {
  it.each(forbidden)('%s importing %s', async (file, specifier, because) => {
    const findings = await layerFindings(file, importing(specifier));
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatch(because);
  });

  it('as a type-only import and a re-export too', async () => {
    const source =
      "import type { Db } from '../../db/prisma.js';\nexport type T = Db;\nexport { createNodeRepository } from '../../repositories/node.repository.js';\n";
    expect(await layerFindings('src/routes/nodes/nodes.routes.ts', source)).toHaveLength(2);
  });
});

describe('the imports each floor needs pass', () => {
  it.each([
    ['src/routes/nodes/nodes.routes.ts', ['../../services/index.js', '../../lib/etag.js', '../context.js', 'fastify']],
    [
      'src/services/node.service.ts',
      [
        '../repositories/node.repository.js',
        '../db/prisma.js',
        '../deploy/index.js',
        '../ssh/index.js',
        '../postfix/index.js',
      ],
    ],
    [
      'src/repositories/node.repository.ts',
      ['../db/prisma.js', '../generated/prisma/client.js', '../lib/usage-types.js', '../db/channels.js', 'pg'],
    ],
    ['src/postfix/compiler.ts', ['node:crypto', './plan.js']],
    ['src/deploy/node-sync.ts', ['../ssh/index.js', '../postfix/bundle.js', '../lib/redact.js', './bundle.js']],
    ['src/usage/log-reader.ts', ['../ssh/index.js', './log-line.js', '../lib/usage-types.js']],
    [
      'src/jobs/sync.ts',
      [
        './node-runner.js',
        '../repositories/node.repository.js',
        '../deploy/index.js',
        '../ssh/index.js',
        '../config-engine/index.js',
        '../usage/node-collector.js',
      ],
    ],
    [
      'src/config-engine/engine.ts',
      [
        '../postfix/index.js',
        '../repositories/config-bundle.repository.js',
        '../db/prisma.js',
        '../lib/errors.js',
        './bundle-store.js',
      ],
    ],
    [
      'src/config-engine/thread.worker.ts',
      ['../services/snapshot.service.js', '../repositories/snapshot.repository.js', './engine.js'],
    ],
    ['src/ssh/transport.ts', ['node-ssh', '../lib/errors.js', './errors.js']],
  ])('%s', async (file, specifiers) => {
    expect(await layerFindings(file, importing(...specifiers))).toEqual([]);
  });
});

it('src/ as it stands keeps every layer rule', async () => {
  const results = await eslint.lintFiles(['src']);
  const findings = results.flatMap((r) =>
    r.messages
      .filter((m) => m.ruleId === 'no-restricted-imports')
      .map((m) => `${path.relative(root, r.filePath)}:${m.line} ${m.message}`),
  );
  expect(results.length).toBeGreaterThan(100);
  expect(findings).toEqual([]);
}, 120_000);
