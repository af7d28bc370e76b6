import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Lsn } from "../lsn.ts";
import { ForkNumber, type RelTag } from "../reltag.ts";
import { imageExtentKey, materializedBlockKey, relBlockKey, storeKey } from "../storage/keys.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { derivedValue, DerivedKind, extentPagesValue, imageValue, runValue, TOMBSTONE, walRecordValue } from "../storage/values.ts";
import { UnsupportedRecordError } from "../redo/types.ts";
import { PageCache } from "./page-cache.ts";
import { PageReader } from "./page-reader.ts";
import { computeRecordCrc } from "../wal/record.ts";
import { PendingPage, RelationScanner, scanRelationPages, type StoredImage } from "./relation-scan.ts";
import { redoPoolForTests } from "../walredo/testutil.ts";
import { commit, countEntriesRead, emptyPage, genericDelta, oneBlockRecord, tempStores } from "./testutil.ts";

const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };
const other = { spcNode: 1663, dbNode: 5, relNode: 16385 };

/** Generic WAL (rmgr 20) setting bytes at `offset`, stored at end LSN `lsn`. */
function generic(block: number, lsn: Lsn, offset: number, bytes: string | number[], opts: { willInit?: boolean } = {}) {
  const data = genericDelta(offset, Buffer.from(bytes as string));
  return { key: storeKey(relBlockKey(rel, ForkNumber.Main, block), lsn), value: walRecordValue(oneBlockRecord(20, rel, block, data, opts), lsn - 0x20n, opts.willInit ?? false) };
}

const image = (block: number, lsn: Lsn, mark: number, r = rel) => ({ key: storeKey(relBlockKey(r, ForkNumber.Main, block), lsn), value: imageValue(emptyPage(lsn, mark)) });
const materialized = (block: number, lsn: Lsn, page: Buffer) => ({ key: storeKey(materializedBlockKey(rel, ForkNumber.Main, block), lsn), value: imageValue(page) });
const tombstone = (block: number, lsn: Lsn) => ({ key: storeKey(relBlockKey(rel, ForkNumber.Main, block), lsn), value: TOMBSTONE });

async function scanAll(reader: PageReader, from: number, to: number, lsn: Lsn) {
  const out: Array<{ blockNumber: number; page: Buffer }> = [];
  for await (const entry of scanRelationPages(reader, rel, ForkNumber.Main, from, to, lsn)) out.push(entry);
  return out;
}

/**
 * Pages of [from, to) read with pageOrImage into a lent buffer (filled with junk first, as a
 * reused output buffer would be): a page rebuilt there or handed back in a buffer of its own or
 * as an image reference, whichever the scanner chose.
 */
async function scanInto(reader: PageReader, from: number, to: number, lsn: Lsn): Promise<Buffer[]> {
  const scanner = new RelationScanner(reader, lsn);
  const out: Buffer[] = [];
  try {
    for (let block = from; block < to; block++) {
      const into = Buffer.alloc(8192, 0xab);
      const found = await scanner.pageOrImage(rel, ForkNumber.Main, block, into);
      if (found instanceof Buffer) out.push(Buffer.from(found));
      else {
        const page = Buffer.alloc(8192);
        scanner.readImagesInto(found as StoredImage, 8192, page, 0);
        out.push(page);
      }
    }
  } finally {
    await scanner.close();
  }
  return out;
}

/** The scan of [from, to) equals getPage of every block, in order; so do pages rebuilt into a lent buffer. */
async function expectScanEqualsGetPage(reader: PageReader, from: number, to: number, lsn: Lsn) {
  const scanned = await scanAll(reader, from, to, lsn);
  const intoPages = await scanInto(reader, from, to, lsn);
  expect(scanned.map((e) => e.blockNumber)).toEqual(Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i));
  for (const [i, { blockNumber, page }] of scanned.entries()) {
    const expected = await reader.getPage(rel, ForkNumber.Main, blockNumber, lsn);
    expect(page.length, `block ${blockNumber}`).toBe(8192);
    expect(page.equals(expected), `block ${blockNumber} at ${lsn.toString(16)}`).toBe(true);
    expect(intoPages[i].equals(expected), `block ${blockNumber} at ${lsn.toString(16)}, rebuilt into a lent buffer`).toBe(true);
  }
  return scanned;
}

