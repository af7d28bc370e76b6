// Masking helpers shared by the rmgrs' mask functions (PostgreSQL's bufmask.c rules): what may
// differ between the primary's page image and a replayed page without being a redo bug.
import { BLCKSZ } from "../reltag.ts";

export const MASK_MARKER = 0;

/** Page LSN and checksum are not compared. */
export function maskPageLsnAndChecksum(page: Buffer): void {
  page.fill(MASK_MARKER, 0, 8);
  page.writeUInt16LE(MASK_MARKER, 8);
}

/** Hint flags in pd_flags (PD_PAGE_FULL, PD_HAS_FREE_LINES) and pd_prune_xid. */
export function maskPageHintBits(page: Buffer): void {
  page.writeUInt32LE(MASK_MARKER, 20);
  const flags = page.readUInt16LE(10);
  page.writeUInt16LE(flags & ~(0x0001 | 0x0002), 10);
  // PD_ALL_VISIBLE can be set without WAL-logging, so it is masked too
  page.writeUInt16LE(page.readUInt16LE(10) & ~0x0004, 10);
}

/** Zeroes the hole between pd_lower and pd_upper. */
export function maskUnusedSpace(page: Buffer): void {
  const lower = page.readUInt16LE(12);
  const upper = page.readUInt16LE(14);
  const special = page.readUInt16LE(16);
  // a corrupt header is left alone so the comparison shows it
  if (lower < 24 || lower > upper || upper > special || special > BLCKSZ) return;
  page.fill(MASK_MARKER, lower, upper);
}

/** Line pointer flags that index AMs change without WAL: every used pointer becomes LP_UNUSED. */
export function maskLpFlags(page: Buffer): void {
  const lower = page.readUInt16LE(12);
  for (let off = 24; off + 4 <= lower; off += 4) {
    const itemId = page.readUInt32LE(off);
    if ((itemId >>> 15) & 3) page.writeUInt32LE((itemId & ~(3 << 15)) >>> 0, off);
  }
}

/** Everything after the page header (for pages whose contents are never compared). */
export function maskPageContent(page: Buffer): void {
  page.fill(MASK_MARKER, 24, BLCKSZ);
  page.writeUInt16LE(MASK_MARKER, 12);
  page.writeUInt16LE(MASK_MARKER, 14);
}
