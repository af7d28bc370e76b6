-- AlterTable
ALTER TABLE "Endpoint" ADD COLUMN     "dataDir" TEXT,
ADD COLUMN     "pid" INTEGER,
ADD COLUMN     "startLsn" BIGINT,
ADD COLUMN     "stopLsn" BIGINT;
