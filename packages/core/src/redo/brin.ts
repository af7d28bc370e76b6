// BRIN redo (rmgr 17, PostgreSQL's brin_xlog.c), one block reference at a time. A BRIN index is a
// metapage (block 0), revmap pages mapping each heap range to a summary tuple's TID, and regular
// pages holding the summary tuples. Records insert/replace/remove summary tuples and point
// revmap entries at them; the regular page's block number for a revmap entry comes from blk0.
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./mask.ts";
import {
  getPdSpecial,
  maxOffsetNumber,
  pageAddItem,
  pageIndexTupleDeleteNoCompact,
  pageIndexTupleOverwrite,
  pageInit,
  pageGetContents,
  InvalidOffsetNumber,
  SIZE_OF_PAGE_HEADER,
  setPdLower,
} from "./page.ts";
import { readU16, writeU16 } from "../bytes.ts";
import { type RmgrRedo, RedoError, UnsupportedRecordError } from "./types.ts";

const XLOG_BRIN_CREATE_INDEX = 0x00;
const XLOG_BRIN_INSERT = 0x10;
const XLOG_BRIN_UPDATE = 0x20;
const XLOG_BRIN_SAMEPAGE_UPDATE = 0x30;
const XLOG_BRIN_REVMAP_EXTEND = 0x40;
const XLOG_BRIN_DESUMMARIZE = 0x50;
const XLOG_BRIN_OPMASK = 0x70;
const XLOG_BRIN_INIT_PAGE = 0x80;

/** BrinSpecialSpace: four u16, flags in vector[2], page type in vector[3]. */
const BRIN_SPECIAL_SIZE = 8;
const SPECIAL_FLAGS = 4;
const SPECIAL_TYPE = 6;
export const BRIN_PAGETYPE_META = 0xf091;
export const BRIN_PAGETYPE_REVMAP = 0xf092;
export const BRIN_PAGETYPE_REGULAR = 0xf093;
const BRIN_EVACUATE_PAGE = 0x0001;

const BRIN_META_MAGIC = 0xa8109cfa;
/** BrinMetaPageData {brinMagic, brinVersion, pagesPerRange, lastRevmapPage}, right after the header. */
const META_SIZE = 16;
const META_LAST_REVMAP = 12;
/** (8192 - 24 - MAXALIGN(special)) / sizeof(ItemPointerData) */
const REVMAP_PAGE_MAXITEMS = Math.floor((8192 - SIZE_OF_PAGE_HEADER - BRIN_SPECIAL_SIZE) / 6);
const INVALID_BLOCK = 0xffffffff;

function brinPageType(page: Buffer): number {
  return readU16(page, getPdSpecial(page) + SPECIAL_TYPE);
}

function brinPageInit(page: Buffer, type: number): void {
  pageInit(page, BRIN_SPECIAL_SIZE);
  writeU16(page, type, getPdSpecial(page) + SPECIAL_TYPE);
}

/** brinSetHeapBlockItemptr: the revmap entry of `heapBlk`'s range := (blkno, offnum). */
function setRevmapEntry(page: Buffer, pagesPerRange: number, heapBlk: number, blkno: number, offnum: number): void {
  const index = Math.floor(heapBlk / pagesPerRange) % REVMAP_PAGE_MAXITEMS;
  const pos = SIZE_OF_PAGE_HEADER + index * 6;
  writeU16(page, blkno >>> 16, pos);
  writeU16(page, blkno & 0xffff, pos + 2);
  writeU16(page, offnum, pos + 4);
}

