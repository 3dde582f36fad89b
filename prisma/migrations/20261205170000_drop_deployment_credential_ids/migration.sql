-- AlterTable
ALTER TABLE "deployments" DROP COLUMN "credential_ids";
