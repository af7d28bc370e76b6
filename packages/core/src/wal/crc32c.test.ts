import { randomBytes } from "node:crypto";
import { describe, expect, test } from "vitest";
import { crc32c, crc32cFinal, crc32cInit, crc32cUpdate } from "./crc32c.ts";

function bitwiseCrc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

describe("crc32c", () => {
  test("matches the standard check value for '123456789'", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
  });

  test("matches the iSCSI test vectors (32 zero bytes, 32 0xFF bytes)", () => {
    expect(crc32c(Buffer.alloc(32, 0))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
  });

  test("the word and byte paths agree with a bit-at-a-time CRC for every length and alignment", () => {
    const data = randomBytes(1200);
    for (let start = 0; start < 9; start++) {
      for (let end = start; end <= data.length; end += 7) {
        expect(crc32c(data, start, end)).toBe(bitwiseCrc32c(data.subarray(start, end)));
      }
    }
  });

  test("incremental updates over split ranges equal the one-shot CRC", () => {
    const data = randomBytes(10_000);
    let crc = crc32cInit();
    crc = crc32cUpdate(crc, data, 0, 13);
    crc = crc32cUpdate(crc, data, 13, 5000);
    crc = crc32cUpdate(crc, data, 5000);
    expect(crc32cFinal(crc)).toBe(crc32c(data));
  });
});