describe("relation scan", () => {
  const { openStore, closeStore, cleanup } = tempStores("strata-relscan-");
  let store: TimelineStore;
  beforeEach(async () => {
    store = await openStore();
  });
  afterEach(cleanup);

  /** A timeline exercising every kind of chain start, at many LSNs. */
  async function fillTimeline(s: TimelineStore) {
    const entries = [
      // 0: image + records
      image(0, 0x100n, 1), generic(0, 0x200n, 8100, "aa"), generic(0, 0x300n, 8101, "b"),
      // 1: nothing at all -> zero page
      // 2: records without a base (replayed onto a zero page)
      generic(2, 0x150n, 8100, "x"), generic(2, 0x250n, 8102, "y"),
      // 3: a newer image replaces the chain
      image(3, 0x100n, 3), generic(3, 0x180n, 8100, "old"), image(3, 0x400n, 33), generic(3, 0x500n, 8101, "new"),
      // 4: a will-init record starts the page over
      image(4, 0x100n, 4), generic(4, 0x200n, 8100, "i", { willInit: true }), generic(4, 0x300n, 8101, "j"),
      // 5: dropped, then recreated
      image(5, 0x100n, 5), tombstone(5, 0x300n), image(5, 0x600n, 55),
      // 7: a derived will-init change (zeroes the page) above an image
      image(7, 0x100n, 7), { key: storeKey(relBlockKey(rel, ForkNumber.Main, 7), 0x350n), value: derivedValue(DerivedKind.ZeroFsmTail, Buffer.alloc(4), true) },
      // 9: only versions above most of the LSNs read
      image(9, 0x700n, 9),
      // another relation right after: must not leak into this one's scan
      image(0, 0x100n, 0xee, other),
    ];
    // 6: a long chain (getPage and the scan materialize it)
    entries.push(image(6, 0x100n, 6));
    for (let i = 1; i <= 80; i++) entries.push(generic(6, 0x100n + BigInt(i) * 0x8n, 8000 + (i % 150), [i]));
    await commit(s, entries);
  }

  it("yields each block of the range in order, byte-identical to getPage, at every LSN", async () => {
    await fillTimeline(store);
    const reader = new PageReader(store);
    for (const lsn of [0x50n, 0x100n, 0x150n, 0x1c0n, 0x250n, 0x300n, 0x350n, 0x400n, 0x450n, 0x550n, 0x650n, 0x800n]) {
      await expectScanEqualsGetPage(reader, 0, 12, lsn);
    }
  });

  /**
   * Blocks 0-9 imported at 0x100 as two image extents (0-5, 6-9), with later history on some of
   * them; `perBlock` stores the same imported pages as one image entry per block instead.
   */
  async function fillImported(s: TimelineStore, perBlock: boolean) {
    const pages = Array.from({ length: 10 }, (_, b) => emptyPage(0x100n, 0x40 + b));
    const imported = perBlock
      ? pages.map((page, b) => ({ key: storeKey(relBlockKey(rel, ForkNumber.Main, b), 0x100n), value: imageValue(page) }))
      : [
          { key: storeKey(imageExtentKey(rel, ForkNumber.Main, 0), 0x100n), value: extentPagesValue(Buffer.concat(pages.slice(0, 6))) },
          { key: storeKey(imageExtentKey(rel, ForkNumber.Main, 6), 0x100n), value: extentPagesValue(Buffer.concat(pages.slice(6))) },
        ];
    await commit(s, [
      ...imported,
      // 2: records on the imported page; 4: a newer image; 5: a long chain on the imported page
      generic(2, 0x200n, 8100, "x"), generic(2, 0x300n, 8101, "y"), image(4, 0x250n, 0x44),
      // 7: a will-init record; 8: dropped; 9: records from the last extent's page
      generic(7, 0x280n, 8100, "z", { willInit: true }), tombstone(8, 0x300n), generic(9, 0x180n, 8100, "w"),
      // the other relation's image (and no extent of its own)
      image(0, 0x100n, 0xee, other),
      ...Array.from({ length: 70 }, (_, i) => generic(5, 0x100n + BigInt(i + 1) * 0x4n, 8000 + i, [i + 1])),
    ]);
  }

  it("reads imported image extents as the blocks' own images: same pages as per-block images, at every LSN and on a branch", async () => {
    await fillImported(store, false);
    const plainStore = await openStore();
    await fillImported(plainStore, true);
    const reader = new PageReader(store, { pageCache: new PageCache(0) });
    const plain = new PageReader(plainStore, { pageCache: new PageCache(0) });
    for (const lsn of [0x50n, 0x100n, 0x180n, 0x200n, 0x250n, 0x280n, 0x300n, 0x400n]) {
      await expectScanEqualsGetPage(reader, 0, 12, lsn);
      for (let b = 0; b < 12; b++) {
        const page = await reader.getPage(rel, ForkNumber.Main, b, lsn);
        expect(page.equals(await plain.getPage(rel, ForkNumber.Main, b, lsn)), `block ${b} at ${lsn.toString(16)}`).toBe(true);
      }
    }
    // an imported page untouched since the import is its image, and a block the import never had is zeros
    expect((await reader.getPage(rel, ForkNumber.Main, 6, 0x400n))[8190]).toBe(0x46);
    expect((await reader.getPage(rel, ForkNumber.Main, 10, 0x400n)).equals(Buffer.alloc(8192))).toBe(true);
    expect((await reader.getPage(other, ForkNumber.Main, 0, 0x400n))[8190]).toBe(0xee);

    // a branch reads the parent's extents for blocks it never changed
    const childStore = await openStore();
    await commit(childStore, [generic(1, 0x300n, 8100, "child"), image(6, 0x300n, 0x66)], 0x250n, 0x1000n);
    const child = new PageReader(childStore, { ancestor: { reader, lsn: 0x250n }, pageCache: new PageCache(0) });
    for (const lsn of [0x250n, 0x300n]) await expectScanEqualsGetPage(child, 0, 12, lsn);
    expect((await child.getPage(rel, ForkNumber.Main, 1, 0x300n)).subarray(8100, 8105).toString()).toBe("child");
  });

  it("hands back untouched imported pages as references into their extent, consecutive ones one after another", async () => {
    await fillImported(store, false);
    const scanner = new RelationScanner(new PageReader(store), 0x400n);
    try {
      const found: Array<Buffer | StoredImage> = [];
      for (let b = 0; b < 8; b++) found.push((await scanner.pageOrImage(rel, ForkNumber.Main, b)) as Buffer | StoredImage);
      // blocks 0, 1, 3 and 6 are untouched: references; 2 (records), 4 (newer image) and 5, 7 are not plain imports
      const refs = [0, 1, 3, 6].map((b) => found[b] as StoredImage);
      for (const ref of refs) expect(ref).not.toBeInstanceOf(Buffer);
      expect(refs[1].file).toBe(refs[0].file);
      expect(refs[1].offset).toBe(refs[0].offset + 8192);
      expect(refs[2].offset).toBe(refs[0].offset + 3 * 8192);
      // one read of blocks 0-1 is both pages
      const two = Buffer.alloc(2 * 8192);
      scanner.readImagesInto(refs[0], 2 * 8192, two, 0);
      expect(two[8190]).toBe(0x40);
      expect(two[8192 + 8190]).toBe(0x41);
      expect(found[2]).toBeInstanceOf(Buffer);
    } finally {
      await scanner.close();
    }
  });

  it("hands back a page that is one stored image as its reference, and images stored one after another read as one run", async () => {
    // blocks 0-7: one image each, written in one commit (consecutive in the image file, as an
    // import writes them); block 8: an image with a record above it (a page, rebuilt)
    const entries = [];
    for (let b = 0; b < 8; b++) entries.push(image(b, 0x100n, b + 1));
    entries.push(image(8, 0x100n, 9), generic(8, 0x200n, 8100, "z"));
    await commit(store, entries);
    const reader = new PageReader(store);
    const scanner = new RelationScanner(reader, 0x300n);
    try {
      const found = [];
      for (let b = 0; b <= 8; b++) found.push(await scanner.pageOrImage(rel, ForkNumber.Main, b));
      const refs = found.slice(0, 8) as StoredImage[];
      for (const ref of refs) expect(ref).not.toBeInstanceOf(Buffer);
      for (let b = 1; b < 8; b++) expect(refs[b]).toEqual({ file: refs[0].file, offset: refs[b - 1].offset + 8192, length: 8192, images: store.images });
      expect(found[8]).toBeInstanceOf(Buffer);
      expect((found[8] as Buffer).equals(await reader.getPage(rel, ForkNumber.Main, 8, 0x300n))).toBe(true);
      // the run, read with one pread at an offset of a larger buffer, is the eight pages
      const target = Buffer.alloc(9 * 8192, 0xff);
      scanner.readImagesInto(refs[0], 8 * 8192, target, 8192);
      expect(target.subarray(0, 8192).every((x) => x === 0xff)).toBe(true);
      for (let b = 0; b < 8; b++) {
        expect(target.subarray((b + 1) * 8192, (b + 2) * 8192).equals(await reader.getPage(rel, ForkNumber.Main, b, 0x300n)), `block ${b}`).toBe(true);
      }
      // a run past the end of what was written is a clear error
      // (block 8's image follows block 7's: it is the last one written)
      expect(() => scanner.readImagesInto({ ...refs[7], offset: refs[7].offset + 2 * 8192 - 4096 }, 8192, target, 0)).toThrow(/truncated/);
    } finally {
      await scanner.close();
    }
  });

  it("reads a range that does not start at block 0, and an empty range", async () => {
    await fillTimeline(store);
    const reader = new PageReader(store);
    await expectScanEqualsGetPage(reader, 3, 8, 0x800n);
    await expectScanEqualsGetPage(reader, 9, 10, 0x800n);
    expect(await scanAll(reader, 4, 4, 0x800n)).toEqual([]);
  });

  it("starts from a materialized image at or below the LSN and ignores one above it", async () => {
    const chain = [image(2, 0x100n, 2)];
    for (let i = 1; i <= 20; i++) chain.push(generic(2, 0x100n + BigInt(i) * 0x10n, 8000 + i, [i]));
    await commit(store, chain);
    const reader = new PageReader(store);
    // materialized images written as getPage writes them
    const at = 0x100n + 10n * 0x10n;
    const m = await reader.getPage(rel, ForkNumber.Main, 2, at);
    await commit(store, [materialized(2, at, m), materialized(2, 0x100n + 15n * 0x10n, await reader.getPage(rel, ForkNumber.Main, 2, 0x100n + 15n * 0x10n))]);
    for (const lsn of [0x105n, at - 1n, at, at + 0x18n, 0x200n, 0x1000n]) await expectScanEqualsGetPage(reader, 0, 4, lsn);
  });

  it("stores the images of long chains without waiting for each, nor for them when it closes", async () => {
    // blocks 0-4: an image and 60 records each (above the materialization threshold of 50)
    const entries = [];
    for (let b = 0; b < 5; b++) {
      entries.push(image(b, 0x100n, b + 1));
      for (let i = 1; i <= 60; i++) entries.push(generic(b, 0x100n + BigInt(i) * 0x10n, 8000 + i, [b, i]));
    }
    await commit(store, entries);
    const lsn = 0x100n + 60n * 0x10n;
    const expected = [];
    for (let b = 0; b < 5; b++) expected.push(Buffer.from(await new PageReader(store).getPage(rel, ForkNumber.Main, b, lsn, { materializeAbove: Number.MAX_SAFE_INTEGER })));

    // the store holds every image write until released
    const putDerived = store.putDerived.bind(store);
    const held: Array<() => void> = [];
    store.putDerived = (key, at, value) => new Promise<void>((resolve) => held.push(resolve)).then(() => putDerived(key, at, value));
    const reader = new PageReader(store);
    const scanner = new RelationScanner(reader, lsn);
    for (let b = 0; b < 5; b++) expect((await scanner.page(rel, ForkNumber.Main, b)).equals(expected[b]), `block ${b}`).toBe(true);
    expect(held.length).toBe(5); // all five pages read while no image was stored yet
    await scanner.close(); // (the store waits for them before it closes: timeline-store.test.ts)
    let stored = false;
    const storing = reader.materializationsStored().then(() => (stored = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stored).toBe(false);
    for (const release of held) release();
    await storing;
    store.putDerived = putDerived;
    for (let b = 0; b < 5; b++) {
      const image = await store.getVersion(materializedBlockKey(rel, ForkNumber.Main, b), lsn);
      expect(image?.lsn, `block ${b}`).toBe(lsn);
    }
  }, 20_000); // a scan that waits for each image never finishes here

  it("takes runs inside a chain whole, and stores a long chain's image at the newest version it replayed, a run's last", async () => {
    // an image, 60 records, then a run of three versions ending the chain
    const entries = [image(0, 0x100n, 1)];
    for (let i = 1; i <= 60; i++) entries.push(generic(0, 0x100n + BigInt(i) * 0x10n, 8000 + i, [i]));
    const runLsns = [0x1000n, 0x1010n, 0x1020n];
    entries.push({ key: storeKey(relBlockKey(rel, ForkNumber.Main, 0), runLsns[0]), value: runValue(runLsns.map((l, i) => ({ lsn: l, value: generic(0, l, 8100 + i, [0x40 + i]).value }))) });
    await commit(store, entries);
    const plain = () => new PageReader(store, { pageCache: new PageCache(0), maxReplay: Number.MAX_SAFE_INTEGER });
    const inside = await plain().getPage(rel, ForkNumber.Main, 0, runLsns[1]);
    const reader = new PageReader(store, { pageCache: new PageCache(0) });
    const scanned = await scanAll(reader, 0, 1, 0x2000n);
    expect(scanned[0].page.equals(await plain().getPage(rel, ForkNumber.Main, 0, 0x2000n))).toBe(true);
    await reader.materializationsStored();
    expect((await store.getVersion(materializedBlockKey(rel, ForkNumber.Main, 0), 0x2000n))?.lsn).toBe(runLsns[2]);
    // a read inside the run is not served from that image
    expect((await new PageReader(store, { pageCache: new PageCache(0) }).getPage(rel, ForkNumber.Main, 0, runLsns[1])).equals(inside)).toBe(true);
    await expectScanEqualsGetPage(new PageReader(store, { pageCache: new PageCache(0) }), 0, 1, runLsns[1]);
  });

  it("gives the same pages when storing a materialized image fails", async () => {
    const entries = [image(0, 0x100n, 1)];
    for (let i = 1; i <= 60; i++) entries.push(generic(0, 0x100n + BigInt(i) * 0x10n, 8000 + i, [i]));
    await commit(store, entries);
    const lsn = 0x100n + 60n * 0x10n;
    const expected = Buffer.from(await new PageReader(store).getPage(rel, ForkNumber.Main, 0, lsn, { materializeAbove: Number.MAX_SAFE_INTEGER }));
    store.putDerived = async () => {
      throw new Error("disk full");
    };
    const reader = new PageReader(store);
    const scanner = new RelationScanner(reader, lsn);
    expect((await scanner.page(rel, ForkNumber.Main, 0)).equals(expected)).toBe(true);
    await scanner.close();
    await reader.materializationsStored();
    expect(await store.getVersion(materializedBlockKey(rel, ForkNumber.Main, 0), lsn)).toBeUndefined();
  });

  it("starts from a materialized image when the history below it is gone", async () => {
    // what GC would leave: the materialized image and the records above it, nothing below
    const base = emptyPage(0x300n, 0x42);
    await commit(store, [materialized(1, 0x300n, base), generic(1, 0x380n, 8100, "after")]);
    const [zero, page] = await scanAll(new PageReader(store), 0, 2, 0x400n);
    expect(zero.page.equals(Buffer.alloc(8192))).toBe(true);
    expect(page.page[8190]).toBe(0x42);
    expect(page.page.subarray(8100, 8105).toString()).toBe("after");
  });

  it("hands back the ancestor's stored images as references into the ancestor's files for blocks a branch never changed", async () => {
    const entries = [];
    for (let b = 0; b < 6; b++) entries.push(image(b, 0x100n, b + 1));
    await commit(store, entries);
    const parent = new PageReader(store);
    const childStore = await openStore();
    // the child's own image of block 4 lands at the same place in the child's (empty) image files
    // as the parent's block 0 in the parent's: only the files tell them apart
    await commit(childStore, [image(4, 0x300n, 0x44)], 0x200n, 0x400n);
    const child = new PageReader(childStore, { ancestor: { reader: parent, lsn: 0x200n } });
    const scanner = new RelationScanner(child, 0x400n);
    try {
      const found = [];
      for (let b = 0; b < 6; b++) found.push((await scanner.pageOrImage(rel, ForkNumber.Main, b)) as StoredImage);
      for (const b of [0, 1, 2, 3, 5]) expect(found[b].images, `block ${b}`).toBe(store.images);
      expect(found[4].images).toBe(childStore.images);
      expect(found[4].offset).toBe(found[0].offset);
      // blocks 0-3 as one run from the parent's files, block 4 from the child's
      const target = Buffer.alloc(5 * 8192);
      scanner.readImagesInto(found[0], 4 * 8192, target, 0);
      scanner.readImagesInto(found[4], 8192, target, 4 * 8192);
      for (let b = 0; b < 5; b++) expect(target.subarray(b * 8192, (b + 1) * 8192).equals(await child.getPage(rel, ForkNumber.Main, b, 0x400n)), `block ${b}`).toBe(true);
      expect(target[4 * 8192 + 8190]).toBe(0x44);
    } finally {
      await scanner.close();
    }
  });

  it("continues in the ancestor for blocks the branch has no base for, recursively", async () => {
    await fillTimeline(store);
    const root = new PageReader(store);
    const branchLsn = 0x450n;
    const childStore = await openStore();
    await commit(childStore, [
      // 0: a record on top of the parent's page
      generic(0, 0x900n, 8110, "child"),
      // 3: a new image on the child
      image(3, 0x900n, 0x33),
      // 4: materialized on the child above a record: the child's own base
      generic(4, 0x900n, 8120, "m"),
      // 10: a block the parent never had
      generic(10, 0x950n, 8100, "new"),
    ], branchLsn, 0x1000n);
    const child = new PageReader(childStore, { ancestor: { reader: root, lsn: branchLsn } });
    await commit(childStore, [materialized(4, 0x900n, await child.getPage(rel, ForkNumber.Main, 4, 0x900n)), generic(4, 0xa00n, 8121, "n")], branchLsn, 0x1000n);

    const grandStore = await openStore();
    await commit(grandStore, [generic(3, 0xb00n, 8130, "grand"), image(8, 0xb00n, 0x88)], 0x980n, 0x1000n);
    const grand = new PageReader(grandStore, { ancestor: { reader: child, lsn: 0x980n } });

    for (const lsn of [0x300n, branchLsn, 0x920n, 0x1000n]) {
      await expectScanEqualsGetPage(child, 0, 12, lsn);
      await expectScanEqualsGetPage(child, 3, 11, lsn);
    }
    for (const lsn of [0x200n, 0x960n, 0xc00n]) {
      await expectScanEqualsGetPage(grand, 0, 12, lsn);
      await expectScanEqualsGetPage(grand, 5, 9, lsn);
    }
    const pages = await scanAll(child, 0, 11, 0x1000n);
    // the parent's page at the branch point plus the child's record
    expect(pages[0].page.subarray(8100, 8102).toString()).toBe("ab");
    expect(pages[0].page.subarray(8110, 8115).toString()).toBe("child");
    // the parent's version of block 9 (at 0x700) is above the branch point
    expect(pages[9].page.equals(Buffer.alloc(8192))).toBe(true);
  });

  it("throws the error getPage throws for a block it cannot rebuild, and closes its iterators", async () => {
    await commit(store, [
      image(0, 0x100n, 1),
      image(1, 0x100n, 1),
      { key: storeKey(relBlockKey(rel, ForkNumber.Main, 1), 0x200n), value: walRecordValue(oneBlockRecord(128, rel, 1, Buffer.from("xxxx")), 0x1e8n, false) },
    ]);
    const reader = new PageReader(store);
    const seen: number[] = [];
    const scan = (async () => {
      for await (const { blockNumber } of scanRelationPages(reader, rel, ForkNumber.Main, 0, 3, 0x300n)) seen.push(blockNumber);
    })();
    await expect(scan).rejects.toBeInstanceOf(UnsupportedRecordError);
    await expect(reader.getPage(rel, ForkNumber.Main, 1, 0x300n)).rejects.toBeInstanceOf(UnsupportedRecordError);
    expect(seen).toEqual([0]);
  });

  it("counts itself in the store's scans in progress until it closes (background scans do not count)", async () => {
    await fillTimeline(store);
    const reader = new PageReader(store);
    const scanner = new RelationScanner(reader, 0x800n);
    const background = new RelationScanner(reader, 0x800n, { background: true });
    await scanner.page(rel, ForkNumber.Main, 0);
    await background.page(rel, ForkNumber.Main, 0);
    expect(store.scansInProgress).toBe(1);
    await scanner.close();
    await scanner.close();
    await background.close();
    expect(store.scansInProgress).toBe(0);
  });

  it("closes its iterators when the consumer stops early", async () => {
    await fillTimeline(store);
    const reader = new PageReader(store);
    for await (const { blockNumber } of scanRelationPages(reader, rel, ForkNumber.Main, 0, 12, 0x800n)) if (blockNumber === 2) break;
    // a store with an iterator left open would not close
    await closeStore(store);
  });

  it("expands runs of versions, also where a materialized image or the LSN falls inside a run", async () => {
    const run = (block: number, lsns: Lsn[]) => ({
      key: storeKey(relBlockKey(rel, ForkNumber.Main, block), lsns[0]),
      value: runValue(lsns.map((l, i) => ({ lsn: l, value: generic(block, l, 8100 + i, [block + i + 1]).value }))),
    });
    await commit(store, [
      image(0, 0x100n, 1), run(0, [0x200n, 0x210n, 0x220n]), generic(0, 0x300n, 8120, "after"),
      run(1, [0x180n, 0x190n]), // no base: onto a zero page
      image(2, 0x100n, 2), run(2, [0x200n, 0x240n]), image(2, 0x250n, 22), run(2, [0x260n, 0x270n, 0x280n]),
    ]);
    const reader = new PageReader(store);
    await commit(store, [materialized(0, 0x210n, await reader.getPage(rel, ForkNumber.Main, 0, 0x210n)), materialized(2, 0x270n, await reader.getPage(rel, ForkNumber.Main, 2, 0x270n))]);
    for (const lsn of [0x1f0n, 0x200n, 0x205n, 0x210n, 0x215n, 0x220n, 0x255n, 0x265n, 0x275n, 0x400n]) await expectScanEqualsGetPage(reader, 0, 4, lsn);
  });

  /**
   * Block 0: an image, `history` records, a run holding the materialized image's LSN (two of its
   * versions above it), five more records; block 1 after it. Returns the reader, the LSNs to
   * read at, and a counter of the entries iterators read.
   */
  async function hotBlock(s: TimelineStore, history: number) {
    const entries = [image(0, 0x100n, 1)];
    for (let k = 0; k < history; k++) entries.push(generic(0, 0x1000n + BigInt(k) * 0x10n, 7000 + (k % 1000), [k & 0xff]));
    const runLsns = [0x10000n, 0x10010n, 0x10020n, 0x10030n];
    entries.push({
      key: storeKey(relBlockKey(rel, ForkNumber.Main, 0), runLsns[0]),
      value: runValue(runLsns.map((l, i) => ({ lsn: l, value: generic(0, l, 8100 + i, [0x40 + i]).value }))),
    });
    for (let k = 0; k < 5; k++) entries.push(generic(0, 0x11000n + BigInt(k) * 0x10n, 8150 + k, [0x60 + k]));
    entries.push(image(1, 0x100n, 2), generic(1, 0x11100n, 8100, "b1"));
    await commit(s, entries, 0x10n, 0x20000n);
    const reader = new PageReader(s, { pageCache: new PageCache(0) });
    const imageLsn = runLsns[1];
    await commit(s, [materialized(0, imageLsn, await reader.getPage(rel, ForkNumber.Main, 0, imageLsn))], 0x10n, 0x20000n);
    const read = countEntriesRead(s);
    return { reader, read, lsns: [imageLsn, runLsns[2], runLsns[3], 0x11020n, 0x12000n] };
  }

  it("crosses a hot block's history below its materialized image with a seek, also when a run crosses the image", async () => {
    const { reader, read, lsns } = await hotBlock(store, 1500);
    for (const lsn of lsns) {
      await expectScanEqualsGetPage(reader, 0, 2, lsn);
      const expected = [await reader.getPage(rel, ForkNumber.Main, 0, lsn), await reader.getPage(rel, ForkNumber.Main, 1, lsn)];
      const scanner = new RelationScanner(reader, lsn);
      try {
        read.entries = 0;
        expect((await scanner.page(rel, ForkNumber.Main, 0)).equals(expected[0])).toBe(true);
        expect((await scanner.page(rel, ForkNumber.Main, 1)).equals(expected[1])).toBe(true);
        // a batch of the history and the one read ahead with it, not the 1500 entries below the image
        expect(read.entries, `entries read at ${lsn.toString(16)}`).toBeLessThan(600);
        expect(scanner.stats.seeks).toBeGreaterThanOrEqual(1);
      } finally {
        await scanner.close();
      }
    }
  });

  it("replays each version above the image once when the crossing run ends an iterator batch", async () => {
    // the cursor's first batch (256 entries from block 0's image on) ends with the run
    const { reader, lsns } = await hotBlock(store, 254);
    const replayed: number[] = [];
    const replayStoredFrom = reader.replayStoredFrom.bind(reader);
    let calls = 0;
    reader.replayStoredFrom = (page, versions, target, from = 0, member = 0) => {
      // (the first call: one that resumes after a read goes on with the same chain; a scan's
      // versions are runs' members, never whole runs)
      if (target.blockNumber === 0 && calls++ === 0) replayed.push(versions.length - from);
      return replayStoredFrom(page, versions, target, from, member);
    };
    const end = lsns[lsns.length - 1];
    await expectScanEqualsGetPage(reader, 0, 2, end);
    // the run's two versions above the image and the five records after it
    expect(replayed[0]).toBe(7);
  });

  it("takes a hot block's newest materialized image without reading every older one", async () => {
    // block 0: an image, 4000 records; a materialized image at each of the first 3500 records'
    // LSNs (junk pages, but for the two the reads below must start from); block 1 after it
    const n = 4000;
    const at = (k: number) => 0x1000n + BigInt(k) * 0x10n;
    const entries = [image(0, 0x100n, 1)];
    for (let k = 0; k < n; k++) entries.push(generic(0, at(k), 6000 + (k % 2000), [k & 0xff]));
    entries.push(image(1, 0x100n, 2), generic(1, at(n), 8100, "b1"));
    await commit(store, entries, 0x10n, 0x100000n);
    const exact = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0) });
    const images = [];
    for (let k = 0; k < 3500; k++) images.push(materialized(0, at(k), k === 1700 || k === 3499 ? await exact.getPage(rel, ForkNumber.Main, 0, at(k)) : emptyPage(at(k), 0x77)));
    await commit(store, images, 0x10n, 0x100000n);
    const reader = new PageReader(store, { pageCache: new PageCache(0) });

    const read = countEntriesRead(store);
    for (const lsn of [at(1700) + 8n, at(3499), at(n)]) {
      // replayed from the block's first image, before any scan stores a materialized image
      const expected = [await exact.getPage(rel, ForkNumber.Main, 0, lsn), await exact.getPage(rel, ForkNumber.Main, 1, lsn)];
      const scanner = new RelationScanner(reader, lsn);
      try {
        read.entries = 0;
        expect((await scanner.page(rel, ForkNumber.Main, 0)).equals(expected[0]), `block 0 at ${lsn.toString(16)}`).toBe(true);
        expect((await scanner.page(rel, ForkNumber.Main, 1)).equals(expected[1]), `block 1 at ${lsn.toString(16)}`).toBe(true);
        // a few batches from each key space (each seek reads one, and one ahead), not the 3500
        // images and the records below them
        expect(read.entries, `entries read at ${lsn.toString(16)}`).toBeLessThan(2600);
      } finally {
        await scanner.close();
      }
      await expectScanEqualsGetPage(reader, 0, 2, lsn);
    }
  });

  it("streams relations larger than an iterator batch", async () => {
    // 600 blocks with 3 versions each: several batches per cursor, blocks split across batches
    const entries = [];
    for (let b = 0; b < 600; b++) {
      entries.push(image(b, 0x100n, b & 0xff), generic(b, 0x200n, 8100, [b & 0xff]), generic(b, 0x300n + BigInt(b), 8101, [(b >> 8) + 1]));
    }
    await commit(store, entries);
    const reader = new PageReader(store);
    await expectScanEqualsGetPage(reader, 0, 650, 0x400n);
    await expectScanEqualsGetPage(reader, 123, 457, 0x300n + 200n);
  });
});

