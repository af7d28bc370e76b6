// CRC-32C (Castagnoli), the checksum PostgreSQL stamps on every WAL record. Table-driven:
// slicing-by-16 over 32-bit words for long ranges, slicing-by-8 over bytes otherwise. The
// incremental init/update/final API lets the record decoder checksum the body and then the header
// without concatenating them.
import { endianness } from "node:os";

const POLY = 0x82f63b78; // reflected Castagnoli polynomial
const SLICES = 16;

/** 16 tables of 256 entries: TABLES[k * 256 + b] is the CRC of byte b followed by k zero bytes. */
const TABLES = (() => {
  const t = new Int32Array(SLICES * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c;
  }
  for (let b = 0; b < 256; b++) {
    let c = t[b];
    for (let k = 1; k < SLICES; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + b] = c;
    }
  }
  return t;
})();

/** Words are read as little-endian (the reflected CRC's byte order) only where that is native. */
const WORDS = endianness() === "LE";
/** Ranges at least this long take the word path (measured: shorter ones gain nothing). */
const WORD_PATH_MIN = 256;

export const CRC32C_INIT = 0xffffffff;

/** Starts a CRC computation. */
export function crc32cInit(): number {
  return CRC32C_INIT;
}

/** Feeds bytes [start, end) of `data` into a running (non-finalized) CRC. */
export function crc32cUpdate(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  const t = TABLES;
  let c = crc | 0;
  let i = start;
  if (WORDS && end - i >= WORD_PATH_MIN) {
    // bytes up to a 4-byte boundary of the underlying memory, then 16 bytes (4 words) per step:
    // one load per word instead of four byte loads and shifts
    while (((data.byteOffset + i) & 3) !== 0) c = t[(c ^ data[i++]) & 0xff] ^ (c >>> 8);
    const steps = (end - i) >> 4;
    const words = new Int32Array(data.buffer, data.byteOffset + i, steps * 4);
    for (let w = 0; w < words.length; w += 4) {
      const a = c ^ words[w];
      const b = words[w + 1];
      const d = words[w + 2];
      const e = words[w + 3];
      c =
        t[3840 + (a & 0xff)] ^ t[3584 + ((a >>> 8) & 0xff)] ^ t[3328 + ((a >>> 16) & 0xff)] ^ t[3072 + (a >>> 24)] ^
        t[2816 + (b & 0xff)] ^ t[2560 + ((b >>> 8) & 0xff)] ^ t[2304 + ((b >>> 16) & 0xff)] ^ t[2048 + (b >>> 24)] ^
        t[1792 + (d & 0xff)] ^ t[1536 + ((d >>> 8) & 0xff)] ^ t[1280 + ((d >>> 16) & 0xff)] ^ t[1024 + (d >>> 24)] ^
        t[768 + (e & 0xff)] ^ t[512 + ((e >>> 8) & 0xff)] ^ t[256 + ((e >>> 16) & 0xff)] ^ t[e >>> 24];
    }
    i += steps * 16;
  }
  // slicing-by-8 over bytes: short ranges (a word view costs more than it saves) and the tail
  const end8 = end - ((end - i) & 7);
  while (i < end8) {
    const lo = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    const hi = data[i + 4] | (data[i + 5] << 8) | (data[i + 6] << 16) | (data[i + 7] << 24);
    c =
      t[1792 + (lo & 0xff)] ^ t[1536 + ((lo >>> 8) & 0xff)] ^ t[1280 + ((lo >>> 16) & 0xff)] ^ t[1024 + (lo >>> 24)] ^
      t[768 + (hi & 0xff)] ^ t[512 + ((hi >>> 8) & 0xff)] ^ t[256 + ((hi >>> 16) & 0xff)] ^ t[(hi >>> 24) & 0xff];
    i += 8;
  }
  while (i < end) c = t[(c ^ data[i++]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** Finishes a CRC computation (final xor). */
export function crc32cFinal(crc: number): number {
  return (crc ^ 0xffffffff) >>> 0;
}

/** One-shot CRC-32C of a byte range. */
export function crc32c(data: Uint8Array, start = 0, end = data.length): number {
  return crc32cFinal(crc32cUpdate(CRC32C_INIT, data, start, end));
}
