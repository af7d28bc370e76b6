import { describe, expect, it } from "vitest";
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { gistRedoAfterImage, gistRmgr } from "./gist.ts";
import { getItem, maxOffsetNumber, pageInit } from "./page.ts";

const F_LEAF = 1;
const F_FOLLOW_RIGHT = 8;
const SPECIAL = 8192 - 16;

function record(info: number, mainData: Buffer, blocks: Partial<BlockRef>[]): DecodedRecord {
  return { info, lsn: 0x1_0000_1000n, endLsn: 0x1_0000_2000n, mainData, blocks: blocks as BlockRef[] } as DecodedRecord;
}

function gistPage(flags: number): Buffer {
  const page = Buffer.alloc(8192);
  pageInit(page, 16);
  page.writeUInt32LE(0xffffffff, SPECIAL + 8);
  page.writeUInt16LE(flags, SPECIAL + 12);
  page.writeUInt16LE(0xff81, SPECIAL + 14);
  return page;
}

/** an index tuple of `size` bytes: heap TID, t_info = size, then filler */
function indexTuple(size: number, fill: number): Buffer {
  const t = Buffer.alloc(size, fill);
  t.writeUInt16LE(size, 6);
  return t;
}

/** gistxlogPageSplit main data */
function splitHeader(origrlink: number, orignsn: bigint, origleaf: boolean, npage: number, markFollowRight: boolean): Buffer {
  const main = Buffer.alloc(24);
  main.writeUInt32LE(origrlink, 0);
  main.writeBigUInt64LE(orignsn, 8);
  main[16] = origleaf ? 1 : 0;
  main.writeUInt16LE(npage, 18);
  main[20] = markFollowRight ? 1 : 0;
  return main;
}

function splitData(tuples: Buffer[]): Buffer {
  const n = Buffer.alloc(4);
  n.writeInt32LE(tuples.length, 0);
  return Buffer.concat([n, ...tuples]);
}

describe("GiST redo", () => {
  it("clears F_FOLLOW_RIGHT and stamps the NSN on a left child restored from a full-page image", () => {
    for (const [info, id] of [[0x00, 1], [0x30, 0]]) {
      const page = gistPage(F_LEAF | F_FOLLOW_RIGHT);
      gistRedoAfterImage(page, record(info, Buffer.alloc(24), [{ id }]), { id } as BlockRef);
      expect(page.readUInt16LE(SPECIAL + 12)).toBe(F_LEAF);
      expect(page.readUInt32LE(SPECIAL)).toBe(1); // NSN = record end, stored high half first
      expect(page.readUInt32LE(SPECIAL + 4)).toBe(0x2000);
    }
  });

  it("leaves restored images of the other blocks as they are", () => {
    const page = gistPage(F_LEAF | F_FOLLOW_RIGHT);
    const before = Buffer.from(page);
    gistRedoAfterImage(page, record(0x00, Buffer.alloc(4), [{ id: 0 }]), { id: 0 } as BlockRef);
    gistRedoAfterImage(page, record(0x30, Buffer.alloc(24), [{ id: 1 }]), { id: 1 } as BlockRef);
    expect(page.equals(before)).toBe(true);
  });

  it("rebuilds a split root as an internal page without rightlink or follow-right", () => {
    const main = splitHeader(0xffffffff, 77n, true, 3, true);
    const blocks = [{ id: 1, blockNumber: 0 }, { id: 2, blockNumber: 5 }, { id: 3, blockNumber: 6 }];
    const data = splitData([indexTuple(16, 1), indexTuple(24, 2)]);
    const page = Buffer.alloc(8192);
    gistRmgr.redo(page, record(0x30, main, blocks), { id: 1, blockNumber: 0, data } as BlockRef);
    expect(page.readUInt16LE(SPECIAL + 12)).toBe(0);
    expect(page.readUInt32LE(SPECIAL + 8)).toBe(0xffffffff);
    expect(page.readUInt32LE(SPECIAL + 4)).toBe(77);
    expect(maxOffsetNumber(page)).toBe(2);
    expect(getItem(page, 2).length).toBe(24);
  });

  it("links split halves left to right, marking all but the last to follow right", () => {
    const main = splitHeader(42, 0n, true, 2, true);
    const blocks = [{ id: 1, blockNumber: 7 }, { id: 2, blockNumber: 9 }];
    const left = Buffer.alloc(8192);
    const right = Buffer.alloc(8192);
    const rec = record(0x30, main, blocks);
    gistRmgr.redo(left, rec, { id: 1, blockNumber: 7, data: splitData([indexTuple(16, 1)]) } as BlockRef);
    gistRmgr.redo(right, rec, { id: 2, blockNumber: 9, data: splitData([indexTuple(16, 2)]) } as BlockRef);
    expect(left.readUInt32LE(SPECIAL + 8)).toBe(9);
    expect(left.readUInt16LE(SPECIAL + 12)).toBe(F_LEAF | F_FOLLOW_RIGHT);
    expect(right.readUInt32LE(SPECIAL + 8)).toBe(42);
    expect(right.readUInt16LE(SPECIAL + 12)).toBe(F_LEAF);
  });
});
