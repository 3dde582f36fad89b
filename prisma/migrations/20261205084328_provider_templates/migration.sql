-- AlterTable
ALTER TABLE "domains" ADD COLUMN     "auth_values" JSONB NOT NULL DEFAULT '{}';

-- AlterTable
ALTER TABLE "relays" ADD COLUMN     "auth_template" JSONB;
