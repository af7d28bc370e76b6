import { describe, expect, it } from "vitest";
import { KeySpace, slruSegSizeKey, ENTITY_KEY_LENGTH } from "../storage/keys.ts";
import { ValueKind } from "../storage/values.ts";
import type { DecodedRecord } from "../wal/record.ts";
import { IngestBatch } from "./ingest-batch.ts";
import { CLOG_XACTS_PER_PAGE, RM, XACT_COMMIT, XACT_HAS_INFO } from "./records.ts";
import { type VersionLookup, WalIngest } from "./walingest.ts";

/** A commit record of `xid` with `subxacts` (only what ingest reads of it). */
function commitRecord(lsn: bigint, xid: number, subxacts: number[]): DecodedRecord {
  const mainData = Buffer.alloc(8 + 4 + 4 + 4 * subxacts.length);
  mainData.writeUInt32LE(1 << 1, 8); // xinfo: XACT_XINFO_HAS_SUBXACTS
  mainData.writeInt32LE(subxacts.length, 12);
  subxacts.forEach((x, i) => mainData.writeUInt32LE(x, 16 + 4 * i));
  const raw = Buffer.alloc(24 + mainData.length);
  return { lsn, endLsn: lsn + BigInt(raw.length), totalLength: raw.length, xid, prev: 0n, info: XACT_COMMIT | XACT_HAS_INFO, rmid: RM.XACT, blocks: [], mainData, raw };
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
