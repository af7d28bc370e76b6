// Test fixture: the services the pageserver wires together (tenants, branches, endpoints) over a
// fresh data directory, with one tenant following a primary.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { TenantManager } from "@strata/core";
import { applyMigrations, defaultDatabaseUrl, openDatabase, type Database } from "../db.ts";
import { BranchService } from "./branches.ts";
import { EndpointService } from "./endpoints.ts";
import { TenantService } from "./tenants.ts";

export interface ServicesFixture {
  dataDir: string;
  db: Database;
  manager: TenantManager;
  tenants: TenantService;
  branches: BranchService;
  endpoints: EndpointService;
  /** the tenant whose main timeline follows the primary */
  tenantId: string;
  /** stops the tenant's endpoints, detaches everything and removes the data directory */
  close(): Promise<void>;
}

/** `stopTimeoutMs`: how long an endpoint stop waits for the branch to ingest its WAL (default 120 s) */
export async function servicesFollowing(primaryUrl: string, options: { keepEndpointData?: boolean; stopTimeoutMs?: number } = {}): Promise<ServicesFixture> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "strata-services-"));
  await applyMigrations(defaultDatabaseUrl(dataDir));
  const db = openDatabase(defaultDatabaseUrl(dataDir));
  const manager = new TenantManager(dataDir, {}, 0);
  const tenants: TenantService = new TenantService(db, dataDir, {
    importTimeline: (t, tl, url, slot) => manager.importFromPrimary(t, tl, url, slot),
    onTenantActive: async (t) => manager.attach(t, await db.timeline.findMany({ where: { tenantId: t } })),
  });
  const branches = new BranchService(db, dataDir, tenants, manager);
  const endpoints = new EndpointService(db, dataDir, tenants, manager, options.stopTimeoutMs ?? 120_000, options.keepEndpointData ?? false);
  const tenantId = (await tenants.create(undefined, { fromPrimary: primaryUrl })).id;
  return {
    dataDir,
    db,
    manager,
    tenants,
    branches,
    endpoints,
    tenantId,
    async close() {
      await endpoints.stopAll(tenantId).catch(() => {});
      await manager.shutdown();
      await db.$disconnect();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
