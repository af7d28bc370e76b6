import { appendFileSync, closeSync, mkdirSync, openSync, writeSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { relBlockKey, storeKey, walRecordLogKey } from "./keys.ts";
import { AppendFiles } from "./append-files.ts";
import { TimelineStore } from "./timeline-store.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { decodeRecordLogPiece, encodeRecordLogPiece, RECORD_LOG_PIECE_REF } from "./record-log.ts";
import { imageValue, u32Value, ValueKind } from "./values.ts";

const page = (fill: number) => Buffer.alloc(8192, fill);
const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };

describe("append-only files: page images and WAL record log pieces", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "strata-page-images-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("reads back every flushed image at its reference, also after reopening", async () => {
    const files = AppendFiles.open(dir, { suffix: "img" });
    const refs = [1, 2, 3].map((n) => files.stage(page(n)));
    await files.flush();
    expect(refs.map((r) => files.read(r)[0])).toEqual([1, 2, 3]);
    await files.close();
    const reopened = AppendFiles.open(dir, { suffix: "img" });
    expect(reopened.read(refs[2]).equals(page(3))).toBe(true);
    // appends continue after what is there
    const next = reopened.stage(page(4));
    expect(next.offset).toBe(3 * 8192);
    await reopened.flush();
    expect(reopened.read(next).equals(page(4))).toBe(true);
    await reopened.close();
  });

  it("starts a new file when one is full and keeps reading the old ones", async () => {
    const files = AppendFiles.open(dir, { suffix: "img", fileBytes: 2 * 8192 });
    const refs = [1, 2, 3, 4, 5].map((n) => files.stage(page(n)));
    await files.flush();
    expect(refs.map((r) => r.file)).toEqual([1, 1, 2, 2, 3]);
    expect(refs.map((r) => files.read(r)[0])).toEqual([1, 2, 3, 4, 5]);
    expect(readdirSync(dir).sort()).toEqual(["00000001.img", "00000002.img", "00000003.img"]);
    await files.close();
  });

  it("appends after bytes a crash left unreferenced at the end, and names a reference past the end", async () => {
    const files = AppendFiles.open(dir, { suffix: "img" });
    const ref = files.stage(page(7));
    await files.flush();
    await files.close();
    appendFileSync(path.join(dir, "00000001.img"), Buffer.alloc(100, 0xee)); // a torn write
    const reopened = AppendFiles.open(dir, { suffix: "img" });
    const next = reopened.stage(page(8));
    expect(next.offset).toBe(8192 + 100);
    await reopened.flush();
    expect(reopened.read(ref).equals(page(7))).toBe(true);
    expect(reopened.read(next).equals(page(8))).toBe(true);
    expect(() => reopened.read({ file: 1, offset: 10 * 8192, length: 8192 })).toThrow(/00000001\.img is truncated: 0 of 8192 bytes at offset 81920/);
    await reopened.close();
  });

  it("reads pages stored one after another ahead of time, as copies, never past what a finished write covers", async () => {
    const files = AppendFiles.open(dir, { suffix: "img" });
    const stored = Array.from({ length: 40 }, (_, n) => page(n + 1));
    const refs = stored.map((p) => files.stage(p));
    await files.flush();
    // an image staged but not yet written, whose file region already holds other bytes (as a
    // concurrent reader could see of a write in progress)
    const pendingRef = files.stage(page(99));
    const fd = openSync(path.join(dir, "00000001.img"), "r+");
    writeSync(fd, Buffer.alloc(8192, 0xee), 0, 8192, pendingRef.offset);
    closeSync(fd);
    const first = files.read(refs[0]);
    first.fill(0); // the caller's own copy
    for (let n = 1; n < refs.length; n++) expect(files.read(refs[n]).equals(stored[n])).toBe(true);
    await files.flush();
    expect(files.read(pendingRef).equals(page(99))).toBe(true);
    expect(files.read(refs[0]).equals(stored[0])).toBe(true);
    await files.close();
  });

  it("reads values a little apart ahead of time too (records with headers between them), shared with readers that only read them", async () => {
    const files = AppendFiles.open(dir, { suffix: "log" });
    // as in the record log: a 20-byte header before each record
    const records = Array.from({ length: 30 }, (_, n) => Buffer.alloc(2000 + 37 * n, n + 1));
    const refs = records.map((r) => {
      files.stage(Buffer.alloc(20, 0xaa));
      return files.stage(r);
    });
    await files.flush();
    const shared = refs.map((ref) => files.readShared(ref));
    shared.forEach((bytes, n) => expect(bytes.equals(records[n]), `record ${n}`).toBe(true));
    // the first read fetched them all at once: the later ones are views into the same bytes
    expect(new Set(shared.slice(1).map((bytes) => bytes.buffer)).size).toBe(1);
    // a plain read of the same gets a buffer of its own, served from that window all the same
    const own = files.read(refs[5]);
    expect(own.equals(records[5])).toBe(true);
    expect(own.buffer).not.toBe(shared[5].buffer);
    await files.close();
  });

  it("writes nothing to LevelDB when the images a commit references cannot be written", async () => {
    const store = await TimelineStore.open(path.join(dir, "store"));
    await store.commit([], { lastRecordLsn: 0x100n, diskConsistentLsn: 0x100n, startLsn: 0x100n });
    // the image file's name is taken by a directory: opening it for writing fails
    mkdirSync(path.join(dir, "store", "page-images", "00000001.img"));
    const key = relBlockKey(rel, 0, 1);
    await expect(
      store.commit([{ key: storeKey(key, 0x200n), value: imageValue(page(9)) }], { lastRecordLsn: 0x200n, diskConsistentLsn: 0x200n, startLsn: 0x100n }),
    ).rejects.toThrow(/EISDIR/);
    expect(await store.getVersion(key, 0x300n)).toBeUndefined();
    expect((await store.readMarkers()).lastRecordLsn).toBe(0x100n);
    await store.close();
    const reopened = await TimelineStore.open(path.join(dir, "store"));
    expect((await reopened.readMarkers()).lastRecordLsn).toBe(0x100n);
    expect(await reopened.getVersion(key, 0x300n)).toBeUndefined();
    await reopened.close();
  });

  it("keeps full pages out of LevelDB: the store holds a reference, reads return the page", async () => {
    const store = await TimelineStore.open(path.join(dir, "store"));
    const key = relBlockKey(rel, 0, 3);
    await store.commit(
      [
        { key: storeKey(key, 0x100n), value: imageValue(page(1)) },
        { key: storeKey(key, 0x200n), value: imageValue(page(2)) },
        { key: storeKey(relBlockKey(rel, 0, 4), 0x100n), value: u32Value(42) },
      ],
      { lastRecordLsn: 0x200n, diskConsistentLsn: 0x200n, startLsn: 0x100n },
    );
    await store.putDerived(relBlockKey(rel, 0, 5), 0x200n, imageValue(page(5)));
    const raw = new Map<string, Buffer>();
    for await (const [k, v] of store.iterate(Buffer.alloc(1), Buffer.alloc(28, 0xff))) raw.set(k.toString("hex"), v);
    expect(raw.get(storeKey(key, 0x200n).toString("hex"))).toHaveLength(13);
    expect(raw.get(storeKey(key, 0x200n).toString("hex"))![0]).toBe(ValueKind.ImageRef);
    // small images stay inline
    expect(raw.get(storeKey(relBlockKey(rel, 0, 4), 0x100n).toString("hex"))).toEqual(u32Value(42));
    expect(statSync(path.join(dir, "store", "page-images", "00000001.img")).size).toBe(3 * 8192);
    await store.close();

    const reopened = await TimelineStore.open(path.join(dir, "store"));
    const at = async (k: Buffer, lsn: bigint) => {
      const v = await reopened.getVersion(k, lsn);
      return v?.value.kind === ValueKind.Image ? v.value.bytes : undefined;
    };
    expect((await at(key, 0x1ffn))!.equals(page(1))).toBe(true);
    expect((await at(key, 0x200n))!.equals(page(2))).toBe(true);
    expect((await at(relBlockKey(rel, 0, 5), 0x200n))!.equals(page(5))).toBe(true);
    const chain = await reopened.getReconstructChain(key, 0x300n);
    expect(chain.complete).toBe(true);
    expect(chain.versions.map((v) => v.lsn)).toEqual([0x200n]);
    await reopened.close();
  });

  it("keeps WAL record log pieces out of LevelDB: the entry is a reference, readers get the records, also after reopening", async () => {
    const store = await TimelineStore.open(path.join(dir, "store"));
    const records = [
      { start: 0x1000028n, end: 0x1000060n, raw: Buffer.alloc(54, 3) },
      { start: 0x1000060n, end: 0x10000c0n, raw: Buffer.alloc(91, 4), imagesOmitted: true },
    ];
    const later = [{ start: 0x10000c0n, end: 0x1000100n, raw: Buffer.alloc(60, 5) }];
    const logKey = (lsn: bigint) => storeKey(walRecordLogKey(), lsn);
    await store.commit([{ key: logKey(0x1000028n), value: encodeRecordLogPiece(records) }], { lastRecordLsn: 0x10000c0n, diskConsistentLsn: 0x10000c0n, startLsn: 0x1000028n });
    await store.commit([{ key: logKey(0x10000c0n), value: encodeRecordLogPiece(later) }], { lastRecordLsn: 0x1000100n, diskConsistentLsn: 0x1000100n, startLsn: 0x1000028n });
    const raw: Buffer[] = [];
    for await (const [, v] of store.iterate(logKey(0n), logKey(0xffffffffn))) raw.push(v);
    expect(raw.map((v) => [v.length, v[0]])).toEqual([[13, RECORD_LOG_PIECE_REF], [13, RECORD_LOG_PIECE_REF]]);
    expect(statSync(path.join(dir, "store", "record-log", "00000001.log")).size).toBe(encodeRecordLogPiece(records).length + encodeRecordLogPiece(later).length);
    await store.close();

    const reopened = await TimelineStore.open(path.join(dir, "store"));
    const decoded = [];
    for await (const [, v] of reopened.iterate(logKey(0n), logKey(0xffffffffn))) decoded.push(...decodeRecordLogPiece(v, reopened.recordLog));
    expect(decoded.map((r) => [r.start, r.end, r.raw.toString("hex"), r.imagesOmitted ?? false])).toEqual(
      [...records, ...later].map((r) => [r.start, r.end, r.raw.toString("hex"), "imagesOmitted" in r]),
    );
    const reader = new PageReader(reopened);
    expect(await reader.recordBefore(0x1000080n)).toEqual({ start: 0x1000060n, end: 0x10000c0n });
    expect(await reader.roundToRecordBoundary(0x10000d0n)).toBe(0x10000c0n);
    // without the files a reference cannot be read, and says so
    expect(() => decodeRecordLogPiece(raw[0])).toThrow(/stored in a file/);
    await reopened.close();
  });
});
