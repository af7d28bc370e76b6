import { describe, expect, it } from "vitest";
import { checkpointKey, KeySpace, slruSegSizeKey, SlruKind, ENTITY_KEY_LENGTH } from "../storage/keys.ts";
import { decodeValue, DerivedKind, ValueKind } from "../storage/values.ts";
import { type DecodedRecord, makeRecord } from "../wal/record.ts";
import { IngestBatch } from "./ingest-batch.ts";
import { CHECKPOINT_SIZE, CheckPointField, CLOG_XACTS_PER_PAGE, RM, XACT_COMMIT, XACT_HAS_INFO, XLOG_PARAMETER_CHANGE } from "./records.ts";
import { type VersionLookup, WalIngest } from "./walingest.ts";

/** A commit record of `xid` with `subxacts` (only what ingest reads of it). */
function commitRecord(lsn: bigint, xid: number, subxacts: number[]): DecodedRecord {
  const mainData = Buffer.alloc(8 + 4 + 4 + 4 * subxacts.length);
  mainData.writeUInt32LE(1 << 1, 8); // xinfo: XACT_XINFO_HAS_SUBXACTS
  mainData.writeInt32LE(subxacts.length, 12);
  subxacts.forEach((x, i) => mainData.writeUInt32LE(x, 16 + 4 * i));
  const raw = Buffer.alloc(24 + mainData.length);
  return makeRecord({ lsn, endLsn: lsn + BigInt(raw.length), totalLength: raw.length, xid, info: XACT_COMMIT | XACT_HAS_INFO, rmid: RM.XACT, blocks: [], mainData, raw });
}

describe("WalIngest CLOG", () => {
  it("grows a CLOG segment over every page a commit sets when its size must be looked up first", async () => {
    // the segment has 5 pages; the top xid is on page 7 and a subtransaction on page 6, both in
    // segment 0: the segment must end up with 8 pages, not 7 (a stale size applied last)
    const lookup: VersionLookup = {
      async getVersion(entityKey) {
        await new Promise((resolve) => setTimeout(resolve, 2));
        if (entityKey[0] !== KeySpace.SlruSegSize) return undefined;
        const bytes = Buffer.alloc(4);
        bytes.writeUInt32LE(5);
        return { lsn: 0x10n, value: { kind: ValueKind.Image, bytes } };
      },
      scanLatest: async () => [],
    };
    const ingest = await WalIngest.load(lookup, 0x100n);
    const batch = new IngestBatch();
    await ingest.ingest(commitRecord(0x1000n, 7 * CLOG_XACTS_PER_PAGE + 3, [6 * CLOG_XACTS_PER_PAGE + 9]), batch);
    const sizeKey = slruSegSizeKey(0, 0);
    const sizes = batch.finish().filter((e) => e.key.subarray(0, ENTITY_KEY_LENGTH).equals(sizeKey));
    expect(sizes.length).toBeGreaterThan(0);
    // the last write of a key in a batch is the one that counts
    expect(sizes[sizes.length - 1].value.readUInt32LE(1)).toBe(8);
  });
});

/** A record of `rmid`/`info` with `mainData` and no blocks (only what ingest reads of it). */
function plainRecord(lsn: bigint, rmid: number, info: number, mainData: Buffer, extra: Partial<Pick<DecodedRecord, "xid" | "origin" | "toplevelXid" | "blocks">> = {}): DecodedRecord {
  const raw = Buffer.alloc(24 + mainData.length);
  return makeRecord({ lsn, endLsn: lsn + BigInt(raw.length), totalLength: raw.length, xid: 0, info, rmid, blocks: [], mainData, raw, ...extra });
}

