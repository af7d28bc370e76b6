// The per-timeline versioned key-value store on classic-level (LevelDB). Every write to a
// timeline goes through one atomic batch together with the timeline's durable LSN markers,
// so a crash leaves either all of an ingest step or none of it.
import { ClassicLevel } from "classic-level";
import type { Lsn } from "../lsn.ts";

export interface TimelineMarkers {
  /** end of the last WAL record stored */
  lastRecordLsn: Lsn;
  /** everything up to here is durable on disk */
  diskConsistentLsn: Lsn;
  /** first LSN readable on this timeline (branch point or import end) */
  startLsn: Lsn;
}

const MARKERS_KEY = Buffer.from("meta/markers");

export class TimelineStore {
  private constructor(readonly db: ClassicLevel<Buffer, Buffer>) {}

  static async open(dir: string): Promise<TimelineStore> {
    const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer" });
    await db.open();
    return new TimelineStore(db);
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  async readMarkers(): Promise<TimelineMarkers> {
    const value = await this.db.get(MARKERS_KEY);
    if (!value) return { lastRecordLsn: 0n, diskConsistentLsn: 0n, startLsn: 0n };
    return {
      lastRecordLsn: value.readBigUInt64BE(0),
      diskConsistentLsn: value.readBigUInt64BE(8),
      startLsn: value.readBigUInt64BE(16),
    };
  }

  /** Writes the entries and the new markers in one atomic, synced batch. */
  async commit(entries: Array<{ key: Buffer; value: Buffer }>, markers: TimelineMarkers): Promise<void> {
    const value = Buffer.alloc(24);
    value.writeBigUInt64BE(markers.lastRecordLsn, 0);
    value.writeBigUInt64BE(markers.diskConsistentLsn, 8);
    value.writeBigUInt64BE(markers.startLsn, 16);
    const ops = entries.map((e) => ({ type: "put" as const, key: e.key, value: e.value }));
    ops.push({ type: "put", key: MARKERS_KEY, value });
    await this.db.batch(ops, { sync: true });
  }
}
