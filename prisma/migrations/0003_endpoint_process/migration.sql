-- AlterTable
ALTER TABLE "Endpoint" ADD COLUMN "dataDir" TEXT;
ALTER TABLE "Endpoint" ADD COLUMN "pid" INTEGER;
ALTER TABLE "Endpoint" ADD COLUMN "startLsn" BIGINT;
ALTER TABLE "Endpoint" ADD COLUMN "stopLsn" BIGINT;
