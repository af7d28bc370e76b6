// SP-GiST redo (rmgr 16, PostgreSQL's spgxlog.c), one block reference at a time. Pages carry a
// SpGistPageOpaqueData special space {flags, nRedirection, nPlaceholder, page id}; tuples keep
// their offset numbers, so removed ones are replaced by small "dead" tuples (REDIRECT, DEAD or
// PLACEHOLDER) and placeholders are reused in place. Record tuples are unaligned; each record's
// main data is a fixed struct followed by offset arrays and tuples, decoded below per type.
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { maskPageHintBits, maskPageLsnAndChecksum, maskUnusedSpace } from "./mask.ts";
import {
  getItem,
  getItemIdRaw,
  getPdLower,
  getPdSpecial,
  InvalidOffsetNumber,
  maxOffsetNumber,
  pageAddItem,
  pageIndexMultiDelete,
  pageIndexTupleDelete,
  pageInit,
  SIZE_OF_PAGE_HEADER,
  setItemIdRaw,
} from "./page.ts";
import { readU16, writeU16 } from "../bytes.ts";
import { type RmgrRedo, RedoError, UnsupportedRecordError } from "./types.ts";

const XLOG_SPGIST_ADD_LEAF = 0x10;
const XLOG_SPGIST_MOVE_LEAFS = 0x20;
const XLOG_SPGIST_ADD_NODE = 0x30;
const XLOG_SPGIST_SPLIT_TUPLE = 0x40;
const XLOG_SPGIST_PICKSPLIT = 0x50;
const XLOG_SPGIST_VACUUM_LEAF = 0x60;
const XLOG_SPGIST_VACUUM_ROOT = 0x70;
const XLOG_SPGIST_VACUUM_REDIRECT = 0x80;

/** SpGistPageOpaqueData {flags u16, nRedirection u16, nPlaceholder u16, spgist_page_id u16} */
const OPAQUE_SIZE = 8;
const OPAQUE_N_REDIRECTION = 2;
const OPAQUE_N_PLACEHOLDER = 4;
const OPAQUE_PAGE_ID = 6;
const SPGIST_LEAF = 1 << 2;
const SPGIST_NULLS = 1 << 3;
const SPGIST_PAGE_ID = 0xff82;

/** tupstate, the low two bits of every SP-GiST tuple's first word */
const SPGIST_REDIRECT = 1;
const SPGIST_DEAD = 2;
const SPGIST_PLACEHOLDER = 3;
/** SpGistDeadTupleData {tupstate:2 size:30, t_info u16, pointer ItemPointer, xid u32}, MAXALIGNed */
const SGDTSIZE = 16;
const SGITHDRSZ = 8;
const INVALID_BLOCK = 0xffffffff;

/** spgxlogState {myXid u32, isBuild bool} as embedded in several records. */
interface XlogState {
  myXid: number;
  isBuild: boolean;
}
function readState(main: Buffer, at: number): XlogState {
  return { myXid: main.readUInt32LE(at), isBuild: main[at + 4] !== 0 };
}

function readOffsets(main: Buffer, at: number, n: number): number[] {
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = main.readUInt16LE(at + 2 * i);
  return out;
}

/** Size of a leaf (or dead) tuple: the 30 bits above tupstate. */
function leafTupleSize(data: Buffer, pos: number): number {
  return data.readUInt32LE(pos) >>> 2;
}
/** Size of an inner tuple: the u16 after the bit-field word. */
function innerTupleSize(data: Buffer, pos: number): number {
  return data.readUInt16LE(pos + 4);
}

function opaqueAt(page: Buffer): number {
  return getPdSpecial(page);
}
function bumpCounter(page: Buffer, field: number, delta: number): void {
  const at = opaqueAt(page) + field;
  writeU16(page, (readU16(page, at) + delta) & 0xffff, at);
}

/** SpGistInitPage */
function initPage(page: Buffer, flags: number): void {
  pageInit(page, OPAQUE_SIZE);
  const at = opaqueAt(page);
  writeU16(page, flags, at);
  writeU16(page, SPGIST_PAGE_ID, at + OPAQUE_PAGE_ID);
}
function leafFlags(storesNulls: boolean): number {
  return SPGIST_LEAF | (storesNulls ? SPGIST_NULLS : 0);
}

/** writes an ItemPointer {bi_hi, bi_lo, posid} */
function writeItemPointer(buf: Buffer, at: number, blkno: number, offnum: number): void {
  buf.writeUInt16LE(blkno >>> 16, at);
  buf.writeUInt16LE(blkno & 0xffff, at + 2);
  buf.writeUInt16LE(offnum, at + 4);
}

