// Rebuilds the 8 KiB page from a block reference's full-page image: decompress (pglz / lz4 / zstd)
// to 8192 - hole_length bytes, then re-insert the zeroed hole at hole_offset. Redo calls this for
// every image with BKPIMAGE_APPLY; the page server stores the result as a page version.
import { decompress as zstdDecompress } from "fzstd";
import type { Lsn } from "../lsn.ts";
import { BLCKSZ } from "../reltag.ts";
import { WalDecodeError } from "./errors.ts";
import { lz4DecompressBlock } from "./lz4.ts";
import { pglzDecompress } from "./pglz.ts";
import type { BlockImage, BlockRef } from "./record.ts";

/** Returns the raw (uncompressed, hole-less) image bytes: exactly BLCKSZ - holeLength of them. */
export function decompressImage(image: BlockImage, lsn: Lsn = 0n): Buffer {
  const rawSize = BLCKSZ - image.holeLength;
  try {
    switch (image.compression) {
      case "none":
        if (image.bytes.length !== rawSize) throw new Error(`image is ${image.bytes.length} bytes, expected ${rawSize}`);
        return image.bytes;
      case "pglz":
        return pglzDecompress(image.bytes, rawSize);
      case "lz4":
        return lz4DecompressBlock(image.bytes, rawSize);
      case "zstd": {
        const out = Buffer.allocUnsafe(rawSize);
        const result = zstdDecompress(image.bytes, out);
        if (result.length !== rawSize) throw new Error(`zstd: produced ${result.length} bytes, expected ${rawSize}`);
        return result.buffer === out.buffer && result.byteOffset === out.byteOffset ? out : Buffer.from(result);
      }
    }
  } catch (err) {
    if (err instanceof WalDecodeError) throw err;
    throw new WalDecodeError("BAD_IMAGE", lsn, `could not restore ${image.compression} block image: ${(err as Error).message}`);
  }
}

/**
 * Restores the full 8192-byte page of a block reference that carries an image, into `into` (8192
 * bytes) when given, else into a new buffer.
 */
export function restoreBlockImage(block: BlockRef, lsn: Lsn = 0n, into?: Buffer): Buffer {
  const image = block.image;
  if (!image) throw new WalDecodeError("BAD_IMAGE", lsn, `block ${block.id} has no full-page image`);
  const raw = decompressImage(image, lsn);
  if (into !== undefined && into.length !== BLCKSZ) throw new RangeError(`a page is restored into ${BLCKSZ} bytes, not ${into.length}`);
  const page = into ?? Buffer.allocUnsafe(BLCKSZ);
  const { holeOffset, holeLength } = image;
  raw.copy(page, 0, 0, holeOffset);
  page.fill(0, holeOffset, holeOffset + holeLength);
  raw.copy(page, holeOffset + holeLength, holeOffset);
  return page;
}
