import { describe, expect, it } from "vitest";
import { type BlockRef, type DecodedRecord, makeBlockRef, makeRecord } from "../wal/record.ts";
import { heapMask, heapRmgr } from "./heap.ts";
import { heap2Rmgr } from "./heap2.ts";
import {
  getItem,
  getPdFlags,
  getPdLower,
  getPdPruneXid,
  getPdUpper,
  itemIdGetFlags,
  itemIdGetLength,
  itemIdGetOffset,
  LP_DEAD,
  LP_NORMAL,
  LP_REDIRECT,
  LP_UNUSED,
  maxOffsetNumber,
  PD_ALL_VISIBLE,
  pageInit,
  pageSetAllVisible,
} from "./page.ts";
import { RedoError } from "./types.ts";

const REL = { spcNode: 1663, dbNode: 5, relNode: 16384 };

function block(id: number, blockNumber: number, data: Buffer = Buffer.alloc(0), forkNum = 0): BlockRef {
  return makeBlockRef({ id, rel: REL, forkNum: forkNum as BlockRef["forkNum"], blockNumber, willInit: false, hasImage: false, applyImage: false, hasData: data.length > 0, data });
}

function record(rmid: number, info: number, mainData: Buffer, blocks: BlockRef[], xid = 1000): DecodedRecord {
  return makeRecord({ lsn: 0x1000000n, endLsn: 0x1000100n, totalLength: 0, xid, info, rmid, blocks, mainData });
}

function bytes(...parts: Array<[number, "u8" | "u16" | "u32"] | Buffer>): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    if (Buffer.isBuffer(p)) out.push(p);
    else {
      const b = Buffer.alloc(p[1] === "u8" ? 1 : p[1] === "u16" ? 2 : 4);
      if (p[1] === "u8") b.writeUInt8(p[0]);
      else if (p[1] === "u16") b.writeUInt16LE(p[0]);
      else b.writeUInt32LE(p[0]);
      out.push(b);
    }
  }
  return Buffer.concat(out);
}

/** xl_heap_header + tuple body (no null bitmap: t_hoff = 24, one pad byte) */
function insertData(body: string, infomask = 0x0802, natts = 2): Buffer {
  return bytes([natts, "u16"], [infomask, "u16"], [24, "u8"], Buffer.from([0]), Buffer.from(body));
}

function newHeapPage(): Buffer {
  const page = Buffer.alloc(8192);
  pageInit(page, 0);
  return page;
}

function insert(page: Buffer, offnum: number, body: string, blockNumber = 0, xid = 1000): void {
  heapRmgr.redo(page, record(10, 0x00, bytes([offnum, "u16"], [0, "u8"]), [block(0, blockNumber, insertData(body))], xid), block(0, blockNumber, insertData(body)));
}

function tupleAt(page: Buffer, offnum: number): Buffer {
  return getItem(page, offnum);
}

