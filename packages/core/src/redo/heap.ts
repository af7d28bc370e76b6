// Heap redo (rmgr 10, PostgreSQL's heap_xlog_* for XLOG_HEAP_*): tuple insert, delete, update,
// lock, speculative-insert confirm and in-place update, applied to one heap page per call. The
// visibility-map clears these records imply are derived at ingest; this module only touches the
// heap page. Also home of heap tuple header helpers and heap_mask, shared with heap2.ts.
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace, MASK_MARKER } from "./mask.ts";
import {
  copyBytes,
  getItemIdRaw,
  getPdUpper,
  InvalidOffsetNumber,
  isNewPage,
  LP_NORMAL,
  maxAlign,
  maxOffsetNumber,
  pageClearAllVisible,
  pageInit,
  pageReserveItem,
  pageSetPrunable,
} from "./page.ts";
import { readU16, readU32, writeU16, writeU32 } from "../bytes.ts";
import { RedoError, type RmgrRedo, UnsupportedRecordError } from "./types.ts";

// xl_info high nibble
export const XLOG_HEAP_OPMASK = 0x70;
export const XLOG_HEAP_INIT_PAGE = 0x80;
const XLOG_HEAP_INSERT = 0x00;
const XLOG_HEAP_DELETE = 0x10;
const XLOG_HEAP_UPDATE = 0x20;
const XLOG_HEAP_TRUNCATE = 0x30;
const XLOG_HEAP_HOT_UPDATE = 0x40;
const XLOG_HEAP_CONFIRM = 0x50;
const XLOG_HEAP_LOCK = 0x60;
const XLOG_HEAP_INPLACE = 0x70;

// record flags
export const XLH_INSERT_ALL_VISIBLE_CLEARED = 0x01;
export const XLH_INSERT_ALL_FROZEN_SET = 0x20;
const XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED = 0x01;
const XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED = 0x02;
const XLH_UPDATE_PREFIX_FROM_OLD = 0x20;
const XLH_UPDATE_SUFFIX_FROM_OLD = 0x40;
const XLH_DELETE_ALL_VISIBLE_CLEARED = 0x01;
const XLH_DELETE_IS_SUPER = 0x08;
const XLH_DELETE_IS_PARTITION_MOVE = 0x10;

// xl_heap_lock / xl_heap_update / xl_heap_delete infobits
const XLHL_XMAX_IS_MULTI = 0x01;
const XLHL_XMAX_LOCK_ONLY = 0x02;
const XLHL_XMAX_EXCL_LOCK = 0x04;
const XLHL_XMAX_KEYSHR_LOCK = 0x08;
const XLHL_KEYS_UPDATED = 0x10;

// HeapTupleHeaderData layout
export const SIZEOF_HEAP_TUPLE_HEADER = 23;
export const T_XMIN = 0;
export const T_XMAX = 4;
/** t_cid, or t_xvac for tuples moved by old-style VACUUM FULL */
export const T_CID = 8;
/** t_ctid: bi_hi u16, bi_lo u16, ip_posid u16 */
export const T_CTID = 12;
export const T_INFOMASK2 = 18;
export const T_INFOMASK = 20;
export const T_HOFF = 22;
/** xl_heap_header: t_infomask2 u16, t_infomask u16, t_hoff u8 */
export const SIZEOF_HEAP_HEADER = 5;

// t_infomask
export const HEAP_COMBOCID = 0x0020;
export const HEAP_XMAX_EXCL_LOCK = 0x0040;
export const HEAP_XMAX_LOCK_ONLY = 0x0080;
export const HEAP_XMAX_KEYSHR_LOCK = 0x0010;
export const HEAP_XMAX_SHR_LOCK = HEAP_XMAX_EXCL_LOCK | HEAP_XMAX_KEYSHR_LOCK;
export const HEAP_LOCK_MASK = HEAP_XMAX_SHR_LOCK | HEAP_XMAX_EXCL_LOCK | HEAP_XMAX_KEYSHR_LOCK;
export const HEAP_XMIN_COMMITTED = 0x0100;
export const HEAP_XMIN_INVALID = 0x0200;
export const HEAP_XMIN_FROZEN = HEAP_XMIN_COMMITTED | HEAP_XMIN_INVALID;
export const HEAP_XMAX_COMMITTED = 0x0400;
export const HEAP_XMAX_INVALID = 0x0800;
export const HEAP_XMAX_IS_MULTI = 0x1000;
export const HEAP_MOVED = 0x4000 | 0x8000;
export const HEAP_XACT_MASK = 0xfff0;
export const HEAP_XMAX_BITS = HEAP_XMAX_COMMITTED | HEAP_XMAX_INVALID | HEAP_XMAX_IS_MULTI | HEAP_LOCK_MASK | HEAP_XMAX_LOCK_ONLY;
// t_infomask2
export const HEAP_KEYS_UPDATED = 0x2000;
export const HEAP_HOT_UPDATED = 0x4000;

