import { describe, expect, it } from "vitest";
import { formatLsn, parseLsn } from "./lsn.ts";

describe("LSN text form", () => {
  it("round-trips X/Y hex and accepts lower case", () => {
    expect(formatLsn(parseLsn("0/16B3748"))).toBe("0/16B3748");
    expect(parseLsn("1/0")).toBe(1n << 32n);
    expect(parseLsn("a/ff")).toBe((10n << 32n) | 255n);
    expect(formatLsn(0xffffffffffffffffn)).toBe("FFFFFFFF/FFFFFFFF");
  });
  it("rejects malformed LSNs with a message naming the input", () => {
    for (const bad of ["", "16B3748", "0/", "/1", "0/123456789", "g/1", "0x1/2"]) {
      expect(() => parseLsn(bad)).toThrow(/invalid LSN/);
    }
  });
});
