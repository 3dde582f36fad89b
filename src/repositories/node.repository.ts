import type { Db } from '../db/prisma.js';
import { Prisma, type Node } from '../generated/prisma/client.js';
import { CONFIG_CHANNEL } from '../db/channels.js';

/** Where and how a node is reached: a result obtained at one address says nothing about another. */
export type NodeAddress = Pick<Node, 'sshHost' | 'sshPort' | 'sshUser' | 'hostKey' | 'configDir'>;

/** What the worker and checks record of a node (undefined: left as it is). */
export interface NodeStatus {
  liveVersion?: string | null;
  driftDetected?: boolean;
  driftFiles?: string[];
  lastDeployedAt?: Date;
  lastError?: string | null;
  lastCheckAt?: Date;
}

/**
 * Their columns. Written by one raw statement, which costs the control plane less CPU than the
 * client's own update: it runs once per node and change.
 */
const STATUS_COLUMNS: Record<keyof NodeStatus, string> = {
  liveVersion: 'live_version',
  driftDetected: 'drift_detected',
  driftFiles: 'drift_files',
  lastDeployedAt: 'last_deployed_at',
  lastError: 'last_error',
  lastCheckAt: 'last_check_at',
};

/** The address's columns: typed by NodeAddress, so a field added to it cannot be left out of the compare-and-set. */
const ADDRESS_COLUMNS: Record<keyof NodeAddress, string> = {
  sshHost: 'ssh_host',
  sshPort: 'ssh_port',
  sshUser: 'ssh_user',
  hostKey: 'host_key',
  configDir: 'config_dir',
};

export function addressOf(node: NodeAddress): NodeAddress {
  return {
    sshHost: node.sshHost,
    sshPort: node.sshPort,
    sshUser: node.sshUser,
    hostKey: node.hostKey,
    configDir: node.configDir,
  };
}

export function createNodeRepository() {
  return {
    create(db: Db, data: Prisma.NodeUncheckedCreateInput) {
      return db.node.create({ data });
    },
    findById(db: Db, id: string) {
      return db.node.findUnique({ where: { id } });
    },
    /** These nodes as they are now, in one query; a deleted one is missing. */
    findByIds(db: Db, ids: readonly string[]) {
      return db.node.findMany({ where: { id: { in: [...ids] } } });
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
      const result = await db.node.updateMany({
        where: { id, version: expectedVersion },
        data: { ...data, version: { increment: 1 } },
      });
      return result.count === 1 ? db.node.findUnique({ where: { id } }) : null;
    },
    /**
     * What the worker and checks learn about a node: never bumps the admin-facing version. With
     * `at`, written only while the node still has that address; false when nothing was written.
     */
    async recordStatus(db: Db, id: string, data: NodeStatus, at?: NodeAddress): Promise<boolean> {
      // Only the known fields reach the statement, each by its constant column name.
      const set = (Object.keys(STATUS_COLUMNS) as Array<keyof NodeStatus>)
        .filter((field) => data[field] !== undefined)
        .map((field) => Prisma.sql`${Prisma.raw(STATUS_COLUMNS[field])} = ${data[field]}`);
      const where = [
        Prisma.sql`id = ${id}::uuid`,
        ...(at === undefined
          ? []
          : (Object.keys(ADDRESS_COLUMNS) as Array<keyof NodeAddress>).map(
              (field) => Prisma.sql`${Prisma.raw(ADDRESS_COLUMNS[field])} = ${at[field]}`,
            )),
      ];
      const count = await db.$executeRaw`UPDATE nodes SET ${Prisma.join([...set, Prisma.sql`updated_at = now()`], ', ')}
        WHERE ${Prisma.join(where, ' AND ')}`;
      return count === 1;
    },
    /**
     * The ids of these nodes still registered, their rows locked (FOR KEY SHARE) until the
     * transaction ends: a concurrent delete waits, then clears the node id of rows written here.
     */
    async lockRegistered(db: Db, ids: string[]): Promise<Set<string>> {
      if (ids.length === 0) return new Set();
      const rows = await db.$queryRaw<
        Array<{ id: string }>
      >`SELECT id::text AS id FROM nodes WHERE id = ANY(${ids}::uuid[]) FOR KEY SHARE`;
      return new Set(rows.map((row) => row.id));
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
