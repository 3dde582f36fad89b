/**
 * The node runner's reads at each node's turn, against a real database: turns that start together
 * read their nodes in one query, turns that start later read theirs when they start, and a node
 * deleted or disabled before its turn is skipped either way. Nodes are unreachable here (connect
 * fails at once): what reaches a node is proven by the lab tests (sync-under-change.test.ts).
 */
import { Registry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import { createNodeRunner, type RunHooks } from '../../src/jobs/node-runner.js';
import { createNodeRepository } from '../../src/repositories/node.repository.js';
import { createDeployMetrics } from '../../src/services/deploy-metrics.js';
import { DEFAULT_SSH } from '../../src/ssh/index.js';
import type { Node } from '../../src/generated/prisma/client.js';
import { usePrismaDatabase } from '../helpers/database.js';
import { buildBundle } from './bundles.js';

const db = usePrismaDatabase();
const bundle = buildBundle([{ domain: 'a.test', nexthop: '[127.0.0.1]:2525', user: 'u', password: 'p' }]);

function runnerWith(concurrency: number) {
  const repository = createNodeRepository();
  const reads: string[][] = [];
  const nodes = {
    ...repository,
    findByIds: (...args: Parameters<typeof repository.findByIds>) => {
      reads.push([...args[1]].sort());
      return repository.findByIds(...args);
    },
  };
  const runner = createNodeRunner({
    prisma: db.prisma,
    nodes,
    ssh: {
      ...DEFAULT_SSH,
      concurrency,
      retry: { attempts: 1, baseDelayMs: 0 },
      connect: () => Promise.reject(new Error('no node answers in this test')),
    },
    readPrivateKey: () => Promise.resolve('not a key'),
    metrics: createDeployMetrics(new Registry()),
    log: { info: () => undefined, warn: () => undefined },
    now: () => new Date(),
  });
  return { runner, reads };
}

describe('node runner, a node read again at its turn', () => {
  let listed: Node[];
  beforeEach(async () => {
    await db.prisma.node.deleteMany();
    listed = await Promise.all(
      ['n1', 'n2', 'n3', 'n4'].map((name, i) =>
        db.prisma.node.create({ data: { name, sshHost: '127.0.0.1', sshPort: 40_000 + i, hostKey: 'SHA256:x' } }),
      ),
    );
  });

  it('reads the nodes whose turns start together in one query, and skips those gone or disabled', async () => {
    const { runner, reads } = runnerWith(4);
    await db.prisma.node.delete({ where: { id: listed[1]!.id } });
    await db.prisma.node.update({ where: { id: listed[2]!.id }, data: { enabled: false } });
    const started: string[] = [];
    const hooks: RunHooks = { started: (node) => Promise.resolve(void started.push(node.name)) };

    const outcomes = await runner.syncAll(listed, bundle, hooks);
    runner.close();

    expect(reads).toEqual([listed.map((n) => n.id).sort()]);
    expect(outcomes.map((o) => [o.node.name, o.skipped, o.result?.state ?? null])).toEqual([
      ['n1', null, 'failed'],
      ['n2', 'deleted before its turn: nothing was sent', null],
      ['n3', 'disabled before its turn: nothing was sent', null],
      ['n4', null, 'failed'],
    ]);
    expect(started.sort()).toEqual(['n1', 'n4']);
  });

  it('reads a node whose turn comes later when it starts: a change before then is seen', async () => {
    const { runner, reads } = runnerWith(1);
    // n2 is disabled while n1's turn runs, after the run's list was read.
    const hooks: RunHooks = {
      started: async (node) => {
        if (node.name === 'n1') await db.prisma.node.update({ where: { id: listed[1]!.id }, data: { enabled: false } });
      },
    };

    const outcomes = await runner.syncAll(listed, bundle, hooks);
    runner.close();

    expect(reads).toEqual(listed.map((n) => [n.id]));
    expect(outcomes.map((o) => o.skipped)).toEqual([null, 'disabled before its turn: nothing was sent', null, null]);
  });
});
