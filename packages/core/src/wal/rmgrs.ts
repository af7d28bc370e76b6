// The PostgreSQL 15 resource-manager table as pg_waldump names it: rmgr id -> name, and
// (rmgr, xl_info) -> record-type name exactly as each rmgr's identify() prints it. Used by the
// waldump formatter and by logs/metrics; redo dispatch has its own table in redo/.

export const enum RmgrId {
  XLOG = 0,
  Transaction = 1,
  Storage = 2,
  CLOG = 3,
  Database = 4,
  Tablespace = 5,
  MultiXact = 6,
  RelMap = 7,
  Standby = 8,
  Heap2 = 9,
  Heap = 10,
  Btree = 11,
  Hash = 12,
  Gin = 13,
  Gist = 14,
  Sequence = 15,
  SPGist = 16,
  BRIN = 17,
  CommitTs = 18,
  ReplicationOrigin = 19,
  Generic = 20,
  LogicalMessage = 21,
}

export const RMGR_NAMES: readonly string[] = [
  "XLOG", "Transaction", "Storage", "CLOG", "Database", "Tablespace", "MultiXact", "RelMap",
  "Standby", "Heap2", "Heap", "Btree", "Hash", "Gin", "Gist", "Sequence", "SPGist", "BRIN",
  "CommitTs", "ReplicationOrigin", "Generic", "LogicalMessage",
];

/** First custom rmgr id (PG15 extensible rmgrs). */
export const RM_MIN_CUSTOM_ID = 128;

export function rmgrName(rmid: number): string {
  if (rmid < RMGR_NAMES.length) return RMGR_NAMES[rmid];
  if (rmid >= RM_MIN_CUSTOM_ID) return `custom${String(rmid).padStart(3, "0")}`;
  return `unknown${rmid}`;
}

/** info code (xl_info & 0xF0) -> name, per rmgr; codes absent from a table are UNKNOWN. */
type InfoNames = Record<number, string>;

