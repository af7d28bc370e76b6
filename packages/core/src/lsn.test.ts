import { describe, expect, it } from "vitest";
import { formatLsn, mayBePastPageHeader, pageStartIfPastHeader, parseLsn } from "./lsn.ts";

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

  it("takes an LSN just past a page header back to the page start, and leaves every other LSN alone", () => {
    expect(pageStartIfPastHeader(parseLsn("0/3D86018"))).toBe(parseLsn("0/3D86000")); // short header
    expect(pageStartIfPastHeader(parseLsn("0/4000028"))).toBe(parseLsn("0/4000000")); // long header, segment start
    expect(pageStartIfPastHeader(parseLsn("0/4000018"))).toBe(parseLsn("0/4000000")); // (inside a long header)
    expect(pageStartIfPastHeader(parseLsn("0/3D86028"))).toBe(parseLsn("0/3D86028")); // a record end after a short header
    expect(pageStartIfPastHeader(parseLsn("0/3D86020"))).toBe(parseLsn("0/3D86020"));
    expect(pageStartIfPastHeader(parseLsn("0/3D86000"))).toBe(parseLsn("0/3D86000"));
    expect(pageStartIfPastHeader(parseLsn("0/4100028"), 1024 * 1024)).toBe(parseLsn("0/4100000"));
    expect([parseLsn("0/3D86018"), parseLsn("0/3D86028"), parseLsn("0/3D86020")].map(mayBePastPageHeader)).toEqual([true, true, false]);
  });
});