/** spgFormDeadTuple: a REDIRECT (to blkno/offnum, stamped with the xid), DEAD or PLACEHOLDER tuple. */
function formDeadTuple(tupstate: number, blkno: number, offnum: number, xid: number): Buffer {
  const t = Buffer.alloc(SGDTSIZE);
  t.writeUInt32LE(((SGDTSIZE << 2) | tupstate) >>> 0, 0);
  if (tupstate === SPGIST_REDIRECT) {
    writeItemPointer(t, 6, blkno, offnum);
    t.writeUInt32LE(xid >>> 0, 12);
  } else {
    writeItemPointer(t, 6, INVALID_BLOCK, InvalidOffsetNumber);
  }
  return t;
}

function addAt(page: Buffer, record: DecodedRecord, block: BlockRef, tuple: Buffer, offnum: number): void {
  if (pageAddItem(page, tuple, offnum) !== offnum) {
    throw new RedoError(record, block, `failed to add item of size ${tuple.length} to SPGiST index page at ${offnum}`);
  }
}

/** addOrReplaceTuple: add at `offnum`, first removing the placeholder that holds that offset. */
function addOrReplace(page: Buffer, record: DecodedRecord, block: BlockRef, tuple: Buffer, offnum: number): void {
  if (offnum <= maxOffsetNumber(page)) {
    if ((getItem(page, offnum)[0] & 3) !== SPGIST_PLACEHOLDER) throw new RedoError(record, block, `SPGiST tuple to be replaced at ${offnum} is not a placeholder`);
    bumpCounter(page, OPAQUE_N_PLACEHOLDER, -1);
    pageIndexTupleDelete(page, offnum);
  }
  addAt(page, record, block, tuple, offnum);
}

/** PageIndexTupleDelete + PageAddItem at the same offset: replace a tuple of any size. */
function replaceAt(page: Buffer, record: DecodedRecord, block: BlockRef, tuple: Buffer, offnum: number): void {
  pageIndexTupleDelete(page, offnum);
  addAt(page, record, block, tuple, offnum);
}

/** spgUpdateNodeLink: point node `nodeI` of the inner tuple at `offnum` to (blkno, target). */
function updateNodeLink(page: Buffer, record: DecodedRecord, block: BlockRef, offnum: number, nodeI: number, blkno: number, target: number): void {
  const tuple = getItem(page, offnum);
  const word = tuple.readUInt32LE(0);
  const nNodes = (word >>> 3) & 0x1fff;
  const prefixSize = word >>> 16;
  if (nodeI >= nNodes) throw new RedoError(record, block, `failed to find requested node ${nodeI} in SPGiST inner tuple`);
  let pos = SGITHDRSZ + prefixSize;
  for (let i = 0; i < nodeI; i++) pos += tuple.readUInt16LE(pos + 6) & 0x1fff;
  writeItemPointer(tuple, pos, blkno, target);
}

/**
 * spgPageIndexMultiDelete: removes `itemnos` and puts dead tuples back at the same offsets, the
 * first listed one in state `firstState`, the others in `restState`, keeping the counters.
 */
function multiDeleteToDead(page: Buffer, record: DecodedRecord, block: BlockRef, itemnos: number[], firstState: number, restState: number, blkno: number, offnum: number, xid: number): void {
  if (itemnos.length === 0) return;
  const sorted = [...itemnos].sort((a, b) => a - b);
  pageIndexMultiDelete(page, sorted);
  const first = itemnos[0];
  for (const itemno of sorted) {
    const state = itemno === first ? firstState : restState;
    const tuple = formDeadTuple(state, blkno, offnum, xid);
    addAt(page, record, block, tuple, itemno);
    if (state === SPGIST_REDIRECT) bumpCounter(page, OPAQUE_N_REDIRECTION, 1);
    else if (state === SPGIST_PLACEHOLDER) bumpCounter(page, OPAQUE_N_PLACEHOLDER, 1);
  }
}

function blockNumberOf(record: DecodedRecord, block: BlockRef, id: number): number {
  const ref = record.blocks.find((b) => b.id === id);
  if (!ref) throw new RedoError(record, block, `record has no block ${id}`);
  return ref.blockNumber;
}

/**
 * spgxlogAddLeaf {newPage, storesNulls, offnumLeaf, offnumHeadLeaf, offnumParent, nodeI} + leaf
 * tuple. blk0 the leaf page, blk1 the parent whose downlink now points at the new tuple.
 */
