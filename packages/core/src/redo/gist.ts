// GiST redo (rmgr 14, PostgreSQL's gistxlog.c), one block reference at a time. Pages carry a
// GISTPageOpaqueData special space {nsn u64, rightlink u32, flags u16, page id u16}; splits
// rebuild every resulting page from the tuples in the record, and completing a split clears
// F_FOLLOW_RIGHT on the left child and stamps its NSN with the record's end LSN.
import type { Lsn } from "../lsn.ts";
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { maskLpFlags, maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./mask.ts";
import {
  FirstOffsetNumber,
  getPdSpecial,
  InvalidOffsetNumber,
  maxOffsetNumber,
  pageAddItem,
  pageGetContents,
  pageIndexMultiDelete,
  pageIndexTupleDelete,
  pageIndexTupleOverwrite,
  pageInit,
  pageIsEmpty,
  SIZE_OF_PAGE_HEADER,
  setPdLower,
} from "./page.ts";
import { readU16, writeU16, writeU32 } from "../bytes.ts";
import { type RmgrRedo, RedoError, UnsupportedRecordError } from "./types.ts";

const XLOG_GIST_PAGE_UPDATE = 0x00;
const XLOG_GIST_DELETE = 0x10;
const XLOG_GIST_PAGE_REUSE = 0x20;
const XLOG_GIST_PAGE_SPLIT = 0x30;
const XLOG_GIST_PAGE_DELETE = 0x60;
const XLOG_GIST_ASSIGN_LSN = 0x70;

const F_LEAF = 1 << 0;
const F_DELETED = 1 << 1;
const F_TUPLES_DELETED = 1 << 2;
const F_FOLLOW_RIGHT = 1 << 3;
const F_HAS_GARBAGE = 1 << 4;
const GIST_PAGE_ID = 0xff81;
const GIST_ROOT_BLKNO = 0;
const INVALID_BLOCK = 0xffffffff;

/** GISTPageOpaqueData field offsets inside the special space. */
const OPAQUE_SIZE = 16;
const OPAQUE_NSN = 0;
const OPAQUE_RIGHTLINK = 8;
const OPAQUE_FLAGS = 12;
const OPAQUE_PAGE_ID = 14;

function opaqueAt(page: Buffer): number {
  return getPdSpecial(page);
}
function getFlags(page: Buffer): number {
  return readU16(page, opaqueAt(page) + OPAQUE_FLAGS);
}
function setFlags(page: Buffer, flags: number): void {
  writeU16(page, flags & 0xffff, opaqueAt(page) + OPAQUE_FLAGS);
}
/** The NSN is stored like pd_lsn: xlogid (high half) then xrecoff (low half). */
function setNsn(page: Buffer, nsn: Lsn): void {
  const at = opaqueAt(page) + OPAQUE_NSN;
  writeU32(page, Number(nsn >> 32n) >>> 0, at);
  writeU32(page, Number(nsn & 0xffffffffn) >>> 0, at + 4);
}

/** gistinitpage */
function gistInitPage(page: Buffer, flags: number): void {
  pageInit(page, OPAQUE_SIZE);
  const at = opaqueAt(page);
  writeU32(page, INVALID_BLOCK, at + OPAQUE_RIGHTLINK);
  writeU16(page, flags, at + OPAQUE_FLAGS);
  writeU16(page, GIST_PAGE_ID, at + OPAQUE_PAGE_ID);
}

/** IndexTupleSize: the low 13 bits of t_info (after the 6-byte heap TID). */
function indexTupleSize(data: Buffer, pos: number): number {
  return data.readUInt16LE(pos + 6) & 0x1fff;
}

/** Appends the tuples packed in data[pos, end) after the page's last item (gistfillbuffer). */
function appendTuples(page: Buffer, record: DecodedRecord, block: BlockRef, data: Buffer, pos: number, end: number): number {
  let off = pageIsEmpty(page) ? FirstOffsetNumber : maxOffsetNumber(page) + 1;
  let count = 0;
  while (pos < end) {
    const size = indexTupleSize(data, pos);
    if (size === 0 || pos + size > end) throw new RedoError(record, block, `truncated index tuple at ${pos}`);
    if (pageAddItem(page, data.subarray(pos, pos + size), off) === InvalidOffsetNumber) {
      throw new RedoError(record, block, `failed to add item to GiST index page, size ${size} bytes`);
    }
    pos += size;
    off++;
    count++;
  }
  return count;
}

/** gistRedoClearFollowRight: the split of this child is complete. */
function clearFollowRight(page: Buffer, record: DecodedRecord): void {
  setNsn(page, record.endLsn);
  setFlags(page, getFlags(page) & ~F_FOLLOW_RIGHT);
}

/**
 * The part of GiST redo that PostgreSQL applies to a block even when its full-page image was
 * restored: the image of the left child of a completed split is taken before the primary clears
 * F_FOLLOW_RIGHT and sets its NSN, so gistRedoClearFollowRight runs on the restored page too.
 * The page reader restores images without calling redo; it must call this after restoring one.
 */
export function gistRedoAfterImage(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const info = record.info & 0xf0;
  if ((info === XLOG_GIST_PAGE_UPDATE && block.id === 1) || (info === XLOG_GIST_PAGE_SPLIT && block.id === 0)) clearFollowRight(page, record);
}

/** gistxlogPageUpdate {ntodelete u16, ntoinsert u16}; blk0 data: offsets to delete, then tuples. */
function redoPageUpdate(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  if (block.id === 1) return clearFollowRight(page, record);
  const ntodelete = record.mainData.readUInt16LE(0);
  const ntoinsert = record.mainData.readUInt16LE(2);
  const data = block.data;
  if (ntodelete === 1 && ntoinsert === 1) {
    // one tuple replaced by one: in place, as gistplacetopage does it
    const offnum = data.readUInt16LE(0);
    const size = indexTupleSize(data, 2);
    if (!pageIndexTupleOverwrite(page, offnum, data.subarray(2, 2 + size))) {
      throw new RedoError(record, block, `failed to add item to GiST index page, size ${size} bytes`);
    }
    return;
  }
  let pos = 0;
  if (ntodelete > 0) {
    const todelete: number[] = [];
    for (let i = 0; i < ntodelete; i++) todelete.push(data.readUInt16LE(2 * i));
    pos = 2 * ntodelete;
    pageIndexMultiDelete(page, todelete);
    // F_TUPLES_DELETED is not set: PostgreSQL 15.19 and later set it nowhere (the flag is
    // deprecated and nothing reads it). 15.18 and earlier set it on VACUUM's deletions, primary
    // and redo alike; the WAL does not say which release wrote it, so the mask ignores the flag.
  }
  const inserted = appendTuples(page, record, block, data, pos, data.length);
  if (inserted !== ntoinsert) throw new RedoError(record, block, `record announces ${ntoinsert} tuples but carries ${inserted}`);
}

/**
 * gistxlogDelete {latestRemovedXid u32, ntodelete u16} followed by the offsets (main data): an
 * inserter removing LP_DEAD tuples from a full leaf.
 */
function redoDelete(page: Buffer, record: DecodedRecord): void {
  const main = record.mainData;
  const ntodelete = main.readUInt16LE(4);
  if (main.length > 6) {
    const todelete: number[] = [];
    for (let i = 0; i < ntodelete; i++) todelete.push(main.readUInt16LE(6 + 2 * i));
    pageIndexMultiDelete(page, todelete);
  }
  // PostgreSQL 15.18's redo also sets F_TUPLES_DELETED here, but its primary (gistprunepage)
  // does not, and 15.19 on set it nowhere: not set (see redoPageUpdate).
  setFlags(page, getFlags(page) & ~F_HAS_GARBAGE);
}

/**
 * gistxlogPageSplit {origrlink u32, (pad), orignsn u64, origleaf bool, (pad), npage u16,
 * markfollowright bool}. blk0 (optional) is the child whose split this insertion completes;
 * blk1..npage are the pages of the split, left to right, each data = {ntuples int32, tuples}.
 */
function redoPageSplit(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  if (block.id === 0) return clearFollowRight(page, record);
  const main = record.mainData;
  const origrlink = main.readUInt32LE(0);
  const orignsn = main.readBigUInt64LE(8);
  const origleaf = main[16] !== 0;
  const npage = main.readUInt16LE(18);
  const markFollowRight = main[20] !== 0;
  const i = block.id - 1;
  if (i >= npage) throw new RedoError(record, block, `block id ${block.id} beyond the ${npage} split pages`);
  const first = record.blocks.find((b) => b.id === 1);
  const isRootSplit = first?.blockNumber === GIST_ROOT_BLKNO;
  const isRoot = block.blockNumber === GIST_ROOT_BLKNO;

  gistInitPage(page, origleaf && !isRoot ? F_LEAF : 0);
  const data = block.data;
  const ntuples = data.readInt32LE(0);
  const added = appendTuples(page, record, block, data, 4, data.length);
  if (added !== ntuples) throw new RedoError(record, block, `split page announces ${ntuples} tuples but carries ${added}`);

  let rightlink = INVALID_BLOCK;
  let followRight = false;
  if (!isRoot) {
    if (i < npage - 1) {
      const next = record.blocks.find((b) => b.id === block.id + 1);
      if (!next) throw new RedoError(record, block, `split record lacks block ${block.id + 1}`);
      rightlink = next.blockNumber;
      followRight = !isRootSplit && markFollowRight;
    } else {
      rightlink = origrlink;
    }
  }
  writeU32(page, rightlink, opaqueAt(page) + OPAQUE_RIGHTLINK);
  setNsn(page, orignsn);
  const flags = getFlags(page);
  setFlags(page, followRight ? flags | F_FOLLOW_RIGHT : flags & ~F_FOLLOW_RIGHT);
}

/** gistxlogPageDelete {deleteXid u64, downlinkOffset u16}: blk0 the emptied page, blk1 its parent. */
function redoPageDelete(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  if (block.id === 0) {
    // GistPageSetDeleted: flag it and store the FullTransactionId right after the header
    setFlags(page, getFlags(page) | F_DELETED);
    setPdLower(page, SIZE_OF_PAGE_HEADER + 8);
    main.copy(pageGetContents(page), 0, 0, 8);
  } else {
    pageIndexTupleDelete(page, main.readUInt16LE(8));
  }
}

export const gistRmgr: RmgrRedo = {
  name: "Gist",
  afterImage: gistRedoAfterImage,
  redo(page, record, block) {
    switch (record.info & 0xf0) {
      case XLOG_GIST_PAGE_UPDATE:
        return redoPageUpdate(page, record, block);
      case XLOG_GIST_DELETE:
        return redoDelete(page, record);
      case XLOG_GIST_PAGE_SPLIT:
        return redoPageSplit(page, record, block);
      case XLOG_GIST_PAGE_DELETE:
        return redoPageDelete(page, record, block);
      case XLOG_GIST_PAGE_REUSE: // a recovery-conflict point only
      case XLOG_GIST_ASSIGN_LSN: // only assigns an LSN
        return "keep-lsn";
      default:
        throw new UnsupportedRecordError(record);
    }
  },
  mask(page) {
    maskPageLsnAndChecksum(page);
    maskPageHintBits(page);
    maskUnusedSpace(page);
    const at = opaqueAt(page);
    if (at + OPAQUE_SIZE > 8192) return;
    setNsn(page, 0n);
    setFlags(page, getFlags(page) | F_FOLLOW_RIGHT);
    if (getFlags(page) & F_LEAF) maskLpFlags(page);
    setFlags(page, getFlags(page) & ~F_HAS_GARBAGE);
    // not in PostgreSQL's gist_mask: a primary up to 15.18 sets F_TUPLES_DELETED on VACUUM, one
    // from 15.19 on does not, the WAL is the same, and no code reads the flag (redoPageUpdate)
    setFlags(page, getFlags(page) & ~F_TUPLES_DELETED);
  },
};
