import { describe, expect, it } from "vitest";
import {
  getItem,
  getPageLsn,
  pageLsnAtLeast,
  getPdFlags,
  getPdLower,
  getPdPageSizeVersion,
  getPdSpecial,
  getPdUpper,
  InvalidOffsetNumber,
  isNewPage,
  itemIdGetFlags,
  itemIdGetLength,
  itemIdGetOffset,
  itemIdSetDead,
  itemIdSetRedirect,
  itemIdSetUnused,
  LP_DEAD,
  LP_NORMAL,
  LP_REDIRECT,
  LP_UNUSED,
  maxAlign,
  maxOffsetNumber,
  pageAddItem,
  pageGetExactFreeSpace,
  pageGetFreeSpace,
  pageGetHeapFreeSpace,
  pageGetSpecial,
  pageIndexMultiDelete,
  pageIndexTupleDelete,
  pageIndexTupleDeleteNoCompact,
  pageIndexTupleOverwrite,
  pageInit,
  pageRepairFragmentation,
  pageSetHasFreeLinePointers,
  pageTruncateLinePointerArray,
  PD_HAS_FREE_LINES,
  setPageLsn,
} from "./page.ts";

function item(len: number, fill: number): Buffer {
  return Buffer.alloc(len, fill);
}

function freshPage(special = 0): Buffer {
  const page = Buffer.alloc(8192);
  pageInit(page, special);
  return page;
}

function lp(page: Buffer, offnum: number): [number, number, number] {
  return [itemIdGetOffset(page, offnum), itemIdGetFlags(page, offnum), itemIdGetLength(page, offnum)];
}

describe("page header", () => {
  it("initializes a page with MAXALIGNed special space", () => {
    const page = Buffer.alloc(8192, 0xaa);
    pageInit(page, 12);
    expect(getPdLower(page)).toBe(24);
    expect(getPdUpper(page)).toBe(8176);
    expect(getPdSpecial(page)).toBe(8176);
    expect(getPdPageSizeVersion(page)).toBe(0x2004);
    expect(pageGetSpecial(page).length).toBe(16);
    expect(page.subarray(24, 8176).every((b) => b === 0)).toBe(true);
    expect(isNewPage(page)).toBe(false);
    expect(isNewPage(Buffer.alloc(8192))).toBe(true);
  });

  it("stores pd_lsn as xlogid then xrecoff", () => {
    const page = freshPage();
    setPageLsn(page, 0x12345678_9abcdef0n);
    expect([...page.subarray(0, 8)]).toEqual([0x78, 0x56, 0x34, 0x12, 0xf0, 0xde, 0xbc, 0x9a]);
    expect(getPageLsn(page)).toBe(0x12345678_9abcdef0n);
  });

  it("reads, writes and compares page LSNs exactly on both sides of 2^53", () => {
    const page = freshPage();
    for (const lsn of [0n, 0x1_0000_0000n, 0x1f_ffff_ffff_fff0n, 0x20_0000_0000_0000n, 0x20_0000_0000_0001n, 0xffff_ffff_ffff_fff8n]) {
      setPageLsn(page, lsn);
      expect(getPageLsn(page)).toBe(lsn);
      expect(pageLsnAtLeast(page, lsn)).toBe(true);
      expect(pageLsnAtLeast(page, lsn + 1n)).toBe(false);
      if (lsn > 0n) expect(pageLsnAtLeast(page, lsn - 1n)).toBe(true);
    }
  });

  it("MAXALIGNs to 8", () => {
    expect([0, 1, 8, 23, 24].map(maxAlign)).toEqual([0, 8, 8, 24, 24]);
  });
});