function redoAddLeaf(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const offnumLeaf = main.readUInt16LE(2);
  if (block.id === 1) {
    updateNodeLink(page, record, block, main.readUInt16LE(6), main.readUInt16LE(8), blockNumberOf(record, block, 0), offnumLeaf);
    return;
  }
  const offnumHeadLeaf = main.readUInt16LE(4);
  const leaf = main.subarray(10, 10 + leafTupleSize(main, 10));
  if (main[0]) initPage(page, leafFlags(main[1] !== 0));
  if (offnumLeaf !== offnumHeadLeaf) {
    addOrReplace(page, record, block, leaf, offnumLeaf);
    if (offnumHeadLeaf !== InvalidOffsetNumber) {
      // the new tuple joins the chain after the head: head.nextOffset := new tuple
      const head = getItem(page, offnumHeadLeaf);
      head.writeUInt16LE((head.readUInt16LE(4) & 0xc000) | (offnumLeaf & 0x3fff), 4);
    }
  } else {
    replaceAt(page, record, block, leaf, offnumLeaf); // replacing a DEAD tuple
  }
}

/**
 * spgxlogMoveLeafs {nMoves, newPage, replaceDead, storesNulls, offnumParent, nodeI, stateSrc}
 * then nMoves source offsets, nInsert dest offsets, nInsert leaf tuples. blk0 source (moved
 * tuples become a redirect + placeholders), blk1 dest, blk2 parent.
 */
function redoMoveLeafs(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const nMoves = main.readUInt16LE(0);
  const nInsert = main[3] ? 1 : nMoves + 1;
  const state = readState(main, 12);
  const toDelete = readOffsets(main, 20, nMoves);
  const toInsert = readOffsets(main, 20 + 2 * nMoves, nInsert);
  const lastInserted = toInsert[nInsert - 1];
  switch (block.id) {
    case 1: {
      if (main[2]) initPage(page, leafFlags(main[4] !== 0));
      let pos = 20 + 2 * nMoves + 2 * nInsert;
      for (let i = 0; i < nInsert; i++) {
        const size = leafTupleSize(main, pos);
        addOrReplace(page, record, block, main.subarray(pos, pos + size), toInsert[i]);
        pos += size;
      }
      return;
    }
    case 0:
      multiDeleteToDead(page, record, block, toDelete, state.isBuild ? SPGIST_PLACEHOLDER : SPGIST_REDIRECT, SPGIST_PLACEHOLDER, blockNumberOf(record, block, 1), lastInserted, state.myXid);
      return;
    case 2:
      updateNodeLink(page, record, block, main.readUInt16LE(6), main.readUInt16LE(8), blockNumberOf(record, block, 1), lastInserted);
      return;
  }
  throw new RedoError(record, block, `unexpected block id ${block.id}`);
}

/**
 * spgxlogAddNode {offnum, offnumNew, newPage, parentBlk int8, offnumParent, nodeI, stateSrc} +
 * the enlarged inner tuple. Without blk1 it replaces the tuple in place on blk0; otherwise it goes
 * to blk1 and the old one becomes a redirect, and the parent (on blk0, blk1 or blk2) is relinked.
 */
function redoAddNode(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const offnum = main.readUInt16LE(0);
  const offnumNew = main.readUInt16LE(2);
  const parentBlk = main.readInt8(5);
  const offnumParent = main.readUInt16LE(6);
  const nodeI = main.readUInt16LE(8);
  const state = readState(main, 12);
  const inner = main.subarray(20, 20 + innerTupleSize(main, 20));
  const hasNewPage = record.blocks.some((b) => b.id === 1);
  if (!hasNewPage) {
    if (block.id !== 0) throw new RedoError(record, block, `unexpected block id ${block.id}`);
    replaceAt(page, record, block, inner, offnum);
    return;
  }
  const blknoNew = blockNumberOf(record, block, 1);
  if (block.id === 1) {
    if (main[4]) initPage(page, 0);
    addOrReplace(page, record, block, inner, offnumNew);
  } else if (block.id === 0) {
    const dead = state.isBuild ? formDeadTuple(SPGIST_PLACEHOLDER, INVALID_BLOCK, InvalidOffsetNumber, 0) : formDeadTuple(SPGIST_REDIRECT, blknoNew, offnumNew, state.myXid);
    replaceAt(page, record, block, dead, offnum);
    bumpCounter(page, state.isBuild ? OPAQUE_N_PLACEHOLDER : OPAQUE_N_REDIRECTION, 1);
  }
  if (parentBlk === block.id) updateNodeLink(page, record, block, offnumParent, nodeI, blknoNew, offnumNew);
}

