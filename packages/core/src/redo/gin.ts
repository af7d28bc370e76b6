// GIN redo (rmgr 13, PostgreSQL's ginxlog.c), one block reference at a time. A GIN index is a
// metapage (block 0), an entry B-tree of keys, posting trees of heap TIDs for frequent keys
// (leaf pages hold varbyte-compressed posting-list segments, see ginpostinglist.c) and the
// fast-update pending list of GIN_LIST pages. Splits, entry-page vacuum and posting-tree splits
// carry forced full-page images that the engine restores, so redo only sees the other blocks.
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { maskPageContent, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./mask.ts";
import {
  getItem,
  getPdLower,
  getPdSpecial,
  InvalidOffsetNumber,
  maxOffsetNumber,
  pageAddItem,
  pageIndexTupleDelete,
  pageInit,
  pageIsEmpty,
  setPdLower,
  setPdPruneXid,
  shortAlign,
  SIZE_OF_PAGE_HEADER,
} from "./page.ts";
import { readU16, writeU16, writeU32 } from "../bytes.ts";
import { type RmgrRedo, RedoError, UnsupportedRecordError } from "./types.ts";

const XLOG_GIN_CREATE_PTREE = 0x10;
const XLOG_GIN_INSERT = 0x20;
const XLOG_GIN_SPLIT = 0x30;
const XLOG_GIN_VACUUM_PAGE = 0x40;
const XLOG_GIN_DELETE_PAGE = 0x50;
const XLOG_GIN_UPDATE_META_PAGE = 0x60;
const XLOG_GIN_INSERT_LISTPAGE = 0x70;
const XLOG_GIN_DELETE_LISTPAGE = 0x80;
const XLOG_GIN_VACUUM_DATA_LEAF_PAGE = 0x90;

/** ginxlogInsert.flags / ginxlogSplit.flags */
const GIN_INSERT_ISDATA = 0x01;
const GIN_INSERT_ISLEAF = 0x02;

/** GinPageOpaqueData {rightlink u32, maxoff u16, flags u16} */
const OPAQUE_SIZE = 8;
const OPAQUE_RIGHTLINK = 0;
const OPAQUE_MAXOFF = 4;
const OPAQUE_FLAGS = 6;
const GIN_DATA = 1 << 0;
const GIN_LEAF = 1 << 1;
const GIN_DELETED = 1 << 2;
const GIN_META = 1 << 3;
const GIN_LIST = 1 << 4;
const GIN_LIST_FULLROW = 1 << 5;
const GIN_INCOMPLETE_SPLIT = 1 << 6;
const GIN_COMPRESSED = 1 << 7;

const INVALID_BLOCK = 0xffffffff;

/** GinMetaPageData (56 bytes with padding) sits right after the page header. */
const META_SIZE = 56;
/** Data pages: right bound ItemPointer at 24, then (MAXALIGNed) posting items or segments. */
const DATA_START = SIZE_OF_PAGE_HEADER + 8;
/** PostingItem {child_blkno BlockIdData, key ItemPointerData} */
const POSTING_ITEM_SIZE = 10;

/** GinPostingList {first ItemPointerData, nbytes u16, bytes[]} */
const SEGMENT_HEADER = 8;

const GIN_SEGMENT_DELETE = 1;
const GIN_SEGMENT_INSERT = 2;
const GIN_SEGMENT_REPLACE = 3;
const GIN_SEGMENT_ADDITEMS = 4;

/** Bits of an item pointer's offset number in its integer form (MaxHeapTuplesPerPageBits). */
const OFFSET_BITS_FACTOR = 2 ** 11;

function flagsPos(page: Buffer): number {
  return getPdSpecial(page) + OPAQUE_FLAGS;
}
function getFlags(page: Buffer): number {
  return readU16(page, flagsPos(page));
}
function setFlags(page: Buffer, flags: number): void {
  writeU16(page, flags & 0xffff, flagsPos(page));
}
function setRightlink(page: Buffer, blkno: number): void {
  writeU32(page, blkno >>> 0, getPdSpecial(page) + OPAQUE_RIGHTLINK);
}
function getMaxoff(page: Buffer): number {
  return readU16(page, getPdSpecial(page) + OPAQUE_MAXOFF);
}
function setMaxoff(page: Buffer, maxoff: number): void {
  writeU16(page, maxoff, getPdSpecial(page) + OPAQUE_MAXOFF);
}

/** GinInitPage: PageInit with the opaque special space, the given flags, no right sibling. */
function ginInitPage(page: Buffer, flags: number): void {
  pageInit(page, OPAQUE_SIZE);
  setFlags(page, flags);
  setRightlink(page, INVALID_BLOCK);
}

/** GinInitMetabuffer, then the logged GinMetaPageData copied over it verbatim. */
function restoreMetapage(page: Buffer, metadata: Buffer): void {
  ginInitPage(page, GIN_META);
  metadata.copy(page, SIZE_OF_PAGE_HEADER, 0, META_SIZE);
  setPdLower(page, SIZE_OF_PAGE_HEADER + META_SIZE);
}

/** BlockIdData {bi_hi u16, bi_lo u16} */
function readBlockId(buf: Buffer, pos: number): number {
  return buf.readUInt16LE(pos) * 0x10000 + buf.readUInt16LE(pos + 2);
}
function writeBlockId(buf: Buffer, pos: number, blkno: number): void {
  buf.writeUInt16LE(blkno >>> 16, pos);
  buf.writeUInt16LE(blkno & 0xffff, pos + 2);
}

function indexTupleSize(buf: Buffer, pos: number): number {
  return buf.readUInt16LE(pos + 6) & 0x1fff;
}

// ---------------------------------------------------------------------------------------------
// Posting lists (ginpostinglist.c): an item pointer as the integer blkno << 11 | offnum; a
// segment stores its first item plainly, then the deltas to each next item in varbyte form.
// Integers reach 2^43, so plain numbers hold them exactly.

function readItemPointer(buf: Buffer, pos: number): number {
  return readBlockId(buf, pos) * OFFSET_BITS_FACTOR + buf.readUInt16LE(pos + 4);
}

function writeItemPointer(buf: Buffer, pos: number, item: number): void {
  const offnum = item % OFFSET_BITS_FACTOR;
  writeBlockId(buf, pos, (item - offnum) / OFFSET_BITS_FACTOR);
  buf.writeUInt16LE(offnum, pos + 4);
}

function segmentSize(buf: Buffer, pos: number): number {
  return SEGMENT_HEADER + shortAlign(buf.readUInt16LE(pos + 6));
}

/** ginPostingListDecode */
function decodeSegment(buf: Buffer, pos: number): number[] {
  let value = readItemPointer(buf, pos);
  const items = [value];
  let p = pos + SEGMENT_HEADER;
  const end = p + buf.readUInt16LE(pos + 6);
  while (p < end) {
    let delta = 0;
    let scale = 1;
    for (;;) {
      const c = buf[p++];
      delta += (c & 0x7f) * scale;
      if (!(c & 0x80)) break;
      scale *= 128;
    }
    value += delta;
    items.push(value);
  }
  return items;
}

/** ginCompressPostingList with room for every item (redo never truncates); odd length pads with 0. */
function encodeSegment(items: number[]): Buffer {
  const bytes: number[] = [];
  for (let i = 1; i < items.length; i++) {
    let delta = items[i] - items[i - 1];
    while (delta > 0x7f) {
      bytes.push(0x80 | delta % 128);
      delta = Math.floor(delta / 128);
    }
    bytes.push(delta);
  }
  const seg = Buffer.alloc(SEGMENT_HEADER + shortAlign(bytes.length));
  writeItemPointer(seg, 0, items[0]);
  seg.writeUInt16LE(bytes.length, 6);
  seg.set(bytes, SEGMENT_HEADER);
  return seg;
}

/** ginMergeItemPointers: union of two sorted lists, one copy of equal items. */
function mergeItems(a: number[], b: number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] < b[j]) out.push(a[i++]);
    else if (a[i] > b[j]) out.push(b[j++]);
    else {
      out.push(b[j++]);
      i++;
    }
  }
  while (i < a.length) out.push(a[i++]);
  while (j < b.length) out.push(b[j++]);
  return out;
}

