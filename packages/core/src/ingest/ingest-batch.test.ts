import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ForkNumber } from "../reltag.ts";
import { ENTITY_KEY_LENGTH, KeySpace, relBlockKey, relBlockStoreKey, SlruKind, slruBlockKey, storeKey } from "../storage/keys.ts";
import { decodeValue, expandEntry, imageValue, isBaseValue, RUN_MAX_BYTES, RUN_MAX_VERSIONS, ValueKind, walRecordInLogValue, walRecordValue } from "../storage/values.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { decodeRecordLogPiece, PIECE_RECORD_HEADER, PIECE_TARGET_BYTES } from "../storage/record-log.ts";
import { IngestBatch } from "./ingest-batch.ts";

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

describe("IngestBatch runs of page versions", () => {
  const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };
  const rec = (n: number, willInit = false) => walRecordValue(Buffer.alloc(30, n), BigInt(n) * 0x100n, willInit);
  const versionsOf = (entries: Array<{ key: Buffer; value: Buffer }>, block: number) =>
    entries
      .filter((e) => e.key[0] === KeySpace.RelBlock && e.key.readUInt32BE(14) === block)
      .flatMap((e) => expandEntry(e.key.readBigUInt64BE(ENTITY_KEY_LENGTH), e.value).map((v) => ({ keyLsn: e.key.readBigUInt64BE(ENTITY_KEY_LENGTH), lsn: v.lsn, raw: v.raw })));

  it("stores the versions one step writes to one page as one entry keyed by the first, each version intact", () => {
    const batch = new IngestBatch();
    for (let n = 1; n <= 10; n++) {
      batch.putKey(relBlockStoreKey(rel, ForkNumber.Main, 7, BigInt(n) * 0x100n), rec(n));
      batch.putKey(relBlockStoreKey(rel, ForkNumber.Main, 8 + n, BigInt(n) * 0x100n), rec(n)); // pages written once
    }
    const entries = batch.finish();
    const hot = entries.filter((e) => e.key.readUInt32BE(14) === 7);
    expect(hot).toHaveLength(1);
    expect(hot[0].value[0]).toBe(ValueKind.Run);
    expect(hot[0].key.readBigUInt64BE(ENTITY_KEY_LENGTH)).toBe(0x100n);
    const versions = versionsOf(entries, 7);
    expect(versions.map((v) => v.lsn)).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i + 1) * 0x100n));
    versions.forEach((v, i) => expect(v.raw.equals(rec(i + 1))).toBe(true));
    // a page with a single version keeps the plain record value
    const single = entries.filter((e) => e.key.readUInt32BE(14) === 9);
    expect(single).toHaveLength(1);
    expect(single[0].value.equals(rec(1))).toBe(true);
  });

  it("writes a base (image or will-init record) as its own entry, closing the run before it", () => {
    const batch = new IngestBatch();
    const key = (n: number) => relBlockStoreKey(rel, ForkNumber.Main, 3, BigInt(n) * 0x100n);
    batch.putKey(key(1), rec(1));
    batch.putKey(key(2), rec(2));
    batch.putKey(key(3), rec(3, true));
    batch.putKey(key(4), rec(4));
    batch.putKey(key(5), imageValue(Buffer.alloc(8192, 5)));
    batch.putKey(key(6), rec(6));
    batch.putKey(key(7), rec(7));
    const entries = batch.finish().filter((e) => e.key[0] === KeySpace.RelBlock);
    const layout = entries
      .map((e) => ({ key: e.key.readBigUInt64BE(ENTITY_KEY_LENGTH), kind: e.value[0], n: expandEntry(e.key.readBigUInt64BE(ENTITY_KEY_LENGTH), e.value).length }))
      .sort((a, b) => (a.key < b.key ? -1 : 1));
    expect(layout).toEqual([
      { key: 0x100n, kind: ValueKind.Run, n: 2 },
      { key: 0x300n, kind: ValueKind.WalRecord, n: 1 },
      { key: 0x400n, kind: ValueKind.WalRecord, n: 1 },
      { key: 0x500n, kind: ValueKind.Image, n: 1 },
      { key: 0x600n, kind: ValueKind.Run, n: 2 },
    ]);
    for (const e of entries) for (const v of expandEntry(e.key.readBigUInt64BE(ENTITY_KEY_LENGTH), e.value)) expect(isBaseValue(v.raw)).toBe(v.lsn === 0x300n || v.lsn === 0x500n);
  });

  it("caps a run by versions and bytes, and a rewrite of the same version replaces it", () => {
    const batch = new IngestBatch();
    for (let n = 1; n <= RUN_MAX_VERSIONS * 2 + 3; n++) batch.putKey(relBlockStoreKey(rel, ForkNumber.Main, 1, BigInt(n) * 0x100n), rec(n));
    const big = Buffer.alloc(RUN_MAX_BYTES / 2, 1);
    for (let n = 1; n <= 5; n++) batch.putKey(relBlockStoreKey(rel, ForkNumber.Main, 2, BigInt(n) * 0x100n), walRecordValue(big, 0n, false));
    batch.putKey(slruBlockKeyStore(0x500n), rec(1));
    batch.putKey(slruBlockKeyStore(0x500n), rec(2));
    const entries = batch.finish();
    expect(entries.filter((e) => e.key.readUInt32BE(14) === 1 && e.key[0] === KeySpace.RelBlock).map((e) => expandEntry(0n, e.value).length).sort((a, b) => a - b)).toEqual([3, RUN_MAX_VERSIONS, RUN_MAX_VERSIONS]);
    expect(versionsOf(entries, 1).map((v) => v.lsn)).toEqual(Array.from({ length: RUN_MAX_VERSIONS * 2 + 3 }, (_, i) => BigInt(i + 1) * 0x100n));
    expect(entries.filter((e) => e.key.readUInt32BE(14) === 2).length).toBe(3); // 2 + 2 + 1 versions
    const slru = entries.filter((e) => e.key[0] === KeySpace.SlruBlock);
    expect(slru).toHaveLength(1);
    expect(slru[0].value.equals(rec(2))).toBe(true);
  });
});

