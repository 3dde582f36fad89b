import type { Db } from '../db/prisma.js';
import type { Prisma } from '../generated/prisma/client.js';
import { CONFIG_CHANNEL } from '../deploy/sync-worker.js';

export function createNodeRepository() {
  return {
    create(db: Db, data: Prisma.NodeUncheckedCreateInput) {
      return db.node.create({ data });
    },
    findById(db: Db, id: string) {
      return db.node.findUnique({ where: { id } });
    },
    list(db: Db, query: { afterId?: string | undefined; take: number }) {
      return db.node.findMany({
        where: { id: query.afterId === undefined ? undefined : { gt: query.afterId } },
        orderBy: { id: 'asc' },
        take: query.take,
      });
    },
    listEnabled(db: Db) {
      return db.node.findMany({ where: { enabled: true }, orderBy: { name: 'asc' } });
    },
    /** Admin edits: optimistic on `version`, which they bump. */
    async update(db: Db, id: string, expectedVersion: number, data: Prisma.NodeUncheckedUpdateInput) {
      const result = await db.node.updateMany({ where: { id, version: expectedVersion }, data: { ...data, version: { increment: 1 } } });
      return result.count === 1 ? db.node.findUnique({ where: { id } }) : null;
    },
    /** What the worker and checks learn about a node: never bumps the admin-facing version. */
    async recordStatus(db: Db, id: string, data: Pick<Prisma.NodeUncheckedUpdateInput, 'liveVersion' | 'driftDetected' | 'lastDeployedAt' | 'lastError' | 'lastCheckAt'>) {
      await db.node.updateMany({ where: { id }, data });
    },
    delete(db: Db, id: string) {
      return db.node.delete({ where: { id } });
    },
    /** The set of deploy targets changed: the sync worker runs as for a config change (sent on commit). */
    async notifyTargetsChanged(db: Db) {
      await db.$executeRaw`SELECT pg_notify(${CONFIG_CHANNEL}, 'nodes')`;
    },
  };
}

export type NodeRepository = ReturnType<typeof createNodeRepository>;
