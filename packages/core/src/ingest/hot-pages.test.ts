// HotPages on hand-made generic WAL records: records kept until adoption and replayed onto the
// adopted page, ready images every `threshold` records, and entries dropped by other writes of
// their block, by failed redo, by a failed rebuild, and not begun while catching up.
import { describe, expect, it } from "vitest";
import type { Lsn } from "../lsn.ts";
import { ForkNumber } from "../reltag.ts";
import { relBlockKey } from "../storage/keys.ts";
import { emptyPage, genericDelta, oneBlockRecord } from "../timeline/testutil.ts";
import { decodeRecord, type DecodedRecord } from "../wal/record.ts";
import { HotPages, type HotPage } from "./hot-pages.ts";

const rel = { spcNode: 1663, dbNode: 5, relNode: 16400 };
const GENERIC = 20;

/** A decoded generic record setting byte `offset` of block `block` to `value`, ending at `lsn`. */
function setByte(block: number, offset: number, value: number, lsn: Lsn): DecodedRecord {
  const record = decodeRecord(oneBlockRecord(GENERIC, rel, block, genericDelta(offset, Buffer.from([value]))), lsn - 0x40n);
  record.endLsn = lsn;
  return record;
}

/** HotPages of a cluster without wal_log_hints or checksums, as the owner sets it up */
function hotPages(threshold: number, limit?: number): HotPages {
  const hot = new HotPages(threshold, limit);
  hot.hintBitsLogged = false;
  return hot;
}

describe("hot pages", () => {
  it("replays the records kept while pending onto the adopted page, then applies new ones and makes an image every threshold records", () => {
    const hot = hotPages(3);
    const byBlock = new Map<number, HotPage>();
    hot.begin(byBlock, rel, ForkNumber.Main, 7, 0x1000n);
    const entry = byBlock.get(7)!;
    // stored after the version the page will be rebuilt at, before the rebuild is adopted
    hot.applyStored(entry, setByte(7, 8000, 1, 0x1100n), 0, 0x1100n);
    hot.applyStored(entry, setByte(7, 8001, 2, 0x1200n), 0, 0x1200n);
    expect(entry.page).toBeUndefined();
    expect(hot.adopt(rel, ForkNumber.Main, 7, 0x1000n, emptyPage(0x1000n))).toBe(true);
    expect([entry.page![8000], entry.page![8001]]).toEqual([1, 2]);
    expect(hot.drainReady(0xffffn)).toEqual([]); // two records since the rebuilt page: no image yet

    hot.applyStored(entry, setByte(7, 8002, 3, 0x1300n), 0, 0x1300n);
    hot.applyStored(entry, setByte(7, 8003, 4, 0x1400n), 0, 0x1400n);
    expect(hot.drainReady(0x12ffn)).toEqual([]); // the image at 0x1300 is not durable yet
    const [image] = hot.drainReady(0x1300n);
    expect(image.lsn).toBe(0x1300n);
    expect([...image.page.subarray(8000, 8004)]).toEqual([1, 2, 3, 0]); // a copy as of its LSN
    expect(image.page.readUInt32LE(4)).toBe(0x1300); // page LSN stamped as redo does
    expect(entry.page![8003]).toBe(4);
    expect(hot.applied).toBe(4);
  });

  it("refuses to adopt a page rebuilt at another LSN, and forgets one whose rebuild failed", () => {
    const hot = hotPages(3);
    const byBlock = new Map<number, HotPage>();
    hot.begin(byBlock, rel, ForkNumber.Main, 1, 0x1000n);
    expect(hot.adopt(rel, ForkNumber.Main, 1, 0x1100n, emptyPage(0x1100n))).toBe(false);
    expect(hot.adopt(rel, ForkNumber.Main, 2, 0x1000n, emptyPage(0x1000n))).toBe(false);
    hot.abandon(rel, ForkNumber.Main, 1, 0x1000n);
    expect(byBlock.size).toBe(0);
    expect(hot.size).toBe(0);
  });

  it("drops a page when its block is written some other way, or its redo fails; other relations' writes leave it", () => {
    const hot = hotPages(3);
    const byBlock = new Map<number, HotPage>();
    hot.begin(byBlock, rel, ForkNumber.Main, 1, 0x1000n);
    hot.begin(byBlock, rel, ForkNumber.Main, 2, 0x1000n);
    expect(hot.adopt(rel, ForkNumber.Main, 1, 0x1000n, emptyPage(0x1000n))).toBe(true);
    expect(hot.adopt(rel, ForkNumber.Main, 2, 0x1000n, emptyPage(0x1000n))).toBe(true);
    hot.dropKey(relBlockKey({ ...rel, relNode: 99 }, ForkNumber.Main, 1));
    hot.dropKey(relBlockKey(rel, ForkNumber.VisibilityMap, 1));
    expect(hot.size).toBe(2);
    hot.dropKey(relBlockKey(rel, ForkNumber.Main, 1));
    expect([...byBlock.keys()]).toEqual([2]);
    // a generic delta past the page's end: redo fails, so the page is dropped, not left half-applied
    hot.applyStored(byBlock.get(2)!, setByte(2, 9000, 1, 0x1100n), 0, 0x1100n);
    expect(hot.size).toBe(0);
    expect(byBlock.size).toBe(0);
  });

  it("keeps at most its limit of pages, the least recently changed going first, and begins none while not accepting", () => {
    const hot = hotPages(3, 2);
    const byBlock = new Map<number, HotPage>();
    for (const block of [1, 2, 3]) hot.begin(byBlock, rel, ForkNumber.Main, block, 0x1000n);
    expect([...byBlock.keys()]).toEqual([2, 3]);
    for (const block of [2, 3]) expect(hot.adopt(rel, ForkNumber.Main, block, 0x1000n, emptyPage(0x1000n))).toBe(true);
    hot.applyStored(byBlock.get(2)!, setByte(2, 8000, 1, 0x1100n), 0, 0x1100n); // 3 is now the least recently changed
    hot.begin(byBlock, rel, ForkNumber.Main, 1, 0x1200n);
    expect([...byBlock.keys()]).toEqual([2, 1]);
    hot.accepting = false;
    hot.begin(byBlock, rel, ForkNumber.Main, 4, 0x1300n);
    expect([...byBlock.keys()]).toEqual([2, 1]);
  });

  it("gives up a page whose rebuild takes too long to arrive, rather than keep its records", () => {
    const hot = hotPages(2);
    const byBlock = new Map<number, HotPage>();
    hot.begin(byBlock, rel, ForkNumber.Main, 1, 0x1000n);
    const entry = byBlock.get(1)!;
    // 20 thresholds of records kept, then given up
    for (let i = 1; i <= 41; i++) hot.applyStored(entry, setByte(1, 8000, i, 0x1000n + BigInt(i) * 0x100n), 0, 0x1000n + BigInt(i) * 0x100n);
    expect(hot.size).toBe(0);
    expect(hot.adopt(rel, ForkNumber.Main, 1, 0x1000n, emptyPage(0x1000n))).toBe(false);
  });
});

