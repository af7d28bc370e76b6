// Replay of stored versions onto a page: pure functions over Buffers, run by GetPage on the main
// thread and by the redo workers (walredo/pool.ts) alike, so both rebuild the same page.
import { formatLsn, type Lsn } from "../lsn.ts";
import { BLCKSZ, ForkNumber, type RelTag } from "../reltag.ts";
import { applyDerived } from "../redo/derived.ts";
import { isNewPage, pageLsnAtLeast, setPageLsn } from "../redo/page.ts";
import { rmgrFor } from "../redo/rmgrs.ts";
import { DerivedKind, type StoredValue, ValueKind, WAL_RECORD_VALUE_HEADER } from "../storage/values.ts";
import { restoreBlockImage } from "../wal/image.ts";
import { decodeRecordAt, type BlockRef, type DecodedRecord } from "../wal/record.ts";

export class PageReadError extends Error {}

/** The block a chain of versions rebuilds. */
export interface ReplayTarget {
  rel: RelTag;
  fork: ForkNumber;
  blockNumber: number;
}

/**
 * decodeRecord options for stored records (their CRC was verified at ingest), made once rather
 * than per replayed record: `endLsn` is set before each (synchronous) decode, so the record's end
 * is not computed as a BigInt only to be replaced by the LSN it is stored at.
 */
const STORED_RECORD: { verifyCrc: false; endLsn: Lsn } = { verifyCrc: false, endLsn: 0n };

/**
 * Applies one WAL record to one page (PostgreSQL's XLogReadBufferForRedo + the rmgr's redo):
 * restores an applicable image, starts will-init pages over from zeros (in `page`, which replay
 * owns: it changes it in place and returns it, or the restored image), skips a record the page
 * already has (page LSN >= record end), otherwise runs the rmgr's redo and stamps the end LSN.
 * A record on a never-initialized page is skipped too, as PostgreSQL does (the buffer is "not
 * found" in RBM_NORMAL mode; such pages are truncated or dropped later); only visibility-map
 * pages are read zero-on-error and initialized by their redo.
 */
export function applyRecord(page: Buffer, record: DecodedRecord, block: BlockRef, hintBitsLogged = false, imageInto?: Buffer): Buffer {
  const endLsn = record.endLsn;
  if (block.hasImage && block.applyImage) {
    // (restored into `imageInto` when given: ingest restores straight into the value it stores)
    const restored = restoreBlockImage(block, record.lsn, imageInto);
    rmgrFor(record).afterImage?.(restored, record, block);
    if (!isNewPage(restored)) setPageLsn(restored, endLsn);
    return restored;
  }
  // (zeroed in place: replay owns the page it is given, as every redo below that changes it in
  // place; a new 8 KiB buffer per bulk-loaded page was a sixth of a full backup's main thread)
  if (block.willInit) page = page.fill(0);
  else if (isNewPage(page)) {
    if (block.forkNum !== ForkNumber.VisibilityMap) return page;
  } else if (pageLsnAtLeast(page, endLsn)) return page;
  const result = rmgrFor(record).redo(page, record, block);
  if (result === undefined || (result === "hint-lsn" && hintBitsLogged)) setPageLsn(page, endLsn);
  return page;
}

export function findBlock(record: DecodedRecord, rel: RelTag, fork: ForkNumber, blockNumber: number): BlockRef | undefined {
  // a loop, not Array.find: no closure per replayed record
  const blocks = record.blocks;
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i];
    if (b.blockNumber === blockNumber && b.forkNum === fork && b.rel.relNode === rel.relNode && b.rel.dbNode === rel.dbNode && b.rel.spcNode === rel.spcNode) return b;
  }
  return undefined;
}

/** Whether applying the value needs another page (a database copied block by block): only GetPage can. */
export const needsOtherPage = (value: StoredValue): value is Extract<StoredValue, { kind: ValueKind.Derived }> =>
  value.kind === ValueKind.Derived && value.derived === DerivedKind.CopyPageFrom;

/**
 * Applies a stored WAL record (the record starting at `recordLsn`, `length` bytes at `offset` of
 * `bytes`) stored at `versionLsn`: records are stored at their end LSN, which is what redo stamps
 * on the page.
 */
export function applyStoredRecord(page: Buffer, bytes: Buffer, offset: number, length: number, recordLsn: Lsn, versionLsn: Lsn, target: ReplayTarget, hintBitsLogged: boolean): Buffer {
  STORED_RECORD.endLsn = versionLsn;
  const record = decodeRecordAt(bytes, offset, length, recordLsn, STORED_RECORD);
  const block = findBlock(record, target.rel, target.fork, target.blockNumber);
  if (!block) throw new PageReadError(`stored record at ${formatLsn(recordLsn)} does not reference block ${target.blockNumber}`);
  return applyRecord(page, record, block, hintBitsLogged);
}

/**
 * Applies a WalRecord value (storage/values.ts walRecordValue) where it lies: `length` bytes at
 * `at` of `value` (a stored entry, or a member inside a stored run), without decoding it into an
 * object first.
 */
export function applyWalRecordValue(page: Buffer, value: Buffer, at: number, length: number, versionLsn: Lsn, target: ReplayTarget, hintBitsLogged: boolean): Buffer {
  const recordAt = at + WAL_RECORD_VALUE_HEADER;
  return applyStoredRecord(page, value, recordAt, length - WAL_RECORD_VALUE_HEADER, value.readBigUInt64BE(at + 2), versionLsn, target, hintBitsLogged);
}

/**
 * Applies one stored version (stored at `versionLsn`) to `page` and returns the page, which may
 * be another buffer (an image, a will-init record). Not for values that need another page
 * (`needsOtherPage`).
 */
export function applyStoredVersion(page: Buffer, value: StoredValue, versionLsn: Lsn, target: ReplayTarget, hintBitsLogged: boolean): Buffer {
  switch (value.kind) {
    case ValueKind.Image:
      // the chain's own buffer (an iterator entry or an image file read, never shared): replay
      // may modify it in place, so no copy
      return value.bytes;
    case ValueKind.Tombstone:
      return page.fill(0);
    case ValueKind.WalRecord:
      return applyStoredRecord(page, value.raw, 0, value.raw.length, value.recordLsn, versionLsn, target, hintBitsLogged);
    case ValueKind.Derived:
      if (value.derived === DerivedKind.CopyPageFrom) throw new Error("a copied page is applied by GetPage, which can read its source");
      if (value.willInit) page.fill(0);
      applyDerived(page, value.derived, value.payload);
      return page;
  }
}
