// Decompressor for the raw LZ4 *block* format (no frame), as written by LZ4_compress_default for
// full-page images when wal_compression=lz4. A block is a run of sequences: token (literal length
// high nibble, match length - 4 low nibble, 15 = more length bytes follow), literals, u16 LE offset.
// The last sequence has literals only.

/** Decompresses a raw LZ4 block into exactly `rawSize` bytes (like LZ4_decompress_safe + size check). */
export function lz4DecompressBlock(src: Uint8Array, rawSize: number): Buffer {
  const dst = Buffer.allocUnsafe(rawSize);
  const send = src.length;
  let sp = 0;
  let dp = 0;
  for (;;) {
    if (sp >= send) throw new Error("lz4: truncated block (missing token)");
    const token = src[sp++];
    let litLen = token >>> 4;
    if (litLen === 15) {
      let b: number;
      do {
        if (sp >= send) throw new Error("lz4: truncated literal length");
        b = src[sp++];
        litLen += b;
      } while (b === 255);
    }
    if (sp + litLen > send) throw new Error("lz4: literals run past the input");
    if (dp + litLen > rawSize) throw new Error(`lz4: output overrun (${dp + litLen} > ${rawSize})`);
    if (litLen > 0) {
      dst.set(src.subarray(sp, sp + litLen), dp);
      sp += litLen;
      dp += litLen;
    }
    if (sp === send) break; // last sequence: literals only
    if (sp + 2 > send) throw new Error("lz4: truncated match offset");
    const off = src[sp] | (src[sp + 1] << 8);
    sp += 2;
    if (off === 0 || off > dp) throw new Error(`lz4: match offset ${off} outside output (at ${dp})`);
    let matchLen = (token & 0x0f) + 4;
    if ((token & 0x0f) === 15) {
      let b: number;
      do {
        if (sp >= send) throw new Error("lz4: truncated match length");
        b = src[sp++];
        matchLen += b;
      } while (b === 255);
    }
    if (dp + matchLen > rawSize) throw new Error(`lz4: output overrun (${dp + matchLen} > ${rawSize})`);
    if (off >= matchLen) {
      dst.copyWithin(dp, dp - off, dp - off + matchLen);
      dp += matchLen;
    } else {
      let from = dp - off;
      for (const stop = dp + matchLen; dp < stop; ) dst[dp++] = dst[from++];
    }
  }
  if (dp !== rawSize) throw new Error(`lz4: produced ${dp} bytes, expected ${rawSize}`);
  return dst;
}
