// One table of resource managers, as PostgreSQL's rmgrlist.h: id -> redo (and mask) per page.
// Rmgrs whose records never reference a page (their effects are tracked by ingest as directory,
// SLRU, relmap or checkpoint values) are listed explicitly as having no page redo.
import type { DecodedRecord } from "../wal/record.ts";
import { brinRmgr } from "./brin.ts";
import { btreeRmgr } from "./btree.ts";
import { genericRmgr } from "./generic.ts";
import { ginRmgr } from "./gin.ts";
import { gistRmgr } from "./gist.ts";
import { hashRmgr } from "./hash.ts";
import { heapRmgr } from "./heap.ts";
import { heap2Rmgr } from "./heap2.ts";
import { sequenceRmgr } from "./sequence.ts";
import { spgistRmgr } from "./spgist.ts";
import { type RmgrRedo, UnsupportedRecordError } from "./types.ts";
import { xlogRmgr } from "./xlog.ts";

function noPageEffects(name: string): RmgrRedo {
  return {
    name,
    redo(_page, record) {
      throw new UnsupportedRecordError(record, `${name} records reference no pages`);
    },
  };
}

/** Indexed by rmgr id (PostgreSQL 15). */
export const RMGRS: ReadonlyArray<RmgrRedo | undefined> = [
  xlogRmgr, // 0
  noPageEffects("Transaction"), // 1: CLOG bits and 2PC files are derived at ingest
  noPageEffects("Storage"), // 2: relation create/truncate tracked as sizes
  noPageEffects("CLOG"), // 3: zero pages stored as images at ingest
  noPageEffects("Database"), // 4: directories and FILE_COPY handled at ingest
  noPageEffects("Tablespace"), // 5
  noPageEffects("MultiXact"), // 6: derived at ingest
  noPageEffects("RelMap"), // 7: relmap files stored at ingest
  noPageEffects("Standby"), // 8: hot-standby bookkeeping only
  heap2Rmgr, // 9
  heapRmgr, // 10
  btreeRmgr, // 11
  hashRmgr, // 12
  ginRmgr, // 13
  gistRmgr, // 14
  sequenceRmgr, // 15
  spgistRmgr, // 16
  brinRmgr, // 17
  noPageEffects("CommitTs"), // 18
  noPageEffects("ReplicationOrigin"), // 19
  genericRmgr, // 20
  noPageEffects("LogicalMessage"), // 21
];

export function rmgrFor(record: DecodedRecord): RmgrRedo {
  const rmgr = RMGRS[record.rmid];
  if (!rmgr) throw new UnsupportedRecordError(record, `unknown resource manager ${record.rmid}`);
  return rmgr;
}
