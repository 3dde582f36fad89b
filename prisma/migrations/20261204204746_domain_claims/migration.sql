-- DropIndex
DROP INDEX "domains_name_key";

-- AlterTable
ALTER TABLE "domains" ADD COLUMN     "status_reason" TEXT;

-- CreateIndex
CREATE INDEX "domains_name_idx" ON "domains"("name");

-- CreateIndex
CREATE UNIQUE INDEX "domains_tenant_id_name_key" ON "domains"("tenant_id", "name");

-- CreateIndex
CREATE UNIQUE INDEX "domains_name_held_key" ON "domains"("name") WHERE (status IN ('verified', 'degraded') OR compile_override);

-- Usage attribution (domain_ownership, read as "the last owner recorded before the message") must
-- not follow a mere claim now that several tenants may claim one name: the first claim of a name
-- is recorded when it is made (as before), a competing claim only when it wins (becomes verified
-- or degraded, or an admin compiles it in). A transfer or rename is recorded as before.
CREATE OR REPLACE FUNCTION "relayplane_track_domain_ownership"() RETURNS trigger AS $$
DECLARE
  held_before BOOLEAN := TG_OP = 'UPDATE' AND (OLD."status" IN ('verified', 'degraded') OR OLD."compile_override");
  held_now BOOLEAN := TG_OP IN ('INSERT', 'UPDATE') AND (NEW."status" IN ('verified', 'degraded') OR NEW."compile_override");
  moved BOOLEAN := TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (OLD."name" IS DISTINCT FROM NEW."name" OR OLD."tenant_id" IS DISTINCT FROM NEW."tenant_id"));
BEGIN
  IF moved THEN
    UPDATE "domain_ownership" SET "valid_to" = now()
      WHERE "domain" = OLD."name" AND "tenant_id" = OLD."tenant_id" AND "valid_to" IS NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN NULL;
  END IF;
  IF (TG_OP = 'INSERT' AND (held_now OR NOT EXISTS (SELECT 1 FROM "domains" WHERE "name" = NEW."name" AND "id" <> NEW."id")))
     OR (TG_OP = 'UPDATE' AND (moved OR (held_now AND NOT held_before))) THEN
    INSERT INTO "domain_ownership" ("domain", "tenant_id", "valid_from") VALUES (NEW."name", NEW."tenant_id", now());
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