const SPEC_TOKEN_OFFSET_NUMBER = 0xfffe;
const MOVED_PARTITIONS_OFFSET_NUMBER = 0xfffd;
const MOVED_PARTITIONS_BLOCK_NUMBER = 0xffffffff;

// ---------------------------------------------------------------------------------------------
// Tuple header helpers (positions are byte offsets of the tuple in the page)

export function setTupleCtid(page: Buffer, tuple: number, blockNumber: number, offnum: number): void {
  writeU16(page, (blockNumber >>> 16) & 0xffff, tuple + T_CTID);
  writeU16(page, blockNumber & 0xffff, tuple + T_CTID + 2);
  writeU16(page, offnum, tuple + T_CTID + 4);
}

/**
 * Byte position of the NORMAL tuple at `offnum` (its length is the line pointer's, see
 * tupleLength); a missing or non-normal line pointer is a redo failure (PostgreSQL PANICs with
 * "invalid lp").
 */
export function normalTuple(page: Buffer, offnum: number, record: DecodedRecord, block: BlockRef): number {
  if (offnum < 1 || offnum > maxOffsetNumber(page)) throw new RedoError(record, block, `invalid lp: offset ${offnum} beyond max ${maxOffsetNumber(page)}`);
  const raw = getItemIdRaw(page, offnum);
  if (((raw >>> 15) & 3) !== LP_NORMAL) throw new RedoError(record, block, `invalid lp: offset ${offnum} is not a normal item`);
  const pos = raw & 0x7fff;
  const len = raw >>> 17;
  if (len < SIZEOF_HEAP_TUPLE_HEADER || pos + len > page.length) throw new RedoError(record, block, `invalid lp: offset ${offnum} has length ${len} at ${pos}`);
  return pos;
}

/** lp_len of the line pointer at `offnum` */
function tupleLength(page: Buffer, offnum: number): number {
  return getItemIdRaw(page, offnum) >>> 17;
}

/**
 * What delete, update and lock do to the xmax-related bits: clear them (and HEAP_MOVED,
 * KEYS_UPDATED), then set those the record's infobits name (fix_infomask_from_infobits).
 */
export function applyXmaxInfobits(page: Buffer, tuple: number, infobits: number): void {
  let infomask = readU16(page, tuple + T_INFOMASK) & ~(HEAP_XMAX_BITS | HEAP_MOVED);
  let infomask2 = readU16(page, tuple + T_INFOMASK2) & ~HEAP_KEYS_UPDATED;
  if (infobits & XLHL_XMAX_IS_MULTI) infomask |= HEAP_XMAX_IS_MULTI;
  if (infobits & XLHL_XMAX_LOCK_ONLY) infomask |= HEAP_XMAX_LOCK_ONLY;
  if (infobits & XLHL_XMAX_EXCL_LOCK) infomask |= HEAP_XMAX_EXCL_LOCK;
  if (infobits & XLHL_XMAX_KEYSHR_LOCK) infomask |= HEAP_XMAX_KEYSHR_LOCK;
  if (infobits & XLHL_KEYS_UPDATED) infomask2 |= HEAP_KEYS_UPDATED;
  writeU16(page, infomask & 0xffff, tuple + T_INFOMASK);
  writeU16(page, infomask2 & 0xffff, tuple + T_INFOMASK2);
}

/** HeapTupleHeaderSetCmax(tuple, FirstCommandId, false): t_cid = 0, HEAP_COMBOCID cleared. */
function resetCmax(page: Buffer, tuple: number): void {
  writeU32(page, 0, tuple + T_CID);
  writeU16(page, readU16(page, tuple + T_INFOMASK) & ~HEAP_COMBOCID, tuple + T_INFOMASK);
}