/**
 * spgxlogSplitTuple {offnumPrefix, offnumPostfix, newPage, postfixBlkSame} + prefix tuple +
 * postfix tuple. blk0 gets the prefix in place of the old tuple (and the postfix if same page).
 */
function redoSplitTuple(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const offnumPrefix = main.readUInt16LE(0);
  const offnumPostfix = main.readUInt16LE(2);
  const postfixBlkSame = main[5] !== 0;
  const prefixSize = innerTupleSize(main, 6);
  const prefix = main.subarray(6, 6 + prefixSize);
  const postfix = main.subarray(6 + prefixSize, 6 + prefixSize + innerTupleSize(main, 6 + prefixSize));
  if (block.id === 1) {
    if (main[4]) initPage(page, 0);
    addOrReplace(page, record, block, postfix, offnumPostfix);
    return;
  }
  replaceAt(page, record, block, prefix, offnumPrefix);
  if (postfixBlkSame) addOrReplace(page, record, block, postfix, offnumPostfix);
}

/**
 * spgxlogPickSplit {isRootSplit, nDelete, nInsert, initSrc, initDest, offnumInner, initInner,
 * storesNulls, innerIsParent, offnumParent, nodeI, stateSrc} then nDelete offsets, nInsert
 * offsets, nInsert page selectors (0 = src, 1 = dest), the new inner tuple and nInsert leaf
 * tuples. blk0 src leaf, blk1 dest leaf, blk2 the page of the new inner tuple, blk3 the parent.
 */
function redoPickSplit(page: Buffer, record: DecodedRecord, block: BlockRef): void | "keep-lsn" {
  const main = record.mainData;
  const isRootSplit = main[0] !== 0;
  const nDelete = main.readUInt16LE(2);
  const nInsert = main.readUInt16LE(4);
  const offnumInner = main.readUInt16LE(8);
  const storesNulls = main[11] !== 0;
  const offnumParent = main.readUInt16LE(14);
  const nodeI = main.readUInt16LE(16);
  const state = readState(main, 20);
  let pos = 28;
  const toDelete = readOffsets(main, pos, nDelete);
  pos += 2 * nDelete;
  const toInsert = readOffsets(main, pos, nInsert);
  pos += 2 * nInsert;
  const selectAt = pos;
  pos += nInsert;
  const innerSize = innerTupleSize(main, pos);
  const inner = main.subarray(pos, pos + innerSize);
  pos += innerSize;
  const blknoInner = blockNumberOf(record, block, 2);

  switch (block.id) {
    case 0:
    case 1: {
      if (block.id === 0) {
        if (isRootSplit) return "keep-lsn"; // the root is touched only as the new inner page (blk2)
        if (main[6]) initPage(page, leafFlags(storesNulls));
        else if (state.isBuild) multiDeleteToDead(page, record, block, toDelete, SPGIST_PLACEHOLDER, SPGIST_PLACEHOLDER, INVALID_BLOCK, InvalidOffsetNumber, state.myXid);
        else multiDeleteToDead(page, record, block, toDelete, SPGIST_REDIRECT, SPGIST_PLACEHOLDER, blknoInner, offnumInner, state.myXid);
      } else if (main[7]) {
        initPage(page, leafFlags(storesNulls));
      }
      for (let i = 0; i < nInsert; i++) {
        const size = leafTupleSize(main, pos);
        if ((main[selectAt + i] !== 0 ? 1 : 0) === block.id) addOrReplace(page, record, block, main.subarray(pos, pos + size), toInsert[i]);
        pos += size;
      }
      return;
    }
    case 2:
      if (main[10]) initPage(page, storesNulls ? SPGIST_NULLS : 0);
      addOrReplace(page, record, block, inner, offnumInner);
      if (main[12]) updateNodeLink(page, record, block, offnumParent, nodeI, blknoInner, offnumInner);
      return;
    case 3:
      updateNodeLink(page, record, block, offnumParent, nodeI, blknoInner, offnumInner);
      return;
  }
  throw new RedoError(record, block, `unexpected block id ${block.id}`);
}

/**
 * spgxlogVacuumLeaf {nDead, nPlaceholder, nMove, nChain, stateSrc} then the offsets to make DEAD,
 * to make PLACEHOLDER, to move from, to move to, to re-chain and their new next offsets.
 */
