// Decompressor for PostgreSQL's pglz format, used for full-page images when wal_compression=pglz.
// Format: a control byte announces 8 items (LSB first); bit 0 = one literal byte, bit 1 = a 2-3 byte
// back-reference tag: length = (b0 & 0x0f) + 3 (18 means add the next byte), offset = (b0 & 0xf0) << 4 | b1.

/**
 * Decompresses `src` into exactly `rawSize` bytes. Throws if the input is corrupt or does not
 * produce exactly rawSize bytes from exactly all of its input.
 */
export function pglzDecompress(src: Uint8Array, rawSize: number): Buffer {
  const dst = Buffer.allocUnsafe(rawSize);
  let sp = 0;
  let dp = 0;
  const send = src.length;
  while (sp < send && dp < rawSize) {
    let ctrl = src[sp++];
    for (let bit = 0; bit < 8 && sp < send && dp < rawSize; bit++, ctrl >>= 1) {
      if (ctrl & 1) {
        if (sp + 1 >= send) throw new Error("pglz: truncated back-reference tag");
        const b0 = src[sp];
        const b1 = src[sp + 1];
        sp += 2;
        let len = (b0 & 0x0f) + 3;
        const off = ((b0 & 0xf0) << 4) | b1;
        if (len === 18) {
          if (sp >= send) throw new Error("pglz: truncated extended length");
          len += src[sp++];
        }
        if (off === 0 || off > dp) throw new Error(`pglz: back-reference offset ${off} outside output (at ${dp})`);
        if (dp + len > rawSize) throw new Error(`pglz: output overrun (${dp + len} > ${rawSize})`);
        // byte by byte: the source range may overlap the bytes being written (run-length style)
        let from = dp - off;
        for (const stop = dp + len; dp < stop; ) dst[dp++] = dst[from++];
      } else {
        dst[dp++] = src[sp++];
      }
    }
  }
  if (dp !== rawSize || sp !== send) {
    throw new Error(`pglz: compressed data is corrupt (produced ${dp} of ${rawSize} bytes, consumed ${sp} of ${send})`);
  }
  return dst;
}
