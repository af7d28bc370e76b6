// Hash index redo (rmgr 12, PostgreSQL's hash_xlog.c), one block reference at a time. A hash index
// is a metapage (block 0), bucket pages, overflow pages chained behind them and bitmap pages that
// track free overflow pages; every page ends in a 16-byte HashPageOpaqueData. Blocks that a record
// registers only so that replay takes a cleanup lock on the primary bucket page are left untouched
// (and keep their LSN, as PostgreSQL never stamps them).
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { maskLpFlags, maskPageContent, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./mask.ts";
import { getPdSpecial, InvalidOffsetNumber, maxAlign, pageAddItem, pageIndexMultiDelete, pageInit, setPdLower, SIZE_OF_PAGE_HEADER } from "./page.ts";
import { readU16, readU32, writeU16, writeU32 } from "../bytes.ts";
import { type RmgrRedo, RedoError, UnsupportedRecordError } from "./types.ts";

const XLOG_HASH_INIT_META_PAGE = 0x00;
const XLOG_HASH_INIT_BITMAP_PAGE = 0x10;
const XLOG_HASH_INSERT = 0x20;
const XLOG_HASH_ADD_OVFL_PAGE = 0x30;
const XLOG_HASH_SPLIT_ALLOCATE_PAGE = 0x40;
const XLOG_HASH_SPLIT_PAGE = 0x50;
const XLOG_HASH_SPLIT_COMPLETE = 0x60;
const XLOG_HASH_MOVE_PAGE_CONTENTS = 0x70;
const XLOG_HASH_SQUEEZE_PAGE = 0x80;
const XLOG_HASH_DELETE = 0x90;
const XLOG_HASH_SPLIT_CLEANUP = 0xa0;
const XLOG_HASH_UPDATE_META_PAGE = 0xb0;
const XLOG_HASH_VACUUM_ONE_PAGE = 0xc0;

/** xl_hash_split_allocate_page.flags */
const XLH_SPLIT_META_UPDATE_MASKS = 1 << 0;
const XLH_SPLIT_META_UPDATE_SPLITPOINT = 1 << 1;

/** hasho_flag: page type in the low bits, then state bits */
const LH_UNUSED_PAGE = 0;
const LH_OVERFLOW_PAGE = 1 << 0;
const LH_BUCKET_PAGE = 1 << 1;
const LH_BITMAP_PAGE = 1 << 2;
const LH_META_PAGE = 1 << 3;
const LH_BUCKET_NEEDS_SPLIT_CLEANUP = 1 << 6;
const LH_PAGE_HAS_DEAD_TUPLES = 1 << 7;
const LH_PAGE_TYPE = LH_OVERFLOW_PAGE | LH_BUCKET_PAGE | LH_BITMAP_PAGE | LH_META_PAGE;
const HASHO_PAGE_ID = 0xff80;

const INVALID_BLOCK = 0xffffffff;
const INVALID_BUCKET = 0xffffffff;

/** HashPageOpaqueData {prevblkno u32, nextblkno u32, bucket u32, flag u16, page_id u16} */
const OPAQUE_SIZE = 16;
const OPAQUE_PREV = 0;
const OPAQUE_NEXT = 4;
const OPAQUE_BUCKET = 8;
const OPAQUE_FLAG = 12;
const OPAQUE_PAGE_ID = 14;

/** HashMetaPageData, starting at PageGetContents (offset 24) */
const META = SIZE_OF_PAGE_HEADER;
const HASH_MAGIC = 0x6440640;
const HASH_VERSION = 4;
const M_MAGIC = META + 0;
const M_VERSION = META + 4;
const M_NTUPLES = META + 8; // double
const M_FFACTOR = META + 16;
const M_BSIZE = META + 18;
const M_BMSIZE = META + 20;
const M_BMSHIFT = META + 22;
const M_MAXBUCKET = META + 24;
const M_HIGHMASK = META + 28;
const M_LOWMASK = META + 32;
const M_OVFLPOINT = META + 36;
const M_FIRSTFREE = META + 40;
const M_NMAPS = META + 44;
const M_PROCID = META + 48;
const M_SPARES = META + 52;
const HASH_MAX_SPLITPOINTS = (32 - 10) * 4 + 10;
const M_MAPP = M_SPARES + HASH_MAX_SPLITPOINTS * 4;
const HASH_MAX_BITMAPS = 1024;
// sizeof(HashMetaPageData) is padded to the alignment of its double
const META_END = META + maxAlign(M_MAPP - META + HASH_MAX_BITMAPS * 4);

const SPLITPOINT_GROUPS_WITH_ONE_PHASE = 10;
const SPLITPOINT_PHASE_BITS = 2;
const SPLITPOINT_PHASE_MASK = (1 << SPLITPOINT_PHASE_BITS) - 1;

function opaque(page: Buffer): number {
  return getPdSpecial(page);
}

function getFlag(page: Buffer): number {
  return readU16(page, opaque(page) + OPAQUE_FLAG);
}

function setFlag(page: Buffer, flag: number): void {
  writeU16(page, flag & 0xffff, opaque(page) + OPAQUE_FLAG);
}

/** _hash_pageinit + the opaque fields every initializer sets. */
function hashPageInit(page: Buffer, prev: number, next: number, bucket: number, flag: number): void {
  pageInit(page, OPAQUE_SIZE);
  const op = opaque(page);
  writeU32(page, prev >>> 0, op + OPAQUE_PREV);
  writeU32(page, next >>> 0, op + OPAQUE_NEXT);
  writeU32(page, bucket >>> 0, op + OPAQUE_BUCKET);
  writeU16(page, flag, op + OPAQUE_FLAG);
  writeU16(page, HASHO_PAGE_ID, op + OPAQUE_PAGE_ID);
}

/** pg_ceil_log2_32 */
function ceilLog2(n: number): number {
  return n < 2 ? 0 : 32 - Math.clz32(n - 1);
}

/** _hash_spareindex: the splitpoint phase that allocates bucket number `numBucket` - 1. */
function spareIndex(numBucket: number): number {
  const group = ceilLog2(numBucket);
  if (group < SPLITPOINT_GROUPS_WITH_ONE_PHASE) return group;
  return (
    SPLITPOINT_GROUPS_WITH_ONE_PHASE +
    ((group - SPLITPOINT_GROUPS_WITH_ONE_PHASE) << SPLITPOINT_PHASE_BITS) +
    (((numBucket - 1) >>> (group - (SPLITPOINT_PHASE_BITS + 1))) & SPLITPOINT_PHASE_MASK)
  );
}

/** _hash_get_totalbuckets: buckets allocated up to and including splitpoint phase `phase`. */
function totalBuckets(phase: number): number {
  if (phase < SPLITPOINT_GROUPS_WITH_ONE_PHASE) return 2 ** phase;
  const group = SPLITPOINT_GROUPS_WITH_ONE_PHASE + ((phase - SPLITPOINT_GROUPS_WITH_ONE_PHASE) >>> SPLITPOINT_PHASE_BITS);
  const before = 2 ** (group - 1);
  const phasesWithin = ((phase - SPLITPOINT_GROUPS_WITH_ONE_PHASE) & SPLITPOINT_PHASE_MASK) + 1;
  return before + Math.floor(before / 4) * phasesWithin;
}

/** _hash_init_metabuffer on a fresh page: bucket count from the estimated tuples and fill factor. */
function initMetaPage(page: Buffer, numTuples: number, procid: number, ffactor: number): void {
  const dnumbuckets = numTuples / ffactor;
  let numBuckets: number;
  if (dnumbuckets <= 2.0) numBuckets = 2;
  else if (dnumbuckets >= 0x40000000) numBuckets = 0x40000000;
  else numBuckets = totalBuckets(spareIndex(Math.trunc(dnumbuckets)));
  const spare = spareIndex(numBuckets);

  hashPageInit(page, INVALID_BLOCK, INVALID_BLOCK, INVALID_BUCKET, LH_META_PAGE);
  writeU32(page, HASH_MAGIC, M_MAGIC);
  writeU32(page, HASH_VERSION, M_VERSION);
  page.writeDoubleLE(0, M_NTUPLES);
  writeU32(page, 0, M_NMAPS);
  writeU16(page, ffactor, M_FFACTOR);
  // HashGetMaxBitmapSize: the page minus the header and the special space
  const bsize = 8192 - (maxAlign(SIZE_OF_PAGE_HEADER) + maxAlign(OPAQUE_SIZE));
  writeU16(page, bsize, M_BSIZE);
  const lshift = 31 - Math.clz32(bsize);
  writeU16(page, 1 << lshift, M_BMSIZE);
  writeU16(page, lshift + 3, M_BMSHIFT);
  writeU32(page, procid >>> 0, M_PROCID);
  writeU32(page, numBuckets - 1, M_MAXBUCKET);
  // next power of two above numBuckets, minus one
  const highmask = 2 ** ceilLog2(numBuckets + 1) - 1;
  writeU32(page, highmask >>> 0, M_HIGHMASK);
  writeU32(page, highmask >>> 1, M_LOWMASK);
  writeU32(page, 1, M_SPARES + spare * 4);
  writeU32(page, spare, M_OVFLPOINT);
  writeU32(page, 0, M_FIRSTFREE);
  setPdLower(page, META_END);
}

/** _hash_initbitmapbuffer: every overflow page of the new bitmap is marked in use. */
function initBitmapPage(page: Buffer, bmsize: number): void {
  hashPageInit(page, INVALID_BLOCK, INVALID_BLOCK, INVALID_BUCKET, LH_BITMAP_PAGE);
  const start = maxAlign(SIZE_OF_PAGE_HEADER);
  page.fill(0xff, start, start + bmsize);
  setPdLower(page, start + bmsize);
}

/** SETBIT / CLRBIT on the bitmap's uint32 words (little-endian, so bit n is in byte n / 8). */
function setBitmapBit(page: Buffer, bit: number, on: boolean): void {
  const pos = maxAlign(SIZE_OF_PAGE_HEADER) + (bit >>> 5) * 4;
  const word = readU32(page, pos);
  const mask = 1 << (bit & 31);
  writeU32(page, (on ? word | mask : word & ~mask) >>> 0, pos);
}

function blockData(record: DecodedRecord, block: BlockRef, minLength: number): Buffer {
  if (block.data.length < minLength) {
    throw new RedoError(record, block, `block data of ${block.data.length} bytes, expected at least ${minLength}`);
  }
  return block.data;
}

function addItem(record: DecodedRecord, block: BlockRef, page: Buffer, item: Buffer, offnum: number): void {
  if (pageAddItem(page, item, offnum) === InvalidOffsetNumber) {
    throw new RedoError(record, block, `failed to add item of ${item.length} bytes at offset ${offnum}`);
  }
}

/**
 * Block 1 of MOVE_PAGE_CONTENTS and SQUEEZE_PAGE: `ntups` target offsets, then the tuples, each
 * taking its MAXALIGNed IndexTupleSize (t_info & 0x1FFF) in the data and on the page.
 */
function addMovedTuples(page: Buffer, record: DecodedRecord, block: BlockRef, ntups: number): void {
  if (ntups === 0) return;
  const data = blockData(record, block, ntups * 2);
  let pos = ntups * 2;
  let inserted = 0;
  while (pos < data.length) {
    if (inserted >= ntups) throw new RedoError(record, block, `more than ${ntups} tuples in the block data`);
    const size = maxAlign(data.readUInt16LE(pos + 6) & 0x1fff);
    if (size === 0 || pos + size > data.length) throw new RedoError(record, block, `index tuple of ${size} bytes overruns the block data`);
    addItem(record, block, page, data.subarray(pos, pos + size), data.readUInt16LE(inserted * 2));
    pos += size;
    inserted++;
  }
  if (inserted !== ntups) throw new RedoError(record, block, `${inserted} tuples in the block data, record says ${ntups}`);
}

function deleteOffsets(page: Buffer, list: Buffer, count = list.length >>> 1): void {
  if (count === 0) return;
  const offnums = new Array<number>(count);
  for (let i = 0; i < count; i++) offnums[i] = list.readUInt16LE(i * 2);
  pageIndexMultiDelete(page, offnums);
}

function redo(page: Buffer, record: DecodedRecord, block: BlockRef): void | "keep-lsn" {
  const main = record.mainData;
  switch (record.info & 0xf0) {
    case XLOG_HASH_INIT_META_PAGE:
      // xl_hash_init_meta_page {num_tuples double, procid u32, ffactor u16}
      initMetaPage(page, main.readDoubleLE(0), main.readUInt32LE(8), main.readUInt16LE(12));
      return;

    case XLOG_HASH_INIT_BITMAP_PAGE:
      // xl_hash_init_bitmap_page {bmsize u16}; blk0 new bitmap, blk1 meta
      if (block.id === 0) initBitmapPage(page, main.readUInt16LE(0));
      else {
        const nmaps = readU32(page, M_NMAPS);
        writeU32(page, readU32(page, M_MAXBUCKET) + 2, M_MAPP + nmaps * 4);
        writeU32(page, nmaps + 1, M_NMAPS);
      }
      return;

    case XLOG_HASH_INSERT:
      // xl_hash_insert {offnum u16}; blk0 page + tuple, blk1 meta
      if (block.id === 0) addItem(record, block, page, block.data, main.readUInt16LE(0));
      else page.writeDoubleLE(page.readDoubleLE(M_NTUPLES) + 1, M_NTUPLES);
      return;

    case XLOG_HASH_ADD_OVFL_PAGE:
      return redoAddOverflowPage(page, record, block);

    case XLOG_HASH_SPLIT_ALLOCATE_PAGE:
      return redoSplitAllocatePage(page, record, block);

    case XLOG_HASH_SPLIT_PAGE:
      // always carries a forced full-page image, which the engine restores without calling redo
      throw new RedoError(record, block, "hash split record did not contain a full-page image");

    case XLOG_HASH_SPLIT_COMPLETE:
      // xl_hash_split_complete {old_bucket_flag u16, new_bucket_flag u16}
      if (block.id === 0) setFlag(page, main.readUInt16LE(0));
      else if (block.id === 1) setFlag(page, main.readUInt16LE(2));
      return;

    case XLOG_HASH_MOVE_PAGE_CONTENTS:
      // xl_hash_move_page_contents {ntups u16, is_prim_bucket_same_wrt bool};
      // blk0 primary bucket (cleanup lock only), blk1 write page, blk2 page the tuples left
      if (block.id === 0) return "keep-lsn";
      if (block.id === 1) addMovedTuples(page, record, block, main.readUInt16LE(0));
      else if (block.id === 2) deleteOffsets(page, block.data);
      return;

    case XLOG_HASH_SQUEEZE_PAGE:
      return redoSqueezePage(page, record, block);

    case XLOG_HASH_DELETE:
      // xl_hash_delete {clear_dead_marking bool, is_primary_bucket_page bool};
      // blk0 primary bucket (cleanup lock only), blk1 page with the deleted offsets
      if (block.id === 0) return "keep-lsn";
      deleteOffsets(page, block.data);
      if (main[0]) setFlag(page, getFlag(page) & ~LH_PAGE_HAS_DEAD_TUPLES);
      return;

    case XLOG_HASH_SPLIT_CLEANUP:
      setFlag(page, getFlag(page) & ~LH_BUCKET_NEEDS_SPLIT_CLEANUP);
      return;

    case XLOG_HASH_UPDATE_META_PAGE:
      // xl_hash_update_meta_page {ntuples double}
      page.writeDoubleLE(main.readDoubleLE(0), M_NTUPLES);
      return;

    case XLOG_HASH_VACUUM_ONE_PAGE: {
      // xl_hash_vacuum_one_page {latestRemovedXid u32, ntuples int32} + offsets; blk0 page, blk1 meta
      const ntuples = main.readInt32LE(4);
      if (block.id === 0) {
        if (main.length > 8) deleteOffsets(page, main.subarray(8), ntuples);
        setFlag(page, getFlag(page) & ~LH_PAGE_HAS_DEAD_TUPLES);
      } else {
        page.writeDoubleLE(page.readDoubleLE(M_NTUPLES) - ntuples, M_NTUPLES);
      }
      return;
    }

    default:
      throw new UnsupportedRecordError(record);
  }
}

/**
 * xl_hash_add_ovfl_page {bmsize u16, bmpage_found bool}. blk0 the new overflow page (data: its
 * bucket), blk1 the page it is chained behind, blk2 the bitmap page (data: the bit to set),
 * blk3 a new bitmap page, blk4 the metapage (data: hashm_firstfree).
 */
function redoAddOverflowPage(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const blockNumberOf = (id: number) => record.blocks.find((b) => b.id === id)?.blockNumber;
  switch (block.id) {
    case 0: {
      const bucket = blockData(record, block, 4).readUInt32LE(0);
      hashPageInit(page, blockNumberOf(1) ?? INVALID_BLOCK, INVALID_BLOCK, bucket, LH_OVERFLOW_PAGE);
      return;
    }
    case 1:
      writeU32(page, blockNumberOf(0)!, opaque(page) + OPAQUE_NEXT);
      return;
    case 2:
      setBitmapBit(page, blockData(record, block, 4).readUInt32LE(0), true);
      return;
    case 3:
      initBitmapPage(page, main.readUInt16LE(0));
      return;
    case 4: {
      writeU32(page, blockData(record, block, 4).readUInt32LE(0), M_FIRSTFREE);
      if (!main[2]) {
        const sparePos = M_SPARES + readU32(page, M_OVFLPOINT) * 4;
        writeU32(page, readU32(page, sparePos) + 1, sparePos);
        const newBitmap = blockNumberOf(3);
        if (newBitmap !== undefined) {
          const nmaps = readU32(page, M_NMAPS);
          writeU32(page, newBitmap, M_MAPP + nmaps * 4);
          writeU32(page, nmaps + 1, M_NMAPS);
          writeU32(page, readU32(page, sparePos) + 1, sparePos);
        }
      }
      return;
    }
  }
}

/**
 * xl_hash_split_allocate_page {new_bucket u32, old_bucket_flag u16, new_bucket_flag u16, flags u8}.
 * blk0 old bucket, blk1 new bucket (initialized), blk2 metapage (data: masks and/or splitpoint).
 */
function redoSplitAllocatePage(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const newBucket = main.readUInt32LE(0);
  if (block.id === 0) {
    setFlag(page, main.readUInt16LE(4));
    writeU32(page, newBucket, opaque(page) + OPAQUE_PREV);
  } else if (block.id === 1) {
    hashPageInit(page, newBucket, INVALID_BLOCK, newBucket, main.readUInt16LE(6));
  } else if (block.id === 2) {
    const flags = main[8];
    const data = block.data;
    writeU32(page, newBucket, M_MAXBUCKET);
    let pos = 0;
    if (flags & XLH_SPLIT_META_UPDATE_MASKS) {
      blockData(record, block, pos + 8);
      writeU32(page, data.readUInt32LE(pos), M_LOWMASK);
      writeU32(page, data.readUInt32LE(pos + 4), M_HIGHMASK);
      pos += 8;
    }
    if (flags & XLH_SPLIT_META_UPDATE_SPLITPOINT) {
      blockData(record, block, pos + 8);
      const ovflpoint = data.readUInt32LE(pos);
      writeU32(page, data.readUInt32LE(pos + 4), M_SPARES + ovflpoint * 4);
      writeU32(page, ovflpoint, M_OVFLPOINT);
    }
  }
}

/**
 * xl_hash_squeeze_page {prevblkno u32, nextblkno u32, ntups u16, is_prim_bucket_same_wrt bool,
 * is_prev_bucket_same_wrt bool}. blk0 primary bucket (lock only), blk1 write page, blk2 the freed
 * overflow page, blk3 its previous page, blk4 its next page, blk5 bitmap (data: bit to clear),
 * blk6 metapage (data: hashm_firstfree).
 */
function redoSqueezePage(page: Buffer, record: DecodedRecord, block: BlockRef): void | "keep-lsn" {
  const main = record.mainData;
  const prevblkno = main.readUInt32LE(0);
  const nextblkno = main.readUInt32LE(4);
  switch (block.id) {
    case 0:
      return "keep-lsn";
    case 1:
      addMovedTuples(page, record, block, main.readUInt16LE(8));
      if (main[11]) writeU32(page, nextblkno, opaque(page) + OPAQUE_NEXT);
      return;
    case 2:
      hashPageInit(page, INVALID_BLOCK, INVALID_BLOCK, INVALID_BUCKET, LH_UNUSED_PAGE);
      return;
    case 3:
      writeU32(page, nextblkno, opaque(page) + OPAQUE_NEXT);
      return;
    case 4:
      writeU32(page, prevblkno, opaque(page) + OPAQUE_PREV);
      return;
    case 5:
      setBitmapBit(page, blockData(record, block, 4).readUInt32LE(0), false);
      return;
    case 6:
      writeU32(page, blockData(record, block, 4).readUInt32LE(0), M_FIRSTFREE);
      return;
  }
}

export const hashRmgr: RmgrRedo = {
  name: "Hash",
  redo,
  mask(page) {
    maskPageLsnAndChecksum(page);
    maskPageHintBits(page);
    maskUnusedSpace(page);
    const flagPos = getPdSpecial(page) + OPAQUE_FLAG;
    if (flagPos + 2 > page.length) return;
    const flag = readU16(page, flagPos);
    const type = flag & LH_PAGE_TYPE;
    if (type === LH_UNUSED_PAGE) maskPageContent(page);
    else if (type === LH_BUCKET_PAGE || type === LH_OVERFLOW_PAGE) maskLpFlags(page);
    // LH_PAGE_HAS_DEAD_TUPLES is a hint that may never have been logged
    writeU16(page, readU16(page, flagPos) & ~LH_PAGE_HAS_DEAD_TUPLES, flagPos);
  },
};
