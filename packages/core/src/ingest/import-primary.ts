// Initial import from a running primary: checks it can serve replication, reserves WAL with the
// timeline's physical slot, streams BASE_BACKUP into the store, and leaves the timeline ready to
// stream from the backup's start LSN. A slot this import created is dropped again if it fails.
import type { Lsn } from "../lsn.ts";
import { baseBackup } from "../replication/basebackup.ts";
import { ReplicationConnection } from "../replication/connection.ts";
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
    await importer.finish(result.endLsn);
    return { startLsn: result.startLsn, endLsn: result.endLsn, systemId: identity.systemId, files: importer.files, bytes: importer.importedBytes };
  } catch (err) {
    if (createdSlot) await conn.dropSlot(slot).catch(() => {});
    throw err;
  } finally {
    await conn.close().catch(() => conn.destroy());
  }
}
