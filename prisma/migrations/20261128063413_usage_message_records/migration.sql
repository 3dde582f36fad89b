-- AlterTable
ALTER TABLE "usage_messages" ADD COLUMN     "bounced" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "deferred" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "delivered" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "expired" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN     "recipients" INTEGER NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE "usage_message_records" (
    "id" BIGSERIAL NOT NULL,
    "node_name" TEXT NOT NULL,
    "queue_id" TEXT NOT NULL,
    "tenant_id" UUID NOT NULL,
    "sender" TEXT NOT NULL,
    "sender_domain" TEXT NOT NULL,
    "accepted_at" TIMESTAMPTZ(3) NOT NULL,
    "removed_at" TIMESTAMPTZ(3) NOT NULL,
    "size" BIGINT NOT NULL,
    "recipients" INTEGER NOT NULL,
    "delivered" INTEGER NOT NULL,
    "deferred" INTEGER NOT NULL,
    "bounced" INTEGER NOT NULL,
    "expired" BOOLEAN NOT NULL,

    CONSTRAINT "usage_message_records_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "usage_message_records_tenant_id_accepted_at_id_idx" ON "usage_message_records"("tenant_id", "accepted_at", "id");

-- CreateIndex
CREATE INDEX "usage_message_records_accepted_at_idx" ON "usage_message_records"("accepted_at");
