import type { PrismaClient } from '../db/prisma.js';
import type { Prisma } from '../generated/prisma/client.js';

/** One file of a stored bundle: its chunks' digests, or (bundles stored before chunking) its text. */
export type StoredFile = { mode: number; secret: boolean; mapType: 'hash' | null } & ({ chunks: string[] } | { content: string });

/** What config_bundles.bundle holds: the masked bundle with each file's text replaced by its chunks. */
export interface StoredManifest {
  version: string;
  files: Record<string, StoredFile>;
  mainCf: Record<string, string>;
  masterCf: Array<{ name: string; line: string }>;
  warnings: string[];
}

export function createConfigBundleRepository() {
  return {
    /** The digests among `digests` that are stored already. */
    async existingChunks(prisma: PrismaClient, digests: string[]): Promise<Set<string>> {
      if (digests.length === 0) return new Set();
      const rows = await prisma.configChunk.findMany({ where: { digest: { in: digests } }, select: { digest: true } });
      return new Set(rows.map((row) => row.digest));
    },

    /** Chunks first, then the manifest naming them: a reader never finds a manifest without its chunks. */
    async save(prisma: PrismaClient, manifest: StoredManifest, chunks: Array<{ digest: string; content: string }>): Promise<void> {
      if (chunks.length > 0) await prisma.configChunk.createMany({ data: chunks, skipDuplicates: true });
      await prisma.configBundle.createMany({ data: [{ version: manifest.version, bundle: manifest as unknown as Prisma.InputJsonValue }], skipDuplicates: true });
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
  };
}

export type ConfigBundleRepository = ReturnType<typeof createConfigBundleRepository>;