/** xl_brin_insert {heapBlk u32, pagesPerRange u32, offnum u16} at `at` in the main data. */
function redoInsertOrUpdate(page: Buffer, record: DecodedRecord, block: BlockRef, at: number): void {
  const main = record.mainData;
  const heapBlk = main.readUInt32LE(at);
  const pagesPerRange = main.readUInt32LE(at + 4);
  const offnum = main.readUInt16LE(at + 8);
  if (block.id === 0) {
    if (record.info & XLOG_BRIN_INIT_PAGE) brinPageInit(page, BRIN_PAGETYPE_REGULAR);
    if (maxOffsetNumber(page) + 1 < offnum) throw new RedoError(record, block, `invalid offset ${offnum} for the new tuple`);
    if (pageAddItem(page, block.data, offnum, { overwrite: true }) === InvalidOffsetNumber) {
      throw new RedoError(record, block, "failed to add tuple");
    }
  } else if (block.id === 1) {
    const regular = record.blocks.find((b) => b.id === 0);
    if (!regular) throw new RedoError(record, block, "record has no regular page (block 0)");
    setRevmapEntry(page, pagesPerRange, heapBlk, regular.blockNumber, offnum);
  } else if (block.id === 2) {
    // UPDATE only: the old tuple's page; xl_brin_update starts with oldOffnum
    pageIndexTupleDeleteNoCompact(page, main.readUInt16LE(0));
  } else {
    throw new RedoError(record, block, `unexpected block id ${block.id}`);
  }
}

export const brinRmgr: RmgrRedo = {
  name: "BRIN",
  redo(page, record, block) {
    const main = record.mainData;
    switch (record.info & XLOG_BRIN_OPMASK) {
      case XLOG_BRIN_CREATE_INDEX: {
        brinPageInit(page, BRIN_PAGETYPE_META);
        const meta = pageGetContents(page);
        meta.writeUInt32LE(BRIN_META_MAGIC, 0);
        meta.writeUInt32LE(main.readUInt16LE(4), 4); // version
        meta.writeUInt32LE(main.readUInt32LE(0), 8); // pagesPerRange
        meta.writeUInt32LE(0, META_LAST_REVMAP);
        setPdLower(page, SIZE_OF_PAGE_HEADER + META_SIZE);
        return;
      }
      case XLOG_BRIN_INSERT:
        return redoInsertOrUpdate(page, record, block, 0);
      case XLOG_BRIN_UPDATE:
        // xl_brin_update {oldOffnum u16, (pad), xl_brin_insert at 4}
        return redoInsertOrUpdate(page, record, block, 4);
      case XLOG_BRIN_SAMEPAGE_UPDATE:
        if (!pageIndexTupleOverwrite(page, main.readUInt16LE(0), block.data)) throw new RedoError(record, block, "failed to replace tuple");
        return;
      case XLOG_BRIN_REVMAP_EXTEND:
        if (block.id === 0) {
          pageGetContents(page).writeUInt32LE(main.readUInt32LE(0), META_LAST_REVMAP);
          setPdLower(page, SIZE_OF_PAGE_HEADER + META_SIZE);
        } else {
          brinPageInit(page, BRIN_PAGETYPE_REVMAP);
        }
        return;
      case XLOG_BRIN_DESUMMARIZE:
        // xl_brin_desummarize {pagesPerRange u32, heapBlk u32, regOffset u16}
        if (block.id === 0) setRevmapEntry(page, main.readUInt32LE(0), main.readUInt32LE(4), INVALID_BLOCK, InvalidOffsetNumber);
        else pageIndexTupleDeleteNoCompact(page, main.readUInt16LE(8));
        return;
      default:
        throw new UnsupportedRecordError(record);
    }
  },
  mask(page) {
    maskPageLsnAndChecksum(page);
    maskPageHintBits(page);
    const type = brinPageType(page);
    if (type === BRIN_PAGETYPE_REGULAR || (type === BRIN_PAGETYPE_META && readU16(page, 12) > SIZE_OF_PAGE_HEADER)) maskUnusedSpace(page);
    const flagsAt = getPdSpecial(page) + SPECIAL_FLAGS;
    if (flagsAt + 2 <= 8192) writeU16(page, readU16(page, flagsAt) & ~BRIN_EVACUATE_PAGE, flagsAt);
  },
};
