// XLOG redo. Full-page images (FPI, FPI_FOR_HINT) are restored by the engine before any redo
// runs; an FPI_FOR_HINT without an image (full_page_writes=off) changes nothing that is compared.
import { type RmgrRedo, UnsupportedRecordError } from "./types.ts";

const XLOG_FPI_FOR_HINT = 0xa0;
const XLOG_FPI = 0xb0;

export const xlogRmgr: RmgrRedo = {
  name: "XLOG",
  redo(_page, record, block) {
    const info = record.info & 0xf0;
    if (info === XLOG_FPI_FOR_HINT && !block.hasImage) return "keep-lsn";
    if (info === XLOG_FPI && block.hasImage) return;
    throw new UnsupportedRecordError(record, "XLOG record with a block reference but no image");
  },
};
