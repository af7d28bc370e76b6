// What makes a full backup start like a cleanly shut down cluster: a shutdown checkpoint record
// synthesized at the backup LSN, the WAL segment(s) that hold it, and a pg_control pointing at
// it (reference §6). Stock PostgreSQL reads the record at pg_control.checkPoint, sees redo equal
// to its own position and state SHUTDOWNED, and starts without recovery, writing new WAL right
// after the record. Everything here is pure byte layout; fullbackup.ts decides what goes where.
import { formatLsn, type Lsn } from "../lsn.ts";
import { CHECKPOINT_SIZE, CheckPointField } from "../ingest/records.ts";
import { crc32c } from "../wal/crc32c.ts";
import { walFileName, SIZE_OF_XLOG_LONG_PHD, SIZE_OF_XLOG_SHORT_PHD, XLOG_BLCKSZ, XLOG_PAGE_MAGIC, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER } from "../wal/reader.ts";
import { computeRecordCrc, SIZE_OF_XLOG_RECORD, XLR_BLOCK_ID_DATA_SHORT } from "../wal/record.ts";

/** ControlFileData field offsets (PG 15, x86-64). */
export const ControlField = {
  systemIdentifier: 0,
  pgControlVersion: 8,
  catalogVersionNo: 12,
  state: 16,
  time: 24,
  checkPoint: 32,
  checkPointCopy: 40,
  unloggedLsn: 128,
  minRecoveryPoint: 136,
  minRecoveryPointTli: 144,
  backupStartPoint: 152,
  backupEndPoint: 160,
  backupEndRequired: 168,
  walLevel: 172,
  walLogHints: 176,
  maxConnections: 180,
  maxWorkerProcesses: 184,
  maxWalSenders: 188,
  maxPreparedXacts: 192,
  maxLocksPerXact: 196,
  trackCommitTimestamp: 200,
  blcksz: 216,
  relsegSize: 220,
  xlogBlcksz: 224,
  xlogSegSize: 228,
  dataChecksumVersion: 252,
  crc: 288,
} as const;

export const PG_CONTROL_VERSION = 1300;
export const PG_CONTROL_FILE_SIZE = 8192;
export const DB_SHUTDOWNED = 1;
export const WAL_LEVEL_NAMES = ["minimal", "replica", "logical"] as const;

const XLOG_CHECKPOINT_SHUTDOWN = 0x00;
const RM_XLOG_ID = 0;
/** XLogRecord + short main-data header (0xFF, length) + CheckPoint */
export const CHECKPOINT_RECORD_SIZE = SIZE_OF_XLOG_RECORD + 2 + CHECKPOINT_SIZE;
const CHECKPOINT_PREV_TLI = 12;
const CHECKPOINT_FULL_PAGE_WRITES = 16;

const align8 = (lsn: Lsn): Lsn => (lsn + 7n) & ~7n;

export class ControlFileError extends Error {
  override readonly name = "ControlFileError";
}

/** The values of the source cluster's pg_control that the backup keeps. */
export interface ControlSettings {
  systemId: bigint;
  walLevel: number;
  walLogHints: boolean;
  maxConnections: number;
  maxWorkerProcesses: number;
  maxWalSenders: number;
  maxPreparedXacts: number;
  maxLocksPerXact: number;
  trackCommitTimestamp: boolean;
  relsegSize: number;
  segmentSize: number;
  dataChecksumVersion: number;
}

