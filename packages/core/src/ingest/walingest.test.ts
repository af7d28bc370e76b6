import { describe, expect, it } from "vitest";
import { KeySpace } from "../storage/keys.ts";
import { decodeRecordLogPiece, PIECE_RECORD_HEADER, PIECE_TARGET_BYTES } from "../storage/record-log.ts";
import { IngestBatch } from "./walingest.ts";

/** `count` contiguous records of `size` bytes from `start`, each filled with its index. */
function records(start: bigint, count: number, size: number) {
  const out: Array<{ start: bigint; end: bigint; raw: Buffer }> = [];
  let lsn = start;
  for (let i = 0; i < count; i++) {
    const end = lsn + BigInt((size + 7) & ~7);
    out.push({ start: lsn, end, raw: Buffer.alloc(size, i & 0xff) });
    lsn = end;
  }
  return out;
}

const pieceStart = (key: Buffer) => key.readBigUInt64BE(19);

describe("IngestBatch WAL record log", () => {
  it("stores consecutive records as pieces of about 64 KiB keyed by their first record, the last one closed by finish()", () => {
    const batch = new IngestBatch();
    const logged = records(0x3000028n, 1000, 200);
    for (const r of logged) batch.logRecord(r.start, r.end, r.raw);
    const entries = batch.finish();
    const perPiece = Math.ceil(PIECE_TARGET_BYTES / (PIECE_RECORD_HEADER + 200));
    expect(entries).toHaveLength(Math.ceil(1000 / perPiece));
    const decoded = entries.map((e) => decodeRecordLogPiece(e.value));
    for (let i = 0; i < entries.length; i++) {
      expect(entries[i].key[0]).toBe(KeySpace.WalRecordLog);
      expect(pieceStart(entries[i].key)).toBe(decoded[i][0].start);
      if (i < entries.length - 1) expect(decoded[i]).toHaveLength(perPiece);
    }
    const all = decoded.flat();
    expect(all.map((r) => [r.start, r.end])).toEqual(logged.map((r) => [r.start, r.end]));
    expect(all.every((r, i) => r.raw.equals(logged[i].raw))).toBe(true);
    expect(batch.bytes).toBeGreaterThanOrEqual(1000 * (PIECE_RECORD_HEADER + 200));
  });

  it("keeps a record larger than a piece whole and starts the next record in a new piece", () => {
    const batch = new IngestBatch();
    const [small, big, after] = [
      { start: 0x100n, end: 0x140n, raw: Buffer.alloc(60, 1) },
      { start: 0x140n, end: 0x140n + 200_008n, raw: Buffer.alloc(200_003, 2) },
      { start: 0x140n + 200_008n, end: 0x140n + 200_048n, raw: Buffer.alloc(40, 3) },
    ];
    for (const r of [small, big, after]) batch.logRecord(r.start, r.end, r.raw);
    const entries = batch.finish();
    expect(entries.map((e) => pieceStart(e.key))).toEqual([small.start, after.start]);
    expect(decodeRecordLogPiece(entries[0].value).map((r) => r.raw.length)).toEqual([60, 200_003]);
    expect(decodeRecordLogPiece(entries[1].value).map((r) => r.raw.length)).toEqual([40]);
  });

  it("writes no piece without records, and finishing twice adds nothing", () => {
    const empty = new IngestBatch();
    expect(empty.finish()).toEqual([]);
    const batch = new IngestBatch();
    batch.logRecord(0x100n, 0x120n, Buffer.alloc(30));
    expect(batch.finish()).toHaveLength(1);
    expect(batch.finish()).toHaveLength(1);
  });
});
