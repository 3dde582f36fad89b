-- AlterTable
ALTER TABLE "nodes" ADD COLUMN     "log_path" TEXT;

-- CreateTable
CREATE TABLE "node_log_cursors" (
    "node_id" UUID NOT NULL,
    "path" TEXT NOT NULL,
    "inode" BIGINT,
    "offset" BIGINT NOT NULL DEFAULT 0,
    "head_digest" TEXT,
    "last_collected_at" TIMESTAMPTZ(3),
    "last_line_at" TIMESTAMPTZ(3),
    "last_error" TEXT,
    "last_error_at" TIMESTAMPTZ(3),
    "lines_read" BIGINT NOT NULL DEFAULT 0,
    "lines_malformed" BIGINT NOT NULL DEFAULT 0,
    "unattributed_lines" BIGINT NOT NULL DEFAULT 0,
    "late_events" BIGINT NOT NULL DEFAULT 0,
    "bytes_lost" BIGINT NOT NULL DEFAULT 0,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "node_log_cursors_pkey" PRIMARY KEY ("node_id")
);

-- CreateTable
CREATE TABLE "usage_messages" (
    "node_id" UUID NOT NULL,
    "queue_id" TEXT NOT NULL,
    "origin" BOOLEAN NOT NULL,
    "queued" BOOLEAN NOT NULL,
    "sender" TEXT NOT NULL,
    "sender_domain" TEXT NOT NULL,
    "tenant_id" UUID,
    "size" BIGINT NOT NULL,
    "first_seen_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "usage_messages_pkey" PRIMARY KEY ("node_id","queue_id")
);

-- CreateTable
CREATE TABLE "usage_hourly" (
    "hour" TIMESTAMPTZ(0) NOT NULL,
    "tenant_id" UUID NOT NULL,
    "sender_domain" TEXT NOT NULL,
    "recipient_domain" TEXT NOT NULL,
    "messages" BIGINT NOT NULL DEFAULT 0,
    "recipients" BIGINT NOT NULL DEFAULT 0,
    "delivered" BIGINT NOT NULL DEFAULT 0,
    "deferred" BIGINT NOT NULL DEFAULT 0,
    "bounced" BIGINT NOT NULL DEFAULT 0,
    "expired" BIGINT NOT NULL DEFAULT 0,
    "bytes" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "usage_hourly_pkey" PRIMARY KEY ("hour","tenant_id","sender_domain","recipient_domain")
);

-- CreateTable
CREATE TABLE "usage_watermark" (
    "id" INTEGER NOT NULL DEFAULT 1,
    "final_before" TIMESTAMPTZ(0) NOT NULL,

    CONSTRAINT "usage_watermark_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "domain_ownership" (
    "id" BIGSERIAL NOT NULL,
    "domain" TEXT NOT NULL,
    "tenant_id" UUID NOT NULL,
    "valid_from" TIMESTAMPTZ(3) NOT NULL,
    "valid_to" TIMESTAMPTZ(3),

    CONSTRAINT "domain_ownership_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "usage_messages_updated_at_idx" ON "usage_messages"("updated_at");

-- CreateIndex
CREATE INDEX "usage_hourly_tenant_id_hour_idx" ON "usage_hourly"("tenant_id", "hour");

-- CreateIndex
CREATE INDEX "domain_ownership_domain_valid_from_idx" ON "domain_ownership"("domain", "valid_from");

-- AddForeignKey
ALTER TABLE "node_log_cursors" ADD CONSTRAINT "node_log_cursors_node_id_fkey" FOREIGN KEY ("node_id") REFERENCES "nodes"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "usage_messages" ADD CONSTRAINT "usage_messages_node_id_fkey" FOREIGN KEY ("node_id") REFERENCES "nodes"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Domain ownership history: usage is attributed to the tenant that owned the sender domain when
-- the message was queued, even if the domain later moved or was deleted. Kept by the database so
-- that no write path (API, CLI, a manual fix in psql) can forget it.
CREATE FUNCTION "relayplane_track_domain_ownership"() RETURNS trigger AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    IF TG_OP = 'DELETE' OR OLD."name" IS DISTINCT FROM NEW."name" OR OLD."tenant_id" IS DISTINCT FROM NEW."tenant_id" THEN
      UPDATE "domain_ownership" SET "valid_to" = now()
        WHERE "domain" = OLD."name" AND "tenant_id" = OLD."tenant_id" AND "valid_to" IS NULL;
    ELSE
      RETURN NULL;
    END IF;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO "domain_ownership" ("domain", "tenant_id", "valid_from") VALUES (NEW."name", NEW."tenant_id", now());
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER "domains_track_ownership" AFTER INSERT OR UPDATE OR DELETE ON "domains"
  FOR EACH ROW EXECUTE FUNCTION "relayplane_track_domain_ownership"();

-- Domains that exist already: owned since they were created.
INSERT INTO "domain_ownership" ("domain", "tenant_id", "valid_from")
  SELECT "name", "tenant_id", "created_at" FROM "domains";

INSERT INTO "usage_watermark" ("id", "final_before") VALUES (1, 'epoch');