/** Validates an imported pg_control (version, CRC, page sizes) and reads its settings. */
export function readControlFile(control: Buffer): ControlSettings {
  if (control.length < ControlField.crc + 4) throw new ControlFileError(`pg_control is ${control.length} bytes, expected ${PG_CONTROL_FILE_SIZE}`);
  const version = control.readUInt32LE(ControlField.pgControlVersion);
  if (version !== PG_CONTROL_VERSION) throw new ControlFileError(`pg_control version ${version} is not PostgreSQL 15's (${PG_CONTROL_VERSION})`);
  const crc = crc32c(control, 0, ControlField.crc);
  if (crc !== control.readUInt32LE(ControlField.crc)) throw new ControlFileError("pg_control CRC mismatch: the imported control file is corrupt");
  for (const [field, expected] of [["blcksz", 8192], ["xlogBlcksz", XLOG_BLCKSZ]] as const) {
    const value = control.readUInt32LE(ControlField[field]);
    if (value !== expected) throw new ControlFileError(`pg_control ${field} is ${value}; only ${expected} is supported`);
  }
  return {
    systemId: control.readBigUInt64LE(ControlField.systemIdentifier),
    walLevel: control.readInt32LE(ControlField.walLevel),
    walLogHints: control[ControlField.walLogHints] !== 0,
    maxConnections: control.readInt32LE(ControlField.maxConnections),
    maxWorkerProcesses: control.readInt32LE(ControlField.maxWorkerProcesses),
    maxWalSenders: control.readInt32LE(ControlField.maxWalSenders),
    maxPreparedXacts: control.readInt32LE(ControlField.maxPreparedXacts),
    maxLocksPerXact: control.readInt32LE(ControlField.maxLocksPerXact),
    trackCommitTimestamp: control[ControlField.trackCommitTimestamp] !== 0,
    relsegSize: control.readUInt32LE(ControlField.relsegSize),
    segmentSize: control.readUInt32LE(ControlField.xlogSegSize),
    dataChecksumVersion: control.readUInt32LE(ControlField.dataChecksumVersion),
  };
}

/**
 * `control` with the settings of an XLOG_PARAMETER_CHANGE record (xl_parameter_change: six int32
 * then two bools), CRC recomputed: what PostgreSQL's redo of the record writes into a standby's
 * pg_control, so a backup taken after the source restarted with other settings has them.
 */
export function withParameterChange(control: Buffer, xlrec: Buffer): Buffer {
  readControlFile(control);
  if (xlrec.length < 26) throw new ControlFileError(`XLOG_PARAMETER_CHANGE data is ${xlrec.length} bytes, expected at least 26`);
  const updated = Buffer.from(control);
  const ints = [ControlField.maxConnections, ControlField.maxWorkerProcesses, ControlField.maxWalSenders, ControlField.maxPreparedXacts, ControlField.maxLocksPerXact, ControlField.walLevel];
  ints.forEach((field, i) => updated.writeInt32LE(xlrec.readInt32LE(4 * i), field));
  updated[ControlField.walLogHints] = xlrec[24];
  updated[ControlField.trackCommitTimestamp] = xlrec[25];
  updated.writeUInt32LE(crc32c(updated, 0, ControlField.crc), ControlField.crc);
  return updated;
}

/**
 * Where the checkpoint record goes for a backup at `lsn` (the end of the last record): `lsn`
 * itself, or just past the page header when `lsn` is on a page boundary (a record can't start
 * inside a header).
 */
export function checkpointRecordLsn(lsn: Lsn, segmentSize: number): Lsn {
  if (lsn % 8n !== 0n) throw new RangeError(`backup LSN ${formatLsn(lsn)} is not 8-byte aligned: it must be the end of a WAL record`);
  if (lsn % BigInt(XLOG_BLCKSZ) !== 0n) return lsn;
  return lsn + BigInt(lsn % BigInt(segmentSize) === 0n ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD);
}

/**
 * The CheckPoint of a shutdown checkpoint at `at`, from the timeline's tracked checkpoint:
 * redo = `at`; counters (nextXid, nextOid, multis, oldest*) kept; PrevTimeLineID = ThisTimeLineID;
 * oldestActiveXid invalid, as CreateCheckPoint writes it for a shutdown checkpoint; commit
 * timestamp bounds those of the backup's pg_commit_ts (commit-ts.ts), invalid without it
 * (PostgreSQL then starts tracking afresh at nextXid if track_commit_timestamp is on).
 */
export function shutdownCheckpoint(tracked: Buffer, at: Lsn, time: Date, commitTs?: { oldest: number; newest: number }): Buffer {
  if (tracked.length !== CHECKPOINT_SIZE) throw new ControlFileError(`tracked checkpoint is ${tracked.length} bytes, expected ${CHECKPOINT_SIZE}`);
  const cp = Buffer.from(tracked);
  cp.writeBigUInt64LE(at, CheckPointField.redo);
  cp.writeUInt32LE(cp.readUInt32LE(CheckPointField.thisTimeLineID), CHECKPOINT_PREV_TLI);
  cp.fill(0, CHECKPOINT_FULL_PAGE_WRITES + 1, CheckPointField.nextXid); // padding
  cp.fill(0, CheckPointField.oldestMultiDB + 4, CheckPointField.time); // padding
  cp.writeBigInt64LE(BigInt(Math.floor(time.getTime() / 1000)), CheckPointField.time);
  cp.writeUInt32LE(commitTs?.oldest ?? 0, CheckPointField.oldestCommitTsXid);
  cp.writeUInt32LE(commitTs?.newest ?? 0, CheckPointField.newestCommitTsXid);
  cp.fill(0, CheckPointField.oldestActiveXid, CHECKPOINT_SIZE);
  const nextXid = Number(cp.readBigUInt64LE(CheckPointField.nextXid) & 0xffffffffn);
  if (nextXid < 3) throw new ControlFileError(`tracked checkpoint has nextXid ${nextXid}; PostgreSQL needs a normal xid (>= 3)`);
  return cp;
}

