// Parsers for the main data of the records whose effects ingest must track beyond their block
// references (PostgreSQL 15 layouts; see docs/key-layout.md and the WAL reference).
import type { RelTag } from "../reltag.ts";

export const RM = {
  XLOG: 0, XACT: 1, SMGR: 2, CLOG: 3, DBASE: 4, TBLSPC: 5, MULTIXACT: 6, RELMAP: 7, STANDBY: 8,
  HEAP2: 9, HEAP: 10, BTREE: 11, HASH: 12, GIN: 13, GIST: 14, SEQ: 15, SPGIST: 16, BRIN: 17,
  COMMIT_TS: 18, REPLORIGIN: 19, GENERIC: 20, LOGICALMSG: 21,
} as const;

export const XLOG_CHECKPOINT_SHUTDOWN = 0x00;
export const XLOG_CHECKPOINT_ONLINE = 0x10;
export const XLOG_NEXTOID = 0x30;
export const XLOG_PARAMETER_CHANGE = 0x60;
/** written first on a promoted server's new timeline: xl_end_of_recovery {end_time i64, ThisTimeLineID u32, PrevTimeLineID u32, wal_level i32} */
export const XLOG_END_OF_RECOVERY = 0x90;
export const END_OF_RECOVERY_THIS_TLI = 8;
export const END_OF_RECOVERY_PREV_TLI = 12;
/** xl_parameter_change: six int32 settings, then wal_log_hints and track_commit_timestamp (bools) */
export const PARAMETER_CHANGE_TRACK_COMMIT_TIMESTAMP = 25;
export const XLOG_FPI = 0xb0;
export const XLOG_FPI_FOR_HINT = 0xa0;

export const XLOG_TBLSPC_CREATE = 0x00;
export const XLOG_TBLSPC_DROP = 0x10;

export const XACT_OPMASK = 0x70;
export const XACT_HAS_INFO = 0x80;
export const XACT_COMMIT = 0x00;
export const XACT_PREPARE = 0x10;
export const XACT_ABORT = 0x20;
export const XACT_COMMIT_PREPARED = 0x30;
export const XACT_ABORT_PREPARED = 0x40;

const XACT_XINFO_HAS_DBINFO = 1 << 0;
const XACT_XINFO_HAS_SUBXACTS = 1 << 1;
const XACT_XINFO_HAS_RELFILENODES = 1 << 2;
const XACT_XINFO_HAS_INVALS = 1 << 3;
const XACT_XINFO_HAS_TWOPHASE = 1 << 4;
const XACT_XINFO_HAS_ORIGIN = 1 << 5;
const XACT_XINFO_HAS_GID = 1 << 7;
const XACT_XINFO_HAS_DROPPED_STATS = 1 << 8;

export function readRelFileNode(buf: Buffer, offset: number): RelTag {
  return { spcNode: buf.readUInt32LE(offset), dbNode: buf.readUInt32LE(offset + 4), relNode: buf.readUInt32LE(offset + 8) };
}

export interface XactOutcome {
  /** commit or abort time (microseconds since 2000-01-01) */
  time: bigint;
  subxacts: number[];
  droppedRels: RelTag[];
  /** set for COMMIT_PREPARED / ABORT_PREPARED */
  twophaseXid?: number;
  /**
   * The time commit timestamps record: the replication origin's timestamp when the record has an
   * origin (a commit replayed from elsewhere keeps its source's time, as xact_redo_commit does),
   * else `time`.
   */
  commitTsTime: bigint;
  /** the origin's LSN of a transaction applied from a replication origin (xl_xact_origin) */
  originLsn: bigint | undefined;
}

