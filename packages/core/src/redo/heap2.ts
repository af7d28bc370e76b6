// Heap2 redo (rmgr 9, PostgreSQL's heap_xlog_* for XLOG_HEAP2_*): pruning, vacuum's second pass,
// freezing, all-visible marking (heap page and visibility-map page), multi-insert and locking of
// updated tuple versions, one page per call. REWRITE and NEW_CID carry no page changes. Masking
// is heap_mask (heap.ts) for every block, VM pages included, as PostgreSQL does.
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import {
  applyXmaxInfobits,
  heapMask,
  normalTuple,
  mainOffsetChecked,
  placeHeapTuple,
  requireData,
  requireMain,
  HEAP_COMBOCID,
  SIZEOF_HEAP_TUPLE_HEADER,
  T_CID,
  T_CTID,
  T_HOFF,
  T_XMIN,
  T_INFOMASK,
  T_INFOMASK2,
  T_XMAX,
  XLH_INSERT_ALL_FROZEN_SET,
  XLH_INSERT_ALL_VISIBLE_CLEARED,
  XLOG_HEAP_INIT_PAGE,
  XLOG_HEAP_OPMASK,
} from "./heap.ts";
import {
  copyBytes,
  FirstOffsetNumber,
  getItemIdRaw,
  getPdLower,
  getPdUpper,
  ITEM_ID_SIZE,
  isNewPage,
  itemIdSetDead,
  itemIdSetRedirect,
  itemIdSetUnused,
  LP_DEAD,
  LP_NORMAL,
  MAX_HEAP_TUPLES_PER_PAGE,
  maxAlign,
  maxOffsetNumber,
  PageCorruptedError,
  pageClearAllVisible,
  pageInit,
  pageRepairFragmentation,
  pageSetAllVisible,
  pageTruncateLinePointerArray,
  setPdLower,
  setPdUpper,
  SIZE_OF_PAGE_HEADER,
} from "./page.ts";
import { BLCKSZ } from "../reltag.ts";
import { readU16, writeU16, writeU32 } from "../bytes.ts";
import { RedoError, type RmgrRedo, UnsupportedRecordError } from "./types.ts";

const XLOG_HEAP2_REWRITE = 0x00;
const XLOG_HEAP2_PRUNE = 0x10;
const XLOG_HEAP2_VACUUM = 0x20;
const XLOG_HEAP2_FREEZE_PAGE = 0x30;
const XLOG_HEAP2_VISIBLE = 0x40;
const XLOG_HEAP2_MULTI_INSERT = 0x50;
const XLOG_HEAP2_LOCK_UPDATED = 0x60;
const XLOG_HEAP2_NEW_CID = 0x70;

const XLH_FREEZE_XVAC = 0x02;
const XLH_INVALID_XVAC = 0x04;
const FROZEN_TRANSACTION_ID = 2;
/** sizeof(xl_heap_freeze_tuple): xmax u32, offset u16, t_infomask2 u16, t_infomask u16, frzflags u8, pad */
const SIZEOF_FREEZE_TUPLE = 12;
/** xl_multi_insert_tuple: datalen u16, t_infomask2 u16, t_infomask u16, t_hoff u8 */
const SIZEOF_MULTI_INSERT_TUPLE = 7;

/** Visibility map layout: 2 bits per heap block after the page header. */
const VM_MAPSIZE = 8192 - SIZE_OF_PAGE_HEADER;
const VM_HEAPBLOCKS_PER_PAGE = VM_MAPSIZE * 4;
const VISIBILITYMAP_VALID_BITS = 0x03;

function checkOffset(page: Buffer, offnum: number, record: DecodedRecord, block: BlockRef): void {
  if (offnum < FirstOffsetNumber || offnum > maxOffsetNumber(page)) {
    throw new RedoError(record, block, `offset ${offnum} beyond max offset ${maxOffsetNumber(page)}`);
  }
}