/** The XLOG_CHECKPOINT_SHUTDOWN record (114 bytes) carrying `checkpoint`, with its CRC. */
export function checkpointRecord(checkpoint: Buffer, prev: Lsn): Buffer {
  const rec = Buffer.alloc(CHECKPOINT_RECORD_SIZE);
  rec.writeUInt32LE(CHECKPOINT_RECORD_SIZE, 0); // xl_tot_len
  rec.writeUInt32LE(0, 4); // xl_xid
  rec.writeBigUInt64LE(prev, 8); // xl_prev
  rec[16] = XLOG_CHECKPOINT_SHUTDOWN;
  rec[17] = RM_XLOG_ID;
  rec[SIZE_OF_XLOG_RECORD] = XLR_BLOCK_ID_DATA_SHORT;
  rec[SIZE_OF_XLOG_RECORD + 1] = CHECKPOINT_SIZE;
  checkpoint.copy(rec, SIZE_OF_XLOG_RECORD + 2);
  rec.writeUInt32LE(computeRecordCrc(rec, CHECKPOINT_RECORD_SIZE), 20);
  return rec;
}

/**
 * pg_control for a cluster shut down at the checkpoint record at `checkpointLsn`: the imported
 * file's identity and settings, state SHUTDOWNED, checkPoint/checkPointCopy set, recovery and
 * backup fields cleared, CRC recomputed, zero-padded to 8192 bytes.
 */
export function buildControlFile(imported: Buffer, checkpoint: Buffer, checkpointLsn: Lsn, time: Date): Buffer {
  readControlFile(imported);
  const control = Buffer.alloc(PG_CONTROL_FILE_SIZE);
  imported.copy(control, 0, 0, ControlField.crc);
  control.writeUInt32LE(DB_SHUTDOWNED, ControlField.state);
  control.writeBigInt64LE(BigInt(Math.floor(time.getTime() / 1000)), ControlField.time);
  control.writeBigUInt64LE(checkpointLsn, ControlField.checkPoint);
  checkpoint.copy(control, ControlField.checkPointCopy);
  control.writeBigUInt64LE(0n, ControlField.minRecoveryPoint);
  control.writeUInt32LE(0, ControlField.minRecoveryPointTli);
  control.writeBigUInt64LE(0n, ControlField.backupStartPoint);
  control.writeBigUInt64LE(0n, ControlField.backupEndPoint);
  control[ControlField.backupEndRequired] = 0;
  control.writeUInt32LE(crc32c(control, 0, ControlField.crc), ControlField.crc);
  return control;
}

export interface WalSegmentFile {
  /** file name in pg_wal */
  name: string;
  startLsn: Lsn;
  size: number;
  /** the file's bytes, in chunks; chunks without content share one zero buffer */
  chunks(chunkSize?: number): Generator<Buffer>;
}

export interface CheckpointWal {
  checkpointLsn: Lsn;
  /** where PostgreSQL continues writing: the end of the checkpoint record */
  endLsn: Lsn;
  /** the segment holding the record, and the next one if the record crosses into it */
  segments: WalSegmentFile[];
}

/**
 * Lays the checkpoint record out in WAL pages (reference §1.2–1.3, §6.4). Segment page 0 has a
 * long header with the system identifier; the record's page and any page it continues onto have
 * headers. The pages of the segment before the record are marked as the continuation of an
 * earlier record that ends exactly at `checkpointLsn` (XLP_FIRST_IS_CONTRECORD with the right
 * xlp_rem_len), so pg_waldump, which scans from a page or segment start, finds the record.
 * Pages after the record are zeros, as pg_resetwal leaves them.
 */
