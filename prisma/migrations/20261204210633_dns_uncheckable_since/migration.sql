-- AlterTable
ALTER TABLE "domain_dns_checks" ADD COLUMN     "uncheckable_since" TIMESTAMPTZ(3);
