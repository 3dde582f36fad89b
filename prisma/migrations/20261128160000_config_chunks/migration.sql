-- The files of stored config bundles, as content-defined chunks of whole lines (src/lib/line-chunks.ts)
-- by the SHA-256 of their text: a bundle's manifest in config_bundles names each file's chunks, so
-- a new version stores only the chunks that changed. Bundles stored before keep their files inline.
-- CreateTable
CREATE TABLE "config_chunks" (
    "digest" TEXT NOT NULL,
    "content" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "config_chunks_pkey" PRIMARY KEY ("digest")
);