// ---- many relations through one RelationScanner ----

/** Generic WAL setting bytes at `offset` of any fork's block, stored at end LSN `lsn`. */
function genericAt(r: RelTag, fork: ForkNumber, block: number, lsn: Lsn, offset: number, bytes: string | number[], opts: { willInit?: boolean } = {}) {
  const raw = oneBlockRecord(20, r, block, genericDelta(offset, Buffer.from(bytes as string)), opts);
  raw[25] |= fork; // the block reference's fork bits
  raw.writeUInt32LE(computeRecordCrc(raw, raw.length), 20);
  return { key: storeKey(relBlockKey(r, fork, block), lsn), value: walRecordValue(raw, lsn - 0x20n, opts.willInit ?? false) };
}
const imageAt = (r: RelTag, fork: ForkNumber, block: number, lsn: Lsn, mark: number) => ({ key: storeKey(relBlockKey(r, fork, block), lsn), value: imageValue(emptyPage(lsn, mark)) });
const tombstoneAt = (r: RelTag, fork: ForkNumber, block: number, lsn: Lsn) => ({ key: storeKey(relBlockKey(r, fork, block), lsn), value: TOMBSTONE });
const materializedAt = (r: RelTag, fork: ForkNumber, block: number, lsn: Lsn, page: Buffer) => ({ key: storeKey(materializedBlockKey(r, fork, block), lsn), value: imageValue(page) });

