-- AlterTable
ALTER TABLE "Tenant" ADD COLUMN     "name" TEXT;

-- CreateIndex
CREATE UNIQUE INDEX "Tenant_name_key" ON "Tenant"("name");
