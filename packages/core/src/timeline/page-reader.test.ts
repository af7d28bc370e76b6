import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ForkNumber } from "../reltag.ts";
import { materializedBlockKey, materializedSlruKey, relBlockKey, relSizeKey, SlruKind, slruBlockKey, storeKey } from "../storage/keys.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { derivedValue, DerivedKind, imageValue, runValue, TOMBSTONE, u32Value, ValueKind, walRecordValue } from "../storage/values.ts";
import { RMGRS } from "../redo/rmgrs.ts";
import { UnsupportedRecordError } from "../redo/types.ts";
import { IngestBatch } from "../ingest/walingest.ts";
import { PageCache } from "./page-cache.ts";
import { PageReader, pageLsn } from "./page-reader.ts";
import { countEntriesRead, emptyPage, genericDelta, oneBlockRecord } from "./testutil.ts";

const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };

/** A WAL record of `rmid` with one block reference (rel, main, `block`) carrying `data`. */
const record = (rmid: number, block: number, data: Buffer, opts: { willInit?: boolean } = {}) => oneBlockRecord(rmid, rel, block, data, opts);

describe("GetPage@LSN page reconstruction", () => {
  let dir: string;
  let store: TimelineStore;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "strata-reader-"));
    store = await TimelineStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("replays records above the newest image in LSN order and stamps each record's end LSN", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 3);
    await store.commit(
      [
        { key: storeKey(key, 0x100n), value: imageValue(emptyPage(0x100n)) },
        { key: storeKey(key, 0x200n), value: walRecordValue(record(20, 3, genericDelta(8100, Buffer.from("aa"))), 0x1e0n, false) },
        { key: storeKey(key, 0x300n), value: walRecordValue(record(20, 3, genericDelta(8101, Buffer.from("b"))), 0x2e0n, false) },
      ],
      { lastRecordLsn: 0x300n, diskConsistentLsn: 0x300n, startLsn: 0x100n },
    );
    const reader = new PageReader(store);
    const atFirst = await reader.getPage(rel, ForkNumber.Main, 3, 0x250n);
    expect(atFirst.subarray(8100, 8102).toString()).toBe("aa");
    expect(pageLsn(atFirst)).toBe(0x200n);
    const latest = await reader.getPage(rel, ForkNumber.Main, 3, 0x300n);
    expect(latest.subarray(8100, 8102).toString()).toBe("ab");
    expect(pageLsn(latest)).toBe(0x300n);
    const beforeAny = await reader.getPage(rel, ForkNumber.Main, 3, 0x150n);
    expect(beforeAny.subarray(8100, 8102)).toEqual(Buffer.alloc(2));
  });

  it("skips a record the page already contains (page LSN at or past the record's end)", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 0);
    await store.commit(
      [
        // a fuzzy base-backup page that already has the change of the record at 0x200
        { key: storeKey(key, 0x100n), value: imageValue(emptyPage(0x200n)) },
        { key: storeKey(key, 0x200n), value: walRecordValue(record(20, 0, genericDelta(8100, Buffer.from("zz"))), 0x1e0n, false) },
      ],
      { lastRecordLsn: 0x200n, diskConsistentLsn: 0x200n, startLsn: 0x100n },
    );
    const page = await new PageReader(store).getPage(rel, ForkNumber.Main, 0, 0x200n);
    expect(page.subarray(8100, 8102)).toEqual(Buffer.alloc(2));
  });

  it("skips a record on a never-initialized page, as PostgreSQL's redo finds no buffer for it", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 2);
    await store.commit(
      [
        { key: storeKey(key, 0x200n), value: walRecordValue(record(20, 2, genericDelta(8100, Buffer.from("zz"))), 0x1e0n, false) },
        { key: storeKey(key, 0x300n), value: walRecordValue(record(20, 2, genericDelta(8000, Buffer.from("y")), { willInit: true }), 0x2e0n, true) },
      ],
      { lastRecordLsn: 0x300n, diskConsistentLsn: 0x300n, startLsn: 0x100n },
    );
    const reader = new PageReader(store, { pageCache: new PageCache(0) });
    expect(await reader.getPage(rel, ForkNumber.Main, 2, 0x200n)).toEqual(Buffer.alloc(8192));
    const initialized = await reader.getPage(rel, ForkNumber.Main, 2, 0x300n);
    expect(initialized.subarray(8000, 8001).toString()).toBe("y");
    expect(pageLsn(initialized)).toBe(0x300n);
  });

  it("fails on a record type without redo, naming the rmgr, the record type and the LSN", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 1);
    await store.commit(
      [
        { key: storeKey(key, 0x100n), value: imageValue(emptyPage(0x100n)) },
        { key: storeKey(key, 0x200n), value: walRecordValue(record(128, 1, Buffer.from("xxxx")), 0x1e8n, false) },
      ],
      { lastRecordLsn: 0x200n, diskConsistentLsn: 0x200n, startLsn: 0x100n },
    );
    const read = new PageReader(store).getPage(rel, ForkNumber.Main, 1, 0x200n);
    await expect(read).rejects.toBeInstanceOf(UnsupportedRecordError);
    await expect(new PageReader(store).getPage(rel, ForkNumber.Main, 1, 0x200n)).rejects.toThrow(/no redo support for .*128.* at 0\/1E8/);
  });

  it("materializes long chains so that later reads replay at most maxReplay records", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 7);
    const entries = [{ key: storeKey(key, 0x1000n), value: imageValue(emptyPage(0x1000n)) }];
    for (let i = 1; i <= 250; i++) {
      const lsn = 0x1000n + BigInt(i) * 0x100n;
      entries.push({ key: storeKey(key, lsn), value: walRecordValue(record(20, 7, genericDelta(8001 + (i % 180), Buffer.from([i]))), lsn - 0x40n, false) });
    }
    await store.commit(entries, { lastRecordLsn: 0x1000n + 250n * 0x100n, diskConsistentLsn: 0x1000n + 250n * 0x100n, startLsn: 0x1000n });
    const end = 0x1000n + 250n * 0x100n;
    // no limit: the whole chain is replayed and nothing is materialized
    const unbounded = await new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0) }).getPage(rel, ForkNumber.Main, 7, end);
    for (let i = 71; i <= 250; i++) expect(unbounded[8001 + (i % 180)]).toBe(i);
    expect(await store.getVersion(materializedBlockKey(rel, ForkNumber.Main, 7), end)).toBeUndefined();
    const reader = new PageReader(store, { maxReplay: 100 });
    const first = await reader.getPage(rel, ForkNumber.Main, 7, end);
    for (let i = 71; i <= 250; i++) expect(first[8001 + (i % 180)]).toBe(i);
    await reader.materializationsStored(); // (the read does not wait for it)
    const materialized = await store.getVersion(materializedBlockKey(rel, ForkNumber.Main, 7), end);
    expect(materialized?.lsn).toBe(end);
    const chain = await store.getReconstructChain(key, end, materialized!.lsn);
    expect(chain.versions.length).toBeLessThanOrEqual(100);
    expect(await reader.getPage(rel, ForkNumber.Main, 7, end)).toEqual(first);
    // history below the materialized point is still exact
    const middle = await reader.getPage(rel, ForkNumber.Main, 7, 0x1000n + 120n * 0x100n);
    expect(middle[8001 + 120]).toBe(120);
    expect(middle[8001 + 121]).toBe(0);
  });

  it("continues a materialization from the page the previous one produced, replaying only the newer records", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 3);
    const at = (i: number) => 0x1000n + BigInt(i) * 0x100n;
    const commitRecords = async (from: number, to: number, base?: boolean) => {
      const entries = base ? [{ key: storeKey(key, at(0)), value: imageValue(emptyPage(at(0))) }] : [];
      for (let i = from; i <= to; i++) entries.push({ key: storeKey(key, at(i)), value: walRecordValue(record(20, 3, genericDelta(8001 + (i % 180), Buffer.from([i]))), at(i) - 0x40n, false) });
      await store.commit(entries, { lastRecordLsn: at(to), diskConsistentLsn: at(to), startLsn: at(0) });
    };
    let redos = 0;
    const generic = RMGRS[20]!;
    const redo = generic.redo;
    (generic as { redo: typeof redo }).redo = (page, rec, block) => {
      redos++;
      return redo(page, rec, block);
    };
    try {
      await commitRecords(1, 60, true);
      const reader = new PageReader(store, { pageCache: new PageCache(0) });
      await reader.materialize(rel, ForkNumber.Main, 3, at(60));
      expect(redos).toBe(60);
      // without the stored image, only the page the reader kept can spare the first 60 records
      await store.db.del(storeKey(materializedBlockKey(rel, ForkNumber.Main, 3), at(60)));
      await commitRecords(61, 130);
      redos = 0;
      const read = countEntriesRead(store);
      await reader.materialize(rel, ForkNumber.Main, 3, at(130));
      expect(redos).toBe(70);
      expect(read.batches).toBeLessThanOrEqual(2); // (LevelDB round trips: 64 versions, then the rest)
      const stored = await store.getVersion(materializedBlockKey(rel, ForkNumber.Main, 3), at(130));
      const rebuilt = await new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0) }).getPage(rel, ForkNumber.Main, 3, at(130));
      expect(stored?.value.kind === ValueKind.Image && stored.value.bytes.equals(rebuilt)).toBe(true);
      for (let i = 1; i <= 130; i++) expect(rebuilt[8001 + i]).toBe(i);
    } finally {
      (generic as { redo: typeof redo }).redo = redo;
    }
  });

  it("applies derived CLOG status changes on SLRU pages", async () => {
    const key = slruBlockKey(SlruKind.Clog, 0, 0);
    const committed = Buffer.alloc(9);
    committed[0] = 1;
    committed.writeUInt32LE(735, 1);
    committed.writeUInt32LE(736, 5);
    const aborted = Buffer.alloc(5);
    aborted[0] = 2;
    aborted.writeUInt32LE(737, 1);
    await store.commit(
      [
        { key: storeKey(key, 0x100n), value: imageValue(Buffer.alloc(8192)) },
        { key: storeKey(key, 0x200n), value: derivedValue(DerivedKind.ClogSetStatus, committed) },
        { key: storeKey(key, 0x300n), value: derivedValue(DerivedKind.ClogSetStatus, aborted) },
      ],
      { lastRecordLsn: 0x300n, diskConsistentLsn: 0x300n, startLsn: 0x100n },
    );
    const status = (page: Buffer, xid: number) => (page[xid >> 2] >> ((xid & 3) * 2)) & 3;
    const page = await new PageReader(store).getSlruPage(SlruKind.Clog, 0, 0, 0x300n);
    expect([status(page, 735), status(page, 736), status(page, 737), status(page, 738)]).toEqual([1, 1, 2, 0]);
    const earlier = await new PageReader(store).getSlruPage(SlruKind.Clog, 0, 0, 0x250n);
    expect(status(earlier, 737)).toBe(0);
  });

  it("does not wait for the image it materializes, and stores it once however often the page is read meanwhile", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 9);
    const entries = [{ key: storeKey(key, 0x1000n), value: imageValue(emptyPage(0x1000n)) }];
    for (let i = 1; i <= 80; i++) {
      const lsn = 0x1000n + BigInt(i) * 0x100n;
      entries.push({ key: storeKey(key, lsn), value: walRecordValue(record(20, 9, genericDelta(8001 + i, Buffer.from([i]))), lsn - 0x40n, false) });
    }
    const end = 0x1000n + 80n * 0x100n;
    await store.commit(entries, { lastRecordLsn: end, diskConsistentLsn: end, startLsn: 0x1000n });
    const putDerived = store.putDerived.bind(store);
    const held: Array<() => void> = [];
    store.putDerived = (k, at, value) => new Promise<void>((resolve) => held.push(resolve)).then(() => putDerived(k, at, value));
    const reader = new PageReader(store, { maxReplay: 100, pageCache: new PageCache(0) });
    for (let read = 0; read < 3; read++) expect((await reader.getPage(rel, ForkNumber.Main, 9, end))[8001 + 80]).toBe(80);
    expect(held.length).toBe(1);
    for (const release of held) release();
    await reader.materializationsStored();
    store.putDerived = putDerived;
    expect((await store.getVersion(materializedBlockKey(rel, ForkNumber.Main, 9), end))?.lsn).toBe(end);
  }, 20_000); // a read that waits for its image never returns here

  it("gives every fork's size in one scan as relSize gives it, on a branch too", async () => {
    const sizeAt = (relNode: number, fork: ForkNumber, lsn: bigint, blocks: number | undefined) => ({ key: storeKey(relSizeKey({ ...rel, relNode }, fork), lsn), value: blocks === undefined ? TOMBSTONE : u32Value(blocks) });
    // parent: 1000 (main, fsm) grows, 1001 grows 300 times, 1002 is dropped at 0x900
    const entries = [sizeAt(1000, ForkNumber.Main, 0x100n, 1), sizeAt(1000, ForkNumber.Fsm, 0x100n, 3), sizeAt(1000, ForkNumber.Main, 0x800n, 2), sizeAt(1002, ForkNumber.Main, 0x100n, 7), sizeAt(1002, ForkNumber.Main, 0x900n, undefined)];
    for (let i = 1; i <= 300; i++) entries.push(sizeAt(1001, ForkNumber.Main, 0x100n + BigInt(i), i));
    await store.commit(entries, { lastRecordLsn: 0xa00n, diskConsistentLsn: 0xa00n, startLsn: 0x100n });
    // branch at 0x880: 1001 truncated, 1003 created; the parent's later changes do not show
    const childDir = mkdtempSync(path.join(os.tmpdir(), "strata-reader-child-"));
    const child = await TimelineStore.open(childDir);
    try {
      await child.commit([sizeAt(1001, ForkNumber.Main, 0x900n, 0), sizeAt(1003, ForkNumber.Main, 0x950n, 4)], { lastRecordLsn: 0xa00n, diskConsistentLsn: 0xa00n, startLsn: 0x880n });
      const forks = [1000, 1001, 1002, 1003, 1004].flatMap((relNode) => [ForkNumber.Main, ForkNumber.Fsm].map((fork) => ({ rel: { ...rel, relNode }, fork })));
      const parentReader = new PageReader(store);
      const childReader = new PageReader(child, { ancestor: { reader: parentReader, lsn: 0x880n } });
      for (const [reader, lsns] of [[parentReader, [0x100n, 0x150n, 0x7ffn, 0x800n, 0x900n]], [childReader, [0x880n, 0x900n, 0x950n, 0xa00n]]] as const) {
        for (const lsn of lsns) {
          const oneByOne = await Promise.all(forks.map(({ rel: r, fork }) => reader.relSize(r, fork, lsn)));
          expect(await reader.relationSizes(forks, lsn), `at ${lsn}`).toEqual(oneByOne);
        }
      }
      // the figures themselves, on the branch at its end: 1000 as of the branch point, 1001 truncated there, 1002 still there, 1003 new
      expect(await childReader.relationSizes(forks, 0xa00n)).toEqual([2, 3, 0, undefined, 7, undefined, 4, undefined, undefined, undefined]);
    } finally {
      await child.close();
      rmSync(childDir, { recursive: true, force: true });
    }
  });

  it("stores a long CLOG page history as a materialized image and replays only what came after it", async () => {
    // 3000 transactions, one status version each (in runs of 10, as ingest writes them), above a zero page
    const n = 3000;
    const key = slruBlockKey(SlruKind.Clog, 0, 0);
    const at = (i: number) => 0x1000n + BigInt(i) * 0x10n;
    const statusOf = (i: number) => (i % 3 === 0 ? 2 : 1);
    const version = (i: number) => {
      const change = Buffer.alloc(5);
      change[0] = statusOf(i);
      change.writeUInt32LE(100 + i, 1);
      return derivedValue(DerivedKind.ClogSetStatus, change);
    };
    const entries = [{ key: storeKey(key, 0x100n), value: imageValue(Buffer.alloc(8192)) }];
    for (let i = 0; i < n; i += 10) entries.push({ key: storeKey(key, at(i)), value: runValue(Array.from({ length: 10 }, (_, j) => ({ lsn: at(i + j), value: version(i + j) }))) });
    await store.commit(entries, { lastRecordLsn: at(n), diskConsistentLsn: at(n), startLsn: 0x100n });
    const status = (page: Buffer, xid: number) => (page[xid >> 2] >> ((xid & 3) * 2)) & 3;
    const expectStatuses = (page: Buffer, upTo: number) => {
      const wrong: number[] = [];
      for (let i = 0; i < n; i++) if (status(page, 100 + i) !== (i <= upTo ? statusOf(i) : 0)) wrong.push(100 + i);
      expect(wrong, `xids with a wrong status as of version ${upTo}`).toEqual([]);
    };

    const read = countEntriesRead(store);
    const reader = new PageReader(store, { maxReplay: 100, pageCache: new PageCache(0) });
    read.entries = 0;
    expectStatuses(await reader.getSlruPage(SlruKind.Clog, 0, 0, at(2900)), 2900);
    expect(read.entries).toBeGreaterThan(290); // the whole history, once
    await reader.materializationsStored(); // (the read does not wait for it)
    const stored = await store.getVersion(materializedSlruKey(SlruKind.Clog, 0, 0), at(2900));
    expect(stored?.lsn).toBe(at(2900));
    // later reads start from the image: the versions above it, not the 2900 below
    read.entries = 0;
    expectStatuses(await reader.getSlruPage(SlruKind.Clog, 0, 0, at(2999)), 2999);
    expect(read.entries).toBeLessThan(60);
    // earlier LSNs still replay their own history
    expectStatuses(await reader.getSlruPage(SlruKind.Clog, 0, 0, at(1500)), 1500);
    expectStatuses(await reader.getSlruPage(SlruKind.Clog, 0, 0, at(10)), 10);
  });
});