describe("Heap redo", () => {
  it("inserts a tuple with xmin, cmin 0 and self ctid, on a page it initializes", () => {
    const page = Buffer.alloc(8192);
    const b = block(0, 7, insertData("hello"));
    b.willInit = true;
    heapRmgr.redo(page, record(10, 0x80, bytes([1, "u16"], [0, "u8"]), [b], 4242), b);
    expect(maxOffsetNumber(page)).toBe(1);
    expect(itemIdGetLength(page, 1)).toBe(23 + 1 + 5);
    expect(itemIdGetOffset(page, 1)).toBe(8192 - 32);
    const t = tupleAt(page, 1);
    expect(t.readUInt32LE(0)).toBe(4242);
    expect(t.readUInt32LE(4)).toBe(0);
    expect(t.readUInt32LE(8)).toBe(0);
    expect([t.readUInt16LE(12), t.readUInt16LE(14), t.readUInt16LE(16)]).toEqual([0, 7, 1]);
    expect(t[22]).toBe(24);
    expect(t.subarray(24).toString()).toBe("hello");
  });

  it("deletes: xmax and infobits set, HOT flag cleared, page prunable, all-visible cleared", () => {
    const page = newHeapPage();
    insert(page, 1, "row");
    pageSetAllVisible(page);
    const t = tupleAt(page, 1);
    t.writeUInt16LE(t.readUInt16LE(18) | 0x4000, 18);
    // xl_heap_delete {xmax, offnum, infobits_set = KEYS_UPDATED, flags = ALL_VISIBLE_CLEARED}
    const main = bytes([2000, "u32"], [1, "u16"], [0x10, "u8"], [0x01, "u8"]);
    heapRmgr.redo(page, record(10, 0x10, main, [block(0, 0)], 2000), block(0, 0));
    expect(t.readUInt32LE(4)).toBe(2000);
    expect(t.readUInt16LE(18)).toBe(0x2000 | 2);
    expect(t.readUInt16LE(20) & 0x0800).toBe(0); // XMAX_INVALID cleared
    expect(getPdPruneXid(page)).toBe(2000);
    expect(getPdFlags(page) & PD_ALL_VISIBLE).toBe(0);
  });

  it("marks a cross-partition move with the moved-partitions ctid", () => {
    const page = newHeapPage();
    insert(page, 1, "row");
    heapRmgr.redo(page, record(10, 0x10, bytes([2000, "u32"], [1, "u16"], [0, "u8"], [0x10, "u8"]), [block(0, 0)]), block(0, 0));
    const t = tupleAt(page, 1);
    expect([t.readUInt16LE(12), t.readUInt16LE(14), t.readUInt16LE(16)]).toEqual([0xffff, 0xffff, 0xfffd]);
  });

  it("kills a speculatively inserted tuple (super-delete) by clearing its xmin", () => {
    const page = newHeapPage();
    insert(page, 1, "spec");
    heapRmgr.redo(page, record(10, 0x10, bytes([0, "u32"], [1, "u16"], [0, "u8"], [0x08, "u8"]), [block(0, 0)]), block(0, 0));
    const t = tupleAt(page, 1);
    expect(t.readUInt32LE(0)).toBe(0);
    expect(t.readUInt32LE(4)).toBe(0);
  });

  it("replays a HOT update on one page, rebuilding the new tuple from the old one's prefix and suffix", () => {
    const page = newHeapPage();
    insert(page, 1, "AAAA-middle-ZZZZ");
    // xl_heap_update {old_xmax, old_offnum, old_infobits, flags = PREFIX|SUFFIX, new_xmax, new_offnum}
    const main = bytes([3000, "u32"], [1, "u16"], [0, "u8"], [0x60, "u8"], [0, "u32"], [2, "u16"]);
    // prefixlen 5 ("\0AAAA" counts from t_hoff: "AAAA-"), suffixlen 5 ("-ZZZZ")
    const data = bytes([4, "u16"], [5, "u16"], [2 | 0x8000, "u16"], [0x2802, "u16"], [24, "u8"], Buffer.from([0]), Buffer.from("-CENTER"));
    const b0 = block(0, 3, data);
    heapRmgr.redo(page, record(10, 0x40, main, [b0], 3000), b0);
    const oldT = tupleAt(page, 1);
    expect(oldT.readUInt32LE(4)).toBe(3000);
    expect(oldT.readUInt16LE(18) & 0x4000).toBe(0x4000);
    expect([oldT.readUInt16LE(14), oldT.readUInt16LE(16)]).toEqual([3, 2]);
    const newT = tupleAt(page, 2);
    expect(newT.subarray(24).toString()).toBe("AAAA-CENTER-ZZZZ");
    expect(newT.readUInt32LE(0)).toBe(3000);
    expect(newT.readUInt16LE(18)).toBe(2 | 0x8000);
    expect([newT.readUInt16LE(14), newT.readUInt16LE(16)]).toEqual([3, 2]);
  });

  it("applies a cross-page update per block: old version on block 1, new version on block 0", () => {
    const oldPage = newHeapPage();
    insert(oldPage, 1, "old", 9);
    const newPage = Buffer.alloc(8192);
    const main = bytes([3000, "u32"], [1, "u16"], [0, "u8"], [0x01, "u8"], [0, "u32"], [1, "u16"]);
    const b0 = block(0, 12, insertData("new"));
    b0.willInit = true;
    const b1 = block(1, 9);
    const rec = record(10, 0xa0, main, [b0, b1], 3000);
    pageSetAllVisible(oldPage);
    heapRmgr.redo(oldPage, rec, b1);
    heapRmgr.redo(newPage, rec, b0);
    const oldT = tupleAt(oldPage, 1);
    expect([oldT.readUInt16LE(14), oldT.readUInt16LE(16)]).toEqual([12, 1]);
    expect(getPdFlags(oldPage) & PD_ALL_VISIBLE).toBe(0);
    expect(maxOffsetNumber(oldPage)).toBe(1);
    expect(tupleAt(newPage, 1).subarray(24).toString()).toBe("new");
  });

  it("locks: lock-only xmax keeps the tuple's own ctid and clears HOT_UPDATED", () => {
    const page = newHeapPage();
    insert(page, 1, "row");
    const t = tupleAt(page, 1);
    t.writeUInt16LE(t.readUInt16LE(18) | 0x4000, 18);
    t.writeUInt16LE(5, 16);
    // xl_heap_lock {xid, offnum, infobits = LOCK_ONLY|EXCL_LOCK, flags}
    heapRmgr.redo(page, record(10, 0x60, bytes([77, "u32"], [1, "u16"], [0x06, "u8"], [0, "u8"]), [block(0, 0)]), block(0, 0));
    expect(t.readUInt32LE(4)).toBe(77);
    expect(t.readUInt16LE(20) & 0x00c0).toBe(0x00c0);
    expect(t.readUInt16LE(18) & 0x4000).toBe(0);
    expect(t.readUInt16LE(16)).toBe(1);
  });

  it("refuses a record whose tuple is not on the page", () => {
    const page = newHeapPage();
    expect(() => heapRmgr.redo(page, record(10, 0x10, bytes([1, "u32"], [3, "u16"], [0, "u8"], [0, "u8"]), [block(0, 0)]), block(0, 0))).toThrow(RedoError);
  });

  it("masks hint bits, cid, speculative tokens and padding", () => {
    const page = newHeapPage();
    insert(page, 1, "abc");
    const t = tupleAt(page, 1);
    t.writeUInt16LE(0x0902, 20);
    t.writeUInt32LE(5, 8);
    t.writeUInt16LE(0xfffe, 16);
    page.fill(0xee, itemIdGetOffset(page, 1) + itemIdGetLength(page, 1), 8192);
    heapMask(page, 3);
    expect(t.readUInt16LE(20)).toBe(0x0002);
    expect(t.readUInt32LE(8)).toBe(0);
    expect([t.readUInt16LE(14), t.readUInt16LE(16)]).toEqual([3, 1]);
    expect(page.subarray(8192 - 8 + 3, 8192).every((x) => x === 0)).toBe(true);
  });
});

