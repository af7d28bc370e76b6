// The standard PostgreSQL page layout (bufpage.h / bufpage.c) as pure functions over an 8192-byte
// Buffer, modified in place. Every rmgr's redo places and removes items through these so that the
// bytes land exactly where PostgreSQL puts them: replayed pages are compared with the primary's.
// Header: pd_lsn(0) pd_checksum(8) pd_flags(10) pd_lower(12) pd_upper(14) pd_special(16)
// pd_pagesize_version(18) pd_prune_xid(20), then the line pointer array from offset 24.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ } from "../reltag.ts";
import { readU16, readU32, writeU16, writeU32 } from "../bytes.ts";

export const SIZE_OF_PAGE_HEADER = 24;
export const ITEM_ID_SIZE = 4;
export const MAXIMUM_ALIGNOF = 8;
export const PG_PAGE_LAYOUT_VERSION = 4;

/** pd_flags bits */
export const PD_HAS_FREE_LINES = 0x0001;
export const PD_PAGE_FULL = 0x0002;
export const PD_ALL_VISIBLE = 0x0004;
export const PD_VALID_FLAG_BITS = 0x0007;

/** lp_flags values */
export const LP_UNUSED = 0;
export const LP_NORMAL = 1;
export const LP_REDIRECT = 2;
export const LP_DEAD = 3;

export const InvalidOffsetNumber = 0;
export const FirstOffsetNumber = 1;

/** MaxHeapTuplesPerPage: (8192 - 24) / (MAXALIGN(23) + 4) */
export const MAX_HEAP_TUPLES_PER_PAGE = 291;
/** MaxIndexTuplesPerPage: (8192 - 24) / (MAXALIGN(8 + 1) + 4) */
export const MAX_INDEX_TUPLES_PER_PAGE = 408;

const OFF_LSN = 0;
const OFF_CHECKSUM = 8;
const OFF_FLAGS = 10;
const OFF_LOWER = 12;
const OFF_UPPER = 14;
const OFF_SPECIAL = 16;
const OFF_SIZE_VERSION = 18;
const OFF_PRUNE_XID = 20;

/** Thrown when a page's header or line pointers are insane (PostgreSQL's "corrupted page pointers"). */
export class PageCorruptedError extends Error {}

// ---------------------------------------------------------------------------------------------
// Alignment

export function maxAlign(n: number): number {
  return (n + 7) & ~7;
}
export function maxAlignDown(n: number): number {
  return n & ~7;
}
export function intAlign(n: number): number {
  return (n + 3) & ~3;
}
export function shortAlign(n: number): number {
  return (n + 1) & ~1;
}

/**
 * Copies source[start, end) to target at `at`; returns the byte count. Short ranges (tuples, index
 * items) go byte by byte: Buffer#copy creates a typed-array view per call, which costs more than
 * copying a hundred bytes. Ranges must not overlap.
 */
export function copyBytes(source: Uint8Array, start: number, end: number, target: Uint8Array, at: number): number {
  const n = end - start;
  if (n > 256) {
    target.set(source.subarray(start, end), at);
    return n;
  }
  for (let i = 0; i < n; i++) target[at + i] = source[start + i];
  return n;
}

// ---------------------------------------------------------------------------------------------
// Header accessors

/**
 * pd_lsn is stored as {xlogid (high 32 bits), xrecoff (low 32 bits)}, each little-endian. LSNs
 * below 2^53 (8 PiB of WAL, i.e. all in practice) take a path without BigInt arithmetic: replay
 * compares and stamps the page LSN for every record it applies.
 */