describe("pageAddItem", () => {
  it("appends items downward from pd_special with unaligned lp_len", () => {
    const page = freshPage(16);
    expect(pageAddItem(page, item(10, 1), InvalidOffsetNumber)).toBe(1);
    expect(pageAddItem(page, item(30, 2), InvalidOffsetNumber)).toBe(2);
    expect(lp(page, 1)).toEqual([8160, LP_NORMAL, 10]);
    expect(lp(page, 2)).toEqual([8128, LP_NORMAL, 30]);
    expect(getPdLower(page)).toBe(32);
    expect(getPdUpper(page)).toBe(8128);
    expect(getItem(page, 2).equals(item(30, 2))).toBe(true);
    expect(maxOffsetNumber(page)).toBe(2);
  });

  it("overwrite mode refuses a used slot and reuses an unused one without growing pd_lower", () => {
    const page = freshPage();
    pageAddItem(page, item(8, 1), 1, { overwrite: true, isHeap: true });
    pageAddItem(page, item(8, 2), 2, { overwrite: true, isHeap: true });
    expect(pageAddItem(page, item(8, 3), 1, { overwrite: true })).toBe(InvalidOffsetNumber);
    expect(pageAddItem(page, item(8, 3), 4, { overwrite: true })).toBe(InvalidOffsetNumber); // beyond maxoff+1
    itemIdSetUnused(page, 1);
    expect(pageAddItem(page, item(8, 3), 1, { overwrite: true })).toBe(1);
    expect(getPdLower(page)).toBe(32);
    expect(lp(page, 1)).toEqual([8168, LP_NORMAL, 8]);
  });

  it("finds the first free line pointer only when PD_HAS_FREE_LINES is set", () => {
    const page = freshPage();
    for (let i = 0; i < 3; i++) pageAddItem(page, item(8, i + 1), InvalidOffsetNumber);
    itemIdSetUnused(page, 2);
    expect(pageAddItem(page, item(8, 9), InvalidOffsetNumber)).toBe(4); // no hint: append
    pageSetHasFreeLinePointers(page);
    expect(pageAddItem(page, item(8, 9), InvalidOffsetNumber)).toBe(2);
    // hint now stale: the scan finds nothing, clears it and appends
    expect(pageAddItem(page, item(8, 9), InvalidOffsetNumber)).toBe(5);
    expect(getPdFlags(page) & PD_HAS_FREE_LINES).toBe(0);
  });

  it("shifts later line pointers when inserting inside the array without overwrite", () => {
    const page = freshPage();
    pageAddItem(page, item(8, 1), InvalidOffsetNumber);
    pageAddItem(page, item(8, 2), InvalidOffsetNumber);
    expect(pageAddItem(page, item(16, 3), 1)).toBe(1);
    expect(lp(page, 1)).toEqual([8160, LP_NORMAL, 16]);
    expect(lp(page, 2)).toEqual([8184, LP_NORMAL, 8]);
    expect(lp(page, 3)).toEqual([8176, LP_NORMAL, 8]);
  });

  it("enforces MaxHeapTuplesPerPage for heap pages and refuses items that do not fit", () => {
    const page = freshPage();
    for (let i = 1; i <= 291; i++) expect(pageAddItem(page, Buffer.alloc(0), i, { overwrite: true, isHeap: true })).toBe(i);
    expect(pageAddItem(page, Buffer.alloc(0), 292, { overwrite: true, isHeap: true })).toBe(InvalidOffsetNumber);
    const small = freshPage();
    expect(pageAddItem(small, item(8161, 1), InvalidOffsetNumber)).toBe(InvalidOffsetNumber); // MAXALIGN 8168 > 8164
    expect(pageAddItem(small, item(8160, 1), InvalidOffsetNumber)).toBe(1);
  });
});