describe("lookups in the stored WAL record log (pieces of many records)", () => {
  const dirs: string[] = [];
  const stores: TimelineStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  const EPOCH_2000 = Date.UTC(2000, 0, 1);
  /** A transaction commit record whose xact_time is `time` (ms since the epoch). */
  const commitRecord = (time: number) => {
    const raw = Buffer.alloc(24 + 2 + 8);
    raw.writeUInt32LE(raw.length, 0);
    raw[16] = 0x00; // XLOG_XACT_COMMIT
    raw[17] = 1; // RM_XACT_ID
    raw[24] = 0xff; // short main data
    raw[25] = 8;
    raw.writeBigInt64LE(BigInt(time - EPOCH_2000) * 1000n, 26);
    return raw;
  };

  /** Contiguous records from `start` (30 kB fillers, so a piece holds only a few), stored by ingest's batch in `commits` commits. */
  async function storeRecords(raws: Buffer[], start: bigint, commits: number) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "strata-record-log-"));
    dirs.push(dir);
    const s = await TimelineStore.open(dir);
    stores.push(s);
    const logged: Array<{ start: bigint; end: bigint }> = [];
    let lsn = start;
    for (const raw of raws) {
      const end = lsn + BigInt((raw.length + 7) & ~7);
      logged.push({ start: lsn, end });
      lsn = end;
    }
    const perCommit = Math.ceil(raws.length / commits);
    let pieces = 0;
    for (let c = 0; c < raws.length; c += perCommit) {
      const batch = new IngestBatch();
      for (let i = c; i < Math.min(raws.length, c + perCommit); i++) batch.logRecord(logged[i].start, logged[i].end, raws[i]);
      const entries = batch.finish();
      pieces += entries.length;
      const last = logged[Math.min(raws.length, c + perCommit) - 1].end;
      await s.commit(entries, { lastRecordLsn: last, diskConsistentLsn: last, startLsn: start });
    }
    return { store: s, logged, pieces };
  }

  const filler = () => Buffer.alloc(30_000);

  it("finds the record before an LSN and rounds an LSN inside a record down, within and across pieces", async () => {
    const raws = Array.from({ length: 12 }, filler);
    const { store: s, logged, pieces } = await storeRecords(raws, 0x5000028n, 2);
    expect(pieces).toBeGreaterThan(2); // several pieces per commit
    expect(pieces).toBeLessThan(raws.length);
    const reader = new PageReader(s);
    expect(await reader.recordBefore(logged[0].start)).toBeUndefined();
    for (let i = 0; i < logged.length; i++) {
      const r = logged[i];
      expect(await reader.recordBefore(r.start + 1n)).toEqual(r);
      if (i > 0) expect(await reader.recordBefore(r.start)).toEqual(logged[i - 1]);
      expect(await reader.roundToRecordBoundary(r.start + 5000n)).toBe(r.start);
      expect(await reader.roundToRecordBoundary(r.end)).toBe(r.end);
    }
    expect(await reader.recordBefore(0xffff_ffffn)).toEqual(logged[logged.length - 1]);
  });

  it("continues in the ancestor at the branch point, not at the ancestor's later records in the same piece", async () => {
    const { store: parent, logged } = await storeRecords(Array.from({ length: 6 }, filler), 0x5000028n, 1);
    const branch = logged[3].end; // inside the parent's second piece
    const { store: child, logged: own } = await storeRecords([filler(), filler()], branch + 0x100000n, 1);
    const reader = new PageReader(child, { ancestor: { reader: new PageReader(parent), lsn: branch } });
    expect(await reader.recordBefore(own[0].start)).toEqual(logged[3]);
    expect(await reader.recordBefore(own[1].start)).toEqual(own[0]);
    expect(await reader.recordBefore(logged[2].start + 1n)).toEqual(logged[2]);
  });

  it("finds the last commit at or before a time, scanning pieces newest first", async () => {
    const t = (minute: number) => Date.UTC(2024, 4, 1, 12, minute);
    const raws = [filler(), commitRecord(t(1)), filler(), filler(), commitRecord(t(2)), filler(), filler(), commitRecord(t(3)), commitRecord(t(4)), filler()];
    const { store: s, logged } = await storeRecords(raws, 0x5000028n, 2);
    const reader = new PageReader(s);
    const last = logged[logged.length - 1].end;
    expect(await reader.lsnForTime(t(0), last)).toBeUndefined();
    expect(await reader.lsnForTime(t(1), last)).toBe(logged[1].end);
    expect(await reader.lsnForTime(t(2) + 30_000, last)).toBe(logged[4].end);
    expect(await reader.lsnForTime(t(3), last)).toBe(logged[7].end);
    expect(await reader.lsnForTime(t(9), last)).toBe(logged[8].end);
    // only records that start below `upTo` count, even when their piece is keyed below it
    expect(await reader.lsnForTime(t(9), logged[8].start)).toBe(logged[7].end);
    expect(await reader.lsnForTime(t(9), logged[7].start)).toBe(logged[4].end);
  });
});
