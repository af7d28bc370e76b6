import { describe, expect, test } from "vitest";
import { parseLsn } from "../lsn.ts";
import { BLCKSZ } from "../reltag.ts";
import { restoreBlockImage } from "./image.ts";
import { type BlockRef, computeRecordCrc, decodeRecord, fpiLength, withoutImages } from "./record.ts";
import { WalDecodeError } from "./errors.ts";

/** Assembles an XLogRecord the way XLogRecordAssemble lays it out, with a valid CRC. */
function buildRecord(parts: { headers: Buffer[]; payloads: Buffer[]; rmid?: number; info?: number; xid?: number; prev?: bigint }): Buffer {
  const body = Buffer.concat([...parts.headers, ...parts.payloads]);
  const rec = Buffer.alloc(24 + body.length);
  rec.writeUInt32LE(rec.length, 0);
  rec.writeUInt32LE(parts.xid ?? 735, 4);
  rec.writeBigUInt64LE(parts.prev ?? 0x1512e08n, 8);
  rec[16] = parts.info ?? 0x00;
  rec[17] = parts.rmid ?? 10;
  body.copy(rec, 24);
  rec.writeUInt32LE(computeRecordCrc(rec, rec.length), 20);
  return rec;
}

function u16(n: number) {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}
function u32(n: number) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
const relNode = (spc: number, db: number, rel: number) => Buffer.concat([u32(spc), u32(db), u32(rel)]);

const LSN = parseLsn("0/1512E40");

function sampleRecord() {
  // block 0: image with a hole (uncompressed) + data; block 3: SAME_REL, fsm fork, data only, WILL_INIT
  const image = Buffer.alloc(BLCKSZ - 4000);
  image.fill(1, 0, 100);
  image.fill(2, 100);
  const blockData0 = Buffer.from("block0-data");
  const blockData3 = Buffer.from("three");
  const main = Buffer.alloc(300, 7); // long main data
  const headers = [
    Buffer.from([0, 0x10 | 0x20]), u16(blockData0.length), u16(image.length), u16(100), Buffer.from([0x01 | 0x02]), relNode(1663, 5, 16384), u32(42),
    Buffer.from([3, 0x80 | 0x40 | 0x20 | 0x01]), u16(blockData3.length), u32(7),
    Buffer.from([253]), u16(9), // origin
    Buffer.from([252]), u32(900), // toplevel xid
    Buffer.from([254]), u32(main.length),
  ];
  return { rec: buildRecord({ headers, payloads: [image, blockData0, blockData3, main] }), image, main };
}

describe("records without their page images (the WAL record log's form)", () => {
  test("drop exactly the image bytes and decode back to the same record with empty images", () => {
    const { rec, image, main } = sampleRecord();
    const full = decodeRecord(rec, LSN);
    const stripped = withoutImages(full);
    expect(stripped.length).toBe(rec.length - image.length);
    const back = decodeRecord(stripped, LSN, { imagesOmitted: true });
    expect(back).toMatchObject({ lsn: LSN, totalLength: rec.length, xid: 735, prev: 0x1512e08n, rmid: 10, info: 0, origin: 9, toplevelXid: 900 });
    // the fields a reader sees (where the data lies differs: the stripped bytes are shorter)
    const fields = (b: BlockRef, imageBytes: (image: NonNullable<BlockRef["image"]>) => number) => ({
      id: b.id,
      rel: b.rel,
      forkNum: b.forkNum,
      blockNumber: b.blockNumber,
      willInit: b.willInit,
      hasImage: b.hasImage,
      applyImage: b.applyImage,
      hasData: b.hasData,
      data: b.data.toString(),
      dataLength: b.dataLength,
      image: b.image && { ...b.image, bytes: imageBytes(b.image) },
    });
    expect(back.blocks.map((b) => fields(b, (image) => image.bytes.length))).toEqual(full.blocks.map((b) => fields(b, () => 0)));
    expect(back.mainData.equals(main)).toBe(true);
    // what pg_waldump prints from it (rec/tot lengths, FPW flags) is unchanged
    expect(fpiLength(back)).toBe(fpiLength(full));
  });

  test("leave a record without images as it is, and refuse stored bytes of the wrong length", () => {
    const noImage = buildRecord({ headers: [Buffer.from([255, 4])], payloads: [Buffer.from("main")] });
    const decoded = decodeRecord(noImage, LSN);
    expect(withoutImages(decoded)).toBe(decoded.raw);
    expect(decodeRecord(noImage, LSN, { imagesOmitted: true }).mainData.toString()).toBe("main");
    const stripped = withoutImages(decodeRecord(sampleRecord().rec, LSN));
    expect(() => decodeRecord(stripped.subarray(0, stripped.length - 1), LSN, { imagesOmitted: true })).toThrow(WalDecodeError);
  });
});