const relOf = (relNode: number, dbNode = 5, spcNode = 1663): RelTag => ({ spcNode, dbNode, relNode });

interface Fork {
  rel: RelTag;
  fork: ForkNumber;
  blocks: number;
}

/** Reads `forks` (in the order given) with one scanner and compares every block with getPage. */
async function expectScannerEqualsGetPage(reader: PageReader, forks: Fork[], lsn: Lsn, scanner = new RelationScanner(reader, lsn)) {
  let pages = 0;
  try {
    for (const { rel: r, fork, blocks } of forks) {
      const seen: number[] = [];
      for await (const { blockNumber, page } of scanner.pages(r, fork, 0, blocks)) {
        seen.push(blockNumber);
        const expected = await reader.getPage(r, fork, blockNumber, lsn);
        expect(page.equals(expected), `${r.dbNode}/${r.relNode} fork ${fork} block ${blockNumber} at ${lsn.toString(16)}`).toBe(true);
        pages++;
      }
      expect(seen).toEqual(Array.from({ length: blocks }, (_, i) => i));
    }
  } finally {
    await scanner.close();
  }
  return { pages, stats: scanner.stats };
}

describe("relation scanner over many relations", () => {
  const { openStore, closeStore, cleanup } = tempStores("strata-relscan-many-");
  afterEach(cleanup);

  // live relations of the parent: 30 small ones in database 5 (every 10th relNode), a few in
  // database 6 and in pg_global; in between, what a backup must skip
  const live = Array.from({ length: 30 }, (_, i) => relOf(20000 + 10 * i));
  const smallDropped = relOf(20035); // leftover versions between live[3] and live[4]
  const bigDropped = relOf(20105); // thousands of leftover versions: a gap of many batches
  const truncated = live[7]; // 2 blocks live, versions stored up to block 11
  const truncatedBig = live[12]; // 1 block live, versions stored up to block 1499
  const parentOnly = live[20]; // the branch never touches it
  const db6 = [relOf(30000, 6), relOf(30010, 6)];
  const shared = [relOf(1262, 0, 1664), relOf(2964, 0, 1664)];

  /** blocks of each live relation's main fork (others: fsm 1 block for every third relation) */
  const blocksOf = (i: number) => (live[i] === truncated ? 2 : live[i] === truncatedBig ? 1 : 1 + (i % 4));

  async function fillParent(s: TimelineStore) {
    const entries: Array<{ key: Buffer; value: Buffer }> = [];
    live.forEach((r, i) => {
      const n = live[i] === truncated ? 12 : live[i] === truncatedBig ? 1500 : blocksOf(i);
      for (let b = 0; b < n; b++) {
        if (live[i] === truncatedBig && b > 0) {
          entries.push(tombstoneAt(r, ForkNumber.Main, b, 0x100n));
          continue;
        }
        switch ((i + b) % 5) {
          case 0: // image and records
            entries.push(imageAt(r, ForkNumber.Main, b, 0x100n, i), genericAt(r, ForkNumber.Main, b, 0x200n + BigInt(i), 8100, [i, b]), genericAt(r, ForkNumber.Main, b, 0x600n, 8102, "p"));
            break;
          case 1: // records without a base
            entries.push(genericAt(r, ForkNumber.Main, b, 0x180n, 8100, "q"), genericAt(r, ForkNumber.Main, b, 0x380n, 8101, [b]));
            break;
          case 2: // nothing: zero page
            break;
          case 3: // an image replaced, then dropped and recreated
            entries.push(imageAt(r, ForkNumber.Main, b, 0x100n, 3), tombstoneAt(r, ForkNumber.Main, b, 0x300n), imageAt(r, ForkNumber.Main, b, 0x500n, 33));
            break;
          case 4: // a will-init record, then versions above most LSNs read
            entries.push(imageAt(r, ForkNumber.Main, b, 0x100n, 4), genericAt(r, ForkNumber.Main, b, 0x250n, 8100, "w", { willInit: true }));
            for (let k = 0; k < 30; k++) entries.push(genericAt(r, ForkNumber.Main, b, 0x700n + BigInt(k) * 8n, 8000 + k, [k]));
            break;
        }
      }
      if (i % 3 === 0) entries.push(imageAt(r, ForkNumber.Fsm, 0, 0x100n, 0xf0 + (i % 10)), genericAt(r, ForkNumber.Fsm, 0, 0x400n, 8100, "fsm"));
    });
    for (let b = 0; b < 6; b++) entries.push(imageAt(smallDropped, ForkNumber.Main, b, 0x100n, 0xdd), tombstoneAt(smallDropped, ForkNumber.Main, b, 0x200n));
    for (let b = 0; b < 2000; b++) entries.push(genericAt(bigDropped, ForkNumber.Main, b, 0x120n, 8100, "gone"), tombstoneAt(bigDropped, ForkNumber.Main, b, 0x200n));
    for (const r of [...db6, ...shared]) entries.push(imageAt(r, ForkNumber.Main, 0, 0x100n, 0x66), genericAt(r, ForkNumber.Main, 1, 0x200n, 8100, "z"));
    await commit(s, entries);
  }

  const parentForks = (): Fork[] => [
    ...live.flatMap((r, i) => [{ rel: r, fork: ForkNumber.Main, blocks: blocksOf(i) }, ...(i % 3 === 0 ? [{ rel: r, fork: ForkNumber.Fsm, blocks: 1 }] : [])]),
    ...db6.map((r) => ({ rel: r, fork: ForkNumber.Main, blocks: 2 })),
    ...shared.map((r) => ({ rel: r, fork: ForkNumber.Main, blocks: 2 })),
  ];

  it("reads many relations in key order with one pass per key space, equal to getPage at every LSN", async () => {
    const store = await openStore();
    await fillParent(store);
    const reader = new PageReader(store);
    // a long chain with materialized images (the scan uses them as getPage does)
    const hot = live[5];
    const chain = [imageAt(hot, ForkNumber.Main, 0, 0x100n, 0x55)];
    for (let k = 1; k <= 60; k++) chain.push(genericAt(hot, ForkNumber.Main, 0, 0x100n + BigInt(k) * 0x10n, 8000 + k, [k]));
    await commit(store, chain);
    await commit(store, [materializedAt(hot, ForkNumber.Main, 0, 0x300n, await reader.getPage(hot, ForkNumber.Main, 0, 0x300n))]);

    for (const lsn of [0x150n, 0x280n, 0x450n, 0x800n]) {
      const { pages, stats } = await expectScannerEqualsGetPage(reader, parentForks(), lsn);
      expect(pages).toBeGreaterThan(70);
      // one iterator per key space for all of it; the two big gaps are crossed with seeks
      expect(stats.opened).toBe(2);
      expect(stats.seeks).toBeGreaterThanOrEqual(2);
      expect(stats.seeks).toBeLessThan(6);
    }
  });

  it("reads a branch: blocks from the ancestor through one shared ancestor scan", async () => {
    const parentStore = await openStore();
    await fillParent(parentStore);
    const parent = new PageReader(parentStore);
    const branchLsn = 0x450n;
    const childStore = await openStore();
    const childOnly = relOf(20295); // between live[29] and db 6
    const entries = [];
    for (const [i, r] of live.entries()) {
      if (r === parentOnly || i % 4 === 1) continue;
      // records on top of the parent's pages, a new image, or a relation rewritten entirely
      for (let b = 0; b < blocksOf(i); b++) {
        if (i % 4 === 0) entries.push(genericAt(r, ForkNumber.Main, b, 0x900n, 8110, "child"));
        else if (i % 4 === 2) entries.push(imageAt(r, ForkNumber.Main, b, 0x900n, 0xc2));
        else if (b === 0) entries.push(genericAt(r, ForkNumber.Main, b, 0x980n, 8120, "c3"));
      }
    }
    for (let b = 0; b < 3; b++) entries.push(imageAt(childOnly, ForkNumber.Main, b, 0x900n, 0xcc));
    // the branch truncated the big truncated relation's leftovers in its own way: more of them
    for (let b = 1; b < 700; b++) entries.push(tombstoneAt(truncatedBig, ForkNumber.Main, b, 0x910n));
    await commit(childStore, entries, branchLsn, 0x1000n);
    const child = new PageReader(childStore, { ancestor: { reader: parent, lsn: branchLsn } });
    const forks = parentForks();
    forks.splice(forks.findIndex((f) => f.rel.dbNode === 6), 0, { rel: childOnly, fork: ForkNumber.Main, blocks: 3 });

    for (const lsn of [0x300n, branchLsn, 0x950n, 0x1000n]) {
      const { stats } = await expectScannerEqualsGetPage(child, forks, lsn);
      // the child's two cursors and the ancestor's two
      expect(stats.opened).toBe(4);
    }
    // a grandchild whose own history is empty: everything through two ancestor levels
    const grandStore = await openStore();
    await commit(grandStore, [imageAt(live[0], ForkNumber.Main, 0, 0xa00n, 0x99)], 0x980n, 0x1000n);
    const grand = new PageReader(grandStore, { ancestor: { reader: child, lsn: 0x980n } });
    const { stats } = await expectScannerEqualsGetPage(grand, forks, 0x1000n);
    expect(stats.opened).toBe(6);
  });

  it("seeks past a block's many versions above the LSN", async () => {
    const store = await openStore();
    const hot = live[1];
    const entries = [imageAt(hot, ForkNumber.Main, 0, 0x100n, 1), imageAt(hot, ForkNumber.Main, 1, 0x100n, 2), imageAt(live[2], ForkNumber.Main, 0, 0x100n, 3)];
    for (let k = 0; k < 1200; k++) entries.push(genericAt(hot, ForkNumber.Main, 0, 0x1000n + BigInt(k) * 8n, 8000 + (k % 100), [k & 0xff]));
    await commit(store, entries, 0x10n, 0x10000n);
    const reader = new PageReader(store);
    const forks = [{ rel: hot, fork: ForkNumber.Main, blocks: 2 }, { rel: live[2], fork: ForkNumber.Main, blocks: 1 }];
    const before = await expectScannerEqualsGetPage(reader, forks, 0x200n);
    expect(before.stats.seeks).toBe(1);
    for (const lsn of [0x1000n, 0x1000n + 600n * 8n, 0x8000n]) await expectScannerEqualsGetPage(reader, forks, lsn);
  });

  it("gives the same pages when read out of key order (a fork twice, a relation before the first one read)", async () => {
    const store = await openStore();
    await fillParent(store);
    const reader = new PageReader(store);
    const forks: Fork[] = [
      { rel: live[4], fork: ForkNumber.Main, blocks: 1 + (4 % 4) },
      { rel: live[4], fork: ForkNumber.Main, blocks: 1 + (4 % 4) }, // again: an unlogged relation's init fork is read twice
      { rel: live[9], fork: ForkNumber.Main, blocks: blocksOf(9) },
      { rel: live[1], fork: ForkNumber.Main, blocks: blocksOf(1) }, // before where the iterators started
      { rel: live[0], fork: ForkNumber.Fsm, blocks: 1 },
      { rel: live[29], fork: ForkNumber.Main, blocks: blocksOf(29) },
      { rel: live[6], fork: ForkNumber.Fsm, blocks: 1 },
    ];
    await expectScannerEqualsGetPage(reader, forks, 0x800n);
    const scanner = new RelationScanner(reader, 0x800n);
    try {
      // single pages, backwards within a fork
      for (const b of [3, 1, 2, 0]) expect((await scanner.page(live[3], ForkNumber.Main, b)).equals(await reader.getPage(live[3], ForkNumber.Main, b, 0x800n))).toBe(true);
    } finally {
      await scanner.close();
    }
  });

  it("stays usable after a block it cannot rebuild, refuses reads past its end and closes with reads left", async () => {
    const store = await openStore();
    await fillParent(store);
    const broken = live[2];
    await commit(store, [{ key: storeKey(relBlockKey(broken, ForkNumber.Main, 1), 0x700n), value: walRecordValue(oneBlockRecord(128, broken, 1, Buffer.from("xxxx")), 0x6e8n, false) }]);
    const reader = new PageReader(store);
    const scanner = new RelationScanner(reader, 0x800n, { end: { rel: live[10], fork: ForkNumber.Main, block: 0 } });
    try {
      expect((await scanner.page(broken, ForkNumber.Main, 0)).equals(await reader.getPage(broken, ForkNumber.Main, 0, 0x800n))).toBe(true);
      await expect(scanner.page(broken, ForkNumber.Main, 1)).rejects.toBeInstanceOf(UnsupportedRecordError);
      for (const r of [broken, live[3], live[9]]) {
        for (let b = r === broken ? 2 : 0; b < blocksOf(live.indexOf(r)); b++) expect((await scanner.page(r, ForkNumber.Main, b)).equals(await reader.getPage(r, ForkNumber.Main, b, 0x800n))).toBe(true);
      }
      await expect(scanner.page(live[10], ForkNumber.Main, 0)).rejects.toBeInstanceOf(RangeError);
      // two reads at once are refused rather than interleaved on the cursors
      const first = scanner.page(live[9], ForkNumber.Fsm, 0);
      await expect(scanner.page(live[9], ForkNumber.Fsm, 0)).rejects.toThrow(/one read at a time/);
      await first;
    } finally {
      await scanner.close();
    }
    await expect(scanner.page(live[1], ForkNumber.Main, 0)).rejects.toThrow(/closed/);
    // a store with an iterator left open would not close
    await closeStore(store);
  });
});