/** PRUNE: redirect / dead / unused line pointers as logged, then PageRepairFragmentation. */
function redoPrune(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  // xl_heap_prune {latestRemovedXid u32, nredirected u16, ndead u16}
  const main = record.mainSource;
  const m = mainOffsetChecked(record, block, 8);
  const nredirected = readU16(main, m + 4);
  const ndead = readU16(main, m + 6);
  // the block data where it lies in the record (no view made)
  const data = block.dataSource;
  const d = block.dataOffset;
  const count = block.dataLength >>> 1;
  if (block.dataLength % 2 !== 0 || count < nredirected * 2 + ndead) {
    throw new RedoError(record, block, `prune data of ${block.dataLength} bytes for ${nredirected} redirects and ${ndead} dead`);
  }
  let i = 0;
  for (let k = 0; k < nredirected; k++, i += 2) {
    const from = readU16(data, d + i * 2);
    const to = readU16(data, d + i * 2 + 2);
    checkOffset(page, from, record, block);
    itemIdSetRedirect(page, from, to);
  }
  for (let k = 0; k < ndead; k++, i++) {
    const off = readU16(data, d + i * 2);
    checkOffset(page, off, record, block);
    itemIdSetDead(page, off);
  }
  for (; i < count; i++) {
    const off = readU16(data, d + i * 2);
    checkOffset(page, off, record, block);
    itemIdSetUnused(page, off);
  }
  try {
    pageRepairFragmentation(page);
  } catch (err) {
    if (err instanceof PageCorruptedError) throw new RedoError(record, block, err.message);
    throw err;
  }
}

/** VACUUM (second heap pass): LP_DEAD pointers become unused, then the array is truncated. */
function redoVacuum(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const nunused = requireMain(record, block, 2).readUInt16LE(0);
  const data = requireData(record, block, nunused * 2);
  for (let k = 0; k < nunused; k++) {
    const off = data.readUInt16LE(k * 2);
    checkOffset(page, off, record, block);
    const raw = getItemIdRaw(page, off);
    if (((raw >>> 15) & 3) !== LP_DEAD || raw >>> 17 !== 0) throw new RedoError(record, block, `offset ${off} is not a dead line pointer without storage`);
    itemIdSetUnused(page, off);
  }
  pageTruncateLinePointerArray(page);
}

/** FREEZE_PAGE: per tuple, the logged xmax, infomasks and xvac (heap_execute_freeze_tuple). */
function redoFreezePage(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  // xl_heap_freeze_page {cutoff_xid u32, ntuples u16}
  const ntuples = requireMain(record, block, 6).readUInt16LE(4);
  const data = requireData(record, block, ntuples * SIZEOF_FREEZE_TUPLE);
  for (let k = 0; k < ntuples; k++) {
    const at = k * SIZEOF_FREEZE_TUPLE;
    const offnum = data.readUInt16LE(at + 4);
    const frzflags = data[at + 10];
    checkOffset(page, offnum, record, block);
    // PostgreSQL does not check the line pointer kind here; the tuple is wherever lp_off points
    const pos = getItemIdRaw(page, offnum) & 0x7fff;
    if (pos + SIZEOF_HEAP_TUPLE_HEADER > page.length) throw new RedoError(record, block, `tuple at offset ${offnum} lies outside the page`);
    writeU32(page, data.readUInt32LE(at), pos + T_XMAX);
    if (frzflags & XLH_FREEZE_XVAC) writeU32(page, FROZEN_TRANSACTION_ID, pos + T_CID);
    if (frzflags & XLH_INVALID_XVAC) writeU32(page, 0, pos + T_CID);
    writeU16(page, data.readUInt16LE(at + 8), pos + T_INFOMASK);
    writeU16(page, data.readUInt16LE(at + 6), pos + T_INFOMASK2);
  }
}

/**
 * VISIBLE. Block 0 is the visibility-map page: initialized if new, then the heap block's bits
 * are OR-ed in; PostgreSQL stamps its LSN only when that changes the bits. Block 1 is the heap
 * page: PD_ALL_VISIBLE is set, and its LSN is bumped only with checksums or wal_log_hints,
 * which the record does not tell: the engine decides from the timeline's pg_control ("hint-lsn").
 */