function setInfomask2Bits(page: Buffer, tuple: number, set: number, clear: number): void {
  writeU16(page, ((readU16(page, tuple + T_INFOMASK2) & ~clear) | set) & 0xffff, tuple + T_INFOMASK2);
}

/**
 * Places a heap tuple of `length` bytes on the page as PageAddItem(overwrite, is_heap) at
 * `offnum` would (failing as PostgreSQL's PANICs do), writes its header as redo builds it (a
 * zeroed 23-byte header carrying the logged infomask2, infomask and t_hoff, xmin = the record's
 * xid, cmin = 0 (FirstCommandId), the given xmax and ctid) and returns the tuple's position: the
 * caller copies the body (null bitmap, padding, data) after the header, straight from the record.
 */
export function placeHeapTuple(
  page: Buffer,
  length: number,
  offnum: number,
  header: { infomask2: number; infomask: number; hoff: number; xmin: number; xmax: number },
  record: DecodedRecord,
  block: BlockRef,
): number {
  if (isNewPage(page)) throw new RedoError(record, block, "page is not initialized");
  if (maxOffsetNumber(page) + 1 < offnum) throw new RedoError(record, block, `invalid max offset number: ${maxOffsetNumber(page)} for offset ${offnum}`);
  if (pageReserveItem(page, length, offnum, HEAP_OVERWRITE) === InvalidOffsetNumber) {
    throw new RedoError(record, block, `failed to add tuple of ${length} bytes at offset ${offnum}`);
  }
  const tuple = getPdUpper(page);
  writeU32(page, header.xmin >>> 0, tuple + T_XMIN);
  writeU32(page, header.xmax >>> 0, tuple + T_XMAX);
  writeU32(page, 0, tuple + T_CID);
  setTupleCtid(page, tuple, block.blockNumber, offnum);
  writeU16(page, header.infomask2, tuple + T_INFOMASK2);
  // HeapTupleHeaderSetCmin clears HEAP_COMBOCID
  writeU16(page, header.infomask & ~HEAP_COMBOCID, tuple + T_INFOMASK);
  page[tuple + T_HOFF] = header.hoff;
  return tuple;
}

const HEAP_OVERWRITE = { overwrite: true, isHeap: true } as const;

export function requireData(record: DecodedRecord, block: BlockRef, minLength: number): Buffer {
  if (block.data.length < minLength) throw new RedoError(record, block, `block data of ${block.data.length} bytes, expected at least ${minLength}`);
  return block.data;
}

export function requireMain(record: DecodedRecord, block: BlockRef, length: number): Buffer {
  if (record.mainLength < length) throw new RedoError(record, block, `main data of ${record.mainLength} bytes, expected at least ${length}`);
  return record.mainData;
}

/**
 * requireMain for the record types replayed most, which read the main data where it lies
 * (`record.mainSource` from `record.mainOffset`, returned) instead of through a view.
 */
export function mainOffsetChecked(record: DecodedRecord, block: BlockRef, length: number): number {
  if (record.mainLength < length) throw new RedoError(record, block, `main data of ${record.mainLength} bytes, expected at least ${length}`);
  return record.mainOffset;
}

/** requireData likewise: the block data's offset in `block.dataSource`. */
export function dataOffsetChecked(record: DecodedRecord, block: BlockRef, minLength: number): number {
  if (block.dataLength < minLength) throw new RedoError(record, block, `block data of ${block.dataLength} bytes, expected at least ${minLength}`);
  return block.dataOffset;
}

// ---------------------------------------------------------------------------------------------
// Record types

