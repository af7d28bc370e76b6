// The WAL record log (key space 0x50) stores ingested records in pieces: one store entry per run
// of consecutive records (about PIECE_TARGET_BYTES of record bytes), at the start LSN of the
// piece's first record. One entry per record was one more LevelDB put per record, a large share
// of ingest CPU. Layout: docs/key-layout.md.
//   [format u8 = RECORD_LOG_PIECE] then per record, in LSN order:
//   [start LSN u64 BE][end LSN u64 BE][length u32 BE][raw record]
// The length's top bit says the record is stored without its page images (wal/record.ts
// withoutImages): they are stored under their blocks already, and the log only serves waldump
// and lookups by LSN or commit time. Pieces written before that flag existed have it clear.
//
// The store keeps a piece's bytes in its record log files (storage/append-files.ts,
// store/record-log/NNNNNNNN.log) and the LevelDB entry holds a reference to them:
//   [RECORD_LOG_PIECE_REF u8][file u32 BE][offset u32 BE][length u32 BE]
// Pieces were about half of what ingest wrote to LevelDB, and every byte of them was rewritten by
// each compaction that passed over it. Stores written before hold the pieces inline. A page
// version may refer to a record's raw bytes inside its piece in these files instead of holding a
// copy (ValueKind.WalRecordInLog, values.ts): the commit completes such references when it stores
// the piece.
import type { Lsn } from "../lsn.ts";
import { decodeRecord, type DecodedRecord } from "../wal/record.ts";
import { type FileRefReader, fileRefValue, readFileRef, type FileRef } from "./append-files.ts";
import { writeLsnBE } from "./keys.ts";

/** First byte of a piece; outside ValueKind (1..4) so a piece is never taken for a version value. */
export const RECORD_LOG_PIECE = 0x50;
/** A piece is closed once it holds this many record bytes (one large record stays whole). */
export const PIECE_TARGET_BYTES = 64 * 1024;
/** Bytes a record adds to a piece besides its raw bytes. */
export const PIECE_RECORD_HEADER = 20;
/** First byte of a reference to a piece in the record log files. */
export const RECORD_LOG_PIECE_REF = 0x51;

/** The LevelDB value that refers to a piece stored at `ref`. */
export function pieceRefValue(ref: FileRef): Buffer {
  return fileRefValue(RECORD_LOG_PIECE_REF, ref);
}

/** The piece's bytes: the value itself, or what its reference points at. */
function pieceBytes(value: Buffer, files: FileRefReader | undefined): Buffer {
  if (value[0] !== RECORD_LOG_PIECE_REF) return value;
  const ref = readFileRef(value, "WAL record log piece reference");
  if (!files) throw new Error("WAL record log piece stored in a file, but no record log files to read it from");
  return files.read(ref);
}

export interface LoggedRecord {
  start: Lsn;
  end: Lsn;
  /** the record's bytes, or with `imagesOmitted` its bytes without page images */
  raw: Buffer;
  imagesOmitted?: boolean;
}

const IMAGES_OMITTED = 0x8000_0000;

/** The logged record decoded (CRC not checked: without images it no longer matches), with its end LSN. */
export function decodeLoggedRecord(logged: LoggedRecord): DecodedRecord {
  const record = decodeRecord(logged.raw, logged.start, { verifyCrc: false, imagesOmitted: logged.imagesOmitted });
  record.endLsn = logged.end;
  return record;
}

/** One piece holding `records` (in LSN order), built in one allocation. */
export function encodeRecordLogPiece(records: ReadonlyArray<LoggedRecord>): Buffer {
  let size = 1;
  for (let i = 0; i < records.length; i++) size += PIECE_RECORD_HEADER + records[i].raw.length;
  const value = Buffer.allocUnsafe(size);
  value[0] = RECORD_LOG_PIECE;
  let pos = 1;
  for (let i = 0; i < records.length; i++) {
    const { start, end, raw, imagesOmitted } = records[i];
    writePieceRecordHeader(value, pos, start, end, raw.length, imagesOmitted === true);
    value.set(raw, pos + PIECE_RECORD_HEADER); // a plain memcpy
    pos += PIECE_RECORD_HEADER + raw.length;
  }
  return value;
}

/** Writes the header of a piece's record at `pos`; its `length` raw bytes follow it. */
export function writePieceRecordHeader(piece: Buffer, pos: number, start: Lsn, end: Lsn, length: number, imagesOmitted: boolean): void {
  writeLsnBE(piece, pos, start);
  writeLsnBE(piece, pos + 8, end);
  piece.writeUInt32BE((length | (imagesOmitted ? IMAGES_OMITTED : 0)) >>> 0, pos + 16);
}

/**
 * The records of a piece in LSN order; `raw` are views into the piece's bytes. `value` is the
 * stored value: a piece, or a reference resolved through `files`. Throws on a malformed piece.
 */
export function decodeRecordLogPiece(stored: Buffer, files?: FileRefReader): LoggedRecord[] {
  const value = pieceBytes(stored, files);
  if (value.length === 0 || value[0] !== RECORD_LOG_PIECE) {
    throw new Error(`corrupt WAL record log piece: format byte ${value[0]}, expected ${RECORD_LOG_PIECE}`);
  }
  const out: LoggedRecord[] = [];
  let pos = 1;
  while (pos < value.length) {
    if (pos + PIECE_RECORD_HEADER > value.length) throw new Error(`corrupt WAL record log piece: truncated record header at byte ${pos}`);
    const lengthField = value.readUInt32BE(pos + 16);
    const length = lengthField & ~IMAGES_OMITTED;
    const rawStart = pos + PIECE_RECORD_HEADER;
    if (rawStart + length > value.length) throw new Error(`corrupt WAL record log piece: record of ${length} bytes at byte ${pos} runs past the end`);
    const record: LoggedRecord = { start: value.readBigUInt64BE(pos), end: value.readBigUInt64BE(pos + 8), raw: value.subarray(rawStart, rawStart + length) };
    if (lengthField & IMAGES_OMITTED) record.imagesOmitted = true;
    out.push(record);
    pos = rawStart + length;
  }
  return out;
}

/** The last record of a piece that starts before `lsn` (pieces are keyed by their first start). */
export function lastRecordBefore(value: Buffer, lsn: Lsn, files?: FileRefReader): LoggedRecord | undefined {
  let found: LoggedRecord | undefined;
  for (const record of decodeRecordLogPiece(value, files)) {
    if (record.start >= lsn) break;
    found = record;
  }
  return found;
}