/** Parses xl_xact_commit / xl_xact_abort main data. */
export function parseXactOutcome(data: Buffer, info: number, isCommit: boolean): XactOutcome {
  let off = 0;
  const time = data.readBigInt64LE(off);
  off += 8;
  const xinfo = info & XACT_HAS_INFO ? data.readUInt32LE(off) : 0;
  if (info & XACT_HAS_INFO) off += 4;
  if (xinfo & XACT_XINFO_HAS_DBINFO) off += 8;
  const subxacts: number[] = [];
  if (xinfo & XACT_XINFO_HAS_SUBXACTS) {
    const n = data.readInt32LE(off);
    off += 4;
    for (let i = 0; i < n; i++) subxacts.push(data.readUInt32LE(off + 4 * i));
    off += 4 * n;
  }
  const droppedRels: RelTag[] = [];
  if (xinfo & XACT_XINFO_HAS_RELFILENODES) {
    const n = data.readInt32LE(off);
    off += 4;
    for (let i = 0; i < n; i++) droppedRels.push(readRelFileNode(data, off + 12 * i));
    off += 12 * n;
  }
  if (xinfo & XACT_XINFO_HAS_DROPPED_STATS) {
    const n = data.readInt32LE(off);
    off += 4 + 12 * n;
  }
  if (isCommit && xinfo & XACT_XINFO_HAS_INVALS) {
    const n = data.readInt32LE(off);
    off += 4 + 16 * n;
  }
  let twophaseXid: number | undefined;
  if (xinfo & XACT_XINFO_HAS_TWOPHASE) {
    twophaseXid = data.readUInt32LE(off);
    off += 4;
    if (xinfo & XACT_XINFO_HAS_GID) {
      const nul = data.indexOf(0, off);
      off = (nul < 0 ? data.length : nul) + 1;
    }
  }
  // xl_xact_origin {origin_lsn u64, origin_timestamp i64}, unaligned
  const hasOrigin = (xinfo & XACT_XINFO_HAS_ORIGIN) !== 0;
  const commitTsTime = hasOrigin ? data.readBigInt64LE(off + 8) : time;
  return { time, subxacts, droppedRels, twophaseXid, commitTsTime, originLsn: hasOrigin ? data.readBigUInt64LE(off) : undefined };
}

/** CheckPoint struct field offsets (88 bytes, little-endian). */
export const CheckPointField = {
  redo: 0,
  thisTimeLineID: 8,
  prevTimeLineID: 12,
  nextXid: 24,
  nextOid: 32,
  nextMulti: 36,
  nextMultiOffset: 40,
  oldestXid: 44,
  oldestXidDB: 48,
  oldestMulti: 52,
  oldestMultiDB: 56,
  time: 64,
  oldestCommitTsXid: 72,
  newestCommitTsXid: 76,
  oldestActiveXid: 80,
} as const;
export const CHECKPOINT_SIZE = 88;

// SLRU geometry (BLCKSZ 8192)
export const CLOG_XACTS_PER_PAGE = 8192 * 4;
export const MULTIXACT_OFFSETS_PER_PAGE = 8192 / 4;
export const MULTIXACT_MEMBERS_PER_PAGE = Math.floor(8192 / 20) * 4;
/** pg_commit_ts: 10-byte entries (TimestampTz, RepOriginId) packed, 819 to a page */
export const COMMIT_TS_ENTRY_SIZE = 10;
export const COMMIT_TS_XACTS_PER_PAGE = Math.floor(8192 / COMMIT_TS_ENTRY_SIZE);
export const SLRU_PAGES_PER_SEGMENT = 32;
// visibility map: 2 bits per heap block on pages with a 24-byte header
export const HEAPBLOCKS_PER_VM_PAGE = (8192 - 24) * 4;

export const TRANSACTION_STATUS_COMMITTED = 1;
export const TRANSACTION_STATUS_ABORTED = 2;

// free space map geometry: leaf slots per FSM page and the 3-level tree's physical layout
export const FSM_SLOTS_PER_PAGE = 8192 - 24 - 4 - (8192 / 2 - 1);
const FSM_TREE_DEPTH = 3;

/** Physical FSM block of the bottom-level (leaf) FSM page number `logicalPage`. */
export function fsmLeafToPhysical(logicalPage: number): number {
  let leaf = logicalPage;
  let pages = 0;
  for (let level = 0; level < FSM_TREE_DEPTH; level++) {
    pages += leaf + 1;
    leaf = Math.floor(leaf / FSM_SLOTS_PER_PAGE);
  }
  return pages - 1;
}

/** origin_lsn in xl_xact_prepare (the 2PC state a PREPARE record carries): after the header's aligned fields */
export const XACT_PREPARE_ORIGIN_LSN_OFFSET = 56;
/** RM_REPLORIGIN_ID records: xl_replorigin_set {remote_lsn u64, node_id u16, force bool}, xl_replorigin_drop {node_id u16} */
export const XLOG_REPLORIGIN_SET = 0x00;
export const XLOG_REPLORIGIN_DROP = 0x10;
/** origin ids that track nothing: InvalidRepOriginId and DoNotReplicateId */
export const INVALID_REPLICATION_ORIGIN = 0;
export const DO_NOT_REPLICATE_ORIGIN = 0xffff;