function redoInsert(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainSource;
  const m = mainOffsetChecked(record, block, 3); // xl_heap_insert {offnum u16, flags u8}
  const offnum = readU16(main, m);
  const flags = main[m + 2];
  if (record.info & XLOG_HEAP_INIT_PAGE) pageInit(page, 0);
  const data = block.dataSource;
  const d = dataOffsetChecked(record, block, SIZEOF_HEAP_HEADER);
  const length = block.dataLength;
  const header = { infomask2: readU16(data, d), infomask: readU16(data, d + 2), hoff: data[d + 4], xmin: record.xid, xmax: 0 };
  const tuple = placeHeapTuple(page, SIZEOF_HEAP_TUPLE_HEADER + length - SIZEOF_HEAP_HEADER, offnum, header, record, block);
  copyBytes(data, d + SIZEOF_HEAP_HEADER, d + length, page, tuple + SIZEOF_HEAP_TUPLE_HEADER);
  if (flags & XLH_INSERT_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
}

function redoDelete(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  // xl_heap_delete {xmax u32, offnum u16, infobits_set u8, flags u8}
  const main = record.mainSource;
  const m = mainOffsetChecked(record, block, 8);
  const xmax = readU32(main, m);
  const offnum = readU16(main, m + 4);
  const infobits = main[m + 6];
  const flags = main[m + 7];
  const pos = normalTuple(page, offnum, record, block);
  applyXmaxInfobits(page, pos, infobits);
  setInfomask2Bits(page, pos, 0, HEAP_HOT_UPDATED);
  if (flags & XLH_DELETE_IS_SUPER) writeU32(page, 0, pos + T_XMIN);
  else writeU32(page, xmax, pos + T_XMAX);
  resetCmax(page, pos);
  pageSetPrunable(page, record.xid);
  if (flags & XLH_DELETE_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
  if (flags & XLH_DELETE_IS_PARTITION_MOVE) setTupleCtid(page, pos, MOVED_PARTITIONS_BLOCK_NUMBER, MOVED_PARTITIONS_OFFSET_NUMBER);
  else setTupleCtid(page, pos, block.blockNumber, offnum);
}

/** xl_heap_update: old_xmax u32, old_offnum u16, old_infobits_set u8, flags u8, new_xmax u32, new_offnum u16 */
interface UpdateRecord {
  oldXmax: number;
  oldOffnum: number;
  oldInfobits: number;
  flags: number;
  newXmax: number;
  newOffnum: number;
}

function readUpdate(record: DecodedRecord, block: BlockRef): UpdateRecord {
  const main = record.mainSource;
  const m = mainOffsetChecked(record, block, 14);
  return {
    oldXmax: readU32(main, m),
    oldOffnum: readU16(main, m + 4),
    oldInfobits: main[m + 6],
    flags: main[m + 7],
    newXmax: readU32(main, m + 8),
    newOffnum: readU16(main, m + 12),
  };
}

/** The old tuple version: xmax and lock bits, HOT flag, forward link to the new version. */
function updateOldTuple(page: Buffer, record: DecodedRecord, block: BlockRef, xl: UpdateRecord, hot: boolean, newBlock: number): void {
  const pos = normalTuple(page, xl.oldOffnum, record, block);
  applyXmaxInfobits(page, pos, xl.oldInfobits);
  // fix_infomask_from_infobits may set KEYS_UPDATED; the HOT flag is independent of it
  if (hot) setInfomask2Bits(page, pos, HEAP_HOT_UPDATED, 0);
  else setInfomask2Bits(page, pos, 0, HEAP_HOT_UPDATED);
  writeU32(page, xl.oldXmax, pos + T_XMAX);
  resetCmax(page, pos);
  setTupleCtid(page, pos, newBlock, xl.newOffnum);
  pageSetPrunable(page, record.xid);
  if (xl.flags & XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
}

/**
 * The new tuple version, rebuilt from the logged bytes plus a prefix and/or suffix of the old
 * version's data (only when both are on this page): the old version is `oldLength` bytes at
 * `oldPos` of `page` (oldLength 0: not on this page). Placing the new version moves no other
 * tuple, so its prefix and suffix are copied from the old version on the page itself.
 */
function insertNewTuple(page: Buffer, record: DecodedRecord, block: BlockRef, xl: UpdateRecord, oldPos: number, oldLength: number): void {
  // (`at` and `end` are offsets in the record's bytes: the block data is read where it lies)
  const data = block.dataSource;
  const start = block.dataOffset;
  const end = start + block.dataLength;
  let at = start;
  let prefixLen = 0;
  let suffixLen = 0;
  if (xl.flags & XLH_UPDATE_PREFIX_FROM_OLD) {
    dataOffsetChecked(record, block, at - start + 2);
    prefixLen = readU16(data, at);
    at += 2;
  }
  if (xl.flags & XLH_UPDATE_SUFFIX_FROM_OLD) {
    dataOffsetChecked(record, block, at - start + 2);
    suffixLen = readU16(data, at);
    at += 2;
  }
  dataOffsetChecked(record, block, at - start + SIZEOF_HEAP_HEADER);
  const infomask2 = readU16(data, at);
  const infomask = readU16(data, at + 2);
  const hoff = data[at + 4];
  at += SIZEOF_HEAP_HEADER;
  const loggedLen = end - at;

  let oldHoff = 0;
  if (prefixLen > 0 || suffixLen > 0) {
    if (oldLength === 0) throw new RedoError(record, block, "update takes a prefix/suffix from an old tuple on another page");
    oldHoff = page[oldPos + T_HOFF];
    if (oldHoff + prefixLen > oldLength || suffixLen > oldLength) {
      throw new RedoError(record, block, `prefix ${prefixLen}/suffix ${suffixLen} exceed the old tuple of ${oldLength} bytes`);
    }
  }
  const bitmapLen = hoff - SIZEOF_HEAP_TUPLE_HEADER;
  if (prefixLen > 0 && (bitmapLen < 0 || bitmapLen > loggedLen)) throw new RedoError(record, block, `t_hoff ${hoff} does not fit the logged tuple`);
  const header = { infomask2, infomask, hoff, xmin: record.xid, xmax: xl.newXmax };
  const tuple = placeHeapTuple(page, SIZEOF_HEAP_TUPLE_HEADER + loggedLen + prefixLen + suffixLen, xl.newOffnum, header, record, block);
  let to = tuple + SIZEOF_HEAP_TUPLE_HEADER;
  if (prefixLen > 0) {
    // bitmap [+ padding] comes first in the record, then the prefix from the old tuple's data
    to += copyBytes(data, at, at + bitmapLen, page, to);
    to += copyBytes(page, oldPos + oldHoff, oldPos + oldHoff + prefixLen, page, to);
    to += copyBytes(data, at + bitmapLen, end, page, to);
  } else {
    to += copyBytes(data, at, end, page, to);
  }
  if (suffixLen > 0) copyBytes(page, oldPos + oldLength - suffixLen, oldPos + oldLength, page, to);
  if (xl.flags & XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
}

/**
 * UPDATE / HOT_UPDATE. blk0 is the new tuple's page, blk1 the old tuple's page when it differs.
 * Called once per block: block 1 gets the old-version changes, block 0 the new version, and a
 * block 0 without a block 1 (same page) gets both, old first.
 */
function redoUpdate(page: Buffer, record: DecodedRecord, block: BlockRef, hot: boolean): void {
  const xl = readUpdate(record, block);
  // loops, not find/some: no closure per replayed update
  let newBlock: BlockRef | undefined;
  let samePage = true;
  for (const b of record.blocks) {
    if (b.id === 0) newBlock = b;
    else if (b.id === 1) samePage = false;
  }
  if (!newBlock) throw new RedoError(record, block, "update record without block 0");

  if (block.id === 1) {
    updateOldTuple(page, record, block, xl, hot, newBlock.blockNumber);
    return;
  }
  if (block.id !== 0) throw new RedoError(record, block, `unexpected block id ${block.id} in an update`);

  let oldPos = 0;
  let oldLength = 0;
  if (samePage) {
    updateOldTuple(page, record, block, xl, hot, block.blockNumber);
    oldPos = normalTuple(page, xl.oldOffnum, record, block);
    oldLength = tupleLength(page, xl.oldOffnum);
  } else if (record.info & XLOG_HEAP_INIT_PAGE) {
    pageInit(page, 0);
  }
  insertNewTuple(page, record, block, xl, oldPos, oldLength);
}

function redoConfirm(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const offnum = requireMain(record, block, 2).readUInt16LE(0);
  const pos = normalTuple(page, offnum, record, block);
  setTupleCtid(page, pos, block.blockNumber, offnum);
}

/** HEAP_XMAX_IS_LOCKED_ONLY */
function xmaxIsLockedOnly(infomask: number): boolean {
  return (infomask & HEAP_XMAX_LOCK_ONLY) !== 0 || (infomask & (HEAP_XMAX_IS_MULTI | HEAP_LOCK_MASK)) === HEAP_XMAX_EXCL_LOCK;
}

function redoLock(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  // xl_heap_lock {locking_xid u32, offnum u16, infobits_set i8, flags u8}
  const main = record.mainSource;
  const m = mainOffsetChecked(record, block, 8);
  const lockingXid = readU32(main, m);
  const offnum = readU16(main, m + 4);
  const infobits = main[m + 6];
  const pos = normalTuple(page, offnum, record, block);
  applyXmaxInfobits(page, pos, infobits);
  if (xmaxIsLockedOnly(readU16(page, pos + T_INFOMASK))) {
    setInfomask2Bits(page, pos, 0, HEAP_HOT_UPDATED);
    setTupleCtid(page, pos, block.blockNumber, offnum);
  }
  writeU32(page, lockingXid, pos + T_XMAX);
  resetCmax(page, pos);
}

function redoInplace(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const offnum = requireMain(record, block, 2).readUInt16LE(0);
  const pos = normalTuple(page, offnum, record, block);
  const len = tupleLength(page, offnum);
  const hoff = page[pos + T_HOFF];
  if (len - hoff !== block.data.length) throw new RedoError(record, block, `wrong tuple length: ${len - hoff} on page, ${block.data.length} in record`);
  block.data.copy(page, pos + hoff);
}

// ---------------------------------------------------------------------------------------------
// Mask

/**
 * heap_mask: LSN, checksum, page hint bits and the hole; per normal tuple the transaction hint
 * bits (all of HEAP_XACT_MASK unless xmin is frozen, then only the xmax hints), t_cid, and the
 * ctid of speculative insertions; and the MAXALIGN padding after every item with storage.
 */
export function heapMask(page: Buffer, blockNumber: number): void {
  maskPageLsnAndChecksum(page);
  maskPageHintBits(page);
  maskUnusedSpace(page);
  const nline = maxOffsetNumber(page);
  for (let off = 1; off <= nline; off++) {
    const raw = getItemIdRaw(page, off);
    const pos = raw & 0x7fff;
    const len = raw >>> 17;
    if (((raw >>> 15) & 3) === LP_NORMAL && pos + SIZEOF_HEAP_TUPLE_HEADER <= page.length) {
      const infomask = readU16(page, pos + T_INFOMASK);
      if ((infomask & HEAP_XMIN_FROZEN) !== HEAP_XMIN_FROZEN) writeU16(page, infomask & ~HEAP_XACT_MASK, pos + T_INFOMASK);
      else writeU16(page, infomask & ~(HEAP_XMAX_INVALID | HEAP_XMAX_COMMITTED), pos + T_INFOMASK);
      writeU32(page, MASK_MARKER, pos + T_CID);
      if (readU16(page, pos + T_CTID + 4) === SPEC_TOKEN_OFFSET_NUMBER) setTupleCtid(page, pos, blockNumber, off);
    }
    if (len !== 0) {
      const end = Math.min(pos + maxAlign(len), page.length);
      if (pos + len < end) page.fill(MASK_MARKER, pos + len, end);
    }
  }
}

export const heapRmgr: RmgrRedo = {
  name: "Heap",
  redo(page, record, block) {
    switch (record.info & XLOG_HEAP_OPMASK) {
      case XLOG_HEAP_INSERT:
        return redoInsert(page, record, block);
      case XLOG_HEAP_DELETE:
        return redoDelete(page, record, block);
      case XLOG_HEAP_UPDATE:
        return redoUpdate(page, record, block, false);
      case XLOG_HEAP_HOT_UPDATE:
        return redoUpdate(page, record, block, true);
      case XLOG_HEAP_CONFIRM:
        return redoConfirm(page, record, block);
      case XLOG_HEAP_LOCK:
        return redoLock(page, record, block);
      case XLOG_HEAP_INPLACE:
        return redoInplace(page, record, block);
      case XLOG_HEAP_TRUNCATE:
        // logical decoding only; the truncation itself is an smgr record
        throw new UnsupportedRecordError(record, "Heap/TRUNCATE references no pages");
    }
    throw new UnsupportedRecordError(record);
  },
  mask: heapMask,
};
