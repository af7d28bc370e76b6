-- AlterTable
ALTER TABLE "Endpoint" ADD COLUMN "settings" TEXT;