/** A pre-9.4 leaf page (plain item pointers, count in maxoff) rewritten as one compressed segment. */
function compressLegacyLeaf(page: Buffer): void {
  const n = getMaxoff(page);
  let size = 0;
  if (n > 0) {
    const items: number[] = [];
    for (let i = 0; i < n; i++) items.push(readItemPointer(page, DATA_START + i * 6));
    const seg = encodeSegment(items);
    seg.copy(page, DATA_START);
    size = seg.length;
  }
  setPdLower(page, DATA_START + size);
  setFlags(page, getFlags(page) | GIN_COMPRESSED);
  setMaxoff(page, InvalidOffsetNumber);
}

/**
 * ginRedoRecompress: applies a ginxlogRecompressDataLeaf (nactions u16, then per action segno u8,
 * type u8 and its payload) to a leaf page's segments. Action segment numbers count the page's
 * original segments. The result is written from the start of the posting list; bytes past the
 * new end are left as they were, as PostgreSQL leaves them.
 */
function recompressLeaf(page: Buffer, record: DecodedRecord, block: BlockRef, wal: Buffer): void {
  if (!(getFlags(page) & GIN_COMPRESSED)) compressLegacyLeaf(page);
  const old = Buffer.from(page.subarray(DATA_START, getPdLower(page)));
  const oldSegments: Buffer[] = [];
  for (let pos = 0; pos < old.length; ) {
    const size = segmentSize(old, pos);
    if (pos + size > old.length) throw new RedoError(record, block, `posting list segment at ${DATA_START + pos} overruns pd_lower`);
    oldSegments.push(old.subarray(pos, pos + size));
    pos += size;
  }

  const out: Buffer[] = [];
  let segno = 0;
  const nactions = wal.readUInt16LE(0);
  let p = 2;
  for (let a = 0; a < nactions; a++) {
    const target = wal[p];
    const action = wal[p + 1];
    p += 2;
    if (target < segno || target > oldSegments.length) throw new RedoError(record, block, `leaf action on segment ${target} of ${oldSegments.length}`);
    while (segno < target) out.push(oldSegments[segno++]);
    switch (action) {
      case GIN_SEGMENT_DELETE:
        segno++;
        break;
      case GIN_SEGMENT_INSERT:
      case GIN_SEGMENT_REPLACE: {
        const size = segmentSize(wal, p);
        out.push(wal.subarray(p, p + size));
        p += size;
        if (action === GIN_SEGMENT_REPLACE) segno++;
        break;
      }
      case GIN_SEGMENT_ADDITEMS: {
        if (segno >= oldSegments.length) throw new RedoError(record, block, `items added to missing segment ${segno}`);
        const nitems = wal.readUInt16LE(p);
        p += 2;
        const added: number[] = [];
        for (let i = 0; i < nitems; i++) added.push(readItemPointer(wal, p + i * 6));
        p += nitems * 6;
        out.push(encodeSegment(mergeItems(added, decodeSegment(oldSegments[segno], 0))));
        segno++;
        break;
      }
      default:
        throw new RedoError(record, block, `unexpected GIN leaf action ${action}`);
    }
  }
  while (segno < oldSegments.length) out.push(oldSegments[segno++]);

  const data = Buffer.concat(out);
  if (DATA_START + data.length > getPdSpecial(page)) throw new RedoError(record, block, `recompressed posting list of ${data.length} bytes does not fit`);
  data.copy(page, DATA_START);
  setPdLower(page, DATA_START + data.length);
}