function redoVacuumLeaf(page: Buffer, record: DecodedRecord, block: BlockRef): void {
  const main = record.mainData;
  const nDead = main.readUInt16LE(0);
  const nPlaceholder = main.readUInt16LE(2);
  const nMove = main.readUInt16LE(4);
  const nChain = main.readUInt16LE(6);
  let pos = 16;
  const take = (n: number) => {
    const out = readOffsets(main, pos, n);
    pos += 2 * n;
    return out;
  };
  const toDead = take(nDead);
  const toPlaceholder = take(nPlaceholder);
  const moveSrc = take(nMove);
  const moveDest = take(nMove);
  const chainSrc = take(nChain);
  const chainDest = take(nChain);

  multiDeleteToDead(page, record, block, toDead, SPGIST_DEAD, SPGIST_DEAD, INVALID_BLOCK, InvalidOffsetNumber, 0);
  multiDeleteToDead(page, record, block, toPlaceholder, SPGIST_PLACEHOLDER, SPGIST_PLACEHOLDER, INVALID_BLOCK, InvalidOffsetNumber, 0);
  // a live tuple moves into a chain slot by swapping line pointers; the vacated slot becomes a placeholder
  for (let i = 0; i < nMove; i++) {
    const src = getItemIdRaw(page, moveSrc[i]);
    setItemIdRaw(page, moveSrc[i], getItemIdRaw(page, moveDest[i]));
    setItemIdRaw(page, moveDest[i], src);
  }
  multiDeleteToDead(page, record, block, moveSrc, SPGIST_PLACEHOLDER, SPGIST_PLACEHOLDER, INVALID_BLOCK, InvalidOffsetNumber, 0);
  for (let i = 0; i < nChain; i++) {
    const leaf = getItem(page, chainSrc[i]);
    leaf.writeUInt16LE((leaf.readUInt16LE(4) & 0xc000) | (chainDest[i] & 0x3fff), 4);
  }
}

/** spgxlogVacuumRoot {nDelete, stateSrc} + offsets: plain deletion from a root that is a leaf. */
function redoVacuumRoot(page: Buffer, record: DecodedRecord): void {
  const main = record.mainData;
  pageIndexMultiDelete(page, readOffsets(main, 12, main.readUInt16LE(0)));
}

/**
 * spgxlogVacuumRedirect {nToPlaceholder, firstPlaceholder, newestRedirectXid} + offsets:
 * expired redirects become placeholders, then trailing placeholders from firstPlaceholder go.
 */
function redoVacuumRedirect(page: Buffer, record: DecodedRecord): void {
  const main = record.mainData;
  const nToPlaceholder = main.readUInt16LE(0);
  const firstPlaceholder = main.readUInt16LE(2);
  for (const offnum of readOffsets(main, 8, nToPlaceholder)) {
    const dead = getItem(page, offnum);
    dead[0] = (dead[0] & ~3) | SPGIST_PLACEHOLDER;
    writeItemPointer(dead, 6, INVALID_BLOCK, InvalidOffsetNumber);
  }
  bumpCounter(page, OPAQUE_N_REDIRECTION, -nToPlaceholder);
  bumpCounter(page, OPAQUE_N_PLACEHOLDER, nToPlaceholder);
  if (firstPlaceholder !== InvalidOffsetNumber) {
    const max = maxOffsetNumber(page);
    const toDelete: number[] = [];
    for (let i = firstPlaceholder; i <= max; i++) toDelete.push(i);
    bumpCounter(page, OPAQUE_N_PLACEHOLDER, -toDelete.length);
    pageIndexMultiDelete(page, toDelete);
  }
}

export const spgistRmgr: RmgrRedo = {
  name: "SPGist",
  redo(page, record, block) {
    switch (record.info & 0xf0) {
      case XLOG_SPGIST_ADD_LEAF:
        return redoAddLeaf(page, record, block);
      case XLOG_SPGIST_MOVE_LEAFS:
        return redoMoveLeafs(page, record, block);
      case XLOG_SPGIST_ADD_NODE:
        return redoAddNode(page, record, block);
      case XLOG_SPGIST_SPLIT_TUPLE:
        return redoSplitTuple(page, record, block);
      case XLOG_SPGIST_PICKSPLIT:
        return redoPickSplit(page, record, block);
      case XLOG_SPGIST_VACUUM_LEAF:
        return redoVacuumLeaf(page, record, block);
      case XLOG_SPGIST_VACUUM_ROOT:
        return redoVacuumRoot(page, record);
      case XLOG_SPGIST_VACUUM_REDIRECT:
        return redoVacuumRedirect(page, record);
      default:
        throw new UnsupportedRecordError(record);
    }
  },
  mask(page) {
    maskPageLsnAndChecksum(page);
    maskPageHintBits(page);
    if (getPdLower(page) >= SIZE_OF_PAGE_HEADER) maskUnusedSpace(page);
  },
};