export function getPageLsn(page: Buffer): Lsn {
  const hi = readU32(page, OFF_LSN);
  const lo = readU32(page, OFF_LSN + 4);
  return hi < SAFE_XLOGID_LIMIT ? BigInt(hi * 0x100000000 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}
export function setPageLsn(page: Buffer, lsn: Lsn): void {
  if (lsn <= MAX_SAFE_LSN) {
    const n = Number(lsn);
    writeU32(page, Math.floor(n / 0x100000000), OFF_LSN);
    writeU32(page, n >>> 0, OFF_LSN + 4);
  } else {
    writeU32(page, Number(lsn >> 32n) >>> 0, OFF_LSN);
    writeU32(page, Number(lsn & 0xffffffffn) >>> 0, OFF_LSN + 4);
  }
}
/** getPageLsn(page) >= lsn, without a BigInt allocated in the usual case */
export function pageLsnAtLeast(page: Buffer, lsn: Lsn): boolean {
  const hi = readU32(page, OFF_LSN);
  if (hi < SAFE_XLOGID_LIMIT && lsn <= MAX_SAFE_LSN) return hi * 0x100000000 + readU32(page, OFF_LSN + 4) >= Number(lsn);
  return getPageLsn(page) >= lsn;
}
const MAX_SAFE_LSN = BigInt(Number.MAX_SAFE_INTEGER);
/** xlogid values below this give an LSN below 2^53 */
const SAFE_XLOGID_LIMIT = 0x200000;

export function getPdChecksum(page: Buffer): number {
  return readU16(page, OFF_CHECKSUM);
}
export function setPdChecksum(page: Buffer, v: number): void {
  writeU16(page, v, OFF_CHECKSUM);
}
export function getPdFlags(page: Buffer): number {
  return readU16(page, OFF_FLAGS);
}
export function setPdFlags(page: Buffer, v: number): void {
  writeU16(page, v & 0xffff, OFF_FLAGS);
}
export function getPdLower(page: Buffer): number {
  return readU16(page, OFF_LOWER);
}
export function setPdLower(page: Buffer, v: number): void {
  writeU16(page, v, OFF_LOWER);
}
export function getPdUpper(page: Buffer): number {
  return readU16(page, OFF_UPPER);
}
export function setPdUpper(page: Buffer, v: number): void {
  writeU16(page, v, OFF_UPPER);
}
export function getPdSpecial(page: Buffer): number {
  return readU16(page, OFF_SPECIAL);
}
export function setPdSpecial(page: Buffer, v: number): void {
  writeU16(page, v, OFF_SPECIAL);
}
export function getPdPageSizeVersion(page: Buffer): number {
  return readU16(page, OFF_SIZE_VERSION);
}
export function getPdPruneXid(page: Buffer): number {
  return readU32(page, OFF_PRUNE_XID);
}
export function setPdPruneXid(page: Buffer, xid: number): void {
  writeU32(page, xid >>> 0, OFF_PRUNE_XID);
}

export function pageHasFreeLinePointers(page: Buffer): boolean {
  return (getPdFlags(page) & PD_HAS_FREE_LINES) !== 0;
}
export function pageSetHasFreeLinePointers(page: Buffer): void {
  setPdFlags(page, getPdFlags(page) | PD_HAS_FREE_LINES);
}
export function pageClearHasFreeLinePointers(page: Buffer): void {
  setPdFlags(page, getPdFlags(page) & ~PD_HAS_FREE_LINES);
}
export function pageIsFull(page: Buffer): boolean {
  return (getPdFlags(page) & PD_PAGE_FULL) !== 0;
}
export function pageSetFull(page: Buffer): void {
  setPdFlags(page, getPdFlags(page) | PD_PAGE_FULL);
}
export function pageClearFull(page: Buffer): void {
  setPdFlags(page, getPdFlags(page) & ~PD_PAGE_FULL);
}
export function pageIsAllVisible(page: Buffer): boolean {
  return (getPdFlags(page) & PD_ALL_VISIBLE) !== 0;
}
export function pageSetAllVisible(page: Buffer): void {
  setPdFlags(page, getPdFlags(page) | PD_ALL_VISIBLE);
}
export function pageClearAllVisible(page: Buffer): void {
  setPdFlags(page, getPdFlags(page) & ~PD_ALL_VISIBLE);
}

/** PageSetPrunable: remember the oldest xid that may make a tuple prunable (normal xids only). */
export function pageSetPrunable(page: Buffer, xid: number): void {
  if (xid < 3) return;
  const cur = getPdPruneXid(page);
  if (cur === 0 || xidPrecedes(xid, cur)) setPdPruneXid(page, xid);
}

/** TransactionIdPrecedes for normal xids (modulo-2^32 comparison). */
export function xidPrecedes(a: number, b: number): boolean {
  if (a < 3 || b < 3) return a < b;
  return ((a - b) | 0) < 0;
}

// ---------------------------------------------------------------------------------------------
// Page-level

/** PageInit: zero the page; pd_lower = 24, pd_upper = pd_special = 8192 - MAXALIGN(specialSize). */
export function pageInit(page: Buffer, specialSize: number): void {
  const special = maxAlign(specialSize);
  if (BLCKSZ <= special + SIZE_OF_PAGE_HEADER) throw new RangeError(`special size ${specialSize} does not fit a page`);
  page.fill(0, 0, BLCKSZ);
  setPdLower(page, SIZE_OF_PAGE_HEADER);
  setPdUpper(page, BLCKSZ - special);
  setPdSpecial(page, BLCKSZ - special);
  writeU16(page, BLCKSZ | PG_PAGE_LAYOUT_VERSION, OFF_SIZE_VERSION);
}

/** PageIsNew: an all-zero (never initialized) page has pd_upper = 0. */
export function isNewPage(page: Buffer): boolean {
  return getPdUpper(page) === 0;
}

/** PageIsEmpty: no line pointers. */
export function pageIsEmpty(page: Buffer): boolean {
  return getPdLower(page) <= SIZE_OF_PAGE_HEADER;
}

/** PageGetMaxOffsetNumber */
export function maxOffsetNumber(page: Buffer): number {
  const lower = getPdLower(page);
  return lower <= SIZE_OF_PAGE_HEADER ? 0 : (lower - SIZE_OF_PAGE_HEADER) / ITEM_ID_SIZE;
}

export function pageGetSpecialSize(page: Buffer): number {
  return BLCKSZ - getPdSpecial(page);
}

/** View of the special space [pd_special, 8192). */
export function pageGetSpecial(page: Buffer): Buffer {
  return page.subarray(getPdSpecial(page), BLCKSZ);
}

/** View of the area after the (MAXALIGNed) header, as PageGetContents. */
export function pageGetContents(page: Buffer): Buffer {
  return page.subarray(maxAlign(SIZE_OF_PAGE_HEADER));
}

// ---------------------------------------------------------------------------------------------
// Line pointers: one u32 per item, lp_off bits 0-14, lp_flags bits 15-16, lp_len bits 17-31

/** Byte position of line pointer `offnum` (1-based). */
export function itemIdPosition(offnum: number): number {
  return SIZE_OF_PAGE_HEADER + (offnum - 1) * ITEM_ID_SIZE;
}
export function getItemIdRaw(page: Buffer, offnum: number): number {
  return readU32(page, itemIdPosition(offnum));
}
export function setItemIdRaw(page: Buffer, offnum: number, raw: number): void {
  writeU32(page, raw >>> 0, itemIdPosition(offnum));
}
export function makeItemId(off: number, flags: number, len: number): number {
  return ((off & 0x7fff) | ((flags & 3) << 15) | ((len & 0x7fff) << 17)) >>> 0;
}

export function itemIdGetOffset(page: Buffer, offnum: number): number {
  return getItemIdRaw(page, offnum) & 0x7fff;
}
export function itemIdGetFlags(page: Buffer, offnum: number): number {
  return (getItemIdRaw(page, offnum) >>> 15) & 3;
}
export function itemIdGetLength(page: Buffer, offnum: number): number {
  return getItemIdRaw(page, offnum) >>> 17;
}
/** For LP_REDIRECT items the offset field holds the target offset number. */
export function itemIdGetRedirect(page: Buffer, offnum: number): number {
  return itemIdGetOffset(page, offnum);
}

export function setItemId(page: Buffer, offnum: number, off: number, flags: number, len: number): void {
  setItemIdRaw(page, offnum, makeItemId(off, flags, len));
}
export function itemIdSetUnused(page: Buffer, offnum: number): void {
  setItemIdRaw(page, offnum, 0);
}
export function itemIdSetNormal(page: Buffer, offnum: number, off: number, len: number): void {
  setItemId(page, offnum, off, LP_NORMAL, len);
}
export function itemIdSetRedirect(page: Buffer, offnum: number, target: number): void {
  setItemId(page, offnum, target, LP_REDIRECT, 0);
}
/** ItemIdSetDead: LP_DEAD without storage. */
export function itemIdSetDead(page: Buffer, offnum: number): void {
  setItemId(page, offnum, 0, LP_DEAD, 0);
}
/** ItemIdMarkDead: LP_DEAD keeping the storage (index AMs' kill bit). */
export function itemIdMarkDead(page: Buffer, offnum: number): void {
  const raw = getItemIdRaw(page, offnum);
  setItemIdRaw(page, offnum, (raw & ~(3 << 15)) | (LP_DEAD << 15));
}
export function itemIdIsUsed(page: Buffer, offnum: number): boolean {
  return itemIdGetFlags(page, offnum) !== LP_UNUSED;
}
export function itemIdIsNormal(page: Buffer, offnum: number): boolean {
  return itemIdGetFlags(page, offnum) === LP_NORMAL;
}
export function itemIdIsRedirected(page: Buffer, offnum: number): boolean {
  return itemIdGetFlags(page, offnum) === LP_REDIRECT;
}
export function itemIdIsDead(page: Buffer, offnum: number): boolean {
  return itemIdGetFlags(page, offnum) === LP_DEAD;
}
/** ItemIdHasStorage: lp_len != 0. */
export function itemIdHasStorage(page: Buffer, offnum: number): boolean {
  return itemIdGetLength(page, offnum) !== 0;
}

/** PageGetItem: a view of item `offnum`'s lp_len bytes. */
export function getItem(page: Buffer, offnum: number): Buffer {
  const raw = getItemIdRaw(page, offnum);
  const off = raw & 0x7fff;
  return page.subarray(off, off + (raw >>> 17));
}

function checkPointers(page: Buffer, requireAlignedSpecial: boolean): void {
  const lower = getPdLower(page);
  const upper = getPdUpper(page);
  const special = getPdSpecial(page);
  if (
    lower < SIZE_OF_PAGE_HEADER ||
    lower > upper ||
    upper > special ||
    special > BLCKSZ ||
    (requireAlignedSpecial && special !== maxAlign(special))
  ) {
    throw new PageCorruptedError(`corrupted page pointers: lower = ${lower}, upper = ${upper}, special = ${special}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Adding items

export interface AddItemOptions {
  /** PAI_OVERWRITE: store at `offnum`, which must be unused or one past the last item */
  overwrite?: boolean;
  /** PAI_IS_HEAP: at most MaxHeapTuplesPerPage line pointers */
  isHeap?: boolean;
}

/**
 * PageAddItemExtended. `offnum` = InvalidOffsetNumber (0) picks the first free line pointer (if
 * PD_HAS_FREE_LINES says there may be one) or appends. Without `overwrite`, an offset inside the
 * array shifts the following line pointers up. Returns the offset used, or InvalidOffsetNumber
 * when the item cannot be placed (PostgreSQL returns that too, with a WARNING).
 */
export function pageAddItem(page: Buffer, item: Uint8Array, offnum: number, opts: AddItemOptions = {}): number {
  const placed = pageReserveItem(page, item.length, offnum, opts);
  if (placed !== InvalidOffsetNumber) page.set(item, getPdUpper(page));
  return placed;
}

/**
 * pageAddItem without the copy: places a line pointer and `size` bytes of item space exactly as
 * pageAddItem would, and leaves writing the item at pd_upper to the caller (redo builds heap
 * tuples in place instead of building each one elsewhere and copying it).
 */
export function pageReserveItem(page: Buffer, size: number, offnum: number, opts: AddItemOptions = {}): number {
  checkPointers(page, false);
  const limit = maxOffsetNumber(page) + 1;
  let needShuffle = false;

  if (offnum !== InvalidOffsetNumber) {
    if (opts.overwrite) {
      if (offnum < limit && (itemIdIsUsed(page, offnum) || itemIdHasStorage(page, offnum))) return InvalidOffsetNumber;
    } else if (offnum < limit) {
      needShuffle = true;
    }
  } else if (pageHasFreeLinePointers(page)) {
    for (offnum = FirstOffsetNumber; offnum < limit; offnum++) {
      if (!itemIdIsUsed(page, offnum) && !itemIdHasStorage(page, offnum)) break;
    }
    if (offnum >= limit) pageClearHasFreeLinePointers(page); // the hint was wrong
  } else {
    offnum = limit;
  }

  if (offnum > limit) return InvalidOffsetNumber;
  if (opts.isHeap && offnum > MAX_HEAP_TUPLES_PER_PAGE) return InvalidOffsetNumber;

  const lower = offnum === limit || needShuffle ? getPdLower(page) + ITEM_ID_SIZE : getPdLower(page);
  const upper = getPdUpper(page) - maxAlign(size);
  if (lower > upper) return InvalidOffsetNumber;

  if (needShuffle) {
    const from = itemIdPosition(offnum);
    page.copyWithin(from + ITEM_ID_SIZE, from, itemIdPosition(limit));
  }
  itemIdSetNormal(page, offnum, upper, size);
  setPdLower(page, lower);
  setPdUpper(page, upper);
  return offnum;
}

// ---------------------------------------------------------------------------------------------
// Compaction

/**
 * compactify_tuples' input, in preallocated arrays instead of an object per item (this runs for
 * every heap prune and index delete replayed): for item k, the 1-based offset number of the line
 * pointer to update, where its data is now, and its MAXALIGNed length.
 */
const MAX_LINE_POINTERS = (BLCKSZ - SIZE_OF_PAGE_HEADER) / ITEM_ID_SIZE;
const compactOffnum = new Uint16Array(MAX_LINE_POINTERS);
const compactItemoff = new Uint16Array(MAX_LINE_POINTERS);
const compactAlignedLen = new Uint16Array(MAX_LINE_POINTERS);

/**
 * compactify_tuples: packs the first `count` items of the compact arrays against pd_special in
 * that order (the first item ends at pd_special), each taking its MAXALIGNed length (padding bytes
 * travel along), updates their lp_off and sets pd_upper. Whatever lies below the new pd_upper is
 * left as it was.
 */
const COMPACT_SCRATCH = Buffer.allocUnsafe(65536);

function compactifyTuples(page: Buffer, count: number, lp = new DataView(page.buffer, page.byteOffset, BLCKSZ)): void {
  const upperBefore = getPdUpper(page);
  const special = getPdSpecial(page);
  // Items whose data already lies in descending order (the usual heap page: tuples are added
  // downwards) only move up, each into space that is free or already vacated, so they can be
  // moved in place. Otherwise every item is copied from a snapshot of the tuple space. (One
  // scratch buffer for all calls: this runs synchronously and keeps nothing.)
  let presorted = true;
  for (let i = 1; i < count && presorted; i++) presorted = compactItemoff[i] < compactItemoff[i - 1];
  const fromScratch = !presorted;
  if (fromScratch) page.copy(COMPACT_SCRATCH, 0, upperBefore, special);
  // Items whose data lie back to back, each below the previous one, land back to back too: they
  // move as one run (one copy instead of one per item; after a prune most of a page is such runs).
  let upper = special;
  let runFrom = 0; // source start of the pending run (the last item added to it)
  let runEnd = 0; // source end of the pending run
  let runTo = 0; // where the run's first byte goes
  for (let i = 0; i < count; i++) {
    const itemoff = compactItemoff[i];
    const alignedLen = compactAlignedLen[i];
    upper -= alignedLen;
    if (i > 0 && itemoff + alignedLen === runFrom) {
      runFrom = itemoff;
      runTo = upper;
    } else {
      if (i > 0) moveRun(page, fromScratch, upperBefore, runFrom, runEnd, runTo);
      runFrom = itemoff;
      runEnd = itemoff + alignedLen;
      runTo = upper;
    }
    // (line pointers of items that stay put are left alone: after a prune, often most of them)
    if (upper !== itemoff) {
      const pos = itemIdPosition(compactOffnum[i]);
      lp.setUint32(pos, ((lp.getUint32(pos, true) & ~0x7fff) | upper) >>> 0, true);
    }
  }
  if (count > 0) moveRun(page, fromScratch, upperBefore, runFrom, runEnd, runTo);
  setPdUpper(page, upper);
}

/** Moves the item data at [from, end) of the tuple space to `to` (from the snapshot if taken). */
function moveRun(page: Buffer, fromScratch: boolean, upperBefore: number, from: number, end: number, to: number): void {
  if (to === from) return;
  if (fromScratch) COMPACT_SCRATCH.copy(page, to, from - upperBefore, end - upperBefore);
  else page.copyWithin(to, from, end);
}

/**
 * PageRepairFragmentation (heap pages, after pruning): unused line pointers get zeroed, the data of
 * items with storage is repacked in line-pointer order from pd_special down, trailing unused line
 * pointers are truncated, and PD_HAS_FREE_LINES reflects whether unused ones remain.
 */
export function pageRepairFragmentation(page: Buffer): void {
  checkPointers(page, true);
  const lower = getPdLower(page);
  const upper = getPdUpper(page);
  const special = getPdSpecial(page);
  const nline = maxOffsetNumber(page);
  let count = 0;
  let nunused = 0;
  let totalLen = 0;
  let finalUsed = InvalidOffsetNumber;
  // (one DataView for the line pointers: a 32-bit load each instead of four byte loads)
  const lp = new DataView(page.buffer, page.byteOffset, BLCKSZ);
  for (let i = FirstOffsetNumber; i <= nline; i++) {
    const raw = lp.getUint32(SIZE_OF_PAGE_HEADER + (i - 1) * ITEM_ID_SIZE, true);
    const flags = (raw >>> 15) & 3;
    if (flags !== LP_UNUSED) {
      const len = raw >>> 17;
      if (len !== 0) {
        const itemoff = raw & 0x7fff;
        if (itemoff < upper || itemoff >= special) throw new PageCorruptedError(`corrupted line pointer: ${itemoff}`);
        const alignedLen = maxAlign(len);
        totalLen += alignedLen;
        compactOffnum[count] = i;
        compactItemoff[count] = itemoff;
        compactAlignedLen[count] = alignedLen;
        count++;
      }
      finalUsed = i;
    } else {
      if (raw !== 0) lp.setUint32(SIZE_OF_PAGE_HEADER + (i - 1) * ITEM_ID_SIZE, 0, true);
      nunused++;
    }
  }

  if (count === 0) {
    setPdUpper(page, special);
  } else {
    if (totalLen > special - lower) {
      throw new PageCorruptedError(`corrupted item lengths: total ${totalLen}, available space ${special - lower}`);
    }
    compactifyTuples(page, count, lp);
  }

  if (finalUsed !== nline) {
    const trailing = nline - finalUsed;
    nunused -= trailing;
    setPdLower(page, getPdLower(page) - ITEM_ID_SIZE * trailing);
  }
  if (nunused > 0) pageSetHasFreeLinePointers(page);
  else pageClearHasFreeLinePointers(page);
}

/**
 * PageTruncateLinePointerArray (heap, VACUUM's second pass): drops trailing unused line pointers
 * but always keeps at least one; PD_HAS_FREE_LINES is set iff unused ones remain before them.
 */
export function pageTruncateLinePointerArray(page: Buffer): void {
  let countDone = false;
  let setHint = false;
  let trailing = 0;
  for (let i = maxOffsetNumber(page); i >= FirstOffsetNumber; i--) {
    const used = itemIdIsUsed(page, i);
    if (!countDone && i > FirstOffsetNumber) {
      if (!used) trailing++;
      else countDone = true;
    } else if (!used) {
      setHint = true;
      break;
    }
  }
  if (trailing > 0) setPdLower(page, getPdLower(page) - ITEM_ID_SIZE * trailing);
  if (setHint) pageSetHasFreeLinePointers(page);
  else pageClearHasFreeLinePointers(page);
}

function checkIndexItem(page: Buffer, offnum: number): { offset: number; size: number; nline: number } {
  checkPointers(page, true);
  const nline = maxOffsetNumber(page);
  if (offnum <= 0 || offnum > nline) throw new PageCorruptedError(`invalid index offnum: ${offnum}`);
  const size = itemIdGetLength(page, offnum);
  const offset = itemIdGetOffset(page, offnum);
  if (offset < getPdUpper(page) || offset + size > getPdSpecial(page) || offset !== maxAlign(offset)) {
    throw new PageCorruptedError(`corrupted line pointer: offset = ${offset}, size = ${size}`);
  }
  return { offset, size, nline };
}

/** Moves the tuple data in [pd_upper, offset) up by `delta` bytes and fixes pointers into it. */
function shiftDataBelow(page: Buffer, offset: number, delta: number, nline: number, onlyWithStorage: boolean): void {
  const upper = getPdUpper(page);
  if (offset > upper) page.copyWithin(upper + delta, upper, offset);
  setPdUpper(page, upper + delta);
  for (let i = FirstOffsetNumber; i <= nline; i++) {
    const raw = getItemIdRaw(page, i);
    if (onlyWithStorage && raw >>> 17 === 0) continue;
    const off = raw & 0x7fff;
    if (off <= offset) setItemIdRaw(page, i, (raw & ~0x7fff) | (off + delta));
  }
}

/**
 * PageIndexTupleDelete: removes item `offnum` and its line pointer (later items renumber down);
 * the data below it moves up to close the gap.
 */
export function pageIndexTupleDelete(page: Buffer, offnum: number): void {
  const { offset, size, nline } = checkIndexItem(page, offnum);
  const aligned = maxAlign(size);
  const lower = getPdLower(page);
  page.copyWithin(itemIdPosition(offnum), itemIdPosition(offnum + 1), lower);
  setPdLower(page, lower - ITEM_ID_SIZE);
  const upper = getPdUpper(page);
  if (offset > upper) page.copyWithin(upper + aligned, upper, offset);
  setPdUpper(page, upper + aligned);
  if (!pageIsEmpty(page)) {
    for (let i = FirstOffsetNumber; i <= nline - 1; i++) {
      const raw = getItemIdRaw(page, i);
      const off = raw & 0x7fff;
      if (off <= offset) setItemIdRaw(page, i, (raw & ~0x7fff) | (off + aligned));
    }
  }
}

/**
 * PageIndexMultiDelete: removes the items `offnums` (ascending) with their line pointers and
 * compacts the rest (as compactify_tuples does). Two or fewer go through pageIndexTupleDelete,
 * last first, exactly as PostgreSQL does (the resulting layout differs).
 */
export function pageIndexMultiDelete(page: Buffer, offnums: ArrayLike<number>): void {
  const nitems = offnums.length;
  if (nitems <= 2) {
    for (let k = nitems - 1; k >= 0; k--) pageIndexTupleDelete(page, offnums[k]);
    return;
  }
  checkPointers(page, true);
  const lower = getPdLower(page);
  const upper = getPdUpper(page);
  const special = getPdSpecial(page);
  const nline = maxOffsetNumber(page);
  const newIds: number[] = [];
  let count = 0;
  let totalLen = 0;
  let next = 0;
  for (let offnum = FirstOffsetNumber; offnum <= nline; offnum++) {
    const raw = getItemIdRaw(page, offnum);
    const size = raw >>> 17;
    const offset = raw & 0x7fff;
    if (offset < upper || offset + size > special || offset !== maxAlign(offset)) {
      throw new PageCorruptedError(`corrupted line pointer: offset = ${offset}, size = ${size}`);
    }
    if (next < nitems && offnum === offnums[next]) {
      next++;
    } else {
      const alignedLen = maxAlign(size);
      totalLen += alignedLen;
      compactOffnum[count] = newIds.length + 1;
      compactItemoff[count] = offset;
      compactAlignedLen[count] = alignedLen;
      count++;
      newIds.push(raw);
    }
  }
  if (next !== nitems) throw new PageCorruptedError("incorrect index offsets supplied");
  if (totalLen > special - lower) {
    throw new PageCorruptedError(`corrupted item lengths: total ${totalLen}, available space ${special - lower}`);
  }
  for (let k = 0; k < newIds.length; k++) setItemIdRaw(page, k + 1, newIds[k]);
  setPdLower(page, SIZE_OF_PAGE_HEADER + newIds.length * ITEM_ID_SIZE);
  if (count > 0) compactifyTuples(page, count);
  else setPdUpper(page, special);
}

/**
 * PageIndexTupleDeleteNoCompact: removes item `offnum`'s data but keeps its line pointer as
 * LP_UNUSED (dropped only if it is the last one), so other items keep their offset numbers.
 */
export function pageIndexTupleDeleteNoCompact(page: Buffer, offnum: number): void {
  const checked = checkIndexItem(page, offnum);
  const { offset, size } = checked;
  let nline = checked.nline;
  const aligned = maxAlign(size);
  if (offnum < nline) {
    itemIdSetUnused(page, offnum);
  } else {
    setPdLower(page, getPdLower(page) - ITEM_ID_SIZE);
    nline--;
  }
  const upper = getPdUpper(page);
  if (offset > upper) page.copyWithin(upper + aligned, upper, offset);
  setPdUpper(page, upper + aligned);
  if (!pageIsEmpty(page)) {
    for (let i = FirstOffsetNumber; i <= nline; i++) {
      const raw = getItemIdRaw(page, i);
      const off = raw & 0x7fff;
      if (raw >>> 17 !== 0 && off <= offset) setItemIdRaw(page, i, (raw & ~0x7fff) | (off + aligned));
    }
  }
}

/**
 * PageIndexTupleOverwrite: replaces item `offnum` in place (keeping its lp_flags), shifting the
 * data below it when the MAXALIGNed size changes. Returns false if it does not fit.
 */
export function pageIndexTupleOverwrite(page: Buffer, offnum: number, item: Uint8Array): boolean {
  const { offset, size, nline } = checkIndexItem(page, offnum);
  const oldAligned = maxAlign(size);
  const newAligned = maxAlign(item.length);
  if (newAligned > oldAligned + (getPdUpper(page) - getPdLower(page))) return false;
  const diff = oldAligned - newAligned;
  if (diff !== 0) shiftDataBelow(page, offset, diff, nline, true);
  const raw = getItemIdRaw(page, offnum);
  setItemIdRaw(page, offnum, makeItemId(offset + diff, (raw >>> 15) & 3, item.length));
  page.set(item, offset + diff);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Free space

/** PageGetFreeSpace: pd_upper - pd_lower minus one line pointer (never negative). */
export function pageGetFreeSpace(page: Buffer): number {
  const space = getPdUpper(page) - getPdLower(page);
  return space < ITEM_ID_SIZE ? 0 : space - ITEM_ID_SIZE;
}

/** PageGetFreeSpaceForMultipleTuples */
export function pageGetFreeSpaceForMultipleTuples(page: Buffer, ntups: number): number {
  const space = getPdUpper(page) - getPdLower(page);
  return space < ntups * ITEM_ID_SIZE ? 0 : space - ntups * ITEM_ID_SIZE;
}

/** PageGetExactFreeSpace: pd_upper - pd_lower (never negative). */
export function pageGetExactFreeSpace(page: Buffer): number {
  const space = getPdUpper(page) - getPdLower(page);
  return space < 0 ? 0 : space;
}

/**
 * PageGetHeapFreeSpace: as pageGetFreeSpace, but 0 when the page already has MaxHeapTuplesPerPage
 * line pointers and none is free (trusting a clear PD_HAS_FREE_LINES, as PageAddItem does).
 */
export function pageGetHeapFreeSpace(page: Buffer): number {
  let space = pageGetFreeSpace(page);
  if (space > 0) {
    const nline = maxOffsetNumber(page);
    if (nline >= MAX_HEAP_TUPLES_PER_PAGE) {
      if (pageHasFreeLinePointers(page)) {
        let offnum = FirstOffsetNumber;
        while (offnum <= nline && itemIdIsUsed(page, offnum)) offnum++;
        if (offnum > nline) space = 0;
      } else {
        space = 0;
      }
    }
  }
  return space;
}
