/**
 * Only src/repositories/ and src/db/ touch Prisma (issue 22, item 4; STYLE.md "repositories own
 * Prisma"): no file elsewhere in src/ calls a Prisma model (`tx.domain.count(...)`) or raw SQL
 * (`$queryRaw`, `$executeRaw` and their Unsafe forms). Services keep their transactions
 * (`prisma.$transaction`) and hand `tx` to repository functions. The import rules of
 * eslint.config.js cannot see this: a service may import the Prisma types, and a client reaches
 * it as a value.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..', '..');
/** Folders of src/ allowed to call Prisma, relative to the scanned root. */
const EXEMPT = ['src/repositories', 'src/db', 'src/generated'];

/** The model delegates of the schema as the client names them: `model DomainDnsCheck` → `domainDnsCheck`. */
function modelDelegates(schema: string): string[] {
  return [...schema.matchAll(/^model\s+(\w+)\s*\{/gm)].map((m) => m[1]![0]!.toLowerCase() + m[1]!.slice(1));
}

const METHODS = [
  'findUnique',
  'findUniqueOrThrow',
  'findFirst',
  'findFirstOrThrow',
  'findMany',
  'create',
  'createMany',
  'createManyAndReturn',
  'update',
  'updateMany',
  'updateManyAndReturn',
  'upsert',
  'delete',
  'deleteMany',
  'count',
  'aggregate',
  'groupBy',
];

/**
 * Where a service keeps its dependencies: `deps.settings` is the settings repository there, not
 * the `settings` model of a client (a client is reached as `deps.prisma`, `prisma`, `tx`, `db`).
 */
const DEPENDENCY_BAGS = new Set(['deps', 'repositories']);

/** `line: text` of each Prisma model call or raw query in `source`; chains split over lines count too. */
function prismaCalls(source: string, models: string[]): string[] {
  const modelCall = new RegExp(
    `([\\w$]+)?\\s*\\.\\s*(?:${models.join('|')})\\s*\\.\\s*(?:${METHODS.join('|')})\\s*[(<]`,
    'g',
  );
  const rawCall = /\$(?:queryRaw|executeRaw)(?:Unsafe)?\b/g;
  const lines = source.split('\n');
  const at = (index: number) => {
    const line = source.slice(0, index).split('\n').length;
    return { index, text: `${line}: ${lines[line - 1]!.trim()}` };
  };
  return [
    ...[...source.matchAll(modelCall)]
      .filter((m) => !DEPENDENCY_BAGS.has(m[1] ?? ''))
      .map((m) => at(m.index + m[0].indexOf('.'))),
    ...[...source.matchAll(rawCall)].map((m) => at(m.index)),
  ]
    .sort((a, b) => a.index - b.index)
    .map((hit) => hit.text);
}

/** `file:line: text` of each Prisma call in the .ts files under `dir` of `base`, exempt folders skipped. */
function prismaCallsUnder(base: string, dir: string, models: string[]): string[] {
  return readdirSync(path.join(base, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return EXEMPT.includes(relative) ? [] : prismaCallsUnder(base, relative, models);
    if (!entry.name.endsWith('.ts')) return [];
    return prismaCalls(readFileSync(path.join(base, relative), 'utf8'), models).map((hit) => `${relative}:${hit}`);
  });
}

const models = modelDelegates(readFileSync(path.join(root, 'prisma', 'schema.prisma'), 'utf8'));

it('no file of src/ outside repositories/ and db/ calls a Prisma model or raw SQL', () => {
  expect(models).toEqual(expect.arrayContaining(['apiKey', 'domain', 'domainDnsCheck', 'nodeLogCursor']));
  expect(prismaCallsUnder(root, 'src', models)).toEqual([]);
});

it('finds model calls, raw queries and split chains, and leaves repository and collection calls alone', () => {
  const source = [
    'const n = await tx.domain.count({ where });', // 1
    'await deps.domains.update(tx, id, version, data);', // 2: a repository
    'index.tenants.delete(old.id);', // 3: a Map
    'const rows = await deps.prisma.$queryRaw<Row[]>`SELECT 1`;', // 4
    'await prisma', // 5
    '  .nodeLogCursor', // 6
    '  .update({ where, data });', // 7
    'await db.$executeRawUnsafe(sql);', // 8
    'await prisma.$transaction(async (tx) => repo.save(tx, row));', // 9: services own transactions
    'const held = await tx.domainDnsCheck.findUnique({ where });', // 10
    'const row = await deps.settings.update(tx, current.version, input);', // 11: the settings repository
    'await deps.prisma.settings.update({ where, data });', // 12: the settings model
  ].join('\n');
  expect(prismaCalls(source, models)).toEqual([
    '1: const n = await tx.domain.count({ where });',
    '4: const rows = await deps.prisma.$queryRaw<Row[]>`SELECT 1`;',
    '6: .nodeLogCursor',
    '8: await db.$executeRawUnsafe(sql);',
    '10: const held = await tx.domainDnsCheck.findUnique({ where });',
    '12: await deps.prisma.settings.update({ where, data });',
  ]);
});

it('names file and line of a call in a service, and skips the exempt folders', () => {
  const base = mkdtempSync(path.join(tmpdir(), 'prisma-calls-'));
  try {
    mkdirSync(path.join(base, 'src/services'), { recursive: true });
    mkdirSync(path.join(base, 'src/repositories'), { recursive: true });
    mkdirSync(path.join(base, 'src/db'), { recursive: true });
    writeFileSync(path.join(base, 'src/services/leaky.service.ts'), '// a use case\nawait tx.apiKey.findMany();\n');
    writeFileSync(path.join(base, 'src/repositories/key.repository.ts'), 'await db.apiKey.findMany();\n');
    writeFileSync(path.join(base, 'src/db/migrations.ts'), 'await db.$queryRaw`SELECT 1`;\n');
    expect(prismaCallsUnder(base, 'src', models)).toEqual([
      'src/services/leaky.service.ts:2: await tx.apiKey.findMany();',
    ]);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
