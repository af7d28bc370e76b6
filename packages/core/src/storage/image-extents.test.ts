import { describe, expect, it } from "vitest";
import { ForkNumber } from "../reltag.ts";
import { ImageExtentIndex } from "./image-extents.ts";
import { imageExtentKey, storeKey } from "./keys.ts";
import { imageExtentValue, imageRefValue } from "./values.ts";

const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };
const other = { spcNode: 1663, dbNode: 5, relNode: 16385 };

function extent(r: typeof rel, fork: ForkNumber, firstBlock: number, blocks: number, lsn: bigint, file: number, offset: number): [Buffer, Buffer] {
  return [storeKey(imageExtentKey(r, fork, firstBlock), lsn), imageExtentValue({ file, offset, length: blocks * 8192 })];
}

describe("image extent index", () => {
  it("finds the extent holding a block and where that block's page is, per relation fork", () => {
    const index = new ImageExtentIndex([
      extent(rel, ForkNumber.Main, 0, 128, 0x100n, 1, 0),
      extent(rel, ForkNumber.Main, 128, 3, 0x100n, 1, 128 * 8192),
      extent(rel, ForkNumber.Fsm, 0, 3, 0x100n, 1, 131 * 8192),
      extent(other, ForkNumber.Main, 0, 1, 0x100n, 2, 0),
    ]);
    expect(index.size).toBe(4);
    expect(index.overlapping).toBe(false);
    for (const [block, offset] of [[0, 0], [127, 127], [128, 128], [130, 130]]) {
      const found = index.find(rel, ForkNumber.Main, block, 0x100n)!;
      expect(ImageExtentIndex.pageRef(found, block), `block ${block}`).toEqual({ file: 1, offset: offset * 8192, length: 8192 });
    }
    expect(index.find(rel, ForkNumber.Main, 131, 0x100n)).toBeUndefined();
    expect(ImageExtentIndex.pageRef(index.find(rel, ForkNumber.Fsm, 2, 0x200n)!, 2)).toEqual({ file: 1, offset: 133 * 8192, length: 8192 });
    expect(index.find(rel, ForkNumber.VisibilityMap, 0, 0x200n)).toBeUndefined();
    expect(ImageExtentIndex.pageRef(index.find(other, ForkNumber.Main, 0, 0x100n)!, 0)).toEqual({ file: 2, offset: 0, length: 8192 });
    expect(index.find({ ...rel, dbNode: 6 }, ForkNumber.Main, 0, 0x100n)).toBeUndefined();
  });

  it("hides extents above the LSN, and the newest visible one wins where extents overlap", () => {
    const index = new ImageExtentIndex([extent(rel, ForkNumber.Main, 0, 10, 0x100n, 1, 0), extent(rel, ForkNumber.Main, 4, 2, 0x300n, 1, 10 * 8192)]);
    expect(index.overlapping).toBe(true);
    expect(index.find(rel, ForkNumber.Main, 5, 0xffn)).toBeUndefined();
    expect(index.find(rel, ForkNumber.Main, 5, 0x2ffn)!.lsn).toBe(0x100n);
    expect(index.find(rel, ForkNumber.Main, 5, 0x300n)!.lsn).toBe(0x300n);
    expect(ImageExtentIndex.pageRef(index.find(rel, ForkNumber.Main, 5, 0x300n)!, 5).offset).toBe(11 * 8192);
    // past the newer extent, the older one still holds the block
    expect(index.find(rel, ForkNumber.Main, 6, 0x300n)!.lsn).toBe(0x100n);
    expect(index.find(rel, ForkNumber.Main, 9, 0x300n)!.lsn).toBe(0x100n);
  });

  it("refuses a value that is not an image extent or does not hold whole pages", () => {
    const key = storeKey(imageExtentKey(rel, ForkNumber.Main, 0), 0x100n);
    expect(() => new ImageExtentIndex([[key, imageRefValue({ file: 1, offset: 0, length: 8192 })]])).toThrow(/kind 6 under an image extent key/);
    expect(() => new ImageExtentIndex([[key, imageExtentValue({ file: 1, offset: 0, length: 8191 })]])).toThrow(/image extent of 8191 bytes/);
  });
});
