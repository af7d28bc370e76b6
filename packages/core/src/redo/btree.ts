// B-tree index redo (rmgr 11, PostgreSQL's nbtxlog.c), one block reference at a time. A B-tree is a
// metapage (block 0) over levels of pages linked left-right; every page ends in a 16-byte
// BTPageOpaqueData. Records touch several pages (split: left, new right, right sibling, child), so
// each routine below applies only what happens to the page of `block`, chosen by its block id.
// Pages that PostgreSQL rebuilds on a scratch page (split, dedup) are rebuilt the same way here, so
// the bytes land where the primary put them.
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { maskLpFlags, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./mask.ts";
import {
  getItem,
  getPdSpecial,
  InvalidOffsetNumber,
  maxAlign,
  maxOffsetNumber,
  pageAddItem,
  pageIndexMultiDelete,
  pageIndexTupleDelete,
  pageIndexTupleOverwrite,
  pageInit,
  setPdLower,
  setPdUpper,
  SIZE_OF_PAGE_HEADER,
} from "./page.ts";
import { readU16, readU32, writeU16, writeU32 } from "../bytes.ts";
import { type RmgrRedo, RedoError, UnsupportedRecordError } from "./types.ts";

const XLOG_BTREE_INSERT_LEAF = 0x00;
const XLOG_BTREE_INSERT_UPPER = 0x10;
const XLOG_BTREE_INSERT_META = 0x20;
const XLOG_BTREE_SPLIT_L = 0x30;
const XLOG_BTREE_SPLIT_R = 0x40;
const XLOG_BTREE_INSERT_POST = 0x50;
const XLOG_BTREE_DEDUP = 0x60;
const XLOG_BTREE_DELETE = 0x70;
const XLOG_BTREE_UNLINK_PAGE = 0x80;
const XLOG_BTREE_UNLINK_PAGE_META = 0x90;
const XLOG_BTREE_NEWROOT = 0xa0;
const XLOG_BTREE_MARK_PAGE_HALFDEAD = 0xb0;
const XLOG_BTREE_VACUUM = 0xc0;
const XLOG_BTREE_REUSE_PAGE = 0xd0;
const XLOG_BTREE_META_CLEANUP = 0xe0;

/** btpo_flags */
const BTP_LEAF = 1 << 0;
const BTP_ROOT = 1 << 1;
const BTP_DELETED = 1 << 2;
const BTP_META = 1 << 3;
const BTP_HALF_DEAD = 1 << 4;
const BTP_SPLIT_END = 1 << 5;
const BTP_HAS_GARBAGE = 1 << 6;
const BTP_INCOMPLETE_SPLIT = 1 << 7;
const BTP_HAS_FULLXID = 1 << 8;

/** BTPageOpaqueData {btpo_prev u32, btpo_next u32, btpo_level u32, btpo_flags u16, btpo_cycleid u16} */
const OPAQUE_SIZE = 16;
const OPAQUE_PREV = 0;
const OPAQUE_NEXT = 4;
const OPAQUE_LEVEL = 8;
const OPAQUE_FLAGS = 12;
const OPAQUE_CYCLEID = 14;

const P_NONE = 0;
const P_HIKEY = 1;
const P_FIRSTKEY = 2;

/** BTMetaPageData at PageGetContents (offset 24); sizeof = 48, so pd_lower ends at 72 */
const META = SIZE_OF_PAGE_HEADER;
const BTREE_MAGIC = 0x053162;
const META_MAGIC = META + 0;
const META_VERSION = META + 4;
const META_ROOT = META + 8;
const META_LEVEL = META + 12;
const META_FASTROOT = META + 16;
const META_FASTLEVEL = META + 20;
const META_LAST_CLEANUP_NUM_DELPAGES = META + 24;
const META_LAST_CLEANUP_NUM_HEAP_TUPLES = META + 32; // float8, MAXALIGNed
const META_ALLEQUALIMAGE = META + 40;
const META_END = META + 48;

/** xl_btree_metadata {version, root, level, fastroot, fastlevel, last_cleanup_num_delpages u32; allequalimage bool} */
const XL_METADATA_SIZE = 25;

/** IndexTupleData: t_tid {bi_hi u16, bi_lo u16, ip_posid u16}, t_info u16 */
const ITUP_TID_SIZE = 6;
const ITUP_INFO = 6;
const INDEX_TUPLE_HEADER_SIZE = 8;
const INDEX_SIZE_MASK = 0x1fff;
const INDEX_ALT_TID_MASK = 0x2000;
const BT_OFFSET_MASK = 0x0fff;
const BT_IS_POSTING = 0x2000;

/** BTMaxItemSize for an 8 KiB page: the dedup replay uses it as the (generous) posting-size limit */
const BT_MAX_ITEM_SIZE = ((8192 - maxAlign(SIZE_OF_PAGE_HEADER + 3 * 4 + 3 * ITUP_TID_SIZE) - maxAlign(OPAQUE_SIZE)) / 3) & ~7;

// ---------------------------------------------------------------------------------------------
// Page opaque accessors

function opaque(page: Buffer): number {
  return getPdSpecial(page);
}
function getFlags(page: Buffer): number {
  return readU16(page, opaque(page) + OPAQUE_FLAGS);
}
function setFlags(page: Buffer, flags: number): void {
  writeU16(page, flags & 0xffff, opaque(page) + OPAQUE_FLAGS);
}
function isRightmost(page: Buffer): boolean {
  return readU32(page, opaque(page) + OPAQUE_NEXT) === P_NONE;
}
/** P_FIRSTDATAKEY: the high key occupies offset 1 on every page but the rightmost of its level */
function firstDataKey(page: Buffer): number {
  return isRightmost(page) ? P_HIKEY : P_FIRSTKEY;
}

/** _bt_pageinit + the opaque fields the redo routines set on a rebuilt page. */
function btPageInit(page: Buffer, prev: number, next: number, level: number, flags: number): void {
  pageInit(page, OPAQUE_SIZE);
  const op = opaque(page);
  writeU32(page, prev >>> 0, op + OPAQUE_PREV);
  writeU32(page, next >>> 0, op + OPAQUE_NEXT);
  writeU32(page, level >>> 0, op + OPAQUE_LEVEL);
  writeU16(page, flags, op + OPAQUE_FLAGS);
  writeU16(page, 0, op + OPAQUE_CYCLEID);
}

/** PageGetTempPageCopySpecial: an empty initialized page carrying `page`'s special space. */
function tempPageCopySpecial(page: Buffer): Buffer {
  const temp = Buffer.alloc(page.length);
  const special = getPdSpecial(page);
  pageInit(temp, page.length - special);
  page.copy(temp, special, special);
  return temp;
}

// ---------------------------------------------------------------------------------------------
// Index tuples

function tupleSize(tuple: Buffer, at = 0): number {
  return tuple.readUInt16LE(at + ITUP_INFO) & INDEX_SIZE_MASK;
}
function tupleOffsetField(tuple: Buffer): number {
  return tuple.readUInt16LE(4);
}
function tupleBlockField(tuple: Buffer): number {
  return ((tuple.readUInt16LE(0) << 16) | tuple.readUInt16LE(2)) >>> 0;
}
function setTupleBlockField(tuple: Buffer, block: number): void {
  tuple.writeUInt16LE(block >>> 16, 0);
  tuple.writeUInt16LE(block & 0xffff, 2);
}
function isPosting(tuple: Buffer): boolean {
  return (tuple.readUInt16LE(ITUP_INFO) & INDEX_ALT_TID_MASK) !== 0 && (tupleOffsetField(tuple) & BT_IS_POSTING) !== 0;
}
function postingCount(posting: Buffer): number {
  return tupleOffsetField(posting) & BT_OFFSET_MASK;
}
/** BTreeTupleGetPostingOffset: where the heap TID array starts (= the key part's size) */
function postingOffset(posting: Buffer): number {
  return tupleBlockField(posting);
}

/** A leaf tuple's heap TIDs: its posting list, or its own t_tid. */
function heapTids(tuple: Buffer): Buffer {
  if (!isPosting(tuple)) return tuple.subarray(0, ITUP_TID_SIZE);
  const start = postingOffset(tuple);
  return tuple.subarray(start, start + postingCount(tuple) * ITUP_TID_SIZE);
}

/**
 * _bt_form_posting: the key part of `base` followed by `tids` (n × 6 bytes) as a posting list
 * tuple, or a plain tuple with the single TID in t_tid. Padding is zero, as palloc0 leaves it.
 */
function formPosting(base: Buffer, tids: Buffer): Buffer {
  const n = tids.length / ITUP_TID_SIZE;
  const keySize = isPosting(base) ? postingOffset(base) : tupleSize(base);
  const newSize = n > 1 ? maxAlign(keySize + tids.length) : keySize;
  const tuple = Buffer.alloc(newSize);
  base.copy(tuple, 0, 0, keySize);
  let info = (tuple.readUInt16LE(ITUP_INFO) & ~INDEX_SIZE_MASK) | newSize;
  if (n > 1) {
    info |= INDEX_ALT_TID_MASK;
    tuple.writeUInt16LE(n | BT_IS_POSTING, 4);
    setTupleBlockField(tuple, keySize);
    tids.copy(tuple, keySize);
  } else {
    info &= ~INDEX_ALT_TID_MASK;
    tids.copy(tuple, 0, 0, ITUP_TID_SIZE);
  }
  tuple.writeUInt16LE(info, ITUP_INFO);
  return tuple;
}

/**
 * _bt_swap_posting: the posting list split of an insertion whose heap TID falls inside `oposting`.
 * Returns the new posting tuple (newitem's TID inserted at `postingoff`, the largest TID dropped)
 * and gives `newitem` (a private copy, modified) that largest TID.
 */
function swapPosting(newitem: Buffer, oposting: Buffer, postingoff: number): Buffer {
  const n = postingCount(oposting);
  if (!isPosting(oposting) || !(postingoff > 0 && postingoff < n)) {
    throw new Error(`posting list tuple with ${n} items cannot be split at offset ${postingoff}`);
  }
  const nposting = Buffer.from(oposting.subarray(0, tupleSize(oposting)));
  const list = postingOffset(nposting);
  const at = list + postingoff * ITUP_TID_SIZE;
  const last = list + (n - 1) * ITUP_TID_SIZE;
  nposting.copyWithin(at + ITUP_TID_SIZE, at, last);
  newitem.copy(nposting, at, 0, ITUP_TID_SIZE);
  oposting.copy(newitem, 0, last, last + ITUP_TID_SIZE);
  return nposting;
}

/** _bt_update_posting: `orig` without the posting-list entries at the given (ascending) indexes. */
function removeFromPosting(orig: Buffer, deleted: ArrayLike<number>): Buffer {
  const n = postingCount(orig);
  const list = postingOffset(orig);
  const kept: Buffer[] = [];
  let d = 0;
  for (let i = 0; i < n; i++) {
    if (d < deleted.length && deleted[d] === i) {
      d++;
      continue;
    }
    kept.push(orig.subarray(list + i * ITUP_TID_SIZE, list + (i + 1) * ITUP_TID_SIZE));
  }
  if (d !== deleted.length || kept.length === 0 || kept.length >= n) throw new Error(`cannot remove ${deleted.length} of ${n} posting list TIDs`);
  return formPosting(orig, Buffer.concat(kept));
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by several record types

function addItem(page: Buffer, item: Buffer, offnum: number, record: DecodedRecord, block: BlockRef, what: string): void {
  if (pageAddItem(page, item, offnum) === InvalidOffsetNumber) throw new RedoError(record, block, `failed to add ${what} at offset ${offnum}`);
}

function blockNumberOf(record: DecodedRecord, id: number): number | undefined {
  return record.blocks.find((b) => b.id === id)?.blockNumber;
}

/** _bt_restore_page: re-adds the tuples of a logged upper area (highest offset first in memory). */
function restoreItems(page: Buffer, data: Buffer, record: DecodedRecord, block: BlockRef): void {
  const items: Buffer[] = [];
  for (let pos = 0; pos < data.length; ) {
    if (pos + INDEX_TUPLE_HEADER_SIZE > data.length) throw new RedoError(record, block, "truncated index tuple in page contents");
    const size = maxAlign(tupleSize(data, pos));
    if (size === 0 || pos + size > data.length) throw new RedoError(record, block, `index tuple of ${size} bytes overruns page contents`);
    items.push(data.subarray(pos, pos + size));
    pos += size;
  }
  for (let i = items.length - 1; i >= 0; i--) addItem(page, items[i], items.length - i, record, block, "restored item");
}

/** _bt_restore_meta: rebuilds the metapage from an xl_btree_metadata. */
function restoreMeta(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const md = block.data;
  if (md.length < XL_METADATA_SIZE) throw new RedoError(record, block, `metapage data of ${md.length} bytes, expected ${XL_METADATA_SIZE}`);
  btPageInit(page, P_NONE, P_NONE, 0, BTP_META);
  writeU32(page, BTREE_MAGIC, META_MAGIC);
  writeU32(page, md.readUInt32LE(0), META_VERSION);
  writeU32(page, md.readUInt32LE(4), META_ROOT);
  writeU32(page, md.readUInt32LE(8), META_LEVEL);
  writeU32(page, md.readUInt32LE(12), META_FASTROOT);
  writeU32(page, md.readUInt32LE(16), META_FASTLEVEL);
  writeU32(page, md.readUInt32LE(20), META_LAST_CLEANUP_NUM_DELPAGES);
  page.writeDoubleLE(-1.0, META_LAST_CLEANUP_NUM_HEAP_TUPLES);
  page[META_ALLEQUALIMAGE] = md[24];
  setPdLower(page, META_END);
}

/** _bt_clear_incomplete_split: the child whose downlink this record inserts. */
function clearIncompleteSplit(page: Buffer): void {
  setFlags(page, getFlags(page) & ~BTP_INCOMPLETE_SPLIT);
}

/** A half-dead leaf rebuilt from scratch: no items but a dummy high key naming the top parent. */
function initHalfDeadLeaf(page: Buffer, prev: number, next: number, topParent: number, record: DecodedRecord, block: BlockRef): void {
  btPageInit(page, prev, next, 0, BTP_HALF_DEAD | BTP_LEAF);
  const hikey = Buffer.alloc(INDEX_TUPLE_HEADER_SIZE);
  setTupleBlockField(hikey, topParent); // BTreeTupleSetTopParent, with 0 attributes
  hikey.writeUInt16LE(INDEX_TUPLE_HEADER_SIZE | INDEX_ALT_TID_MASK, ITUP_INFO);
  addItem(page, hikey, P_HIKEY, record, block, "dummy high key");
}

function unexpectedBlock(record: DecodedRecord, block: BlockRef): never {
  throw new RedoError(record, block, `unexpected block id ${block.id}`);
}

// ---------------------------------------------------------------------------------------------
// Record types

/** INSERT_LEAF / INSERT_UPPER / INSERT_META / INSERT_POST: blk0 target, blk1 child, blk2 meta. */
function redoInsert(page: Buffer, record: DecodedRecord, block: BlockRef, posting: boolean): void {
  if (block.id === 1) return clearIncompleteSplit(page);
  if (block.id === 2) return restoreMeta(page, record, block);
  if (block.id !== 0) unexpectedBlock(record, block);
  const offnum = record.mainData.readUInt16LE(0);
  if (!posting) return addItem(page, block.data, offnum, record, block, "new item");

  // Posting list split: block data is the posting offset, then the original new item.
  const postingoff = block.data.readUInt16LE(0);
  const newitem = Buffer.from(block.data.subarray(2));
  const oposting = getItem(page, offnum - 1);
  const nposting = swapPosting(newitem, oposting, postingoff);
  nposting.copy(oposting);
  addItem(page, newitem, offnum, record, block, "posting split new item");
}

/** SPLIT_L / SPLIT_R: blk0 left (original) page, blk1 new right page, blk2 right sibling, blk3 child. */
function redoSplit(page: Buffer, record: DecodedRecord, block: BlockRef, newItemOnLeft: boolean): void {
  const main = record.mainData;
  const level = main.readUInt32LE(0);
  const firstRightOff = main.readUInt16LE(4);
  const newItemOff = main.readUInt16LE(6);
  const postingoff = main.readUInt16LE(8);
  const isLeaf = level === 0;

  switch (block.id) {
    case 0:
      return rebuildLeftHalf(page, record, block, { isLeaf, firstRightOff, newItemOff, postingoff, newItemOnLeft });
    case 1: {
      // the new right page is logged in full: its whole upper area
      const left = blockNumberOf(record, 0) ?? P_NONE;
      const sibling = blockNumberOf(record, 2) ?? P_NONE;
      btPageInit(page, left, sibling, level, isLeaf ? BTP_LEAF : 0);
      return restoreItems(page, block.data, record, block);
    }
    case 2:
      writeU32(page, blockNumberOf(record, 1)! >>> 0, opaque(page) + OPAQUE_PREV);
      return;
    case 3:
      return clearIncompleteSplit(page);
    default:
      unexpectedBlock(record, block);
  }
}

/**
 * The original page keeps its first items: rebuilt on a scratch page in item order (as _bt_split
 * did), with the logged high key, the new item if it went left, and the post-split posting tuple.
 */
function rebuildLeftHalf(
  page: Buffer,
  record: DecodedRecord,
  block: BlockRef,
  s: { isLeaf: boolean; firstRightOff: number; newItemOff: number; postingoff: number; newItemOnLeft: boolean },
): void {
  const data = block.data;
  let pos = 0;
  let newitem: Buffer | undefined;
  let nposting: Buffer | undefined;
  let replacePostingOff = InvalidOffsetNumber;
  if (s.newItemOnLeft || s.postingoff !== 0) {
    const size = maxAlign(tupleSize(data, pos));
    newitem = Buffer.from(data.subarray(pos, pos + size));
    pos += size;
    if (s.postingoff !== 0) {
      // the posting list that the new item's heap TID split sits just before it
      replacePostingOff = s.newItemOff - 1;
      nposting = swapPosting(newitem, getItem(page, replacePostingOff), s.postingoff);
    }
  }
  const hikeySize = maxAlign(tupleSize(data, pos));
  const hikey = data.subarray(pos, pos + hikeySize);
  if (pos + hikeySize !== data.length) throw new RedoError(record, block, `split data has ${data.length - pos - hikeySize} unexpected bytes`);

  const left = tempPageCopySpecial(page);
  addItem(left, hikey, P_HIKEY, record, block, "left high key");
  let leftOff = P_FIRSTKEY;
  let off = firstDataKey(page);
  for (; off < s.firstRightOff; off++) {
    if (off === replacePostingOff) {
      addItem(left, nposting!, leftOff++, record, block, "post-split posting list");
      continue;
    }
    if (s.newItemOnLeft && off === s.newItemOff) addItem(left, newitem!, leftOff++, record, block, "new item");
    addItem(left, getItem(page, off), leftOff++, record, block, "old item");
  }
  if (s.newItemOnLeft && off === s.newItemOff) addItem(left, newitem!, leftOff++, record, block, "new item");

  left.copy(page);
  const op = opaque(page);
  writeU16(page, BTP_INCOMPLETE_SPLIT | (s.isLeaf ? BTP_LEAF : 0), op + OPAQUE_FLAGS);
  writeU32(page, blockNumberOf(record, 1)! >>> 0, op + OPAQUE_NEXT);
  writeU16(page, 0, op + OPAQUE_CYCLEID);
}

/**
 * DEDUP: replays the deduplication pass. Items are merged exactly along the logged intervals
 * ({baseoff, nitems}): each interval becomes one posting tuple, everything else is copied as is.
 */
function redoDedup(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  if (block.id !== 0) unexpectedBlock(record, block);
  const nintervals = record.mainData.readUInt16LE(0);
  const intervals = block.data;
  if (intervals.length < nintervals * 4) throw new RedoError(record, block, `${nintervals} dedup intervals but ${intervals.length} bytes`);

  const minoff = firstDataKey(page);
  const maxoff = maxOffsetNumber(page);
  const newpage = tempPageCopySpecial(page);
  if (!isRightmost(page)) addItem(newpage, getItem(page, P_HIKEY), P_HIKEY, record, block, "high key");

  // the pending posting list: its base tuple, offset, TIDs, and how many items it merged
  let base = getItem(page, minoff);
  let baseoff = minoff;
  let baseTupSize = 0;
  let tids: Buffer[] = [];
  let ntids = 0;
  let nitems = 0;
  let done = 0; // intervals finished so far
  const start = (tuple: Buffer, off: number) => {
    base = tuple;
    baseoff = off;
    baseTupSize = isPosting(tuple) ? postingOffset(tuple) : tupleSize(tuple);
    const t = heapTids(tuple);
    tids = [t];
    ntids = t.length / ITUP_TID_SIZE;
    nitems = 1;
  };
  const finish = () => {
    const tupoff = maxOffsetNumber(newpage) + 1;
    if (nitems === 1) {
      addItem(newpage, base.subarray(0, tupleSize(base)), tupoff, record, block, "deduplicated tuple");
      return;
    }
    if (intervals.readUInt16LE(done * 4 + 2) !== nitems) throw new RedoError(record, block, `dedup interval ${done} merged ${nitems} items`);
    addItem(newpage, formPosting(base, Buffer.concat(tids)), tupoff, record, block, "posting list tuple");
    done++;
  };

  for (let off = minoff; off <= maxoff; off++) {
    const tuple = getItem(page, off);
    if (off === minoff) {
      start(tuple, off);
    } else if (done < nintervals && baseoff === intervals.readUInt16LE(done * 4) && nitems < intervals.readUInt16LE(done * 4 + 2)) {
      const t = heapTids(tuple);
      if (maxAlign(baseTupSize + (ntids + t.length / ITUP_TID_SIZE) * ITUP_TID_SIZE) > BT_MAX_ITEM_SIZE) {
        throw new RedoError(record, block, "deduplication failed to add heap tid to pending posting list");
      }
      tids.push(t);
      ntids += t.length / ITUP_TID_SIZE;
      nitems++;
    } else {
      finish();
      start(tuple, off);
    }
  }
  if (maxoff >= minoff) finish();
  if (done !== nintervals) throw new RedoError(record, block, `dedup produced ${done} posting tuples, record has ${nintervals} intervals`);

  setFlags(newpage, getFlags(newpage) & ~BTP_HAS_GARBAGE);
  newpage.copy(page);
}

/**
 * VACUUM / DELETE: blk0 data = deleted offsets, updated offsets, then per updated posting tuple
 * {ndeletedtids u16, posting-list indexes u16...}. Updates first (offsets are pre-deletion).
 */
function redoDeleteItems(page: Buffer, record: DecodedRecord, block: BlockRef, counts: number): void {
  if (block.id !== 0) unexpectedBlock(record, block);
  const ndeleted = record.mainData.readUInt16LE(counts);
  const nupdated = record.mainData.readUInt16LE(counts + 2);
  const data = block.data;
  let pos = ndeleted * 2;
  let upd = pos + nupdated * 2;
  for (let i = 0; i < nupdated; i++) {
    const offnum = data.readUInt16LE(pos + i * 2);
    const ndeletedTids = data.readUInt16LE(upd);
    const deleted: number[] = [];
    for (let k = 0; k < ndeletedTids; k++) deleted.push(data.readUInt16LE(upd + 2 + k * 2));
    upd += 2 + ndeletedTids * 2;
    let updated: Buffer;
    try {
      updated = removeFromPosting(getItem(page, offnum), deleted);
    } catch (err) {
      throw new RedoError(record, block, `offset ${offnum}: ${(err as Error).message}`);
    }
    if (!pageIndexTupleOverwrite(page, offnum, updated)) throw new RedoError(record, block, `failed to update partially dead item at ${offnum}`);
  }
  if (ndeleted > 0) {
    const offnums: number[] = [];
    for (let i = 0; i < ndeleted; i++) offnums.push(data.readUInt16LE(i * 2));
    pageIndexMultiDelete(page, offnums);
  }
  setFlags(page, getFlags(page) & ~BTP_HAS_GARBAGE);
}

/** MARK_PAGE_HALFDEAD: blk0 the leaf (rebuilt half-dead), blk1 the subtree's parent (downlink removed). */
function redoMarkHalfDead(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const poffset = main.readUInt16LE(0);
  if (block.id === 1) {
    // the target's downlink now points to its right sibling; the right sibling's own pivot goes
    const rightsib = tupleBlockField(getItem(page, poffset + 1));
    setTupleBlockField(getItem(page, poffset), rightsib);
    pageIndexTupleDelete(page, poffset + 1);
    return;
  }
  if (block.id !== 0) unexpectedBlock(record, block);
  initHalfDeadLeaf(page, main.readUInt32LE(8), main.readUInt32LE(12), main.readUInt32LE(16), record, block);
}

/**
 * UNLINK_PAGE(_META): blk0 target (now deleted), blk1 left sibling, blk2 right sibling, blk3 the
 * half-dead leaf when the target was its ancestor, blk4 metapage.
 * Main data: leftsib, rightsib, level (u32), safexid (u64 at 16), leafleftsib, leafrightsib, leaftopparent.
 */
function redoUnlinkPage(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const leftsib = main.readUInt32LE(0);
  const rightsib = main.readUInt32LE(4);
  const level = main.readUInt32LE(8);
  switch (block.id) {
    case 0: {
      btPageInit(page, leftsib, rightsib, level, 0);
      // BTPageSetDeleted: no items, the safexid right after the header
      setFlags(page, BTP_DELETED | BTP_HAS_FULLXID | (level === 0 ? BTP_LEAF : 0));
      main.copy(page, SIZE_OF_PAGE_HEADER, 16, 24);
      setPdLower(page, SIZE_OF_PAGE_HEADER + 8);
      setPdUpper(page, getPdSpecial(page));
      return;
    }
    case 1:
      writeU32(page, rightsib, opaque(page) + OPAQUE_NEXT);
      return;
    case 2:
      writeU32(page, leftsib, opaque(page) + OPAQUE_PREV);
      return;
    case 3:
      return initHalfDeadLeaf(page, main.readUInt32LE(24), main.readUInt32LE(28), main.readUInt32LE(32), record, block);
    case 4:
      return restoreMeta(page, record, block);
    default:
      unexpectedBlock(record, block);
  }
}

/** NEWROOT: blk0 the new root (level > 0: logged in full), blk1 its left child, blk2 metapage. */
function redoNewRoot(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const level = record.mainData.readUInt32LE(4);
  switch (block.id) {
    case 0:
      btPageInit(page, P_NONE, P_NONE, level, BTP_ROOT | (level === 0 ? BTP_LEAF : 0));
      if (level > 0) restoreItems(page, block.data, record, block);
      return;
    case 1:
      return clearIncompleteSplit(page);
    case 2:
      return restoreMeta(page, record, block);
    default:
      unexpectedBlock(record, block);
  }
}

export const btreeRmgr: RmgrRedo = {
  name: "Btree",
  redo(page, record, block) {
    switch (record.info & 0xf0) {
      case XLOG_BTREE_INSERT_LEAF:
      case XLOG_BTREE_INSERT_UPPER:
      case XLOG_BTREE_INSERT_META:
        return redoInsert(page, record, block, false);
      case XLOG_BTREE_INSERT_POST:
        return redoInsert(page, record, block, true);
      case XLOG_BTREE_SPLIT_L:
        return redoSplit(page, record, block, true);
      case XLOG_BTREE_SPLIT_R:
        return redoSplit(page, record, block, false);
      case XLOG_BTREE_DEDUP:
        return redoDedup(page, record, block);
      case XLOG_BTREE_VACUUM:
        return redoDeleteItems(page, record, block, 0); // {ndeleted, nupdated}
      case XLOG_BTREE_DELETE:
        return redoDeleteItems(page, record, block, 4); // {latestRemovedXid, ndeleted, nupdated}
      case XLOG_BTREE_MARK_PAGE_HALFDEAD:
        return redoMarkHalfDead(page, record, block);
      case XLOG_BTREE_UNLINK_PAGE:
      case XLOG_BTREE_UNLINK_PAGE_META:
        return redoUnlinkPage(page, record, block);
      case XLOG_BTREE_NEWROOT:
        return redoNewRoot(page, record, block);
      case XLOG_BTREE_META_CLEANUP:
        if (block.id !== 0) unexpectedBlock(record, block);
        return restoreMeta(page, record, block);
      case XLOG_BTREE_REUSE_PAGE:
        return; // references no page: only a hot-standby conflict on the primary's replay
      default:
        throw new UnsupportedRecordError(record);
    }
  },
  /** btree_mask: LP_DEAD (leaf), BTP_HAS_GARBAGE, BTP_SPLIT_END and the cycle id are unlogged hints. */
  mask(page) {
    maskPageLsnAndChecksum(page);
    maskPageHintBits(page);
    maskUnusedSpace(page);
    const special = getPdSpecial(page);
    if (special < SIZE_OF_PAGE_HEADER || special > page.length - OPAQUE_SIZE) return; // never initialized
    if (getFlags(page) & BTP_LEAF) maskLpFlags(page);
    setFlags(page, getFlags(page) & ~(BTP_HAS_GARBAGE | BTP_SPLIT_END));
    writeU16(page, 0, special + OPAQUE_CYCLEID);
  },
};
