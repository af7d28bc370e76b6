import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FailpointError } from "../failpoints.ts";
import type { Lsn } from "../lsn.ts";
import { ForkNumber } from "../reltag.ts";
import { imageExtentKey, KeySpace, relBlockKey, relSizeKey, storeKey } from "../storage/keys.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { extentPagesValue, imageValue, runValue, TOMBSTONE, u32Value, ValueKind, walRecordValue } from "../storage/values.ts";
import { Compactor } from "../tenant/compactor.ts";
import { blocksWithHistory, cutHistory } from "./history-cut.ts";
import { PageCache } from "./page-cache.ts";
import { PageReader } from "./page-reader.ts";
import { RelationScanner } from "./relation-scan.ts";
import { redoPoolForTests } from "../walredo/testutil.ts";
import { commit, countEntriesRead, emptyPage, genericDelta, oneBlockRecord, tempStores } from "./testutil.ts";

const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };
const BLOCKS = 12;
const LSNS = [0x50n, 0x100n, 0x150n, 0x1c0n, 0x200n, 0x250n, 0x300n, 0x350n, 0x400n, 0x450n, 0x500n, 0x550n, 0x650n, 0x800n, 0x900n];

const blockKey = (block: number, lsn: Lsn) => storeKey(relBlockKey(rel, ForkNumber.Main, block), lsn);
const genericRecord = (block: number, lsn: Lsn, offset: number, bytes: string | number[], willInit = false) =>
  walRecordValue(oneBlockRecord(20, rel, block, genericDelta(offset, Buffer.from(bytes as string)), { willInit }), lsn - 0x20n, willInit);
const generic = (block: number, lsn: Lsn, offset: number, bytes: string | number[], willInit = false) => ({ key: blockKey(block, lsn), value: genericRecord(block, lsn, offset, bytes, willInit) });
const image = (block: number, lsn: Lsn, mark: number) => ({ key: blockKey(block, lsn), value: imageValue(emptyPage(lsn, mark)) });

/** Readers with no shared page cache: every read goes to the store. */
const readerOf = (store: TimelineStore, ancestor?: { reader: PageReader; lsn: Lsn }) => new PageReader(store, { pageCache: new PageCache(0), ancestor });

/** Every block at every LSN, by getPage and by a relation scan. */
async function allPages(reader: PageReader): Promise<string[]> {
  const out: string[] = [];
  for (const lsn of LSNS) {
    const scanner = new RelationScanner(reader, lsn);
    try {
      for (let block = 0; block < BLOCKS; block++) {
        const page = await reader.getPage(rel, ForkNumber.Main, block, lsn);
        const scanned = await scanner.page(rel, ForkNumber.Main, block);
        expect(scanned.equals(page), `scan of block ${block} at ${lsn.toString(16)}`).toBe(true);
        out.push(`${block}@${lsn.toString(16)}:${page.toString("hex")}`);
      }
    } finally {
      await scanner.close();
    }
  }
  return out;
}

/** A key space's entries as text (where an image lies in the page image files left out: a scan may store materialized images). */
const entriesOf = async (s: TimelineStore, space: KeySpace) =>
  (await s.db.iterator({ gte: Buffer.from([space]), lt: Buffer.from([space + 1]) }).all()).map(([k, v]) => `${k.toString("hex")}=${v[0] === ValueKind.ImageRef ? "image" : v.toString("hex")}`);

async function countSpace(store: TimelineStore, space: KeySpace): Promise<number> {
  return (await store.db.keys({ gte: Buffer.from([space]), lt: Buffer.from([space + 1]) }).all()).length;
}