export function checkpointWal(record: Buffer, checkpointLsn: Lsn, opts: { systemId: bigint; timeline: number; segmentSize: number }): CheckpointWal {
  const { systemId, timeline, segmentSize } = opts;
  if (segmentSize % XLOG_BLCKSZ !== 0 || segmentSize < XLOG_BLCKSZ) throw new RangeError(`invalid WAL segment size ${segmentSize}`);
  const seg = BigInt(segmentSize);
  const blck = BigInt(XLOG_BLCKSZ);
  const headerSize = (pageStart: Lsn) => (pageStart % seg === 0n ? SIZE_OF_XLOG_LONG_PHD : SIZE_OF_XLOG_SHORT_PHD);
  const recordPage = checkpointLsn - (checkpointLsn % blck);
  if (checkpointLsn % 8n !== 0n || checkpointLsn - recordPage < headerSize(recordPage)) {
    throw new RangeError(`checkpoint record position ${formatLsn(checkpointLsn)} is unaligned or inside a page header`);
  }

  // the record's pieces: [page start, offset in page, bytes of the record]
  const pieces = new Map<Lsn, { offset: number; from: number; to: number; remLen: number }>();
  let pos = checkpointLsn;
  let done = 0;
  while (done < record.length) {
    const pageStart = pos - (pos % blck);
    const n = Math.min(record.length - done, Number(pageStart + blck - pos));
    pieces.set(pageStart, { offset: Number(pos - pageStart), from: done, to: done + n, remLen: done === 0 ? 0 : record.length - done });
    done += n;
    pos += BigInt(n);
    if (done < record.length) pos = pageStart + blck + BigInt(headerSize(pageStart + blck));
  }
  const endLsn = align8(pos);

  const firstSegment = recordPage - (recordPage % seg);
  // bytes of the imagined earlier record still to come at a page's data start (pages before the record's page)
  const continuationBefore = (pageStart: Lsn): number => {
    const pagesBetween = Number((recordPage - pageStart) / blck); // headers of later pages, incl. the record's page
    return Number(checkpointLsn - pageStart) - headerSize(pageStart) - SIZE_OF_XLOG_SHORT_PHD * pagesBetween;
  };

  const writePage = (pageStart: Lsn, page: Buffer): boolean => {
    let remLen: number;
    const piece = pieces.get(pageStart);
    if (piece) remLen = piece.from === 0 ? piece.offset - headerSize(pageStart) : piece.remLen;
    else if (pageStart >= firstSegment && pageStart < recordPage) remLen = continuationBefore(pageStart);
    else return false;
    const long = pageStart % seg === 0n;
    page.writeUInt16LE(XLOG_PAGE_MAGIC, 0);
    page.writeUInt16LE((long ? XLP_LONG_HEADER : 0) | (remLen > 0 ? XLP_FIRST_IS_CONTRECORD : 0), 2);
    page.writeUInt32LE(timeline, 4);
    page.writeBigUInt64LE(pageStart, 8);
    page.writeUInt32LE(remLen, 16);
    if (long) {
      page.writeBigUInt64LE(systemId, 24);
      page.writeUInt32LE(segmentSize, 32);
      page.writeUInt32LE(XLOG_BLCKSZ, 36);
    }
    if (piece) record.copy(page, piece.offset, piece.from, piece.to);
    return true;
  };

  const lastPage = pos - 1n - ((pos - 1n) % blck);
  const segments: WalSegmentFile[] = [];
  for (let start = firstSegment; start <= lastPage; start += seg) {
    segments.push({
      name: walFileName(timeline, start, segmentSize),
      startLsn: start,
      size: segmentSize,
      *chunks(chunkSize = 1024 * 1024) {
        const size = Math.max(XLOG_BLCKSZ, chunkSize - (chunkSize % XLOG_BLCKSZ));
        const zeros = Buffer.alloc(size);
        for (let off = 0; off < segmentSize; off += size) {
          const n = Math.min(size, segmentSize - off);
          let chunk: Buffer | undefined;
          for (let p = 0; p < n; p += XLOG_BLCKSZ) {
            const pageStart = start + BigInt(off + p);
            if (pageStart > lastPage) break;
            chunk ??= Buffer.alloc(n);
            writePage(pageStart, chunk.subarray(p, p + XLOG_BLCKSZ));
          }
          yield chunk ?? zeros.subarray(0, n);
        }
      },
    });
  }
  return { checkpointLsn, endLsn, segments };
}