describe("Heap2 redo", () => {
  it("prunes: redirect, dead and unused pointers, then compacts the page", () => {
    const page = newHeapPage();
    for (let i = 1; i <= 4; i++) insert(page, i, `tuple-${i}`);
    const data = bytes([1, "u16"], [3, "u16"], [2, "u16"], [4, "u16"]);
    const b = block(0, 0, data);
    heap2Rmgr.redo(page, record(9, 0x10, bytes([0, "u32"], [1, "u16"], [1, "u16"]), [b]), b);
    expect([itemIdGetFlags(page, 1), itemIdGetOffset(page, 1)]).toEqual([LP_REDIRECT, 3]);
    expect(itemIdGetFlags(page, 2)).toBe(LP_DEAD);
    expect([itemIdGetFlags(page, 3), itemIdGetOffset(page, 3)]).toEqual([LP_NORMAL, 8192 - 32]);
    expect(maxOffsetNumber(page)).toBe(3);
    expect(tupleAt(page, 3).subarray(24).toString()).toBe("tuple-3");
  });

  it("vacuums dead pointers to unused and truncates the array", () => {
    const page = newHeapPage();
    for (let i = 1; i <= 3; i++) insert(page, i, "x");
    const prune = block(0, 0, bytes([2, "u16"], [3, "u16"]));
    heap2Rmgr.redo(page, record(9, 0x10, bytes([0, "u32"], [0, "u16"], [2, "u16"]), [prune]), prune);
    const vac = block(0, 0, bytes([2, "u16"], [3, "u16"]));
    heap2Rmgr.redo(page, record(9, 0x20, bytes([2, "u16"]), [vac]), vac);
    expect(maxOffsetNumber(page)).toBe(1);
    expect(getPdLower(page)).toBe(28);
  });

  it("freezes tuples with the logged infomasks and xvac", () => {
    const page = newHeapPage();
    insert(page, 1, "x");
    const frz = bytes([0, "u32"], [1, "u16"], [2, "u16"], [0x0b02, "u16"], [0x02, "u8"], [0, "u8"]);
    const b = block(0, 0, frz);
    heap2Rmgr.redo(page, record(9, 0x30, bytes([500, "u32"], [1, "u16"]), [b]), b);
    const t = tupleAt(page, 1);
    expect(t.readUInt16LE(20)).toBe(0x0b02);
    expect(t.readUInt32LE(8)).toBe(2);
  });

  it("sets visibility: heap page flag with a new LSN only when hint bits are logged, VM bits only when they change", () => {
    const heap = newHeapPage();
    const vm = Buffer.alloc(8192);
    const b0 = block(0, 0, Buffer.alloc(0), 2);
    const b1 = block(1, 5);
    const rec = record(9, 0x40, bytes([100, "u32"], [0x03, "u8"]), [b0, b1]);
    expect(heap2Rmgr.redo(heap, rec, b1)).toBe("hint-lsn");
    expect(getPdFlags(heap) & PD_ALL_VISIBLE).toBe(PD_ALL_VISIBLE);
    expect(heap2Rmgr.redo(vm, rec, b0)).toBeUndefined();
    expect(getPdUpper(vm)).toBe(8192);
    expect(vm[24 + 1]).toBe(0x03 << 2);
    expect(heap2Rmgr.redo(vm, rec, b0)).toBe("keep-lsn");
  });

  it("multi-inserts SHORTALIGNed tuples at offsets 1..n on an initialized page", () => {
    const tuple = (body: string) => bytes([1 + body.length, "u16"], [1, "u16"], [0x0800, "u16"], [24, "u8"], Buffer.from([0]), Buffer.from(body));
    const t1 = tuple("abc"); // 7 + 4 = 11 bytes: the next header starts at 12
    const data = Buffer.concat([t1, Buffer.alloc(1), tuple("defgh")]);
    const page = Buffer.alloc(8192);
    const b = block(0, 2, data);
    heap2Rmgr.redo(page, record(9, 0xd0, bytes([0x20, "u8"], [0, "u8"], [2, "u16"]), [b], 555), b);
    expect(maxOffsetNumber(page)).toBe(2);
    expect(tupleAt(page, 2).subarray(24).toString()).toBe("defgh");
    expect(tupleAt(page, 2).readUInt32LE(0)).toBe(555);
    expect(getPdFlags(page) & PD_ALL_VISIBLE).toBe(PD_ALL_VISIBLE);
    expect(itemIdGetFlags(page, 1)).not.toBe(LP_UNUSED);
  });
});