function redoVisible(page: Buffer, record: DecodedRecord, block: BlockRef): void | "keep-lsn" | "hint-lsn" {
  // xl_heap_visible {cutoff_xid u32, flags u8}
  const flags = requireMain(record, block, 5)[4];
  if (block.id === 1) {
    // an uninitialized heap page is skipped, as XLogReadBufferForRedo reports it not found
    if (isNewPage(page)) return "keep-lsn";
    pageSetAllVisible(page);
    return "hint-lsn";
  }
  if (block.id !== 0) throw new RedoError(record, block, `unexpected block id ${block.id} in Heap2/VISIBLE`);
  let heapBlock: BlockRef | undefined;
  for (const b of record.blocks) if (b.id === 1) heapBlock = b;
  if (!heapBlock) throw new RedoError(record, block, "Heap2/VISIBLE without the heap block (block 1)");
  if (isNewPage(page)) pageInit(page, 0);
  const inPage = heapBlock.blockNumber % VM_HEAPBLOCKS_PER_PAGE;
  const byte = SIZE_OF_PAGE_HEADER + (inPage >>> 2);
  const shift = 2 * (inPage & 3);
  const bits = flags & VISIBILITYMAP_VALID_BITS;
  if (bits === ((page[byte] >>> shift) & VISIBILITYMAP_VALID_BITS)) return "keep-lsn";
  page[byte] |= bits << shift;
}

/** MULTI_INSERT: tuples at the logged offsets (1..n on a re-initialized page). */
function redoMultiInsert(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  // xl_heap_multi_insert {flags u8, pad, ntuples u16, offsets u16[ntuples] unless INIT_PAGE}
  const isInit = (record.info & XLOG_HEAP_INIT_PAGE) !== 0;
  const main = requireMain(record, block, 4);
  const flags = main[0];
  const ntuples = main.readUInt16LE(2);
  if (!isInit) requireMain(record, block, 4 + ntuples * 2);
  if (isInit) {
    pageInit(page, 0);
    fillNewPage(page, record, block, ntuples);
  } else insertIntoPage(page, record, block, main, ntuples);
  if (flags & XLH_INSERT_ALL_VISIBLE_CLEARED) pageClearAllVisible(page);
  if (flags & XLH_INSERT_ALL_FROZEN_SET) pageSetAllVisible(page);
}

/** The tuples of a multi-insert into a page that has some already, at the offsets the record lists. */
function insertIntoPage(page: Buffer, record: DecodedRecord, block: BlockRef, main: Buffer, ntuples: number): void {
  const data = block.data;
  let at = 0;
  for (let k = 0; k < ntuples; k++) {
    const offnum = main.readUInt16LE(4 + k * 2);
    at = (at + 1) & ~1; // SHORTALIGN, relative to the (MAXALIGNed) start of the block data
    if (at + SIZEOF_MULTI_INSERT_TUPLE > data.length) throw new RedoError(record, block, `multi-insert data ends before tuple ${k} of ${ntuples}`);
    const datalen = data.readUInt16LE(at);
    const infomask2 = data.readUInt16LE(at + 2);
    const infomask = data.readUInt16LE(at + 4);
    const hoff = data[at + 6];
    at += SIZEOF_MULTI_INSERT_TUPLE;
    if (at + datalen > data.length) throw new RedoError(record, block, `multi-insert tuple ${k} of ${datalen} bytes overruns the block data`);
    const tuple = placeHeapTuple(page, SIZEOF_HEAP_TUPLE_HEADER + datalen, offnum, { infomask2, infomask, hoff, xmin: record.xid, xmax: 0 }, record, block);
    copyBytes(data, at, at + datalen, page, tuple + SIZEOF_HEAP_TUPLE_HEADER);
    at += datalen;
  }
  if (at !== data.length) throw new RedoError(record, block, `total tuple length mismatch: used ${at} of ${data.length} bytes`);
}

/**
 * The tuples of a multi-insert that starts its page over (INIT_PAGE) on the freshly initialized
 * page: at offsets 1..n, each stored below the previous one, exactly where PageAddItem puts them
 * on an empty page, written straight through DataViews instead of through the general insert
 * path. A bulk load (COPY) is one such record per heap page, and a full backup or compaction pass
 * after it replays every one of them: this took about 20 us a page the general way.
 */