describe("WalIngest commit timestamps", () => {
  const trackedFrom = (oldest: number): VersionLookup => ({
    async getVersion(entityKey) {
      if (!entityKey.equals(checkpointKey())) return undefined;
      const bytes = Buffer.alloc(CHECKPOINT_SIZE);
      bytes.writeUInt32LE(4000, CheckPointField.nextXid);
      bytes.writeUInt32LE(oldest, CheckPointField.oldestCommitTsXid);
      bytes.writeUInt32LE(oldest, CheckPointField.newestCommitTsXid);
      return { lsn: 0x10n, value: { kind: ValueKind.Image, bytes } };
    },
    scanLatest: async () => [],
  });
  const commitTsBounds = (batch: IngestBatch) => {
    const checkpoints = batch.finish().filter((e) => e.key.subarray(0, ENTITY_KEY_LENGTH).equals(checkpointKey()));
    const last = checkpoints[checkpoints.length - 1].value.subarray(1);
    return [last.readUInt32LE(CheckPointField.oldestCommitTsXid), last.readUInt32LE(CheckPointField.newestCommitTsXid)];
  };
  const parameterChange = (lsn: bigint, on: boolean) => {
    const data = Buffer.alloc(28);
    data[25] = on ? 1 : 0;
    return plainRecord(lsn, RM.XLOG, XLOG_PARAMETER_CHANGE, data);
  };

  it("writes a commit's timestamp (its origin's, when replayed from one) under every xid of the tree, page by page", async () => {
    const ingest = await WalIngest.load(trackedFrom(700), 0x100n);
    const batch = new IngestBatch();
    // xl_xact_commit: time, xinfo (HAS_SUBXACTS | HAS_ORIGIN), subxacts, xl_xact_origin
    const data = Buffer.alloc(8 + 4 + 4 + 8 + 16);
    data.writeBigInt64LE(111n, 0);
    data.writeUInt32LE((1 << 1) | (1 << 5), 8);
    data.writeInt32LE(2, 12);
    data.writeUInt32LE(818, 16);
    data.writeUInt32LE(819, 20);
    data.writeBigUInt64LE(0x1234n, 24);
    data.writeBigInt64LE(999n, 32);
    await ingest.ingest(plainRecord(0x1000n, RM.XACT, XACT_COMMIT | XACT_HAS_INFO, data, { xid: 817, origin: 4 }), batch);
    const entries = batch.finish().filter((e) => e.key[0] === KeySpace.SlruBlock && e.key.readUInt32BE(1) === SlruKind.CommitTs);
    const byPage = new Map(entries.map((e) => [e.key.readUInt32BE(14), decodeValue(e.value)]));
    expect([...byPage.keys()].sort()).toEqual([0, 1]);
    for (const [pageno, xids] of [[0, [817, 818]], [1, [819]]] as const) {
      const value = byPage.get(pageno)!;
      if (value.kind !== ValueKind.Derived) throw new Error("expected a derived value");
      expect(value.derived).toBe(DerivedKind.CommitTsSet);
      expect(value.payload.readBigInt64LE(0)).toBe(999n); // the origin's commit time, not the record's
      expect(value.payload.readUInt16LE(8)).toBe(4);
      expect(Array.from({ length: (value.payload.length - 10) / 4 }, (_, i) => value.payload.readUInt32LE(10 + 4 * i))).toEqual(xids);
    }
  });

  it("advances oldest on a truncation, never back, and writes nothing once the source turns tracking off", async () => {
    const ingest = await WalIngest.load(trackedFrom(700), 0x100n);
    const truncate = (lsn: bigint, oldestXid: number) => {
      const data = Buffer.alloc(8);
      data.writeInt32LE(1, 0);
      data.writeUInt32LE(oldestXid, 4);
      return plainRecord(lsn, RM.COMMIT_TS, 0x10, data);
    };
    let batch = new IngestBatch();
    await ingest.ingest(truncate(0x1000n, 900), batch);
    await ingest.ingest(truncate(0x1100n, 800), batch);
    expect(commitTsBounds(batch)[0]).toBe(900);

    batch = new IngestBatch();
    await ingest.ingest(parameterChange(0x1200n, false), batch);
    expect(commitTsBounds(batch)).toEqual([0, 0]);
    const later = new IngestBatch();
    await ingest.ingest(commitRecord(0x1300n, 3000, []), later);
    expect(later.finish().some((e) => e.key[0] === KeySpace.SlruBlock && e.key.readUInt32BE(1) === SlruKind.CommitTs)).toBe(false);
  });

  it("starts at the xid after the newest seen when the source turns tracking on", async () => {
    const ingest = await WalIngest.load(trackedFrom(0), 0x100n);
    const batch = new IngestBatch();
    await ingest.ingest(commitRecord(0x1000n, 3000, [3001]), batch);
    await ingest.ingest(parameterChange(0x1100n, true), batch);
    // nextXid in the checkpoint is 4000 (ingest rounds it up); the next xid is 3002
    expect(commitTsBounds(batch)).toEqual([3002, 3002]);
  });
});
