-- AlterTable
ALTER TABLE "domains" ADD COLUMN     "status_changed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
ADD COLUMN     "verification_token" TEXT NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', ''),
ADD COLUMN     "verified_at" TIMESTAMPTZ(3);

-- AlterTable
ALTER TABLE "relays" ADD COLUMN     "dkim" JSONB NOT NULL DEFAULT '[]',
ADD COLUMN     "return_path" JSONB;

-- CreateTable
CREATE TABLE "domain_dns_checks" (
    "domain_id" UUID NOT NULL,
    "records" JSONB NOT NULL,
    "checked_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "domain_dns_checks_pkey" PRIMARY KEY ("domain_id")
);

-- CreateIndex
CREATE INDEX "domain_dns_checks_checked_at_idx" ON "domain_dns_checks"("checked_at");

-- AddForeignKey
ALTER TABLE "domain_dns_checks" ADD CONSTRAINT "domain_dns_checks_domain_id_fkey" FOREIGN KEY ("domain_id") REFERENCES "domains"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Domains already verified (by an administrator before verification existed) keep that date.
UPDATE "domains" SET "verified_at" = "updated_at" WHERE "status" = 'verified';
