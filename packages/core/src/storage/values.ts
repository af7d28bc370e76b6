// Values stored under versioned keys. The first byte says what the version is; reads stop at the
// newest Image or at a record that initializes the page, and replay the records above it.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ } from "../reltag.ts";
import { writeLsnBE } from "./keys.ts";
import { type FileRef, type FileRefReader, fileRefValue, readFileRef } from "./append-files.ts";

export const enum ValueKind {
  /** a complete value: a page image, a file's bytes, a u32 size… */
  Image = 1,
  /** a PostgreSQL WAL record (raw bytes) to apply by redo */
  WalRecord = 2,
  /** a change Strata derives from a record where PostgreSQL's own redo touches an unregistered page */
  Derived = 3,
  /** the entity does not exist from this LSN on */
  Tombstone = 4,
  /**
   * several consecutive WalRecord/Derived versions of one entity written by one ingest step, in
   * one entry keyed by the first one's LSN (never a base: bases are entries of their own)
   */
  Run = 5,
  /**
   * an Image whose bytes live in the store's page image files (storage/append-files.ts):
   * [kind][file u32 BE][offset u32 BE][length u32 BE]. Decodes as an Image.
   */
  ImageRef = 6,
  /**
   * imported page images of consecutive blocks stored one after another in the page image files
   * (only under KeySpace.ImageExtent keys, never a version of one page):
   * [kind][file u32 BE][offset u32 BE][length u32 BE], length = blocks * BLCKSZ
   */
  ImageExtent = 7,
  /** the pages of an ImageExtent before the commit stores them ([kind][pages]); never stored as is */
  ExtentPages = 8,
  /**
   * a WalRecord whose raw bytes are read from the WAL record log files, where the record's log
   * piece holds them (storage/record-log.ts): [kind][flags][record start LSN u64 BE][file u32 BE]
   * [offset u32 BE][length u32 BE]. Decodes as a WalRecord.
   */
  WalRecordInLog = 9,
}

export const enum DerivedKind {
  ClogSetStatus = 1,
  ClearVisibilityMapBits = 2,
  MultiXactOffset = 3,
  MultiXactMembers = 4,
  TruncateVisibilityMap = 5,
  ZeroFsmTail = 6,
  CopyPageFrom = 7,
  /** pg_commit_ts entries of a committed transaction tree's xids on one page: [time i64 LE][origin u16 LE][xid u32 LE]... */
  CommitTsSet = 8,
}

/** [kind][bytes] */
function kindAndBytes(kind: ValueKind, bytes: Buffer): Buffer {
  const value = Buffer.allocUnsafe(1 + bytes.length);
  value[0] = kind;
  bytes.copy(value, 1);
  return value;
}

export function imageValue(bytes: Buffer): Buffer {
  return kindAndBytes(ValueKind.Image, bytes);
}

export function imageRefValue(ref: FileRef): Buffer {
  return fileRefValue(ValueKind.ImageRef, ref);
}

export function readImageRef(value: Buffer): FileRef {
  return readFileRef(value, "image reference");
}

/** The value an importer puts under an imageExtentKey: the pages of consecutive blocks. */
export function extentPagesValue(pages: Buffer): Buffer {
  if (pages.length === 0 || pages.length % BLCKSZ !== 0) throw new RangeError(`an image extent holds whole pages, not ${pages.length} bytes`);
  return kindAndBytes(ValueKind.ExtentPages, pages);
}

export function imageExtentValue(ref: FileRef): Buffer {
  return fileRefValue(ValueKind.ImageExtent, ref);
}

export function readImageExtent(value: Buffer): FileRef {
  if (value[0] !== ValueKind.ImageExtent) throw new Error(`corrupt stored value: kind ${value[0]} under an image extent key`);
  const ref = readFileRef(value, "image extent");
  if (ref.length === 0 || ref.length % BLCKSZ !== 0) throw new Error(`corrupt stored value: image extent of ${ref.length} bytes`);
  return ref;
}

/** Only full pages go to the image files: small images (sizes, files) stay inline. */
export const isExternalizableImage = (value: Buffer) => value.length === BLCKSZ + 1 && value[0] === ValueKind.Image;

/** An image of 8 bytes: a u64 (little-endian), e.g. an LSN. */
export function u64Value(n: bigint): Buffer {
  const value = Buffer.alloc(9);
  value[0] = ValueKind.Image;
  value.writeBigUInt64LE(n, 1);
  return value;
}

