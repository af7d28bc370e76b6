// Re-pointing a timeline that follows an external primary at another server of the same database
// system: after a failover, the promoted standby has another address, and the walreceiver would
// otherwise retry the old one forever. The new server is checked before anything changes (the
// timeline's system, the slot created there), then the metadata and the walreceiver move to it,
// which streams from the timeline's durable LSN across the promotion's timeline switch.
import { formatLsn, parsePostgresUrl, type TenantManager } from "@strata/core";
import type { Database } from "../db.ts";
import { activeEndpointOn } from "./active-endpoint.ts";
import { ConflictError, InvalidInputError, NotFoundError, PrimaryRequestError, isUniqueViolation } from "../errors.ts";
import { redactPrimaryUrl } from "../redact.ts";

export interface PrimarySwitch {
  tenantId: string;
  timelineId: string;
  /** the new server (postgres:// URL) */
  primary: string;
  /** its slot name (default: the timeline's current one) */
  slot?: string;
}

export interface PrimarySwitched {
  timelineId: string;
  /** the new server, password masked */
  primary: string;
  slot: string;
  /** whether the slot had to be created on the new server */
  slotCreated: boolean;
  /** where streaming resumes: the timeline's durable LSN */
  resumeLsn: string;
  /** what could not be cleaned up on the old server */
  warnings: string[];
}

/** timelines being switched now (a second request for one of them is a conflict) */
const switching = new Set<string>();

export async function switchPrimary(db: Database, manager: TenantManager, input: PrimarySwitch): Promise<PrimarySwitched> {
  try {
    parsePostgresUrl(input.primary);
  } catch (err) {
    throw new InvalidInputError(`invalid primary "${redactPrimaryUrl(input.primary)}": ${(err as Error).message}`);
  }
  const row = await db.timeline.findFirst({ where: { id: input.timelineId, tenantId: input.tenantId } });
  if (!row || row.state !== "active") throw new NotFoundError(`timeline ${input.timelineId} not found in tenant ${input.tenantId}`);
  const key = `${input.tenantId}/${input.timelineId}`;
  if (switching.has(key)) throw new ConflictError(`branch ${row.name} is already being switched to another primary`);
  switching.add(key);
  try {
    const running = await activeEndpointOn(db, row.id);
    if (running) throw new ConflictError(`branch ${row.name} takes its WAL from its ${running.state} endpoint (${running.id}), not from an external primary`);
    if (!row.primaryUrl || !row.slotName) throw new InvalidInputError(`branch ${row.name} does not follow an external primary (only a tenant's main timeline created with --from-primary does)`);
    const handle = manager.get(input.tenantId, row.id);
    if (!handle) throw new NotFoundError(`branch ${row.name} is not attached`);
    const slot = input.slot ?? row.slotName;
    if (slot !== row.slotName && (await db.timeline.findUnique({ where: { slotName: slot } }))) {
      throw new ConflictError(`replication slot "${slot}" is already used by another timeline`);
    }

    // the new server first: refused there, nothing has changed
    let slotState: "created" | "exists";
    try {
      slotState = await manager.preparePrimary(input.tenantId, row.id, input.primary, slot);
    } catch (err) {
      throw new PrimaryRequestError(`cannot follow ${redactPrimaryUrl(input.primary)}: ${(err as Error).message}`);
    }
    try {
      await db.timeline.update({ where: { id: row.id }, data: { primaryUrl: input.primary, slotName: slot } });
    } catch (err) {
      // a slot made for this switch would keep the new server's WAL for nobody
      if (slotState === "created") await manager.releasePrimarySlot(input.tenantId, row.id, input.primary, slot).catch(() => {});
      if (isUniqueViolation(err)) throw new ConflictError(`replication slot "${slot}" is already used by another timeline`);
      throw err;
    }
    await manager.switchReceiver(input.tenantId, row.id, input.primary, slot);
    const resumeLsn = (await handle.store.readMarkers()).lastRecordLsn;

    // A slot under the old name holds WAL wherever it is, and is no longer ours: dropped if it
    // can be reached. Under the same name it is left alone (the old address may lead to the new
    // server now, where that slot is the one just prepared).
    const warnings: string[] = [];
    if (slot !== row.slotName) {
      try {
        await manager.releasePrimarySlot(input.tenantId, row.id, row.primaryUrl, row.slotName);
      } catch (err) {
        warnings.push(`replication slot "${row.slotName}" may remain on ${redactPrimaryUrl(row.primaryUrl)} (${(err as Error).message}); drop it there if that server comes back: SELECT pg_drop_replication_slot('${row.slotName}')`);
      }
    } else if (row.primaryUrl !== input.primary) {
      warnings.push(`if ${redactPrimaryUrl(row.primaryUrl)} comes back as another server, drop replication slot "${slot}" there, or it keeps its WAL: SELECT pg_drop_replication_slot('${slot}')`);
    }
    return { timelineId: row.id, primary: redactPrimaryUrl(input.primary), slot, slotCreated: slotState === "created", resumeLsn: formatLsn(resumeLsn), warnings };
  } finally {
    switching.delete(key);
  }
}