describe("heap compaction", () => {
  it("repairs fragmentation in line-pointer order and keeps dead/redirect pointers", () => {
    const page = freshPage();
    for (let i = 1; i <= 5; i++) pageAddItem(page, item(16, i), i, { overwrite: true, isHeap: true });
    // data: 1@8176 2@8160 3@8144 4@8128 5@8112
    itemIdSetUnused(page, 2);
    itemIdSetDead(page, 4);
    itemIdSetRedirect(page, 1, 3);
    pageRepairFragmentation(page);
    expect(lp(page, 1)).toEqual([3, LP_REDIRECT, 0]);
    expect(lp(page, 2)).toEqual([0, LP_UNUSED, 0]);
    expect(lp(page, 3)).toEqual([8176, LP_NORMAL, 16]);
    expect(lp(page, 4)).toEqual([0, LP_DEAD, 0]);
    expect(lp(page, 5)).toEqual([8160, LP_NORMAL, 16]);
    expect(getItem(page, 3).equals(item(16, 3))).toBe(true);
    expect(getItem(page, 5).equals(item(16, 5))).toBe(true);
    expect(getPdUpper(page)).toBe(8160);
    expect(getPdLower(page)).toBe(44);
    expect(getPdFlags(page) & PD_HAS_FREE_LINES).toBe(PD_HAS_FREE_LINES);
  });

  it("reorders non-presorted tuples back into reverse line-pointer order, padding included", () => {
    const page = freshPage();
    pageAddItem(page, item(12, 1), 1, { overwrite: true }); // 8176
    pageAddItem(page, item(12, 2), 2, { overwrite: true }); // 8160
    itemIdSetUnused(page, 1);
    page.fill(0xee, 8188, 8192); // padding garbage of the removed item stays behind
    page.fill(0x77, 8172, 8176); // padding of item 2 travels with it
    pageAddItem(page, item(12, 3), 1, { overwrite: true }); // 8144: item 1 now below item 2
    pageAddItem(page, item(12, 4), 3, { overwrite: true }); // 8128
    itemIdSetUnused(page, 3);
    pageRepairFragmentation(page);
    expect(lp(page, 1)).toEqual([8176, LP_NORMAL, 12]);
    expect(lp(page, 2)).toEqual([8160, LP_NORMAL, 12]);
    expect(getItem(page, 1).equals(item(12, 3))).toBe(true);
    expect(getItem(page, 2).equals(item(12, 2))).toBe(true);
    expect([...page.subarray(8172, 8176)]).toEqual([0x77, 0x77, 0x77, 0x77]);
    expect(getPdLower(page)).toBe(32); // trailing unused pointer 3 truncated
    expect(getPdFlags(page) & PD_HAS_FREE_LINES).toBe(0);
  });

  it("empties the tuple space when nothing has storage", () => {
    const page = freshPage();
    pageAddItem(page, item(16, 1), 1, { overwrite: true });
    itemIdSetDead(page, 1);
    pageRepairFragmentation(page);
    expect(getPdUpper(page)).toBe(8192);
    expect(getPdLower(page)).toBe(28);
  });

  it("truncates trailing unused line pointers but keeps one", () => {
    const page = freshPage();
    for (let i = 1; i <= 4; i++) pageAddItem(page, item(8, i), i, { overwrite: true });
    for (const i of [1, 2, 3, 4]) itemIdSetUnused(page, i);
    pageTruncateLinePointerArray(page);
    expect(getPdLower(page)).toBe(28);
    expect(getPdFlags(page) & PD_HAS_FREE_LINES).toBe(PD_HAS_FREE_LINES); // the kept pointer is unused

    const other = freshPage();
    for (let i = 1; i <= 4; i++) pageAddItem(other, item(8, i), i, { overwrite: true });
    itemIdSetUnused(other, 1);
    itemIdSetUnused(other, 4);
    pageTruncateLinePointerArray(other);
    expect(getPdLower(other)).toBe(36);
    expect(getPdFlags(other) & PD_HAS_FREE_LINES).toBe(PD_HAS_FREE_LINES);
  });
});