export function u32Value(n: number): Buffer {
  const value = Buffer.alloc(5);
  value[0] = ValueKind.Image;
  value.writeUInt32LE(n >>> 0, 1);
  return value;
}

export const TOMBSTONE = Buffer.from([ValueKind.Tombstone]);

/** [kind][flags: 1 = will_init][record start LSN u64 BE][raw record] */
export function walRecordValue(raw: Buffer, recordLsn: Lsn, willInit: boolean): Buffer {
  const value = Buffer.allocUnsafe(WAL_RECORD_VALUE_HEADER + raw.length);
  value[0] = ValueKind.WalRecord;
  value[1] = willInit ? 1 : 0;
  writeLsnBE(value, 2, recordLsn);
  value.set(raw, WAL_RECORD_VALUE_HEADER); // a plain memcpy (Buffer#copy validates and makes a view first)
  return value;
}

/** Bytes before the record in a WalRecord value: [kind][will_init][record start LSN u64 BE] */
export const WAL_RECORD_VALUE_HEADER = 10;

/** Bytes of a WalRecordInLog value. */
export const WAL_RECORD_IN_LOG_BYTES = 22;

/**
 * A WalRecordInLog value whose file and offset are not known yet: `offsetInPiece` is where the
 * raw record lies in its log piece, and placeRecordsInLog fills in file and offset once the
 * commit has put the piece in the record log files (before the value is written anywhere).
 */
export function walRecordInLogValue(recordLsn: Lsn, willInit: boolean, offsetInPiece: number, length: number): Buffer {
  const value = Buffer.allocUnsafe(WAL_RECORD_IN_LOG_BYTES);
  value[0] = ValueKind.WalRecordInLog;
  value[1] = willInit ? 1 : 0;
  writeLsnBE(value, 2, recordLsn);
  value.writeUInt32BE(0xffff_ffff, 10);
  value.writeUInt32BE(offsetInPiece, 14);
  value.writeUInt32BE(length, 18);
  return value;
}

/** Points WalRecordInLog values (from walRecordInLogValue) into the piece stored at `piece`. */
export function placeRecordsInLog(values: ReadonlyArray<Buffer>, piece: FileRef): void {
  for (const value of values) {
    value.writeUInt32BE(piece.file, 10);
    value.writeUInt32BE(piece.offset + value.readUInt32BE(14), 14);
  }
}

/** Where the stored value reads its raw record from. */
function recordInLogRef(value: Buffer): FileRef {
  if (value.length !== WAL_RECORD_IN_LOG_BYTES) throw new Error(`corrupt stored value: WAL record reference of ${value.length} bytes`);
  const ref = { file: value.readUInt32BE(10), offset: value.readUInt32BE(14), length: value.readUInt32BE(18) };
  if (ref.file === 0xffff_ffff) throw new Error("WAL record reference was never placed in the record log");
  return ref;
}

export function derivedValue(kind: DerivedKind, payload: Buffer, willInit = false): Buffer {
  const value = Buffer.allocUnsafe(3 + payload.length);
  value[0] = ValueKind.Derived;
  value[1] = willInit ? 1 : 0;
  value[2] = kind;
  payload.copy(value, 3);
  return value;
}

export type StoredValue =
  | { kind: ValueKind.Image; bytes: Buffer }
  | { kind: ValueKind.WalRecord; willInit: boolean; recordLsn: Lsn; raw: Buffer }
  | { kind: ValueKind.Derived; willInit: boolean; derived: DerivedKind; payload: Buffer }
  | { kind: ValueKind.Tombstone };

/**
 * The files a stored value's bytes may live in besides LevelDB: `read` reads the page image
 * files, `readRecordLog` the WAL record log files.
 */
export interface ValueFiles extends FileRefReader {
  readRecordLog(ref: FileRef): Buffer;
}

/**
 * `files` resolves ImageRef and WalRecordInLog values (their bytes are read here, into a buffer
 * of their own). A plain FileRefReader resolves image references only.
 */
