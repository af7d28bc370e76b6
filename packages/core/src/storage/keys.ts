// The only translator between PostgreSQL concepts and storage keys (like Neon's
// pgdatadir_mapping). A store key is a 19-byte entity key followed by the 8-byte big-endian LSN
// of the version, so all versions of one entity sit together in LSN order and "newest version at
// or below LSN" is one reverse seek. Layout: docs/key-layout.md.
import type { Lsn } from "../lsn.ts";
import type { ForkNumber, RelTag } from "../reltag.ts";

export const ENTITY_KEY_LENGTH = 19;
export const STORE_KEY_LENGTH = ENTITY_KEY_LENGTH + 8;

/** Namespaces (first byte). Everything versioned is below 0x80; 0xF0+ is unversioned metadata. */
export const enum KeySpace {
  RelBlock = 0x10,
  /** page images materialized by reads (bounded replay); derived data, safe to drop */
  MaterializedBlock = 0x15,
  RelSize = 0x11,
  RelDirEntry = 0x12,
  DbDirEntry = 0x13,
  RelmapFile = 0x14,
  /** a user tablespace that exists (CREATE/DROP TABLESPACE), whether or not anything is in it yet */
  TablespaceDirEntry = 0x16,
  /**
   * consecutive blocks of a relation fork imported as page images stored one after another (one
   * entry per extent instead of one per block; storage/image-extents.ts)
   */
  ImageExtent = 0x17,
  /**
   * relation block versions moved out of 0x10 by a history cut (timeline/history-cut.ts): the
   * same keys and values, below the base each block's 0x10 versions now start with
   */
  RelBlockHistory = 0x18,
  SlruBlock = 0x20,
  SlruSegSize = 0x21,
  /** SLRU pages materialized by reads (bounded replay, as 0x15 for relation blocks); derived data, safe to drop */
  MaterializedSlru = 0x22,
  TwoPhaseFile = 0x30,
  Checkpoint = 0x40,
  ControlFile = 0x41,
  /** a timeline's history file (pg_wal/<TLI>.history), stored at the LSN where that timeline begins */
  TimelineHistory = 0x42,
  /** a replication origin's apply progress (its remote LSN, u64 LE), by origin id; tombstone once dropped */
  ReplicationOrigin = 0x43,
  WalRecordLog = 0x50,
}

export const enum SlruKind {
  Clog = 0,
  MultiXactOffsets = 1,
  MultiXactMembers = 2,
  /** pg_commit_ts, kept while the source tracks commit timestamps (track_commit_timestamp) */
  CommitTs = 3,
}

export const SLRU_DIRS = ["pg_xact", "pg_multixact/offsets", "pg_multixact/members", "pg_commit_ts"] as const;
export const SLRU_PAGES_PER_SEGMENT = 32;

function entity(space: KeySpace, a = 0, b = 0, c = 0, d = 0, e = 0): Buffer {
  const key = Buffer.alloc(ENTITY_KEY_LENGTH);
  key[0] = space;
  key.writeUInt32BE(a >>> 0, 1);
  key.writeUInt32BE(b >>> 0, 5);
  key.writeUInt32BE(c >>> 0, 9);
  key[13] = d;
  key.writeUInt32BE(e >>> 0, 14);
  key[18] = 0;
  return key;
}

export const relBlockKey = (rel: RelTag, fork: ForkNumber, block: number) => entity(KeySpace.RelBlock, rel.spcNode, rel.dbNode, rel.relNode, fork, block);
export const materializedBlockKey = (rel: RelTag, fork: ForkNumber, block: number) => entity(KeySpace.MaterializedBlock, rel.spcNode, rel.dbNode, rel.relNode, fork, block);
/** The extent of imported page images starting at `firstBlock` (KeySpace.ImageExtent). */
export const imageExtentKey = (rel: RelTag, fork: ForkNumber, firstBlock: number) => entity(KeySpace.ImageExtent, rel.spcNode, rel.dbNode, rel.relNode, fork, firstBlock);
export const relSizeKey = (rel: RelTag, fork: ForkNumber) => entity(KeySpace.RelSize, rel.spcNode, rel.dbNode, rel.relNode, fork);
export const relDirEntryKey = (rel: RelTag, fork: ForkNumber) => entity(KeySpace.RelDirEntry, rel.spcNode, rel.dbNode, rel.relNode, fork);
export const dbDirEntryKey = (spcNode: number, dbNode: number) => entity(KeySpace.DbDirEntry, spcNode, dbNode);
export const relmapFileKey = (spcNode: number, dbNode: number) => entity(KeySpace.RelmapFile, spcNode, dbNode);
export const tablespaceDirEntryKey = (spcNode: number) => entity(KeySpace.TablespaceDirEntry, spcNode);
export const slruBlockKey = (kind: SlruKind, segno: number, block: number) => entity(KeySpace.SlruBlock, kind, segno, 0, 0, block);
export const materializedSlruKey = (kind: SlruKind, segno: number, block: number) => entity(KeySpace.MaterializedSlru, kind, segno, 0, 0, block);
export const slruSegSizeKey = (kind: SlruKind, segno: number) => entity(KeySpace.SlruSegSize, kind, segno);
export const twoPhaseFileKey = (xid: number) => entity(KeySpace.TwoPhaseFile, xid);
export const checkpointKey = () => entity(KeySpace.Checkpoint);
export const controlFileKey = () => entity(KeySpace.ControlFile);
export const timelineHistoryKey = (timeline: number) => entity(KeySpace.TimelineHistory, timeline);
export const replicationOriginKey = (originId: number) => entity(KeySpace.ReplicationOrigin, originId);
/** The ingested WAL records (for waldump, GC of raw WAL, re-ingest), in pieces of many records keyed by their first start LSN (storage/record-log.ts). */
export const walRecordLogKey = () => entity(KeySpace.WalRecordLog);