// ---------------------------------------------------------------------------------------------
// Record types

function clearIncompleteSplit(page: Buffer): void {
  setFlags(page, getFlags(page) & ~GIN_INCOMPLETE_SPLIT);
}

function addTuple(page: Buffer, record: DecodedRecord, block: BlockRef, tuple: Buffer, offnum: number): void {
  if (pageAddItem(page, tuple, offnum) === InvalidOffsetNumber) {
    throw new RedoError(record, block, `failed to add index tuple of ${tuple.length} bytes at offset ${offnum}`);
  }
}

/** Index tuples packed back to back, each IndexTupleSize long, added from `offnum` on. */
function addTuples(page: Buffer, record: DecodedRecord, block: BlockRef, data: Buffer, ntuples: number, offnum: number): void {
  let pos = 0;
  for (let i = 0; i < ntuples; i++) {
    const size = pos + 8 <= data.length ? indexTupleSize(data, pos) : 0;
    if (size === 0 || pos + size > data.length) throw new RedoError(record, block, `tuple ${i} of ${ntuples} overruns the block data`);
    addTuple(page, record, block, data.subarray(pos, pos + size), offnum++);
    pos += size;
  }
  if (pos !== data.length) throw new RedoError(record, block, `${data.length - pos} bytes left after ${ntuples} tuples`);
}

