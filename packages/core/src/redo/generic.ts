// Generic WAL redo (used by extensions such as bloom): each block's data is a list of
// {offset u16, length u16, bytes} fragments copied into the page; the hole between pd_lower
// and pd_upper is zeroed afterwards, as GenericXLogFinish left it on the primary.
import { maskPageLsnAndChecksum, maskUnusedSpace } from "./mask.ts";
import { type RmgrRedo, RedoError } from "./types.ts";

export const genericRmgr: RmgrRedo = {
  name: "Generic",
  redo(page, record, block) {
    const delta = block.data;
    let pos = 0;
    while (pos < delta.length) {
      if (pos + 4 > delta.length) throw new RedoError(record, block, "truncated generic WAL fragment header");
      const offset = delta.readUInt16LE(pos);
      const length = delta.readUInt16LE(pos + 2);
      pos += 4;
      if (pos + length > delta.length || offset + length > 8192) throw new RedoError(record, block, `generic WAL fragment [${offset}, +${length}) out of bounds`);
      delta.copy(page, offset, pos, pos + length);
      pos += length;
    }
    const lower = page.readUInt16LE(12);
    const upper = page.readUInt16LE(14);
    if (lower <= upper && upper <= 8192) page.fill(0, lower, upper);
  },
  mask(page) {
    maskPageLsnAndChecksum(page);
    maskUnusedSpace(page);
  },
};