describe("IngestBatch page versions written in place", () => {
  const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };
  const raw = (n: number) => Buffer.from(Array.from({ length: 20 + n }, (_, i) => (n * 7 + i) & 0xff));
  /** every (block key, version LSN, value) the entries hold, in key then LSN order */
  const versions = (entries: Array<{ key: Buffer; value: Buffer }>) =>
    entries
      .filter((e) => e.key[0] === KeySpace.RelBlock || e.key[0] === KeySpace.SlruBlock)
      .flatMap((e) => expandEntry(e.key.readBigUInt64BE(ENTITY_KEY_LENGTH), e.value).map((v) => ({ entity: e.key.subarray(0, ENTITY_KEY_LENGTH).toString("hex"), lsn: v.lsn, value: v.raw.toString("hex") })))
      .sort((a, b) => (a.entity < b.entity ? -1 : a.entity > b.entity ? 1 : a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : 0));

  it("stores exactly what putKey of the same values stores, whichever way each version is added", () => {
    // the same history of mixed writes on a few blocks and SLRU pages, once through putKey only and
    // once through the direct writers (putBlockRecord / putBlock / putSlruBlock / put)
    const ops: Array<{ kind: "record" | "init" | "image" | "slru"; block: number; lsn: bigint; n: number }> = [];
    let lsn = 0x1000n;
    for (let i = 0; i < 700; i++) {
      const r = (i * 2654435761) >>> 0;
      const kind = r % 23 === 0 ? "init" : r % 29 === 0 ? "image" : r % 5 === 0 ? "slru" : "record";
      ops.push({ kind, block: r % 7, lsn, n: i % 50 });
      if (r % 3 !== 0) lsn += 0x40n; // some versions share an LSN: the later write replaces the earlier
    }
    const valueOf = (op: (typeof ops)[number]) =>
      op.kind === "image" ? imageValue(Buffer.alloc(8192, op.n)) : walRecordValue(raw(op.n), op.lsn - 0x20n, op.kind === "init");
    const viaKeys = new IngestBatch();
    const direct = new IngestBatch();
    for (const op of ops) {
      if (op.kind === "slru") {
        viaKeys.putKey(storeKey(slruBlockKey(SlruKind.Clog, 2, op.block), op.lsn), valueOf(op));
        direct.putSlruBlock(SlruKind.Clog, 2, op.block, op.lsn, valueOf(op));
      } else {
        viaKeys.putKey(relBlockStoreKey(rel, ForkNumber.Main, op.block, op.lsn), valueOf(op));
        if (op.kind === "record") direct.putBlockRecord(rel, ForkNumber.Main, op.block, op.lsn, op.lsn - 0x20n, raw(op.n));
        else if (op.block % 2) direct.putBlock(rel, ForkNumber.Main, op.block, op.lsn, valueOf(op));
        else direct.put(relBlockKey(rel, ForkNumber.Main, op.block), op.lsn, valueOf(op));
      }
    }
    const a = viaKeys.finish();
    const b = direct.finish();
    expect(versions(b)).toEqual(versions(a));
    expect(b.length).toBe(a.length);
    // no version is lost or duplicated: one per distinct (entity, LSN), the last write's value
    const expected = new Map<string, string>();
    for (const op of ops) {
      const entity = (op.kind === "slru" ? slruBlockKey(SlruKind.Clog, 2, op.block) : relBlockKey(rel, ForkNumber.Main, op.block)).toString("hex");
      expected.set(`${entity}/${op.lsn}`, valueOf(op).toString("hex"));
    }
    expect(new Map(versions(b).map((v) => [`${v.entity}/${v.lsn}`, v.value]))).toEqual(expected);
  });

  it("keeps a reference into the log as the very value the commit completes, even among a page's other versions", () => {
    const batch = new IngestBatch();
    batch.logRecord(0x1000n, 0x1100n, Buffer.alloc(200, 1));
    batch.putBlockRecord(rel, ForkNumber.Main, 1, 0x1100n, 0x1000n, Buffer.alloc(200, 1));
    batch.logRecord(0x1100n, 0x1200n, Buffer.alloc(200, 2));
    const reference = batch.lastRecordInLog(false);
    batch.putBlock(rel, ForkNumber.Main, 1, 0x1200n, reference);
    const entries = batch.finish();
    expect(entries.some((e) => e.value === reference)).toBe(true);
  });
});