const XLOG: InfoNames = {
  0x00: "CHECKPOINT_SHUTDOWN", 0x10: "CHECKPOINT_ONLINE", 0x20: "NOOP", 0x30: "NEXTOID", 0x40: "SWITCH",
  0x50: "BACKUP_END", 0x60: "PARAMETER_CHANGE", 0x70: "RESTORE_POINT", 0x80: "FPW_CHANGE",
  0x90: "END_OF_RECOVERY", 0xa0: "FPI_FOR_HINT", 0xb0: "FPI", 0xd0: "OVERWRITE_CONTRECORD",
};
// xact identify masks with XLOG_XACT_OPMASK (0x70): the 0x80 HAS_INFO bit is not part of the name
const TRANSACTION: InfoNames = {
  0x00: "COMMIT", 0x10: "PREPARE", 0x20: "ABORT", 0x30: "COMMIT_PREPARED", 0x40: "ABORT_PREPARED",
  0x50: "ASSIGNMENT", 0x60: "INVALIDATION",
};
const STORAGE: InfoNames = { 0x10: "CREATE", 0x20: "TRUNCATE" };
const CLOG: InfoNames = { 0x00: "ZEROPAGE", 0x10: "TRUNCATE" };
const DATABASE: InfoNames = { 0x00: "CREATE_FILE_COPY", 0x10: "CREATE_WAL_LOG", 0x20: "DROP" };
const TABLESPACE: InfoNames = { 0x00: "CREATE", 0x10: "DROP" };
const MULTIXACT: InfoNames = { 0x00: "ZERO_OFF_PAGE", 0x10: "ZERO_MEM_PAGE", 0x20: "CREATE_ID", 0x30: "TRUNCATE_ID" };
const RELMAP: InfoNames = { 0x00: "UPDATE" };
const STANDBY: InfoNames = { 0x00: "LOCK", 0x10: "RUNNING_XACTS", 0x20: "INVALIDATIONS" };
const HEAP2: InfoNames = {
  0x00: "REWRITE", 0x10: "PRUNE", 0x20: "VACUUM", 0x30: "FREEZE_PAGE", 0x40: "VISIBLE",
  0x50: "MULTI_INSERT", 0xd0: "MULTI_INSERT+INIT", 0x60: "LOCK_UPDATED", 0x70: "NEW_CID",
};
// heap identify masks with XLOG_HEAP_OPMASK (0x70) and appends +INIT for XLOG_HEAP_INIT_PAGE (0x80)
const HEAP_OPS: InfoNames = {
  0x00: "INSERT", 0x10: "DELETE", 0x20: "UPDATE", 0x30: "TRUNCATE", 0x40: "HOT_UPDATE",
  0x50: "CONFIRM", 0x60: "LOCK", 0x70: "INPLACE",
};
const HEAP_INIT_OK = new Set([0x00, 0x20, 0x40]);
const BTREE: InfoNames = {
  0x00: "INSERT_LEAF", 0x10: "INSERT_UPPER", 0x20: "INSERT_META", 0x30: "SPLIT_L", 0x40: "SPLIT_R",
  0x50: "INSERT_POST", 0x60: "DEDUP", 0x70: "DELETE", 0x80: "UNLINK_PAGE", 0x90: "UNLINK_PAGE_META",
  0xa0: "NEWROOT", 0xb0: "MARK_PAGE_HALFDEAD", 0xc0: "VACUUM", 0xd0: "REUSE_PAGE", 0xe0: "META_CLEANUP",
};
const HASH: InfoNames = {
  0x00: "INIT_META_PAGE", 0x10: "INIT_BITMAP_PAGE", 0x20: "INSERT", 0x30: "ADD_OVFL_PAGE",
  0x40: "SPLIT_ALLOCATE_PAGE", 0x50: "SPLIT_PAGE", 0x60: "SPLIT_COMPLETE", 0x70: "MOVE_PAGE_CONTENTS",
  0x80: "SQUEEZE_PAGE", 0x90: "DELETE", 0xa0: "SPLIT_CLEANUP", 0xb0: "UPDATE_META_PAGE", 0xc0: "VACUUM_ONE_PAGE",
};
const GIN: InfoNames = {
  0x10: "CREATE_PTREE", 0x20: "INSERT", 0x30: "SPLIT", 0x40: "VACUUM_PAGE", 0x50: "DELETE_PAGE",
  0x60: "UPDATE_META_PAGE", 0x70: "INSERT_LISTPAGE", 0x80: "DELETE_LISTPAGE", 0x90: "VACUUM_DATA_LEAF_PAGE",
};
const GIST: InfoNames = {
  0x00: "PAGE_UPDATE", 0x10: "DELETE", 0x20: "PAGE_REUSE", 0x30: "PAGE_SPLIT", 0x60: "PAGE_DELETE", 0x70: "ASSIGN_LSN",
};
const SEQUENCE: InfoNames = { 0x00: "LOG" };
const SPGIST: InfoNames = {
  0x10: "ADD_LEAF", 0x20: "MOVE_LEAFS", 0x30: "ADD_NODE", 0x40: "SPLIT_TUPLE", 0x50: "PICKSPLIT",
  0x60: "VACUUM_LEAF", 0x70: "VACUUM_ROOT", 0x80: "VACUUM_REDIRECT",
};
// brin identify masks with XLOG_BRIN_OPMASK (0x70) and appends +INIT for INIT_PAGE (0x80) on INSERT/UPDATE
const BRIN_OPS: InfoNames = {
  0x00: "CREATE_INDEX", 0x10: "INSERT", 0x20: "UPDATE", 0x30: "SAMEPAGE_UPDATE", 0x40: "REVMAP_EXTEND", 0x50: "DESUMMARIZE",
};
const COMMIT_TS: InfoNames = { 0x00: "ZEROPAGE", 0x10: "TRUNCATE" };
const REPLICATION_ORIGIN: InfoNames = { 0x00: "SET", 0x10: "DROP" };
const LOGICAL_MESSAGE: InfoNames = { 0x00: "MESSAGE" };

const SIMPLE_TABLES: (InfoNames | undefined)[] = [
  XLOG, undefined, STORAGE, CLOG, DATABASE, TABLESPACE, MULTIXACT, RELMAP, STANDBY, HEAP2, undefined,
  BTREE, HASH, GIN, GIST, SEQUENCE, SPGIST, undefined, COMMIT_TS, REPLICATION_ORIGIN, undefined, LOGICAL_MESSAGE,
];

function unknown(info: number): string {
  // pg_waldump prints "UNKNOWN (%x)" with the rmgr bits of xl_info
  return `UNKNOWN (${(info & 0xf0).toString(16)})`;
}

/** The record-type name pg_waldump's identify prints for (rmid, xl_info). */
export function recordTypeName(rmid: number, info: number): string {
  const code = info & 0xf0;
  switch (rmid) {
    case RmgrId.Transaction:
      return TRANSACTION[code & 0x70] ?? unknown(info);
    case RmgrId.Heap: {
      const op = HEAP_OPS[code & 0x70];
      if (op === undefined) return unknown(info);
      return code & 0x80 ? (HEAP_INIT_OK.has(code & 0x70) ? op + "+INIT" : unknown(info)) : op;
    }
    case RmgrId.BRIN: {
      const op = BRIN_OPS[code & 0x70];
      if (op === undefined) return unknown(info);
      if (code & 0x80) return (code & 0x70) === 0x10 || (code & 0x70) === 0x20 ? op + "+INIT" : unknown(info);
      return op;
    }
    case RmgrId.Generic:
      return "Generic";
  }
  const table = SIMPLE_TABLES[rmid];
  return table?.[code] ?? unknown(info);
}