describe("index item removal", () => {
  function indexPage(): Buffer {
    const page = freshPage(16);
    pageAddItem(page, item(8, 1), InvalidOffsetNumber); // 8168
    pageAddItem(page, item(16, 2), InvalidOffsetNumber); // 8152
    pageAddItem(page, item(8, 3), InvalidOffsetNumber); // 8144
    pageAddItem(page, item(12, 4), InvalidOffsetNumber); // 8128
    return page;
  }

  it("deletes one item, renumbering later pointers and closing the gap", () => {
    const page = indexPage();
    pageIndexTupleDelete(page, 2);
    expect(maxOffsetNumber(page)).toBe(3);
    expect(lp(page, 1)).toEqual([8168, LP_NORMAL, 8]);
    expect(lp(page, 2)).toEqual([8160, LP_NORMAL, 8]);
    expect(lp(page, 3)).toEqual([8144, LP_NORMAL, 12]);
    expect(getItem(page, 2).equals(item(8, 3))).toBe(true);
    expect(getItem(page, 3).equals(item(12, 4))).toBe(true);
    expect(getPdUpper(page)).toBe(8144);
  });

  it("multi-deletes by compacting in line-pointer order", () => {
    const page = indexPage();
    pageAddItem(page, item(8, 5), InvalidOffsetNumber); // 8120
    pageIndexMultiDelete(page, [1, 3, 4]);
    expect(maxOffsetNumber(page)).toBe(2);
    expect(lp(page, 1)).toEqual([8160, LP_NORMAL, 16]);
    expect(lp(page, 2)).toEqual([8152, LP_NORMAL, 8]);
    expect(getItem(page, 1).equals(item(16, 2))).toBe(true);
    expect(getItem(page, 2).equals(item(8, 5))).toBe(true);
    expect(getPdUpper(page)).toBe(8152);
    expect(getPdLower(page)).toBe(32);
  });

  it("deletes without compaction, leaving an unused pointer unless it is the last", () => {
    const page = indexPage();
    pageIndexTupleDeleteNoCompact(page, 2);
    expect(maxOffsetNumber(page)).toBe(4);
    expect(lp(page, 2)).toEqual([0, LP_UNUSED, 0]);
    expect(lp(page, 3)).toEqual([8160, LP_NORMAL, 8]);
    expect(lp(page, 4)).toEqual([8144, LP_NORMAL, 12]);
    pageIndexTupleDeleteNoCompact(page, 4);
    expect(maxOffsetNumber(page)).toBe(3);
    expect(getPdUpper(page)).toBe(8160);
  });

  it("overwrites an item in place, shifting the data below it", () => {
    const page = indexPage();
    expect(pageIndexTupleOverwrite(page, 2, item(24, 9))).toBe(true);
    expect(lp(page, 2)).toEqual([8144, LP_NORMAL, 24]);
    expect(lp(page, 3)).toEqual([8136, LP_NORMAL, 8]);
    expect(lp(page, 4)).toEqual([8120, LP_NORMAL, 12]);
    expect(getItem(page, 2).equals(item(24, 9))).toBe(true);
    expect(getItem(page, 4).equals(item(12, 4))).toBe(true);
    expect(getPdUpper(page)).toBe(8120);
    expect(pageIndexTupleOverwrite(page, 1, item(9000, 1))).toBe(false);
  });
});

describe("free space", () => {
  it("computes free space as PostgreSQL does", () => {
    const page = freshPage();
    expect(pageGetExactFreeSpace(page)).toBe(8168);
    expect(pageGetFreeSpace(page)).toBe(8164);
    expect(pageGetHeapFreeSpace(page)).toBe(8164);
    for (let i = 1; i <= 291; i++) pageAddItem(page, Buffer.alloc(0), i, { overwrite: true, isHeap: true });
    expect(pageGetFreeSpace(page)).toBeGreaterThan(0);
    expect(pageGetHeapFreeSpace(page)).toBe(0);
    itemIdSetUnused(page, 7);
    pageSetHasFreeLinePointers(page);
    expect(pageGetHeapFreeSpace(page)).toBe(pageGetFreeSpace(page));
  });
});