export function decodeValue(value: Buffer, images?: FileRefReader | ValueFiles): StoredValue {
  switch (value[0]) {
    case ValueKind.WalRecordInLog: {
      const ref = recordInLogRef(value);
      if (!images || !("readRecordLog" in images)) throw new Error("a WAL record stored in the record log needs its store's record log files to be read");
      return { kind: ValueKind.WalRecord, willInit: value[1] === 1, recordLsn: value.readBigUInt64BE(2), raw: images.readRecordLog(ref) };
    }
    case ValueKind.Image:
      return { kind: ValueKind.Image, bytes: value.subarray(1) };
    case ValueKind.ImageRef:
      if (!images) throw new Error("an image reference needs its store's page image files to be read");
      return { kind: ValueKind.Image, bytes: images.read(readImageRef(value)) };
    case ValueKind.WalRecord:
      return { kind: ValueKind.WalRecord, willInit: value[1] === 1, recordLsn: value.readBigUInt64BE(2), raw: value.subarray(WAL_RECORD_VALUE_HEADER) };
    case ValueKind.Derived:
      return { kind: ValueKind.Derived, willInit: value[1] === 1, derived: value[2] as DerivedKind, payload: value.subarray(3) };
    case ValueKind.Tombstone:
      return { kind: ValueKind.Tombstone };
    case ValueKind.Run:
      throw new Error("a run of versions must be expanded (expandEntry) before decoding");
    case ValueKind.ImageExtent:
    case ValueKind.ExtentPages:
      throw new Error("an image extent holds many pages: it is read through the store's extent index");
    default:
      throw new Error(`corrupt stored value: unknown kind ${value[0]}`);
  }
}

export function readU64Value(value: StoredValue | undefined): bigint | undefined {
  if (!value || value.kind !== ValueKind.Image) return undefined;
  return value.bytes.readBigUInt64LE(0);
}

export function readU32Value(value: StoredValue | undefined): number | undefined {
  if (!value || value.kind !== ValueKind.Image) return undefined;
  return value.bytes.readUInt32LE(0);
}

/** A run holds at most this many versions (and is closed early past RUN_MAX_BYTES). */
export const RUN_MAX_VERSIONS = 256;
export const RUN_MAX_BYTES = 64 * 1024;
export const RUN_MEMBER_HEADER = 12;

/** [kind = Run][count u16 BE] then per version, oldest first: [LSN u64 BE][length u32 BE][value] */
export function runValue(versions: ReadonlyArray<{ lsn: Lsn; value: Buffer }>): Buffer {
  let size = 3;
  for (let i = 0; i < versions.length; i++) size += RUN_MEMBER_HEADER + versions[i].value.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = ValueKind.Run;
  out.writeUInt16BE(versions.length, 1);
  let pos = 3;
  for (let i = 0; i < versions.length; i++) {
    const { lsn, value } = versions[i];
    writeLsnBE(out, pos, lsn);
    out.writeUInt32BE(value.length, pos + 8);
    out.set(value, pos + RUN_MEMBER_HEADER);
    pos += RUN_MEMBER_HEADER + value.length;
  }
  return out;
}

/**
 * The versions stored under one key, oldest first: a Run's members (views into `raw`), or the
 * entry itself at `keyLsn`. Every reader of versioned entries goes through this.
 */
export function expandEntry(keyLsn: Lsn, raw: Buffer): Array<{ lsn: Lsn; raw: Buffer }> {
  if (raw[0] !== ValueKind.Run) return [{ lsn: keyLsn, raw }];
  if (raw.length < 3) throw new Error("corrupt stored run: truncated header");
  const count = raw.readUInt16BE(1);
  const out: Array<{ lsn: Lsn; raw: Buffer }> = new Array(count);
  let pos = 3;
  for (let i = 0; i < count; i++) {
    if (pos + RUN_MEMBER_HEADER > raw.length) throw new Error(`corrupt stored run: version ${i} of ${count} is truncated`);
    const length = raw.readUInt32BE(pos + 8);
    const start = pos + RUN_MEMBER_HEADER;
    if (start + length > raw.length || length === 0) throw new Error(`corrupt stored run: version ${i} of ${count} has a bad length ${length}`);
    out[i] = { lsn: raw.readBigUInt64BE(pos), raw: raw.subarray(start, start + length) };
    pos = start + length;
  }
  if (pos !== raw.length) throw new Error(`corrupt stored run: ${raw.length - pos} trailing bytes`);
  return out;
}

/** Whether a value starts a reconstruct chain: Image, Tombstone, or a will-init record/derived change. */
export function isBaseValue(raw: Buffer): boolean {
  if (isStoredPage(raw)) return true;
  const kind = raw[0];
  return (kind === ValueKind.WalRecord || kind === ValueKind.Derived || kind === ValueKind.WalRecordInLog) && raw[1] === 1;
}

/** Whether a stored entry is the page itself (an image, or a tombstone: zeros), not something replayed into one. */
export function isStoredPage(raw: Buffer): boolean {
  const kind = raw[0];
  return kind === ValueKind.Image || kind === ValueKind.Tombstone || kind === ValueKind.ImageRef;
}

