import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Lsn } from "../lsn.ts";
import { ForkNumber } from "../reltag.ts";
import { materializedBlockKey, relBlockKey, storeKey } from "../storage/keys.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { derivedValue, DerivedKind, imageValue, TOMBSTONE, walRecordValue } from "../storage/values.ts";
import { UnsupportedRecordError } from "../redo/types.ts";
import { PageReader } from "./page-reader.ts";
import { scanRelationPages } from "./relation-scan.ts";
import { emptyPage, genericDelta, oneBlockRecord } from "./testutil.ts";

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

/** The scan of [from, to) equals getPage of every block, in order. */
async function expectScanEqualsGetPage(reader: PageReader, from: number, to: number, lsn: Lsn) {
  const scanned = await scanAll(reader, from, to, lsn);
  expect(scanned.map((e) => e.blockNumber)).toEqual(Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i));
  for (const { blockNumber, page } of scanned) {
    const expected = await reader.getPage(rel, ForkNumber.Main, blockNumber, lsn);
    expect(page.length, `block ${blockNumber}`).toBe(8192);
    expect(page.equals(expected), `block ${blockNumber} at ${lsn.toString(16)}`).toBe(true);
  }
  return scanned;
}

describe("relation scan", () => {
  const dirs: string[] = [];
  const stores: TimelineStore[] = [];
  async function openStore(): Promise<TimelineStore> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "strata-relscan-"));
    dirs.push(dir);
    const store = await TimelineStore.open(dir);
    stores.push(store);
    return store;
  }
  async function commit(store: TimelineStore, entries: Array<{ key: Buffer; value: Buffer }>, startLsn = 0x10n, last = 0x10000n) {
    await store.commit(entries, { lastRecordLsn: last, diskConsistentLsn: last, startLsn });
  }
  let store: TimelineStore;
  beforeEach(async () => {
    store = await openStore();
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

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

  it("starts from a materialized image when the history below it is gone", async () => {
    // what GC would leave: the materialized image and the records above it, nothing below
    const base = emptyPage(0x300n, 0x42);
    await commit(store, [materialized(1, 0x300n, base), generic(1, 0x380n, 8100, "after")]);
    const [zero, page] = await scanAll(new PageReader(store), 0, 2, 0x400n);
    expect(zero.page.equals(Buffer.alloc(8192))).toBe(true);
    expect(page.page[8190]).toBe(0x42);
    expect(page.page.subarray(8100, 8105).toString()).toBe("after");
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

  it("closes its iterators when the consumer stops early", async () => {
    await fillTimeline(store);
    const reader = new PageReader(store);
    for await (const { blockNumber } of scanRelationPages(reader, rel, ForkNumber.Main, 0, 12, 0x800n)) if (blockNumber === 2) break;
    // a store with an iterator left open would not close
    await store.close();
    stores.splice(stores.indexOf(store), 1);
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
