// Sequence redo (XLOG_SEQ_LOG): the record carries the whole sequence tuple; redo rebuilds the
// page from scratch: one item at offset 1, special space holding the sequence magic.
import { maskPageLsnAndChecksum, maskUnusedSpace } from "./mask.ts";
import { type RmgrRedo, RedoError, UnsupportedRecordError } from "./types.ts";

const XLOG_SEQ_LOG = 0x00;
const SEQ_MAGIC = 0x1717;
const SPECIAL_SIZE = 8; // MAXALIGN(sizeof(sequence_magic))
const REL_FILE_NODE_SIZE = 12;

export const sequenceRmgr: RmgrRedo = {
  name: "Sequence",
  redo(page, record, block) {
    if ((record.info & 0xf0) !== XLOG_SEQ_LOG) throw new UnsupportedRecordError(record);
    const tuple = record.mainData.subarray(REL_FILE_NODE_SIZE);
    const special = 8192 - SPECIAL_SIZE;
    const upper = special - Math.ceil(tuple.length / 8) * 8;
    if (upper < 28) throw new RedoError(record, block, `sequence tuple of ${tuple.length} bytes does not fit a page`);
    page.fill(0);
    page.writeUInt16LE(24 + 4, 12);
    page.writeUInt16LE(upper, 14);
    page.writeUInt16LE(special, 16);
    page.writeUInt16LE(8192 | 4, 18);
    page.writeUInt32LE(SEQ_MAGIC, special);
    page.writeUInt32LE((upper | (1 << 15) | (tuple.length << 17)) >>> 0, 24);
    tuple.copy(page, upper);
  },
  mask(page) {
    maskPageLsnAndChecksum(page);
    maskUnusedSpace(page);
  },
};