/**
 * ginxlogInsert {flags u16} + (on internal pages) the left and right child BlockIds whose split
 * this insertion finishes. blk0: the target page with the payload; blk1: the left child.
 */
function redoInsert(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const flags = main.readUInt16LE(0);
  const isLeaf = (flags & GIN_INSERT_ISLEAF) !== 0;
  if (block.id === 1) {
    clearIncompleteSplit(page);
    return;
  }
  const rightChild = isLeaf ? INVALID_BLOCK : readBlockId(main, 6);
  const data = block.data;
  if (flags & GIN_INSERT_ISDATA) {
    if (isLeaf) {
      recompressLeaf(page, record, block, data);
    } else {
      // ginxlogInsertDataInternal {offset u16, newitem PostingItem}
      const offset = data.readUInt16LE(0);
      const maxoff = getMaxoff(page);
      if (offset < 1 || offset > maxoff + 1) throw new RedoError(record, block, `posting item offset ${offset}, page has ${maxoff}`);
      if (offset <= maxoff) writeBlockId(page, DATA_START + (offset - 1) * POSTING_ITEM_SIZE, rightChild);
      // GinDataPageAddPostingItem
      const at = DATA_START + (offset - 1) * POSTING_ITEM_SIZE;
      page.copyWithin(at + POSTING_ITEM_SIZE, at, DATA_START + maxoff * POSTING_ITEM_SIZE);
      data.copy(page, at, 2, 2 + POSTING_ITEM_SIZE);
      setMaxoff(page, maxoff + 1);
      setPdLower(page, DATA_START + (maxoff + 1) * POSTING_ITEM_SIZE);
    }
    return;
  }
  // ginxlogInsertEntry {offset u16, isDelete bool, pad, IndexTupleData}
  const offset = data.readUInt16LE(0);
  if (rightChild !== INVALID_BLOCK) {
    if (offset < 1 || offset > maxOffsetNumber(page)) throw new RedoError(record, block, `downlink offset ${offset} out of range`);
    const itup = getItem(page, offset);
    // GinSetDownlink: t_tid := (rightChild, InvalidOffsetNumber)
    writeBlockId(itup, 0, rightChild);
    itup.writeUInt16LE(InvalidOffsetNumber, 4);
  }
  if (data[2]) pageIndexTupleDelete(page, offset);
  const tuple = data.subarray(4, 4 + indexTupleSize(data, 4));
  addTuple(page, record, block, tuple, offset);
}

/**
 * ginxlogDeletePage {parentOffset u16, rightLink u32, deleteXid u32}: blk0 the deleted posting
 * tree page, blk1 its parent (loses the downlink), blk2 its left sibling (takes over the rightlink).
 */
function redoDeletePage(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  if (block.id === 0) {
    setFlags(page, getFlags(page) | GIN_DELETED);
    setPdPruneXid(page, main.readUInt32LE(8));
  } else if (block.id === 1) {
    // GinPageDeletePostingItem
    const offset = main.readUInt16LE(0);
    const maxoff = getMaxoff(page);
    if (offset < 1 || offset > maxoff) throw new RedoError(record, block, `posting item offset ${offset}, page has ${maxoff}`);
    const at = DATA_START + (offset - 1) * POSTING_ITEM_SIZE;
    page.copyWithin(at, at + POSTING_ITEM_SIZE, DATA_START + maxoff * POSTING_ITEM_SIZE);
    setMaxoff(page, maxoff - 1);
    setPdLower(page, DATA_START + (maxoff - 1) * POSTING_ITEM_SIZE);
  } else if (block.id === 2) {
    setRightlink(page, main.readUInt32LE(4));
  }
}

