// Removing a branch's timeline, shared by BranchService.delete and the recovery of a delete that a
// crash interrupted (TenantService.recover).
import { rmSync } from "node:fs";
import { removeTimelineStorage } from "@strata/core";
import type { Database } from "../db.ts";
import { activeEndpointOn } from "./active-endpoint.ts";

/** Why a branch cannot be deleted now (its own branches, an endpoint not stopped), or undefined. */
export async function branchDeleteBlocker(db: Database, timelineId: string): Promise<string | undefined> {
  const children = await db.timeline.findMany({ where: { parentTimelineId: timelineId }, select: { name: true } });
  if (children.length) return `has branches of its own (${children.map((c) => c.name).join(", ")}): delete them first`;
  const endpoint = await activeEndpointOn(db, timelineId);
  if (endpoint) return `has a ${endpoint.state} endpoint (${endpoint.id}): stop it first`;
  return undefined;
}

/** Removes a claimed branch (its timeline detached): endpoint data directories, storage, rows. */
export async function removeBranch(db: Database, dataDir: string, tenantId: string, timelineId: string): Promise<void> {
  for (const endpoint of await db.endpoint.findMany({ where: { timelineId } })) {
    if (endpoint.dataDir) rmSync(endpoint.dataDir, { recursive: true, force: true });
  }
  await removeTimelineStorage(dataDir, tenantId, timelineId);
  await db.$transaction([db.endpoint.deleteMany({ where: { timelineId } }), db.timeline.delete({ where: { id: timelineId } })]);
}
