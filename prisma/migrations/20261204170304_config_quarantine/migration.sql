-- CreateTable
CREATE TABLE "config_quarantine" (
    "resource_type" TEXT NOT NULL,
    "resource_id" TEXT NOT NULL,
    "tenant_id" UUID,
    "treatment" TEXT NOT NULL,
    "problems" JSONB NOT NULL,
    "held_domains" INTEGER NOT NULL,
    "since" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "config_quarantine_pkey" PRIMARY KEY ("resource_type","resource_id")
);

-- CreateIndex
CREATE INDEX "config_quarantine_tenant_id_idx" ON "config_quarantine"("tenant_id");
