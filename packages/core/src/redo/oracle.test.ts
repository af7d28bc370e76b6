import { describe, expect, it } from "vitest";
import { bitsContained } from "./oracle.ts";

describe("on-disk visibility-map differences", () => {
  it("tells a page that only lacks bits the file has from one with bits of its own", () => {
    const theirs = Buffer.alloc(64);
    theirs[30] = 0b1111_0011;
    const fewer = Buffer.alloc(64);
    fewer[30] = 0b0011_0000;
    expect(bitsContained(fewer, theirs)).toBe(true);
    expect(bitsContained(Buffer.alloc(64), theirs)).toBe(true);
    const extra = Buffer.from(fewer);
    extra[31] = 0b0000_0001; // a bit the file does not have
    expect(bitsContained(extra, theirs)).toBe(false);
    const other = Buffer.alloc(64);
    other[30] = 0b0000_0100;
    expect(bitsContained(other, theirs)).toBe(false);
  });
});