describe("relation scan with parallel replay", () => {
  const { openStore, cleanup } = tempStores("strata-relscan-parallel-");
  let store: TimelineStore;
  const redo = redoPoolForTests();
  beforeEach(async () => {
    store = await openStore();
  });
  afterEach(cleanup);

  /** Blocks 0..23: every third one a long chain above an image (block 6's with a run), the others an image with a short chain; every fourth nothing at all. */
  async function fill(s: TimelineStore, bad?: number) {
    const entries: Array<{ key: Buffer; value: Buffer }> = [];
    for (let block = 0; block < 24; block++) {
      if (block % 4 === 3) continue;
      entries.push(image(block, 0x100n, block + 1));
      const records = block % 3 === 0 ? 30 + block : block % 2;
      for (let i = 1; i <= records; i++) {
        const lsn = 0x1000n + BigInt(i) * 0x20n;
        if (block === bad && i === 10) entries.push({ key: storeKey(relBlockKey(rel, ForkNumber.Main, block), lsn), value: walRecordValue(oneBlockRecord(128, rel, block, Buffer.from("xxxx")), lsn - 0x10n, false) });
        else if (block === 6 && i === 5) entries.push({ key: storeKey(relBlockKey(rel, ForkNumber.Main, block), lsn), value: runValue([0n, 1n, 2n].map((k) => ({ lsn: lsn + k * 4n, value: generic(block, lsn + k * 4n, 8100 + Number(k), [0xa0 + Number(k)]).value }))) });
        else entries.push(generic(block, lsn, 8000 + (i % 150), [i, block]));
      }
    }
    await commit(s, entries);
  }

  it("rebuilds long chains on the redo workers while it reads on, and yields every page in block order equal to getPage", async () => {
    await fill(store);
    const here = new PageReader(store, { pageCache: new PageCache(0), redoPool: null, maxReplay: Number.MAX_SAFE_INTEGER });
    const parallel = new PageReader(store, { pageCache: new PageCache(0), redoPool: redo.pool, maxReplay: Number.MAX_SAFE_INTEGER });
    for (const lsn of [0x1000n, 0x1100n, 0x1400n, 0x2000n]) {
      const jobs = redo.pool.stats.jobs;
      const scanner = new RelationScanner(parallel, lsn, { parallelReplay: true });
      const seen: number[] = [];
      // blocks read when block 0 (a long chain) is yielded: the scan reads on while a worker rebuilds it
      let read = 0;
      let readBeforeFirst = 0;
      const pageOrImage = scanner.pageOrImage.bind(scanner);
      scanner.pageOrImage = (...args) => (read++, pageOrImage(...args));
      try {
        for await (const { blockNumber, page } of scanner.pages(rel, ForkNumber.Main, 0, 24)) {
          if (seen.length === 0) readBeforeFirst = read;
          seen.push(blockNumber);
          expect(page.equals(await here.getPage(rel, ForkNumber.Main, blockNumber, lsn)), `block ${blockNumber} at ${lsn.toString(16)}`).toBe(true);
        }
      } finally {
        await scanner.close();
      }
      expect(seen).toEqual(Array.from({ length: 24 }, (_, i) => i));
      // (the reader learns the hint-bit setting on its first chain, replayed here)
      if (lsn >= 0x1400n) expect(redo.pool.stats.jobs - jobs).toBeGreaterThanOrEqual(lsn === 0x1400n ? 5 : 6);
      if (lsn === 0x2000n) expect(readBeforeFirst).toBe(24);
    }
    // a long chain comes back at once as a page being rebuilt, and the next block can be read
    const scanner = new RelationScanner(parallel, 0x2000n, { parallelReplay: true });
    try {
      const found = await scanner.pageOrImage(rel, ForkNumber.Main, 9);
      expect(found).toBeInstanceOf(PendingPage);
      const next = await scanner.pageOrImage(rel, ForkNumber.Main, 10);
      expect(next).not.toBeInstanceOf(PendingPage);
      expect((await (found as PendingPage).page).equals(await here.getPage(rel, ForkNumber.Main, 9, 0x2000n))).toBe(true);
    } finally {
      await scanner.close();
    }
  });

  it("keeps the bytes of chains on the workers bounded: a long chain beyond the bound replays on the scan's thread", async () => {
    // blocks 0-2: an image and one run of 40 versions each (two entries: all in the cursor's first batch)
    const entries: Array<{ key: Buffer; value: Buffer }> = [];
    for (let block = 0; block < 3; block++) {
      entries.push(image(block, 0x100n, block + 1));
      const lsns = Array.from({ length: 40 }, (_, i) => 0x1000n + BigInt(i) * 0x10n);
      entries.push({ key: storeKey(relBlockKey(rel, ForkNumber.Main, block), lsns[0]), value: runValue(lsns.map((l, i) => ({ lsn: l, value: generic(block, l, 8000 + i, [i, block]).value }))) });
    }
    await commit(store, entries);
    const here = new PageReader(store, { pageCache: new PageCache(0), redoPool: null, maxReplay: Number.MAX_SAFE_INTEGER });
    const parallel = new PageReader(store, { pageCache: new PageCache(0), redoPool: redo.pool, maxReplay: Number.MAX_SAFE_INTEGER });
    await parallel.getPage(rel, ForkNumber.Main, 0, 0x2000n); // (the hint-bit setting read: chains may go to workers)
    const scanner = new RelationScanner(parallel, 0x2000n, { parallelReplay: true, maxOffloadedBytes: 1 });
    try {
      const first = await scanner.pageOrImage(rel, ForkNumber.Main, 0);
      // read while the first chain is on a worker (no I/O, so no worker reply in between): over the bound
      const second = scanner.pageOrImage(rel, ForkNumber.Main, 1);
      expect(first).toBeInstanceOf(PendingPage);
      expect(second).toBeInstanceOf(Buffer);
      const firstPage = await (first as PendingPage).page;
      // the first one back: the next chain goes to a worker again
      const third = await scanner.pageOrImage(rel, ForkNumber.Main, 2);
      expect(third).toBeInstanceOf(PendingPage);
      const pages = [firstPage, second as Buffer, await (third as PendingPage).page];
      for (let block = 0; block < 3; block++) expect(pages[block].equals(await here.getPage(rel, ForkNumber.Main, block, 0x2000n)), `block ${block}`).toBe(true);
    } finally {
      await scanner.close();
    }
  });

  it("throws a worker-rebuilt block's error in its turn, after the blocks before it", async () => {
    await fill(store, 12);
    const parallel = new PageReader(store, { pageCache: new PageCache(0), redoPool: redo.pool, maxReplay: Number.MAX_SAFE_INTEGER });
    await parallel.getPage(rel, ForkNumber.Main, 0, 0x2000n); // (the hint-bit setting read: every long chain goes to a worker)
    const jobs = redo.pool.stats.jobs;
    const seen: number[] = [];
    const scanner = new RelationScanner(parallel, 0x2000n, { parallelReplay: true });
    try {
      const scan = (async () => {
        for await (const { blockNumber } of scanner.pages(rel, ForkNumber.Main, 0, 24)) seen.push(blockNumber);
      })();
      await expect(scan).rejects.toBeInstanceOf(UnsupportedRecordError);
    } finally {
      await scanner.close();
    }
    expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(redo.pool.stats.failed).toBeGreaterThan(0);
    expect(redo.pool.stats.jobs - jobs).toBeGreaterThanOrEqual(3);
  });
});
