import { describe, expect, it } from "vitest";
import { decodeRecordLogPiece, encodeRecordLogPiece, lastRecordBefore, type LoggedRecord, PIECE_RECORD_HEADER, RECORD_LOG_PIECE } from "./record-log.ts";

const rec = (start: bigint, length: number, fill = Number(start % 251n)): LoggedRecord => ({
  start,
  end: start + BigInt((length + 7) & ~7),
  raw: Buffer.alloc(length, fill),
});

const plain = (records: LoggedRecord[]) => records.map((r) => ({ start: r.start, end: r.end, raw: Buffer.from(r.raw) }));

describe("WAL record log pieces", () => {
  it("round-trips records in LSN order with their start, end and exact bytes", () => {
    const records = [rec(0x1000028n, 54), rec(0x1000060n, 8192 + 91), rec(0x1002078n, 26)];
    records[1].raw.writeUInt32LE(0xdeadbeef, 100);
    const piece = encodeRecordLogPiece(records);
    expect(piece[0]).toBe(RECORD_LOG_PIECE);
    expect(piece.length).toBe(1 + 3 * PIECE_RECORD_HEADER + 54 + 8192 + 91 + 26);
    expect(plain(decodeRecordLogPiece(piece))).toEqual(plain(records));
  });

  it("keeps the flag of a record stored without its page images, and reads pieces without any flag", () => {
    const records: LoggedRecord[] = [rec(0x1000028n, 54), { ...rec(0x1000060n, 91), imagesOmitted: true }];
    const decoded = decodeRecordLogPiece(encodeRecordLogPiece(records));
    expect(decoded.map((r) => [r.raw.length, r.imagesOmitted ?? false])).toEqual([[54, false], [91, true]]);
    expect(decoded[1].raw.equals(records[1].raw)).toBe(true);
  });

  it("keeps LSNs above 2^32 and near 2^64 exact", () => {
    const records = [
      { start: 0x1_0000_0028n, end: 0x1_0000_0060n, raw: Buffer.from("a") },
      { start: 0xffff_ffff_ffff_ff00n, end: 0xffff_ffff_ffff_fff8n, raw: Buffer.from("b") },
    ];
    expect(plain(decodeRecordLogPiece(encodeRecordLogPiece(records)))).toEqual(plain(records));
  });

  it("keeps a record larger than a piece's target size whole", () => {
    const big = rec(0x2000000n, 1024 * 1024 + 3, 7);
    const decoded = decodeRecordLogPiece(encodeRecordLogPiece([rec(0x1fffff0n, 40), big]));
    expect(decoded).toHaveLength(2);
    expect(decoded[1].raw.length).toBe(1024 * 1024 + 3);
    expect(decoded[1].raw.equals(big.raw)).toBe(true);
  });

  it("decodes an empty piece and a zero-length record", () => {
    expect(decodeRecordLogPiece(encodeRecordLogPiece([]))).toEqual([]);
    const decoded = decodeRecordLogPiece(encodeRecordLogPiece([rec(0x100n, 0), rec(0x100n, 24)]));
    expect(decoded.map((r) => r.raw.length)).toEqual([0, 24]);
  });

  it("copies the records' bytes: changing a source buffer later does not change the piece", () => {
    const record = rec(0x500n, 32, 1);
    const piece = encodeRecordLogPiece([record]);
    record.raw.fill(9);
    expect(decodeRecordLogPiece(piece)[0].raw).toEqual(Buffer.alloc(32, 1));
  });

  it("rejects a value that is not a piece, or one cut short", () => {
    // a per-record entry of the old layout: [Image kind 1][end LSN][raw]
    expect(() => decodeRecordLogPiece(Buffer.concat([Buffer.from([1]), Buffer.alloc(8), Buffer.alloc(30)]))).toThrow(/format byte 1/);
    expect(() => decodeRecordLogPiece(Buffer.alloc(0))).toThrow(/corrupt/);
    const piece = encodeRecordLogPiece([rec(0x100n, 50), rec(0x138n, 50)]);
    expect(() => decodeRecordLogPiece(piece.subarray(0, piece.length - 1))).toThrow(/runs past the end/);
    expect(() => decodeRecordLogPiece(piece.subarray(0, 1 + PIECE_RECORD_HEADER + 50 + 10))).toThrow(/truncated record header/);
  });

  it("finds the last record of a piece that starts strictly before an LSN", () => {
    const piece = encodeRecordLogPiece([rec(0x100n, 50), rec(0x138n, 50), rec(0x170n, 50)]);
    expect(lastRecordBefore(piece, 0x100n)).toBeUndefined();
    expect(lastRecordBefore(piece, 0x101n)?.start).toBe(0x100n);
    expect(lastRecordBefore(piece, 0x138n)?.start).toBe(0x100n);
    expect(lastRecordBefore(piece, 0x150n)?.start).toBe(0x138n);
    expect(lastRecordBefore(piece, 0x1000n)?.start).toBe(0x170n);
    expect(lastRecordBefore(piece, 0x1000n)?.end).toBe(0x1a8n);
  });
});