describe("decodeRecord", () => {
  test("parses block refs, SAME_REL, origin, toplevel xid and long main data, slicing payloads in order", () => {
    const { rec, image, main } = sampleRecord();
    const r = decodeRecord(rec, LSN);
    expect(r).toMatchObject({ lsn: LSN, totalLength: rec.length, xid: 735, prev: 0x1512e08n, rmid: 10, info: 0, origin: 9, toplevelXid: 900 });
    expect(r.endLsn).toBe(LSN + BigInt((rec.length + 7) & ~7));
    expect(r.blocks).toHaveLength(2);
    const [b0, b3] = r.blocks;
    expect(b0).toMatchObject({ id: 0, rel: { spcNode: 1663, dbNode: 5, relNode: 16384 }, forkNum: 0, blockNumber: 42, hasImage: true, applyImage: true, hasData: true, willInit: false });
    expect(b0.image).toMatchObject({ length: image.length, holeOffset: 100, holeLength: 4000, compression: "none" });
    expect(b0.image!.bytes.equals(image)).toBe(true);
    expect(b0.data.toString()).toBe("block0-data");
    expect(b3).toMatchObject({ id: 3, rel: { spcNode: 1663, dbNode: 5, relNode: 16384 }, forkNum: 1, blockNumber: 7, hasImage: false, willInit: true });
    expect(b3.data.toString()).toBe("three");
    expect(r.mainData.equals(main)).toBe(true);
    expect(r.raw.equals(rec)).toBe(true);

    const page = restoreBlockImage(b0);
    expect(page.length).toBe(BLCKSZ);
    expect(page.subarray(0, 100).every((x) => x === 1)).toBe(true);
    expect(page.subarray(100, 4100).every((x) => x === 0)).toBe(true);
    expect(page.subarray(4100).every((x) => x === 2)).toBe(true);
  });

  test("a record with one flipped byte fails the CRC check with an error naming its LSN", () => {
    const { rec } = sampleRecord();
    for (const at of [5, 30, rec.length - 1]) {
      const bad = Buffer.from(rec);
      bad[at] ^= 0x40;
      expect(() => decodeRecord(bad, LSN)).toThrow(WalDecodeError);
      expect(() => decodeRecord(bad, LSN)).toThrow(/checksum.* at 0\/1512E40$/);
    }
  });

  test("a truncated record is rejected with a clear error", () => {
    const { rec } = sampleRecord();
    expect(() => decodeRecord(rec.subarray(0, rec.length - 10), LSN)).toThrow(/record truncated: xl_tot_len \d+ but only \d+ bytes at 0\/1512E40/);
    expect(() => decodeRecord(rec.subarray(0, 10), LSN)).toThrow(/record truncated/);
    const zero = Buffer.alloc(24);
    expect(() => decodeRecord(zero, LSN)).toThrow(/invalid record length: wanted 24, got 0 at 0\/1512E40/);
  });

  test("malformed block headers are rejected: out-of-order ids, HAS_DATA without data, bad ids, bad image, length mismatch", () => {
    const cases: [Buffer[], Buffer[], RegExp][] = [
      [[Buffer.from([2, 0x20]), u16(1), relNode(1, 2, 3), u32(0), Buffer.from([1, 0x20]), u16(1), relNode(1, 2, 3), u32(0)], [Buffer.from("ab")], /out-of-order block_id 1/],
      [[Buffer.from([0, 0x20]), u16(0), relNode(1, 2, 3), u32(0)], [], /HAS_DATA set, but no data/],
      [[Buffer.from([0, 0x00]), u16(5), relNode(1, 2, 3), u32(0)], [Buffer.alloc(5)], /HAS_DATA not set/],
      [[Buffer.from([40, 0x00])], [Buffer.alloc(3)], /invalid block_id 40/],
      [[Buffer.from([0, 0x80]), u16(0), u32(0)], [], /SAME_REL set but no previous rel/],
      [[Buffer.from([255, 10])], [Buffer.alloc(4)], /payload length mismatch/],
      [[Buffer.from([0, 0x10]), u16(0), u16(8000), u16(0), Buffer.from([0x02]), relNode(1, 2, 3), u32(0)], [Buffer.alloc(8000)], /BKPIMAGE_HAS_HOLE not set, but hole offset 0 length 192/],
    ];
    for (const [headers, payloads, message] of cases) {
      const rec = buildRecord({ headers, payloads });
      expect(() => decodeRecord(rec, LSN), String(message)).toThrow(message);
    }
  });
});
