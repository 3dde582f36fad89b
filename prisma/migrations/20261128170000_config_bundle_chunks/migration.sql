-- Which chunks each stored bundle uses, so that pruning old bundles can find the chunks no bundle
-- uses any more; a chunk in use cannot be deleted (foreign key).
-- CreateTable
CREATE TABLE "config_bundle_chunks" (
    "version" TEXT NOT NULL,
    "digest" TEXT NOT NULL,

    CONSTRAINT "config_bundle_chunks_pkey" PRIMARY KEY ("version","digest")
);

-- CreateIndex
CREATE INDEX "config_bundle_chunks_digest_idx" ON "config_bundle_chunks"("digest");

-- AddForeignKey
ALTER TABLE "config_bundle_chunks" ADD CONSTRAINT "config_bundle_chunks_version_fkey" FOREIGN KEY ("version") REFERENCES "config_bundles"("version") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "config_bundle_chunks" ADD CONSTRAINT "config_bundle_chunks_digest_fkey" FOREIGN KEY ("digest") REFERENCES "config_chunks"("digest") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Bundles stored as chunks before this table: their references, from their manifests (a chunk
-- gone missing would fail the foreign key and the upgrade; such a bundle is unreadable anyway).
INSERT INTO "config_bundle_chunks" ("version", "digest")
SELECT DISTINCT b."version", d.digest
  FROM "config_bundles" b, jsonb_each(b."bundle"->'files') f, jsonb_array_elements_text(f.value->'chunks') AS d(digest)
 WHERE jsonb_typeof(f.value->'chunks') = 'array'
   AND EXISTS (SELECT FROM "config_chunks" c WHERE c.digest = d.digest)
ON CONFLICT DO NOTHING;