describe("hot pages of a growing relation", () => {
  it("begins a page started over by a will-init record shortly after a hot one from that record", () => {
    const hot = hotPages(3);
    const byBlock = new Map<number, HotPage>();
    hot.begin(byBlock, rel, ForkNumber.Main, 4, 0x1000n);
    expect(hot.adopt(rel, ForkNumber.Main, 4, 0x1000n, emptyPage(0x1000n))).toBe(true);
    const init = (block: number, lsn: Lsn) => {
      // an initialized page header, and one byte
      const data = Buffer.concat([genericDelta(0, emptyPage().subarray(0, 24)), genericDelta(8000, Buffer.from([9]))]);
      const record = decodeRecord(oneBlockRecord(GENERIC, rel, block, data, { willInit: true }), lsn - 0x40n);
      record.endLsn = lsn;
      return record;
    };
    hot.beginAtInit(byBlock, rel, ForkNumber.Main, 5, init(5, 0x1100n), 0, 0x1100n);
    expect([...byBlock.keys()]).toEqual([4, 5]);
    expect(byBlock.get(5)!.page![8000]).toBe(9);
    for (let i = 1; i <= 3; i++) hot.applyStored(byBlock.get(5)!, setByte(5, 8000 + i, i, 0x1100n + BigInt(i) * 0x100n), 0, 0x1100n + BigInt(i) * 0x100n);
    const [image] = hot.drainReady(0xffffn);
    expect([image.block, image.lsn, [...image.page.subarray(8000, 8004)]]).toEqual([5, 0x1400n, [9, 1, 2, 3]]);
    // a few blocks further on too (concurrent sessions fill neighbouring pages), but not far off
    hot.beginAtInit(byBlock, rel, ForkNumber.Main, 12, init(12, 0x1500n), 0, 0x1500n);
    hot.beginAtInit(byBlock, rel, ForkNumber.Main, 30, init(30, 0x1600n), 0, 0x1600n);
    expect([...byBlock.keys()].sort((a, b) => a - b)).toEqual([4, 5, 12]);
    expect(hot.begunAtInit).toBe(2);
  });
});
