import type { PrismaClient } from '../db/prisma.js';
import type { Prisma } from '../generated/prisma/client.js';

/** One file of a stored bundle: its chunks' digests, or (bundles stored before chunking) its text. */
export type StoredFile = { mode: number; secret: boolean; mapType: 'hash' | null } & (
  { chunks: string[] } | { content: string }
);

/** What config_bundles.bundle holds: the masked bundle with each file's text replaced by its chunks. */
export interface StoredManifest {
  version: string;
  files: Record<string, StoredFile>;
  mainCf: Record<string, string>;
  masterCf: Array<{ name: string; line: string }>;
  warnings: string[];
}

// Saves share this lock, a prune takes it alone: a save never names a chunk that a prune running at
// the same time finds unused and deletes. One key per schema (two installations may share a database).
const LOCK_KEY = `hashtextextended('relayplane/config-bundles/' || current_schema(), 0)`;
const SAVE_LOCK = `SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock_shared(${LOCK_KEY})) AS lock`;
const PRUNE_LOCK = `SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(${LOCK_KEY})) AS lock`;
// Older than the retention, and neither the newest bundle nor what a node runs or is being given.
const PRUNE_BUNDLES = `
    DELETE FROM config_bundles b
     WHERE b.created_at < now() - $1::float8 * interval '1 second'
       AND b.version NOT IN (
             SELECT live_version FROM nodes WHERE live_version IS NOT NULL
             UNION SELECT version FROM deployments WHERE state IN ('pending', 'running')
             UNION (SELECT version FROM config_bundles ORDER BY created_at DESC LIMIT 1))`;
const PRUNE_CHUNKS = `DELETE FROM config_chunks c WHERE NOT EXISTS (SELECT FROM config_bundle_chunks r WHERE r.digest = c.digest)`;

export function createConfigBundleRepository() {
  return {
    /**
     * Stores a manifest, the chunks of `chunks` not stored yet, and which chunks it uses, in one
     * transaction (idempotent: a version stored before is left as it is).
     */
    async save(prisma: PrismaClient, manifest: StoredManifest, chunks: ReadonlyMap<string, string>): Promise<void> {
      const digests = [...chunks.keys()];
      await prisma.$transaction(
        async (tx) => {
          await tx.$queryRawUnsafe(SAVE_LOCK);
          // A version is stored whole or not at all: one stored before needs nothing more.
          if (
            (await tx.$queryRawUnsafe<unknown[]>('SELECT 1 FROM config_bundles WHERE version = $1', manifest.version))
              .length > 0
          )
            return;
          const stored = await tx.$queryRawUnsafe<Array<{ digest: string }>>(
            'SELECT digest FROM config_chunks WHERE digest = ANY($1::text[])',
            digests,
          );
          const have = new Set(stored.map((row) => row.digest));
          const missing = digests
            .filter((digest) => !have.has(digest))
            .map((digest) => ({ digest, content: chunks.get(digest)! }));
          if (missing.length > 0) await tx.configChunk.createMany({ data: missing, skipDuplicates: true });
          await tx.configBundle.createMany({
            data: [{ version: manifest.version, bundle: manifest as unknown as Prisma.InputJsonValue }],
            skipDuplicates: true,
          });
          await tx.$executeRawUnsafe(
            'INSERT INTO config_bundle_chunks (version, digest) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING',
            manifest.version,
            digests,
          );
        },
        { timeout: 60_000 },
      );
    },

    async findManifest(prisma: PrismaClient, version: string): Promise<StoredManifest | null> {
      const row = await prisma.configBundle.findUnique({ where: { version } });
      return row === null ? null : (row.bundle as unknown as StoredManifest);
    },

    async chunks(prisma: PrismaClient, digests: string[]): Promise<Map<string, string>> {
      if (digests.length === 0) return new Map();
      const rows = await prisma.configChunk.findMany({ where: { digest: { in: digests } } });
      return new Map(rows.map((row) => [row.digest, row.content]));
    },

    /** Deletes bundles older than `retentionSeconds` (see PRUNE_BUNDLES), then the chunks none uses. */
    async prune(prisma: PrismaClient, retentionSeconds: number): Promise<{ bundles: number; chunks: number }> {
      return prisma.$transaction(
        async (tx) => {
          await tx.$queryRawUnsafe(PRUNE_LOCK);
          const bundles = await tx.$executeRawUnsafe(PRUNE_BUNDLES, retentionSeconds);
          const chunks = await tx.$executeRawUnsafe(PRUNE_CHUNKS);
          return { bundles, chunks };
        },
        { timeout: 300_000 },
      );
    },
  };
}

export type ConfigBundleRepository = ReturnType<typeof createConfigBundleRepository>;
