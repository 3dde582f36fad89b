-- CreateTable
CREATE TABLE "config_bundles" (
    "version" TEXT NOT NULL,
    "bundle" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "config_bundles_pkey" PRIMARY KEY ("version")
);

-- CreateIndex
CREATE INDEX "config_bundles_created_at_idx" ON "config_bundles"("created_at");
