// Heap2 redo (not implemented yet): every record fails with an error naming it, so an affected
// page is never silently wrong.
import { type RmgrRedo, UnsupportedRecordError } from "./types.ts";

export const heap2Rmgr: RmgrRedo = {
  name: "Heap2",
  redo(_page, record) {
    throw new UnsupportedRecordError(record);
  },
};
