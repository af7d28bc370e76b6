import { describe, expect, it } from "vitest";
import { ENTITY_KEY_LENGTH, KeySpace, storeKeyOf, writeLsnBE } from "./keys.ts";

describe("writeLsnBE", () => {
  it("writes every LSN as the same 8 bytes as writeBigUInt64BE, across the 2^32 and 2^53 boundaries and in any order", () => {
    const lsns = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, 0x1_0000_0001n, 0x3_0000_0028n, 0x1f_ffff_ffff_fffen, 0x1f_ffff_ffff_ffffn, 0x20_0000_0000_0000n, 0x20_0000_0000_0001n, 0xfedc_ba98_7654_3210n, 0xffff_ffff_ffff_ffffn];
    // repeated and interleaved, so remembered LSNs are checked too
    for (const lsn of [...lsns, ...lsns.reverse(), ...lsns.flatMap((l) => [l, 0x77n, l])]) {
      const expected = Buffer.alloc(8);
      expected.writeBigUInt64BE(lsn);
      const out = Buffer.alloc(10, 0xaa);
      writeLsnBE(out, 1, lsn);
      expect(out.subarray(1, 9).toString("hex"), `LSN ${lsn.toString(16)}`).toBe(expected.toString("hex"));
      expect(out[0]).toBe(0xaa);
      expect(out[9]).toBe(0xaa);
      expect(storeKeyOf(KeySpace.RelBlock, 1, 2, 3, 0, 4, lsn).readBigUInt64BE(ENTITY_KEY_LENGTH)).toBe(lsn);
    }
  });

  it("refuses an LSN outside 64 bits", () => {
    expect(() => writeLsnBE(Buffer.alloc(8), 0, -1n)).toThrow(/out of range/);
    expect(() => writeLsnBE(Buffer.alloc(8), 0, 1n << 64n)).toThrow(/out of range/);
  });
});
