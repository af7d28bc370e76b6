import { randomBytes } from "node:crypto";
import { describe, expect, test } from "vitest";
import { lz4DecompressBlock } from "./lz4.ts";
import { pglzDecompress } from "./pglz.ts";

/** Greedy brute-force match finder shared by the two test compressors. */
function longestMatch(src: Uint8Array, i: number, maxOff: number, maxLen: number): { off: number; len: number } {
  let best = { off: 0, len: 0 };
  for (let j = Math.max(0, i - maxOff); j < i; j++) {
    let len = 0;
    while (len < maxLen && i + len < src.length && src[j + len] === src[i + len]) len++; // may overlap i
    if (len > best.len) best = { off: i - j, len };
  }
  return best;
}

/** Minimal pglz compressor (test only): control bytes + literals / 2-3 byte tags. */
function pglzCompress(src: Uint8Array): Buffer {
  const out: number[] = [];
  let i = 0;
  while (i < src.length) {
    const ctrlAt = out.length;
    out.push(0);
    for (let bit = 0; bit < 8 && i < src.length; bit++) {
      const m = longestMatch(src, i, 4095, 273);
      if (m.len >= 3) {
        out[ctrlAt] |= 1 << bit;
        if (m.len >= 18) out.push(((m.off >> 4) & 0xf0) | 15, m.off & 0xff, m.len - 18);
        else out.push(((m.off >> 4) & 0xf0) | (m.len - 3), m.off & 0xff);
        i += m.len;
      } else {
        out.push(src[i++]);
      }
    }
  }
  return Buffer.from(out);
}

/** Minimal LZ4 block compressor (test only); last 5 bytes are always literals, as LZ4 requires. */
function lz4Compress(src: Uint8Array): Buffer {
  const out: number[] = [];
  const pushLen = (n: number) => {
    while (n >= 255) {
      out.push(255);
      n -= 255;
    }
    out.push(n);
  };
  let anchor = 0;
  let i = 0;
  const limit = src.length - 5;
  while (i < limit) {
    const m = longestMatch(src, i, 65535, limit - i);
    if (m.len < 4) {
      i++;
      continue;
    }
    const lit = i - anchor;
    const ml = m.len - 4;
    out.push((Math.min(lit, 15) << 4) | Math.min(ml, 15));
    if (lit >= 15) pushLen(lit - 15);
    for (let k = anchor; k < i; k++) out.push(src[k]);
    out.push(m.off & 0xff, m.off >> 8);
    if (ml >= 15) pushLen(ml - 15);
    i += m.len;
    anchor = i;
  }
  const lit = src.length - anchor;
  out.push(Math.min(lit, 15) << 4);
  if (lit >= 15) pushLen(lit - 15);
  for (let k = anchor; k < src.length; k++) out.push(src[k]);
  return Buffer.from(out);
}

function samplePage(): Buffer {
  // page-like content: header, a long zero run (needs length extension), repeated tuples, random bytes
  const page = Buffer.alloc(2000);
  page.write("pd_lsn pd_checksum", 0);
  for (let off = 600; off < 1500; off += 45) page.write(`tuple ${off % 7} abcdefghijklmnopqrstuvwxyz`, off);
  randomBytes(200).copy(page, 1600);
  page.fill(0xab, 1800, 1900); // run: overlapping match with offset 1
  return page;
}

describe("pglz", () => {
  test("decompresses what a pglz encoder produced, including long and overlapping matches", () => {
    const page = samplePage();
    const compressed = pglzCompress(page);
    expect(compressed.length).toBeLessThan(page.length);
    expect(pglzDecompress(compressed, page.length).equals(page)).toBe(true);
  });

  test("rejects a back-reference before the start of the output", () => {
    // control 0x01: first item is a tag with offset 5 while nothing has been written
    expect(() => pglzDecompress(Buffer.from([0x01, 0x00, 0x05]), 3)).toThrow(/offset 5/);
  });

  test("rejects input that does not produce exactly rawSize bytes", () => {
    const compressed = pglzCompress(Buffer.from("hello hello hello hello"));
    expect(() => pglzDecompress(compressed, 30)).toThrow(/corrupt/);
  });
});

describe("lz4 block", () => {
  test("decompresses what an LZ4 block encoder produced, including long and overlapping matches", () => {
    const page = samplePage();
    const compressed = lz4Compress(page);
    expect(compressed.length).toBeLessThan(page.length);
    expect(lz4DecompressBlock(compressed, page.length).equals(page)).toBe(true);
  });

  test("decompresses a literal-only block", () => {
    const data = randomBytes(100);
    expect(lz4DecompressBlock(lz4Compress(data), 100).equals(data)).toBe(true);
  });

  test("rejects a match offset pointing before the output and a truncated block", () => {
    // token: 1 literal, match; literal 'a'; offset 9 > 1 byte written
    expect(() => lz4DecompressBlock(Buffer.from([0x10, 0x61, 0x09, 0x00]), 10)).toThrow(/offset 9/);
    const good = lz4Compress(samplePage());
    expect(() => lz4DecompressBlock(good.subarray(0, good.length - 20), 2000)).toThrow(/lz4/);
  });
});
