-- AlterTable
ALTER TABLE "Timeline" ADD COLUMN "primaryUrl" TEXT;
ALTER TABLE "Timeline" ADD COLUMN "slotName" TEXT;

-- CreateIndex
CREATE UNIQUE INDEX "Timeline_slotName_key" ON "Timeline"("slotName");
