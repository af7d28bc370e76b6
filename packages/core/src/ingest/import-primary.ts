// Initial import from a running primary: checks it can serve replication, reserves WAL with the
// timeline's physical slot, streams BASE_BACKUP into the store, and leaves the timeline ready to
// stream from the backup's start LSN. A slot this import created is dropped again if it fails, and
// by dropPrimarySlot when its tenant is deleted.
import type { Lsn } from "../lsn.ts";
import { baseBackup } from "../replication/basebackup.ts";
import { ReplicationConnection } from "../replication/connection.ts";
import { historyFilesFrom } from "../replication/timeline-history.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { BaseBackupImporter, classifyBackupPath } from "./import-basebackup.ts";

export class PrimaryUnsuitableError extends Error {}

export interface PrimaryImportResult {
  startLsn: Lsn;
  endLsn: Lsn;
  systemId: string;
  files: number;
  bytes: number;
}

export async function importFromPrimary(
  store: TimelineStore,
  primary: string,
  slot: string,
  onProgress?: (done: number, total: number | null) => void,
): Promise<PrimaryImportResult> {
  const conn = await ReplicationConnection.connect(primary, { applicationName: "strata-import" });
  let createdSlot = false;
  try {
    const walLevel = await conn.showSetting("wal_level");
    if (walLevel === "minimal") throw new PrimaryUnsuitableError(`primary has wal_level=minimal; set wal_level=replica (or logical) and restart it`);
    const identity = await conn.identifySystem();
    const existing = await conn.readReplicationSlot(slot);
    if (existing && existing.slotType) {
      throw new PrimaryUnsuitableError(`replication slot "${slot}" already exists on the primary (used by another tenant or client); choose another slot name`);
    }
    await conn.createPhysicalSlot(slot, { reserveWal: true });
    createdSlot = true;
    let importer: BaseBackupImporter | undefined;
    const onStart = (lsn: Lsn) => void (importer = new BaseBackupImporter(store, lsn));
    const result = await baseBackup(conn, { label: `strata ${slot}`, fast: true, onProgress, onStart, otherTablespaces: "include" }, async (entry, body) => {
      // pg_tblspc/<oid> (a symlink, or an in-place tablespace's directory) records the tablespace
      if (entry.type === "file" || classifyBackupPath(entry.path).kind === "tablespace") return importer!.addFile(entry.path, body);
      for await (const _ of body) {
        // other directories and symlinks carry no data
      }
    });
    if (!importer) throw new Error("BASE_BACKUP sent no start position");
    // a promoted primary: the history of its timeline, for the full backups' pg_wal
    if (identity.timeline > 1) importer.addTimelineHistory(historyFilesFrom(identity.timeline, await conn.timelineHistory(identity.timeline)));
    await importer.finish(result.endLsn);
    return { startLsn: result.startLsn, endLsn: result.endLsn, systemId: identity.systemId, files: importer.files, bytes: importer.importedBytes };
  } catch (err) {
    if (createdSlot) await conn.dropSlot(slot).catch(() => {});
    throw err;
  } finally {
    await conn.close().catch(() => conn.destroy());
  }
}

/** The primary at the URL is not the cluster the timeline was imported from. */
export class OtherSystemError extends Error {}

/**
 * Gets `primary` ready to be followed by a timeline that followed another server until now (a
 * failover to a promoted standby at another address): it must be the timeline's database system
 * (`systemId`), and the physical slot is created there unless it exists (reserving WAL from now;
 * the walreceiver's feedback then holds it at what the timeline has stored). Resolves whether the
 * slot was created. Whether the server's history holds the timeline's WAL is for the walreceiver
 * to find out: it reports diverged histories as a permanent failure.
 */
export async function preparePrimarySlot(primary: string, slot: string, systemId: bigint | undefined, timeoutMs = 10_000): Promise<"created" | "exists"> {
  const conn = await ReplicationConnection.connect(primary, { applicationName: "strata-prepare-slot", connectTimeoutMs: timeoutMs });
  try {
    const identity = await conn.identifySystem();
    if (systemId !== undefined && identity.systemId !== systemId.toString()) {
      throw new OtherSystemError(`it is another database system: its system identifier is ${identity.systemId}, the timeline's is ${systemId}`);
    }
    return (await conn.ensurePhysicalSlot(slot, { reserveWal: true })).created ? "created" : "exists";
  } finally {
    await conn.close().catch(() => conn.destroy());
  }
}

/**
 * Drops the timeline's slot on its primary (tenant deletion): the slot would otherwise keep every
 * WAL segment from its position on, and fill the primary's disk. Only on the database system the
 * timeline came from (`systemId`, when known): a slot of that name on another cluster now at the
 * same address is not Strata's to drop. Waits for the slot to be released (the walreceiver has just
 * disconnected) for at most `timeoutMs`. Resolves "absent" when there is no such slot.
 */
export async function dropPrimarySlot(primary: string, slot: string, options: { systemId?: bigint; timeoutMs?: number } = {}): Promise<"dropped" | "absent"> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const conn = await ReplicationConnection.connect(primary, { applicationName: "strata-drop-slot", connectTimeoutMs: timeoutMs });
  let timer: NodeJS.Timeout | undefined;
  try {
    const identity = await conn.identifySystem();
    if (options.systemId !== undefined && identity.systemId !== options.systemId.toString()) {
      throw new OtherSystemError(`the primary is now a different database system (system identifier ${identity.systemId}, the timeline's is ${options.systemId}): its slot "${slot}" was left alone`);
    }
    if (!(await conn.readReplicationSlot(slot))?.slotType) return "absent";
    const stillActive = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`replication slot "${slot}" is still in use after ${timeoutMs} ms (by another client?); it was left on the primary`)), timeoutMs);
    });
    await Promise.race([conn.dropSlot(slot, { wait: true }), stillActive]);
    return "dropped";
  } finally {
    clearTimeout(timer);
    await conn.close().catch(() => conn.destroy());
  }
}
