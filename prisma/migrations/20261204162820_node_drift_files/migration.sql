-- AlterTable
ALTER TABLE "nodes" ADD COLUMN     "drift_files" TEXT[] DEFAULT ARRAY[]::TEXT[];
