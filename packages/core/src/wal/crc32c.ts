// CRC-32C (Castagnoli), the checksum PostgreSQL stamps on every WAL record. Table-driven,
// slicing-by-8, with an incremental init/update/final API so the record decoder can checksum
// the body and then the header without concatenating them.

const POLY = 0x82f63b78; // reflected Castagnoli polynomial

/** 8 tables of 256 entries: TABLES[k * 256 + b] is the CRC of byte b followed by k zero bytes. */
const TABLES = (() => {
  const t = new Uint32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    let c = t[b];
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + b] = c >>> 0;
    }
  }
  return t;
})();

export const CRC32C_INIT = 0xffffffff;

/** Starts a CRC computation. */
export function crc32cInit(): number {
  return CRC32C_INIT;
}

/** Feeds bytes [start, end) of `data` into a running (non-finalized) CRC. */
export function crc32cUpdate(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  const t = TABLES;
  let c = crc >>> 0;
  let i = start;
  // slicing-by-8: fold 8 input bytes per step with 8 table lookups
  const end8 = end - ((end - i) & 7);
  while (i < end8) {
    const lo = (c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24))) >>> 0;
    const hi = data[i + 4] | (data[i + 5] << 8) | (data[i + 6] << 16) | (data[i + 7] << 24);
    c =
      t[1792 + (lo & 0xff)] ^
      t[1536 + ((lo >>> 8) & 0xff)] ^
      t[1280 + ((lo >>> 16) & 0xff)] ^
      t[1024 + (lo >>> 24)] ^
      t[768 + (hi & 0xff)] ^
      t[512 + ((hi >>> 8) & 0xff)] ^
      t[256 + ((hi >>> 16) & 0xff)] ^
      t[(hi >>> 24) & 0xff];
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