/** Versions of a stored entry replayed onto a page (WAL records, derived changes; a run's members), not bases. */
export function replayedVersions(raw: Buffer): number {
  const kind = raw[0];
  if (kind === ValueKind.Run) return runLength(raw);
  return kind === ValueKind.WalRecord || kind === ValueKind.WalRecordInLog || kind === ValueKind.Derived ? 1 : 0;
}

/**
 * Whether a stored entry copies another page (a database created by copying files): its replay
 * reads that page. Such a version is a base (will-init), so never a member of a run.
 */
export function needsOtherStoredPage(raw: Buffer): boolean {
  return raw[0] === ValueKind.Derived && raw[2] === DerivedKind.CopyPageFrom;
}

/** Versions of a run (without reading its members). */
export function runLength(raw: Buffer): number {
  return raw.readUInt16BE(1);
}

/** Where member `m` of a run starts (its [LSN][length] header), found by walking the headers before it. */
export function runMemberOffset(raw: Buffer, m: number): number {
  if (raw.length < 3) throw new Error("corrupt stored run: truncated header");
  let pos = 3;
  for (let i = 0; i < m; i++) {
    if (pos + RUN_MEMBER_HEADER > raw.length) throw new Error(`corrupt stored run: version ${i} of ${raw.readUInt16BE(1)} is truncated`);
    pos += RUN_MEMBER_HEADER + raw.readUInt32BE(pos + 8);
  }
  return pos;
}

/** The LSN of a run's newest (last) member, found by walking the members' headers. */
export function runNewestLsn(raw: Buffer): Lsn {
  const count = raw.readUInt16BE(1);
  let pos = 3;
  for (let i = 1; i < count; i++) {
    if (pos + RUN_MEMBER_HEADER > raw.length) throw new Error(`corrupt stored run: version ${i} of ${count} is truncated`);
    pos += RUN_MEMBER_HEADER + raw.readUInt32BE(pos + 8);
  }
  if (pos + RUN_MEMBER_HEADER > raw.length) throw new Error(`corrupt stored run: version ${count} of ${count} is truncated`);
  return raw.readBigUInt64BE(pos);
}

/**
 * A block's versions as stored, oldest first: values as the store holds them (decodeValue reads
 * them), where an entry may be a whole run of versions (ValueKind.Run, keyed by its oldest
 * member's LSN, every member in the chain). `count` is the number of versions in all.
 */
export interface StoredChain {
  versions: Array<{ lsn: Lsn; raw: Buffer }>;
  count: number;
  complete: boolean;
  truncated: boolean;
}

/** The LSN of an entry's newest version (a run's last member). */
export const storedNewestLsn = (entry: { lsn: Lsn; raw: Buffer }): Lsn => (entry.raw[0] === ValueKind.Run ? runNewestLsn(entry.raw) : entry.lsn);

/** The stored versions above `lsn` (runs that cross it are split), and how many versions they hold. */
export function storedVersionsAbove(versions: ReadonlyArray<{ lsn: Lsn; raw: Buffer }>, lsn: Lsn): { versions: Array<{ lsn: Lsn; raw: Buffer }>; count: number } {
  const out: Array<{ lsn: Lsn; raw: Buffer }> = [];
  let count = 0;
  for (const entry of versions) {
    if (entry.lsn > lsn) {
      out.push(entry);
      count += entry.raw[0] === ValueKind.Run ? runLength(entry.raw) : 1;
    } else if (entry.raw[0] === ValueKind.Run) {
      for (const member of expandEntry(entry.lsn, entry.raw)) {
        if (member.lsn <= lsn) continue;
        out.push(member);
        count++;
      }
    }
  }
  return { versions: out, count };
}

/** Decodes stored versions (expanding runs), oldest first. */
export function decodeStoredVersions(versions: ReadonlyArray<{ lsn: Lsn; raw: Buffer }>, files: FileRefReader | ValueFiles): Array<{ lsn: Lsn; value: StoredValue }> {
  const out: Array<{ lsn: Lsn; value: StoredValue }> = [];
  for (let i = 0; i < versions.length; i++) {
    const { lsn, raw } = versions[i];
    if (raw[0] === ValueKind.Run) for (const member of expandEntry(lsn, raw)) out.push({ lsn: member.lsn, value: decodeValue(member.raw, files) });
    else out.push({ lsn, value: decodeValue(raw, files) });
  }
  return out;
}