/** Entity key prefix covering a whole namespace, or a namespace narrowed by its first field(s). */
export function entityPrefix(space: KeySpace, ...fields: number[]): Buffer {
  const prefix = Buffer.alloc(1 + 4 * fields.length);
  prefix[0] = space;
  fields.forEach((f, i) => prefix.writeUInt32BE(f >>> 0, 1 + 4 * i));
  return prefix;
}

export function storeKey(entityKey: Buffer, lsn: Lsn): Buffer {
  const key = Buffer.allocUnsafe(STORE_KEY_LENGTH);
  entityKey.copy(key, 0);
  writeLsnBE(key, ENTITY_KEY_LENGTH, lsn);
  return key;
}

// Ingest writes the same few LSNs (a record's start and end) into many keys and values in a row:
// remember the u32 halves of the last two so most writes need no BigInt arithmetic at all.
let lsnA: Lsn | undefined;
let lsnAHi = 0;
let lsnALo = 0;
let lsnB: Lsn | undefined;
let lsnBHi = 0;
let lsnBLo = 0;
const U64_MAX = 0xffffffffffffffffn;
const MAX_SAFE_LSN = BigInt(Number.MAX_SAFE_INTEGER);

function writeU32BE(buf: Buffer, offset: number, n: number) {
  buf[offset] = n >>> 24;
  buf[offset + 1] = n >>> 16;
  buf[offset + 2] = n >>> 8;
  buf[offset + 3] = n;
}

/** Writes `lsn` as u64 big-endian at `offset` (like writeBigUInt64BE, minus most BigInt work). */
export function writeLsnBE(buf: Buffer, offset: number, lsn: Lsn): void {
  let hi: number;
  let lo: number;
  if (lsn === lsnA) {
    hi = lsnAHi;
    lo = lsnALo;
  } else if (lsn === lsnB) {
    hi = lsnBHi;
    lo = lsnBLo;
  } else {
    if (lsn >= 0n && lsn <= MAX_SAFE_LSN) {
      // every LSN in practice (2^53 bytes of WAL): one conversion, no BigInt arithmetic
      const n = Number(lsn);
      hi = Math.floor(n / 0x1_0000_0000);
      lo = n >>> 0;
    } else {
      if (lsn < 0n || lsn > U64_MAX) throw new RangeError(`LSN ${lsn} is out of range`);
      hi = Number(lsn >> 32n);
      lo = Number(lsn & 0xffffffffn);
    }
    // the older entry makes room
    lsnB = lsnA;
    lsnBHi = lsnAHi;
    lsnBLo = lsnALo;
    lsnA = lsn;
    lsnAHi = hi;
    lsnALo = lo;
  }
  writeU32BE(buf, offset, hi);
  writeU32BE(buf, offset + 4, lo);
}

/**
 * A whole store key (entity fields as in `entity()`, then the LSN) in one allocation: the ingest
 * hot path, which otherwise builds a zeroed entity key only to copy it into the store key.
 */
export function storeKeyOf(space: KeySpace, a: number, b: number, c: number, d: number, e: number, lsn: Lsn): Buffer {
  const key = Buffer.allocUnsafe(STORE_KEY_LENGTH);
  key[0] = space;
  writeU32BE(key, 1, a);
  writeU32BE(key, 5, b);
  writeU32BE(key, 9, c);
  key[13] = d;
  writeU32BE(key, 14, e);
  key[18] = 0;
  writeLsnBE(key, ENTITY_KEY_LENGTH, lsn);
  return key;
}

/** storeKey(relBlockKey(rel, fork, block), lsn) in one allocation. */
export const relBlockStoreKey = (rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn) =>
  storeKeyOf(KeySpace.RelBlock, rel.spcNode, rel.dbNode, rel.relNode, fork, block, lsn);

export function splitStoreKey(key: Buffer): { entityKey: Buffer; lsn: Lsn } {
  return { entityKey: key.subarray(0, ENTITY_KEY_LENGTH), lsn: key.readBigUInt64BE(ENTITY_KEY_LENGTH) };
}

export function decodeRelKey(entityKey: Buffer): { rel: RelTag; fork: ForkNumber; block: number } {
  return {
    rel: { spcNode: entityKey.readUInt32BE(1), dbNode: entityKey.readUInt32BE(5), relNode: entityKey.readUInt32BE(9) },
    fork: entityKey[13] as ForkNumber,
    block: entityKey.readUInt32BE(14),
  };
}

export function decodeSlruKey(entityKey: Buffer): { kind: SlruKind; segno: number; block: number } {
  return { kind: entityKey.readUInt32BE(1) as SlruKind, segno: entityKey.readUInt32BE(5), block: entityKey.readUInt32BE(14) };
}