/**
 * ginxlogUpdateMeta {node RelFileNode, metadata GinMetaPageData at 16, prevTail u32 at 72,
 * newRightlink u32 at 76, ntuples i32 at 80}: blk0 the metapage, rebuilt from the logged copy;
 * blk1 the pending list's tail, which either gets ntuples tuples appended or a rightlink to a
 * new sublist.
 */
function redoUpdateMetapage(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  if (block.id === 0) {
    restoreMetapage(page, main.subarray(16, 16 + META_SIZE));
    return;
  }
  const ntuples = main.readInt32LE(80);
  if (ntuples > 0) {
    const offnum = pageIsEmpty(page) ? 1 : maxOffsetNumber(page) + 1;
    addTuples(page, record, block, block.data, ntuples, offnum);
    // maxoff counts heap tuples on list pages
    setMaxoff(page, getMaxoff(page) + 1);
  } else if (main.readUInt32LE(72) !== INVALID_BLOCK) {
    setRightlink(page, main.readUInt32LE(76));
  }
}

function redo(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  switch (record.info & 0xf0) {
    case XLOG_GIN_CREATE_PTREE: {
      // ginxlogCreatePostingTree {size u32} + the compressed posting list
      const size = main.readUInt32LE(0);
      if (4 + size > main.length) throw new RedoError(record, block, `posting list of ${size} bytes, record has ${main.length - 4}`);
      ginInitPage(page, GIN_DATA | GIN_LEAF | GIN_COMPRESSED);
      main.copy(page, DATA_START, 4, 4 + size);
      setPdLower(page, DATA_START + size);
      return;
    }

    case XLOG_GIN_INSERT:
      return redoInsert(page, record, block);

    case XLOG_GIN_SPLIT:
      // ginxlogSplit {node, rrlink, leftChildBlkno, rightChildBlkno, flags u16 at 24}: the left,
      // right and root pages come as forced images; blk3 is the child whose split this finishes
      if (block.id === 3) return clearIncompleteSplit(page);
      throw new RedoError(record, block, "GIN split record did not contain a full-page image");

    case XLOG_GIN_VACUUM_PAGE:
      throw new RedoError(record, block, "replay of gin entry tree page vacuum did not restore the page");

    case XLOG_GIN_VACUUM_DATA_LEAF_PAGE:
      return recompressLeaf(page, record, block, block.data);

    case XLOG_GIN_DELETE_PAGE:
      return redoDeletePage(page, record, block);

    case XLOG_GIN_UPDATE_META_PAGE:
      return redoUpdateMetapage(page, record, block);

    case XLOG_GIN_INSERT_LISTPAGE: {
      // ginxlogInsertListPage {rightlink u32, ntuples i32}; the page is always rebuilt
      const rightlink = main.readUInt32LE(0);
      ginInitPage(page, GIN_LIST);
      setRightlink(page, rightlink);
      if (rightlink === INVALID_BLOCK) {
        // the tail of a sublist ends a heap row
        setFlags(page, getFlags(page) | GIN_LIST_FULLROW);
        setMaxoff(page, 1);
      }
      addTuples(page, record, block, block.data, main.readInt32LE(4), 1);
      return;
    }

    case XLOG_GIN_DELETE_LISTPAGE:
      // ginxlogDeleteListPages {metadata GinMetaPageData, ndeleted i32}: blk0 the metapage,
      // blk1.. the deleted head pages of the pending list, reinitialized empty
      if (block.id === 0) restoreMetapage(page, main.subarray(0, META_SIZE));
      else ginInitPage(page, GIN_DELETED);
      return;

    default:
      throw new UnsupportedRecordError(record);
  }
}

export const ginRmgr: RmgrRedo = {
  name: "Gin",
  redo,
  mask(page) {
    maskPageLsnAndChecksum(page);
    maskPageHintBits(page);
    const pos = getPdSpecial(page) + OPAQUE_FLAGS;
    const flags = pos + 2 <= page.length ? readU16(page, pos) : 0;
    if (flags & GIN_DELETED) maskPageContent(page);
    else if (getPdLower(page) > SIZE_OF_PAGE_HEADER) maskUnusedSpace(page);
  },
};