describe("history cut", () => {
  const { openStore, cleanup } = tempStores("strata-cut-");
  let store: TimelineStore;
  beforeEach(async () => {
    store = await openStore();
  });
  afterEach(cleanup);

  /** Blocks with every kind of history: imported pages, images, will-init records, runs, a drop, a long chain. */
  async function fillTimeline(s: TimelineStore) {
    const imported = Array.from({ length: 4 }, (_, b) => emptyPage(0x100n, 0x40 + b));
    const entries = [
      { key: storeKey(relSizeKey(rel, ForkNumber.Main), 0x100n), value: u32Value(BLOCKS) },
      // 0-3 imported at 0x100 as one extent; 0: records on it; 1: untouched; 2: a newer image; 3: one record
      { key: storeKey(imageExtentKey(rel, ForkNumber.Main, 0), 0x100n), value: extentPagesValue(Buffer.concat(imported)) },
      generic(0, 0x200n, 8100, "a"), generic(0, 0x300n, 8101, "b"), generic(0, 0x600n, 8102, "c"),
      generic(2, 0x180n, 8100, "x"), image(2, 0x400n, 0x22), generic(2, 0x500n, 8101, "y"),
      generic(3, 0x700n, 8100, "z"),
      // 4: image + records, then a newer image with nothing above it
      image(4, 0x100n, 4), generic(4, 0x200n, 8100, "aa"), generic(4, 0x300n, 8102, "bb"), image(4, 0x420n, 0x44),
      // 5: records without a base (a zero page), one of them a run of three versions
      generic(5, 0x150n, 8100, "p"),
      { key: blockKey(5, 0x250n), value: runValue([0x250n, 0x260n, 0x270n].map((lsn, i) => ({ lsn, value: genericRecord(5, lsn, 8110 + i, "r") }))) },
      // 6: a will-init record, records above it
      image(6, 0x100n, 6), generic(6, 0x320n, 8100, "i", true), generic(6, 0x340n, 8101, "j"), generic(6, 0x880n, 8102, "k"),
      // 7: dropped, then recreated
      image(7, 0x100n, 7), { key: blockKey(7, 0x300n), value: TOMBSTONE }, image(7, 0x600n, 0x77),
      // 9: only versions above most of the LSNs
      image(9, 0x700n, 9), generic(9, 0x780n, 8100, "late"),
    ];
    // 8: a long chain
    entries.push(image(8, 0x100n, 8));
    for (let i = 1; i <= 80; i++) entries.push(generic(8, 0x100n + BigInt(i) * 0x8n, 8000 + (i % 150), [i]));
    await commit(s, entries, 0x100n, 0x900n);
  }

  const everyBlock = [{ rel, fork: ForkNumber.Main, blocks: Array.from({ length: BLOCKS }, (_, b) => b) }];

  it("reads the same page at every LSN, by getPage and by a relation scan, after cuts below, between and above the versions", async () => {
    await fillTimeline(store);
    const before = await allPages(readerOf(store));
    const mid = await cutHistory(readerOf(store), everyBlock, 0x350n);
    // cut where it has something to gain: an image for blocks with records above their base, the
    // versions below a base moved for the rest
    expect(mid.images).toBeGreaterThan(0);
    expect(mid.moved).toBeGreaterThan(0);
    expect(await allPages(readerOf(store))).toEqual(before);
    const late = await cutHistory(readerOf(store), everyBlock, 0x900n);
    expect(late.images).toBeGreaterThan(0);
    expect(await allPages(readerOf(store))).toEqual(before);
    // the history is all there, under its own key space; nothing was lost
    expect(await countSpace(store, KeySpace.RelBlockHistory)).toBe(mid.moved + late.moved);
  });

  it("keeps a branch below the cut reading its parent's history", async () => {
    await fillTimeline(store);
    const parentBefore = readerOf(store);
    const childStore = await openStore();
    await commit(childStore, [generic(0, 0x300n, 8110, "child"), generic(5, 0x320n, 8120, "c5")], 0x250n, 0x400n);
    const childPages = async () => {
      const child = readerOf(childStore, { reader: readerOf(store), lsn: 0x250n });
      const out: string[] = [];
      for (const lsn of [0x250n, 0x300n, 0x400n]) {
        const scanner = new RelationScanner(child, lsn);
        try {
          for (let block = 0; block < BLOCKS; block++) {
            const page = await child.getPage(rel, ForkNumber.Main, block, lsn);
            expect((await scanner.page(rel, ForkNumber.Main, block)).equals(page)).toBe(true);
            out.push(page.toString("hex"));
          }
        } finally {
          await scanner.close();
        }
      }
      return out;
    };
    const before = await childPages();
    expect(parentBefore).toBeDefined();
    await cutHistory(readerOf(store), everyBlock, 0x900n);
    expect(await childPages()).toEqual(before);
  });

  it("lets a scan at the cut read each block's base and what is above it, not its history", async () => {
    await fillTimeline(store);
    const scanAtEnd = async () => {
      const reader = readerOf(store);
      const read = countEntriesRead(store);
      const scanner = new RelationScanner(reader, 0x900n);
      try {
        for (let block = 0; block < BLOCKS; block++) await scanner.page(rel, ForkNumber.Main, block);
      } finally {
        await scanner.close();
      }
      return read.entries;
    };
    const before = await scanAtEnd();
    await cutHistory(readerOf(store), everyBlock, 0x900n);
    const after = await scanAtEnd();
    // 117 versions before; after: one base per block that had versions (and the relation's size lookups)
    expect(before).toBeGreaterThan(100);
    expect(after).toBeLessThan(20);
  });

  it("leaves blocks below the minimum of records alone but still moves what lies below their base", async () => {
    await fillTimeline(store);
    const before = await allPages(readerOf(store));
    const result = await cutHistory(readerOf(store), everyBlock, 0x900n, { minRecords: 50 });
    // only the long chain (80 records) gets an image; block 4's versions below its newest image move
    expect(result.images).toBe(1);
    expect(result.trimmed).toBe(4);
    const history = await store.db.keys({ gte: Buffer.from([KeySpace.RelBlockHistory]), lt: Buffer.from([KeySpace.RelBlockHistory + 1]) }).all();
    const movedBlocks = new Set(history.map((key) => key.readUInt32BE(14)));
    expect(movedBlocks).toEqual(new Set([2, 4, 6, 7, 8]));
    expect(await allPages(readerOf(store))).toEqual(before);
  });

  it("gives a block whose newest base is a will-init record an image, so no later read replays that record", async () => {
    const entries = [
      { key: storeKey(relSizeKey(rel, ForkNumber.Main), 0x100n), value: u32Value(3) },
      // 0: only a will-init record (a bulk load's page); 1: an image, then a will-init record; 2: an image alone
      generic(0, 0x200n, 8100, "bulk", true),
      image(1, 0x100n, 1), generic(1, 0x300n, 8100, "again", true),
      image(2, 0x200n, 2),
    ];
    await commit(store, entries, 0x100n, 0x900n);
    const pagesAt = async (lsn: Lsn) => Promise.all([0, 1, 2].map(async (block) => (await readerOf(store).getPage(rel, ForkNumber.Main, block, lsn)).toString("hex")));
    const before = await Promise.all([0x250n, 0x350n, 0x900n].map(pagesAt));
    const result = await cutHistory(readerOf(store), [{ rel, fork: ForkNumber.Main, blocks: [0, 1, 2] }], 0x900n);
    expect(result).toMatchObject({ images: 2, unchanged: 1, failed: 0 });
    // what a read at the cut finds in 0x10: an image at the cut for blocks 0 and 1, no record
    expect(await entriesOf(store, KeySpace.RelBlock)).toEqual([
      `${blockKey(0, 0x900n).toString("hex")}=image`,
      `${blockKey(1, 0x900n).toString("hex")}=image`,
      `${blockKey(2, 0x200n).toString("hex")}=image`,
    ]);
    expect(await Promise.all([0x250n, 0x350n, 0x900n].map(pagesAt))).toEqual(before);
  });

  it("keeps the page cache's pages of the blocks it cuts: a read after the cut is a hit with the same page", async () => {
    await fillTimeline(store);
    const cache = new PageCache(100);
    const reader = new PageReader(store, { pageCache: cache });
    const blocks = [0, 2, 5, 6, 8];
    const before = await Promise.all(blocks.map((block) => reader.getPage(rel, ForkNumber.Main, block, 0x900n)));
    const missesBefore = cache.misses;
    const result = await cutHistory(readerOf(store), [{ rel, fork: ForkNumber.Main, blocks }], 0x900n);
    expect(result.images).toBe(blocks.length);
    const hitsBefore = cache.hits;
    const after = await Promise.all(blocks.map((block) => reader.getPage(rel, ForkNumber.Main, block, 0x900n)));
    expect(after.map((page) => page.toString("hex"))).toEqual(before.map((page) => page.toString("hex")));
    expect(cache.hits - hitsBefore).toBe(blocks.length);
    expect(cache.misses).toBe(missesBefore);
  });

  it("finds the blocks a cut may change without ingest's record of them: more than one version, or one that is replayed", async () => {
    await fillTimeline(store);
    // 3: one record on its imported page; 1: untouched (only the extent)
    expect(await blocksWithHistory(store, 0x900n)).toEqual([{ rel, fork: ForkNumber.Main, blocks: [0, 2, 3, 4, 5, 6, 7, 8, 9] }]);
    // 0 and 2: one record each so far; 6 and 7: one image each so far (nothing to cut)
    expect(await blocksWithHistory(store, 0x250n)).toEqual([{ rel, fork: ForkNumber.Main, blocks: [0, 2, 4, 5, 8] }]);
  });

  it("finds a block whose only version is a will-init record or a run, not one whose only version is an image", async () => {
    const entries = [
      { key: storeKey(relSizeKey(rel, ForkNumber.Main), 0x100n), value: u32Value(4) },
      generic(0, 0x200n, 8100, "bulk", true),
      { key: blockKey(1, 0x300n), value: runValue([0x300n, 0x310n].map((lsn, i) => ({ lsn, value: genericRecord(1, lsn, 8110 + i, "r") }))) },
      image(2, 0x200n, 2),
      { key: blockKey(3, 0x300n), value: TOMBSTONE },
    ];
    await commit(store, entries, 0x100n, 0x900n);
    expect(await blocksWithHistory(store, 0x900n)).toEqual([{ rel, fork: ForkNumber.Main, blocks: [0, 1] }]);
    // what a compactor's first pass after a restart then does: the will-init page gets its image
    const result = await cutHistory(readerOf(store), await blocksWithHistory(store, 0x900n), 0x900n);
    expect(result).toMatchObject({ images: 2, failed: 0 });
    expect(await blocksWithHistory(store, 0x900n)).toEqual([]);
  });

  it("is what a compactor's first pass does after a restart, when ingest has seen nothing written yet", async () => {
    await fillTimeline(store);
    const before = await allPages(readerOf(store));
    const passes: Array<{ images: number }> = [];
    const compactor = new Compactor({ minRecords: 1, quietBytesPerSecond: 1000, minIntervalMs: 0 }, (_key, result) => passes.push(result));
    const receiver = { status: { state: "streaming", recordBytes: 0, primaryFlushLsn: 0x900n }, lastRecordLsn: 0x900n, drainWrittenPages: () => [] };
    const timeline = { reader: readerOf(store), receiver };
    compactor.tick("t/a", timeline, 1_000_000);
    compactor.tick("t/a", timeline, 1_001_000);
    await compactor.idle("t/a");
    expect(passes).toHaveLength(1);
    expect(passes[0].images).toBeGreaterThan(3);
    expect(await allPages(readerOf(store))).toEqual(before);
    // later passes take only what ingest saw written (nothing here)
    compactor.tick("t/a", timeline, 1_002_000);
    await compactor.idle("t/a");
    expect(passes).toHaveLength(1);
  });

  it("takes block lists of any length, listed twice (no spread of them onto the call stack)", async () => {
    await fillTimeline(store);
    const many = Array.from({ length: 300_000 }, (_, b) => b);
    const result = await cutHistory(readerOf(store), [{ rel, fork: ForkNumber.Main, blocks: many }, { rel, fork: ForkNumber.Main, blocks: many }], 0x900n);
    expect(result.images).toBeGreaterThan(3);
    // each block once: those past the relation's end unchanged
    expect(result.images + result.trimmed + result.unchanged + result.failed).toBe(300_000);
    expect(result.unchanged).toBeGreaterThanOrEqual(300_000 - BLOCKS);
  });

  it("does not cut a block inside a run of versions that crosses the cut LSN", async () => {
    await fillTimeline(store);
    const before = await allPages(readerOf(store));
    // 0x260 lies inside block 5's run (0x250..0x270)
    const result = await cutHistory(readerOf(store), [{ rel, fork: ForkNumber.Main, blocks: [5] }], 0x260n);
    expect(result).toMatchObject({ images: 0, trimmed: 0, moved: 0, unchanged: 1 });
    expect(await allPages(readerOf(store))).toEqual(before);
  });

  it("copies history in bounded batches, and a crash before the last batch leaves every page as it was and the next cut the same as one uninterrupted", async () => {
    // (where an image lies in the page image files differs: the first try's scan stored a materialized image)
    // the same cut, uninterrupted, in a store of its own
    const reference = await openStore();
    await fillTimeline(reference);
    await cutHistory(readerOf(reference), everyBlock, 0x900n);
    await fillTimeline(store);
    const before = await allPages(readerOf(store));
    const current = await entriesOf(store, KeySpace.RelBlock);
    process.env.STRATA_FAILPOINTS = "history-cut-after-copies=error";
    try {
      // (64 bytes: a batch of copies per version or two)
      await expect(cutHistory(readerOf(store), everyBlock, 0x900n, { copyBatchBytes: 64 })).rejects.toThrow(FailpointError);
    } finally {
      delete process.env.STRATA_FAILPOINTS;
    }
    // the copies are there, the versions too, and every page reads as before
    expect((await entriesOf(store, KeySpace.RelBlockHistory)).length).toBeGreaterThan(80);
    expect(await entriesOf(store, KeySpace.RelBlock)).toEqual(current);
    expect(await allPages(readerOf(store))).toEqual(before);
    await cutHistory(readerOf(store), everyBlock, 0x900n, { copyBatchBytes: 64 });
    expect(await allPages(readerOf(store))).toEqual(before);
    expect(await entriesOf(store, KeySpace.RelBlock)).toEqual(await entriesOf(reference, KeySpace.RelBlock));
    expect(await entriesOf(store, KeySpace.RelBlockHistory)).toEqual(await entriesOf(reference, KeySpace.RelBlockHistory));
  });

  const redo = redoPoolForTests();

  it("cuts the same with long chains rebuilt on redo workers, and leaves a block whose chain fails there as it was", async () => {
    const readerWithWorkers = (s: TimelineStore) => new PageReader(s, { pageCache: new PageCache(0), redoPool: redo.pool });
    const reference = await openStore();
    // block 10: a chain long enough for a worker (4 versions or more) with a record no redo knows
    const bad = [image(10, 0x100n, 10)];
    for (let i = 1; i <= 6; i++) {
      const lsn = 0x100n + BigInt(i) * 0x10n;
      bad.push({ key: blockKey(10, lsn), value: walRecordValue(oneBlockRecord(i === 3 ? 128 : 20, rel, 10, genericDelta(8000 + i, Buffer.from([i]))), lsn - 0x8n, false) });
    }
    for (const s of [store, reference]) {
      await fillTimeline(s);
      await commit(s, bad, 0x100n, 0x900n);
    }
    await expect(readerOf(reference).getPage(rel, ForkNumber.Main, 10, 0x900n)).rejects.toThrow(/128/);
    const block10 = relBlockKey(rel, ForkNumber.Main, 10).toString("hex");
    const versionsOf10 = async () => (await entriesOf(store, KeySpace.RelBlock)).filter((entry) => entry.startsWith(block10));
    const before10 = await versionsOf10();
    expect(before10.length).toBe(7);
    const jobs = redo.pool.stats.jobs;
    const failed = redo.pool.stats.failed;
    const parallel = await cutHistory(readerWithWorkers(store), everyBlock, 0x900n, { parallelReplay: true });
    const alone = await cutHistory(readerOf(reference), everyBlock, 0x900n);
    expect(parallel).toEqual(alone);
    expect(parallel.failed).toBe(1);
    expect(redo.pool.stats.jobs).toBeGreaterThan(jobs); // block 8's 80 records, at least, went to a worker
    expect(redo.pool.stats.failed).toBeGreaterThan(failed); // block 10's chain failed there
    // the same store as the cut without workers; block 10 untouched
    expect(await entriesOf(store, KeySpace.RelBlock)).toEqual(await entriesOf(reference, KeySpace.RelBlock));
    expect(await entriesOf(store, KeySpace.RelBlockHistory)).toEqual(await entriesOf(reference, KeySpace.RelBlockHistory));
    expect(await versionsOf10()).toEqual(before10);
  });

  it("stops between groups when told to, and what it cut by then reads the same", async () => {
    await fillTimeline(store);
    const before = await allPages(readerOf(store));
    let asked = 0;
    const result = await cutHistory(readerOf(store), everyBlock, 0x900n, { groupBlocks: 4, pause: () => (++asked === 3 ? Promise.resolve(false) : undefined) });
    expect(result.stopped).toBe(true);
    expect(result.images).toBeGreaterThan(0);
    expect(await allPages(readerOf(store))).toEqual(before);
  });
});