function fillNewPage(page: Buffer, record: DecodedRecord, block: BlockRef, ntuples: number): void {
  if (ntuples > MAX_HEAP_TUPLES_PER_PAGE) throw new RedoError(record, block, `failed to add tuple at offset ${MAX_HEAP_TUPLES_PER_PAGE + 1}: more than ${MAX_HEAP_TUPLES_PER_PAGE} tuples on a heap page`);
  const data = block.data;
  const source = new DataView(data.buffer, data.byteOffset, data.length);
  const target = new DataView(page.buffer, page.byteOffset, BLCKSZ);
  const xmin = record.xid >>> 0;
  const blockHigh = (block.blockNumber >>> 16) & 0xffff;
  const blockLow = block.blockNumber & 0xffff;
  let lower = getPdLower(page);
  let upper = getPdUpper(page);
  let at = 0;
  for (let k = 0; k < ntuples; k++) {
    at = (at + 1) & ~1; // SHORTALIGN, relative to the (MAXALIGNed) start of the block data
    if (at + SIZEOF_MULTI_INSERT_TUPLE > data.length) throw new RedoError(record, block, `multi-insert data ends before tuple ${k} of ${ntuples}`);
    const datalen = source.getUint16(at, true);
    const infomask2 = source.getUint16(at + 2, true);
    const infomask = source.getUint16(at + 4, true);
    const hoff = data[at + 6];
    at += SIZEOF_MULTI_INSERT_TUPLE;
    if (at + datalen > data.length) throw new RedoError(record, block, `multi-insert tuple ${k} of ${datalen} bytes overruns the block data`);
    const length = SIZEOF_HEAP_TUPLE_HEADER + datalen;
    const offnum = FirstOffsetNumber + k;
    upper -= maxAlign(length);
    lower += ITEM_ID_SIZE;
    if (lower > upper) throw new RedoError(record, block, `failed to add tuple of ${length} bytes at offset ${offnum}`);
    // ItemIdData {lp_off:15, lp_flags:2, lp_len:15}
    target.setUint32(lower - ITEM_ID_SIZE, (upper | (LP_NORMAL << 15) | (length << 17)) >>> 0, true);
    // the header: xmin, xmax 0 and cid 0 (HeapTupleHeaderSetCmin clears HEAP_COMBOCID), ctid
    // (this block, this offset), infomasks and hoff; the page was zeroed, so zeros need no write
    target.setUint32(upper + T_XMIN, xmin, true);
    target.setUint16(upper + T_CTID, blockHigh, true);
    target.setUint16(upper + T_CTID + 2, blockLow, true);
    target.setUint16(upper + T_CTID + 4, offnum, true);
    target.setUint16(upper + T_INFOMASK2, infomask2, true);
    target.setUint16(upper + T_INFOMASK, infomask & ~HEAP_COMBOCID, true);
    page[upper + T_HOFF] = hoff;
    // the null bitmap, padding and data after the fixed header, four bytes at a time
    const to = upper + SIZEOF_HEAP_TUPLE_HEADER;
    let i = 0;
    for (; i + 4 <= datalen; i += 4) target.setUint32(to + i, source.getUint32(at + i, true), true);
    for (; i < datalen; i++) page[to + i] = data[at + i];
    at += datalen;
  }
  if (at !== data.length) throw new RedoError(record, block, `total tuple length mismatch: used ${at} of ${data.length} bytes`);
  setPdLower(page, lower);
  setPdUpper(page, upper);
}

/** LOCK_UPDATED: xmax and lock bits on a version of an updated chain; no cmax or ctid change. */
function redoLockUpdated(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  // xl_heap_lock_updated {xmax u32, offnum u16, infobits_set u8, flags u8}
  const main = requireMain(record, block, 8);
  const xmax = main.readUInt32LE(0);
  const offnum = main.readUInt16LE(4);
  const pos = normalTuple(page, offnum, record, block);
  applyXmaxInfobits(page, pos, main[6]);
  writeU32(page, xmax, pos + T_XMAX);
}

export const heap2Rmgr: RmgrRedo = {
  name: "Heap2",
  redo(page, record, block) {
    switch (record.info & XLOG_HEAP_OPMASK) {
      case XLOG_HEAP2_PRUNE:
        return redoPrune(page, record, block);
      case XLOG_HEAP2_VACUUM:
        return redoVacuum(page, record, block);
      case XLOG_HEAP2_FREEZE_PAGE:
        return redoFreezePage(page, record, block);
      case XLOG_HEAP2_VISIBLE:
        return redoVisible(page, record, block);
      case XLOG_HEAP2_MULTI_INSERT:
        return redoMultiInsert(page, record, block);
      case XLOG_HEAP2_LOCK_UPDATED:
        return redoLockUpdated(page, record, block);
      case XLOG_HEAP2_REWRITE:
      case XLOG_HEAP2_NEW_CID:
        throw new UnsupportedRecordError(record, "this record type references no pages");
    }
    throw new UnsupportedRecordError(record);
  },
  mask: heapMask,
};