const slruBlockKeyStore = (lsn: bigint) => storeKey(slruBlockKey(SlruKind.Clog, 0, 3), lsn);

describe("IngestBatch records stored by reference to the log", () => {
  it("points each reference at its record's bytes in the committed log piece, also for the record that closes a piece", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "strata-inlog-"));
    const store = await TimelineStore.open(dir);
    try {
      const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };
      const batch = new IngestBatch();
      // a record that fills a piece on its own (it closes inside logRecord, before its reference
      // is made), then two in the next piece
      const logged = [
        { start: 0x1000n, end: 0x11000n, raw: Buffer.alloc(PIECE_TARGET_BYTES, 0x22) },
        { start: 0x11000n, end: 0x11c00n, raw: Buffer.alloc(3 * 1024, 0x11) },
        { start: 0x11c00n, end: 0x14000n, raw: Buffer.alloc(4 * 1024, 0x33) },
      ];
      logged.forEach((r, i) => {
        batch.logRecord(r.start, r.end, r.raw);
        batch.putKey(relBlockStoreKey(rel, ForkNumber.Main, i, r.end), batch.lastRecordInLog(true));
      });
      const entries = batch.finish();
      expect(entries.filter((e) => e.key[0] === KeySpace.WalRecordLog)).toHaveLength(2);
      await store.commit(entries, { lastRecordLsn: 0x14000n, diskConsistentLsn: 0x14000n, startLsn: 0x1000n });
      for (const [i, r] of logged.entries()) {
        const entry = await store.getVersion(relBlockKey(rel, ForkNumber.Main, i), r.end);
        expect(entry?.value.kind, `block ${i}`).toBe(ValueKind.WalRecord);
        const value = entry!.value as { raw: Buffer; recordLsn: bigint; willInit: boolean };
        expect(value.raw.equals(r.raw), `block ${i}`).toBe(true);
        expect(value.recordLsn).toBe(r.start);
        expect(value.willInit).toBe(true);
      }
      // a reference is a small fixed-size value, and a base (its own entry, never in a run)
      const [[, stored]] = await store.db.iterator({ gte: storeKey(relBlockKey(rel, ForkNumber.Main, 1), 0n), limit: 1 }).all();
      expect(stored[0]).toBe(ValueKind.WalRecordInLog);
      expect(stored.length).toBe(22);
      expect(isBaseValue(stored)).toBe(true);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses to read a reference that was never placed in the log", () => {
    const unplaced = walRecordInLogValue(0x1000n, true, 21, 100);
    expect(() => decodeValue(unplaced, { read: () => Buffer.alloc(0), readRecordLog: () => Buffer.alloc(100) })).toThrow(/never placed in the record log/);
  });
});
