// Decodes one complete PostgreSQL 15 WAL record (XLogRecord + block references + main data) from
// its contiguous bytes, after the stream reader (reader.ts) has stripped page headers. The result
// holds views into the record's own bytes; ingest stores `raw` verbatim and redo reads blocks.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ, type ForkNumber, type RelTag } from "../reltag.ts";
import { crc32cFinal, crc32cUpdate, CRC32C_INIT } from "./crc32c.ts";
import { WalDecodeError } from "./errors.ts";
import { readU16, readU32 } from "../bytes.ts";

export const SIZE_OF_XLOG_RECORD = 24;
/** Offset of xl_crc inside XLogRecord; the CRC covers the 20 bytes before it. */
const XL_CRC_OFFSET = 20;

export const XLR_MAX_BLOCK_ID = 32;
export const XLR_BLOCK_ID_DATA_SHORT = 255;
export const XLR_BLOCK_ID_DATA_LONG = 254;
export const XLR_BLOCK_ID_ORIGIN = 253;
export const XLR_BLOCK_ID_TOPLEVEL_XID = 252;

/** Low nibble of xl_info: flags owned by the WAL machinery, not the rmgr. */
export const XLR_INFO_MASK = 0x0f;
export const XLR_RMGR_INFO_MASK = 0xf0;
export const XLR_SPECIAL_REL_UPDATE = 0x01;
export const XLR_CHECK_CONSISTENCY = 0x02;

export const BKPBLOCK_FORK_MASK = 0x0f;
export const BKPBLOCK_HAS_IMAGE = 0x10;
export const BKPBLOCK_HAS_DATA = 0x20;
export const BKPBLOCK_WILL_INIT = 0x40;
export const BKPBLOCK_SAME_REL = 0x80;

export const BKPIMAGE_HAS_HOLE = 0x01;
export const BKPIMAGE_APPLY = 0x02;
export const BKPIMAGE_COMPRESS_PGLZ = 0x04;
export const BKPIMAGE_COMPRESS_LZ4 = 0x08;
export const BKPIMAGE_COMPRESS_ZSTD = 0x10;
const BKPIMAGE_COMPRESSED = BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD;

export type ImageCompression = "none" | "pglz" | "lz4" | "zstd";

export interface BlockImage {
  /** bytes stored in the record (bimg_len): compressed and/or without the hole */
  length: number;
  holeOffset: number;
  holeLength: number;
  bimgInfo: number;
  compression: ImageCompression;
  /** the stored image bytes (a view into the record) */
  bytes: Buffer;
}

export interface BlockRef {
  id: number;
  rel: RelTag;
  forkNum: ForkNumber;
  blockNumber: number;
  /** BKPBLOCK_WILL_INIT: redo initializes the page from scratch */
  willInit: boolean;
  hasImage: boolean;
  /** the image must be restored by redo (BKPIMAGE_APPLY); false = image only for consistency checks */
  applyImage: boolean;
  hasData: boolean;
  image?: BlockImage;
  /** rmgr-specific block data (a view into the record; empty if none) */
  readonly data: Buffer;
  /**
   * Where `data` lies: `dataLength` bytes at `dataOffset` of `dataSource`. Redo of the record
   * types replayed most (heap inserts, updates, prunes) reads them there: a Buffer view costs
   * about 50 ns to make, a tenth of such a record's whole replay.
   */
  readonly dataSource: Buffer;
  readonly dataOffset: number;
  readonly dataLength: number;
}

export interface DecodedRecord {
  /** where the record starts (ReadRecPtr) */
  lsn: Lsn;
  /** EndRecPtr: aligned position after the record (segment end for XLOG_SWITCH); set by the reader */
  endLsn: Lsn;
  totalLength: number;
  xid: number;
  readonly prev: Lsn;
  /** full xl_info byte (rmgr info in the high nibble) */
  info: number;
  rmid: number;
  blocks: BlockRef[];
  readonly mainData: Buffer;
  /** where `mainData` lies: `mainLength` bytes at `mainOffset` of `mainSource` (as for block data) */
  readonly mainSource: Buffer;
  readonly mainOffset: number;
  readonly mainLength: number;
  origin?: number;
  toplevelXid?: number;
  /** the record's bytes exactly as in WAL (page headers removed) */
  readonly raw: Buffer;
}

/** A block reference of a decoded record: its data view is made on first use. */
class DecodedBlockRef implements BlockRef {
  private view: Buffer | undefined = undefined;
  constructor(
    readonly id: number,
    readonly rel: RelTag,
    readonly forkNum: ForkNumber,
    readonly blockNumber: number,
    readonly willInit: boolean,
    readonly hasImage: boolean,
    readonly applyImage: boolean,
    readonly hasData: boolean,
    readonly image: BlockImage | undefined,
    public dataSource: Buffer,
    public dataOffset: number,
    public dataLength: number,
  ) {}

  get data(): Buffer {
    if (this.dataLength === 0) return EMPTY;
    return (this.view ??= this.dataSource.subarray(this.dataOffset, this.dataOffset + this.dataLength));
  }
}

/**
 * A decoded record: the record's bytes are `rawLength` bytes at `offset` of `source`; its raw and
 * main data views and its xl_prev (a BigInt) are made on first use, since replay needs none of them.
 */
class DecodedWalRecord implements DecodedRecord {
  declare origin?: number;
  declare toplevelXid?: number;
  private rawView: Buffer | undefined = undefined;
  private mainView: Buffer | undefined = undefined;
  constructor(
    public lsn: Lsn,
    public endLsn: Lsn,
    public totalLength: number,
    public xid: number,
    public info: number,
    public rmid: number,
    public blocks: BlockRef[],
    readonly mainSource: Buffer,
    readonly mainOffset: number,
    readonly mainLength: number,
    private readonly source: Buffer,
    private readonly offset: number,
    private readonly rawLength: number,
  ) {}

  get prev(): Lsn {
    return this.source.readBigUInt64LE(this.offset + 8);
  }

  get raw(): Buffer {
    if (this.offset === 0 && this.source.length === this.rawLength) return this.source;
    return (this.rawView ??= this.source.subarray(this.offset, this.offset + this.rawLength));
  }

  get mainData(): Buffer {
    if (this.mainLength === 0) return EMPTY;
    return (this.mainView ??= this.mainSource.subarray(this.mainOffset, this.mainOffset + this.mainLength));
  }
}

/**
 * A record built field by field (tests, records made rather than decoded): block data and main
 * data given as Buffers of their own.
 */
export function makeRecord(fields: Omit<DecodedRecord, "mainData" | "mainSource" | "mainOffset" | "mainLength" | "blocks" | "raw" | "prev"> & { mainData: Buffer; blocks: BlockRef[]; raw?: Buffer; prev?: Lsn }): DecodedRecord {
  const { mainData, raw, prev, ...rest } = fields;
  return { prev: prev ?? 0n, raw: raw ?? EMPTY, ...rest, mainData, mainSource: mainData, mainOffset: 0, mainLength: mainData.length };
}

/** A block reference built field by field (see makeRecord): its data a Buffer of its own. */
export function makeBlockRef(fields: Omit<BlockRef, "data" | "dataSource" | "dataOffset" | "dataLength"> & { data?: Buffer }): BlockRef {
  const { data = EMPTY, ...rest } = fields;
  return { ...rest, data, dataSource: data, dataOffset: 0, dataLength: data.length };
}

function compressionOf(bimgInfo: number): ImageCompression {
  if (bimgInfo & BKPIMAGE_COMPRESS_PGLZ) return "pglz";
  if (bimgInfo & BKPIMAGE_COMPRESS_LZ4) return "lz4";
  if (bimgInfo & BKPIMAGE_COMPRESS_ZSTD) return "zstd";
  return "none";
}

/** CRC-32C of a record as PostgreSQL computes it: body [24, tot_len), then header bytes [0, 20). */
export function computeRecordCrc(bytes: Uint8Array, totalLength: number): number {
  let crc = crc32cUpdate(CRC32C_INIT, bytes, SIZE_OF_XLOG_RECORD, totalLength);
  crc = crc32cUpdate(crc, bytes, 0, XL_CRC_OFFSET);
  return crc32cFinal(crc);
}

/**
 * Decodes one record. `bytes` must start at the record and hold at least xl_tot_len bytes
 * (page headers already removed). Verifies the CRC. Throws WalDecodeError naming `lsn`.
 * `endLsn` is `opts.endLsn` (the stream reader passes EndRecPtr), else lsn + MAXALIGN(tot_len).
 */
export function decodeRecord(bytes: Buffer, lsn: Lsn, opts?: { verifyCrc?: boolean; imagesOmitted?: boolean; endLsn?: Lsn }): DecodedRecord {
  if (opts?.imagesOmitted) return decodeWithoutImages(bytes, lsn);
  return decodeRecordAt(bytes, 0, bytes.length, lsn, opts);
}

/**
 * decodeRecord for a record at `offset` of `bytes`, `available` bytes long at most (a stored
 * record inside a larger value): the record's views are made only when asked for.
 */
export function decodeRecordAt(bytes: Buffer, offset: number, available: number, lsn: Lsn, opts?: { verifyCrc?: boolean; endLsn?: Lsn }): DecodedRecord {
  // No closures in here: each one costs an allocation (and a keepNames helper call under tsx)
  // per record; error messages are only built on failure.
  // (positions below are relative to the record's start; `offset` is added on each read)
  if (available < SIZE_OF_XLOG_RECORD) badRecord(lsn, `record truncated: ${available} bytes, header needs ${SIZE_OF_XLOG_RECORD}`);
  const totalLength = readU32(bytes, offset);
  if (totalLength < SIZE_OF_XLOG_RECORD) {
    throw new WalDecodeError(totalLength === 0 ? "ZERO_LENGTH" : "BAD_RECORD", lsn, `invalid record length: wanted ${SIZE_OF_XLOG_RECORD}, got ${totalLength}`);
  }
  if (available < totalLength) badRecord(lsn, `record truncated: xl_tot_len ${totalLength} but only ${available} bytes`);

  if (opts?.verifyCrc !== false) {
    const raw = offset === 0 && bytes.length === totalLength ? bytes : bytes.subarray(offset, offset + totalLength);
    const stored = readU32(bytes, offset + XL_CRC_OFFSET);
    const computed = computeRecordCrc(raw, totalLength);
    if (stored !== computed) {
      throw new WalDecodeError("BAD_CRC", lsn, `incorrect resource manager data checksum in record (stored ${hex32(stored)}, computed ${hex32(computed)})`);
    }
  }

  const xid = readU32(bytes, offset + 4);
  const info = bytes[offset + 16];
  const rmid = bytes[offset + 17];

  // Headers: block refs, then origin / toplevel xid, then the main-data length (always last).
  const blocks: DecodedBlockRef[] = [];
  let origin: number | undefined;
  let toplevelXid: number | undefined;
  let mainDataLen = 0;
  let pos = SIZE_OF_XLOG_RECORD;
  let payloadTotal = 0; // bytes of images + block data + main data announced so far
  let lastBlockId = -1;
  let prevRel: RelTag | undefined;

  while (totalLength - pos > payloadTotal) {
    const id = bytes[offset + pos++];
    if (id === XLR_BLOCK_ID_DATA_SHORT) {
      if (pos + 1 > totalLength) tooShort(lsn, 1, "main data length", pos, totalLength);
      mainDataLen = bytes[offset + pos];
      pos += 1;
      payloadTotal += mainDataLen;
      break;
    }
    if (id === XLR_BLOCK_ID_DATA_LONG) {
      if (pos + 4 > totalLength) tooShort(lsn, 4, "main data length", pos, totalLength);
      mainDataLen = readU32(bytes, offset + pos);
      pos += 4;
      payloadTotal += mainDataLen;
      break;
    }
    if (id === XLR_BLOCK_ID_ORIGIN) {
      if (pos + 2 > totalLength) tooShort(lsn, 2, "replication origin", pos, totalLength);
      origin = readU16(bytes, offset + pos);
      pos += 2;
      continue;
    }
    if (id === XLR_BLOCK_ID_TOPLEVEL_XID) {
      if (pos + 4 > totalLength) tooShort(lsn, 4, "toplevel xid", pos, totalLength);
      toplevelXid = readU32(bytes, offset + pos);
      pos += 4;
      continue;
    }
    if (id > XLR_MAX_BLOCK_ID) badRecord(lsn, `invalid block_id ${id} at record offset ${pos - 1}`);
    if (id <= lastBlockId) badRecord(lsn, `out-of-order block_id ${id} after ${lastBlockId}`);
    lastBlockId = id;

    if (pos + 3 > totalLength) tooShort(lsn, 3, `block ${id} header`, pos, totalLength);
    const forkFlags = bytes[offset + pos];
    const dataLength = readU16(bytes, offset + pos + 1);
    pos += 3;
    const hasImage = (forkFlags & BKPBLOCK_HAS_IMAGE) !== 0;
    const hasData = (forkFlags & BKPBLOCK_HAS_DATA) !== 0;
    if (hasData && dataLength === 0) badRecord(lsn, `BKPBLOCK_HAS_DATA set, but no data included for block ${id}`);
    if (!hasData && dataLength !== 0) badRecord(lsn, `BKPBLOCK_HAS_DATA not set, but data length is ${dataLength} for block ${id}`);
    payloadTotal += dataLength;

    let image: BlockImage | undefined;
    let applyImage = false;
    if (hasImage) {
      if (pos + 5 > totalLength) tooShort(lsn, 5, `block ${id} image header`, pos, totalLength);
      const length = readU16(bytes, offset + pos);
      const holeOffset = readU16(bytes, offset + pos + 2);
      const bimgInfo = bytes[offset + pos + 4];
      pos += 5;
      const compressed = (bimgInfo & BKPIMAGE_COMPRESSED) !== 0;
      const hasHole = (bimgInfo & BKPIMAGE_HAS_HOLE) !== 0;
      let holeLength: number;
      if (compressed) {
        if (hasHole) {
          if (pos + 2 > totalLength) tooShort(lsn, 2, `block ${id} hole length`, pos, totalLength);
          holeLength = readU16(bytes, offset + pos);
          pos += 2;
        } else {
          holeLength = 0;
        }
      } else {
        holeLength = BLCKSZ - length;
      }
      if (hasHole && (holeOffset === 0 || holeLength === 0 || length === BLCKSZ)) {
        badRecord(lsn, `BKPIMAGE_HAS_HOLE set, but hole offset ${holeOffset} length ${holeLength} block image length ${length} for block ${id}`);
      }
      if (!hasHole && (holeOffset !== 0 || holeLength !== 0)) {
        badRecord(lsn, `BKPIMAGE_HAS_HOLE not set, but hole offset ${holeOffset} length ${holeLength} for block ${id}`);
      }
      if (compressed && length === BLCKSZ) badRecord(lsn, `BKPIMAGE_COMPRESSED set, but block image length ${length} for block ${id}`);
      if (!hasHole && !compressed && length !== BLCKSZ) badRecord(lsn, `neither BKPIMAGE_HAS_HOLE nor BKPIMAGE_COMPRESSED set, but block image length is ${length} for block ${id}`);
      if (holeOffset + holeLength > BLCKSZ) badRecord(lsn, `image hole [${holeOffset}, +${holeLength}) exceeds the page for block ${id}`);
      applyImage = (bimgInfo & BKPIMAGE_APPLY) !== 0;
      payloadTotal += length;
      image = { length, holeOffset, holeLength, bimgInfo, compression: compressionOf(bimgInfo), bytes: EMPTY };
    }

    let rel: RelTag;
    if (forkFlags & BKPBLOCK_SAME_REL) {
      if (!prevRel) badRecord(lsn, `BKPBLOCK_SAME_REL set but no previous rel for block ${id}`);
      rel = prevRel!;
    } else {
      if (pos + 12 > totalLength) tooShort(lsn, 12, `block ${id} RelFileNode`, pos, totalLength);
      rel = { spcNode: readU32(bytes, offset + pos), dbNode: readU32(bytes, offset + pos + 4), relNode: readU32(bytes, offset + pos + 8) };
      pos += 12;
    }
    prevRel = rel;
    if (pos + 4 > totalLength) tooShort(lsn, 4, `block ${id} block number`, pos, totalLength);
    const blockNumber = readU32(bytes, offset + pos);
    pos += 4;

    blocks.push(
      new DecodedBlockRef(
        id,
        rel,
        (forkFlags & BKPBLOCK_FORK_MASK) as ForkNumber,
        blockNumber,
        (forkFlags & BKPBLOCK_WILL_INIT) !== 0,
        hasImage,
        applyImage,
        hasData,
        image,
        bytes,
        0,
        dataLength,
      ),
    );
  }

  if (totalLength - pos !== payloadTotal) {
    badRecord(lsn, `record payload length mismatch: headers announce ${payloadTotal} bytes, ${totalLength - pos} remain`);
  }

  // Payloads: per block, image bytes then block data; then main data.
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i];
    if (b.image) {
      b.image.bytes = bytes.subarray(offset + pos, offset + pos + b.image.length);
      pos += b.image.length;
    }
    b.dataOffset = offset + pos;
    pos += b.dataLength;
  }

  const record = new DecodedWalRecord(lsn, opts?.endLsn ?? lsn + BigInt((totalLength + 7) & ~7), totalLength, xid, info, rmid, blocks, bytes, offset + pos, mainDataLen, bytes, offset, totalLength);
  if (origin !== undefined) record.origin = origin;
  if (toplevelXid !== undefined) record.toplevelXid = toplevelXid;
  return record;
}

/**
 * The record's bytes without its page images (for the WAL record log, which keeps records for
 * waldump and lookups by LSN or time, while images are stored under their blocks already): the
 * header, block headers (with each image's header, so lengths and flags are still known), block
 * data and main data. xl_tot_len still says the full length; the CRC no longer matches. Read back
 * with decodeRecord(..., { imagesOmitted: true }). A record without images is returned as is.
 */
export function withoutImages(record: DecodedRecord): Buffer {
  const raw = record.raw;
  let imageBytes = 0;
  for (const b of record.blocks) if (b.image) imageBytes += b.image.length;
  if (imageBytes === 0) return raw;
  const out = Buffer.allocUnsafe(raw.length - imageBytes);
  // payloads are laid out per block (image, then data), then main data: copy around the images
  let from = 0;
  let to = 0;
  for (const b of record.blocks) {
    if (!b.image || b.image.length === 0) continue;
    const imageStart = b.image.bytes.byteOffset - raw.byteOffset;
    to += raw.copy(out, to, from, imageStart);
    from = imageStart + b.image.length;
  }
  raw.copy(out, to, from);
  return out;
}

/** decodeRecord for bytes written by withoutImages: the same record, with empty image bytes. */
function decodeWithoutImages(bytes: Buffer, lsn: Lsn): DecodedRecord {
  if (bytes.length < SIZE_OF_XLOG_RECORD) badRecord(lsn, `record truncated: ${bytes.length} bytes, header needs ${SIZE_OF_XLOG_RECORD}`);
  const totalLength = bytes.readUInt32LE(0);
  if (bytes.length === totalLength) return decodeRecord(bytes, lsn, { verifyCrc: false }); // it had none
  if (bytes.length > totalLength) badRecord(lsn, `stored record without images has ${bytes.length} bytes, more than xl_tot_len ${totalLength}`);
  // parse the headers with the image bytes put back as zeros (they are only headers' payload)
  const full = Buffer.alloc(totalLength);
  bytes.copy(full);
  const parsed = decodeRecord(full, lsn, { verifyCrc: false });
  let imageBytes = 0;
  let dataBytes = 0;
  for (const b of parsed.blocks) {
    if (b.image) imageBytes += b.image.length;
    dataBytes += b.dataLength;
  }
  if (bytes.length !== totalLength - imageBytes) {
    badRecord(lsn, `stored record without images has ${bytes.length} bytes, headers announce ${totalLength - imageBytes}`);
  }
  // payloads again, now over `bytes` (they follow the headers): block data and main data are views into the stored bytes
  let pos = bytes.length - dataBytes - parsed.mainLength;
  const blocks = parsed.blocks as DecodedBlockRef[];
  for (const b of blocks) {
    if (b.image) b.image.bytes = EMPTY;
    b.dataSource = bytes;
    b.dataOffset = pos;
    pos += b.dataLength;
  }
  const record = new DecodedWalRecord(parsed.lsn, parsed.endLsn, totalLength, parsed.xid, parsed.info, parsed.rmid, blocks, bytes, pos, parsed.mainLength, bytes, 0, bytes.length);
  if (parsed.origin !== undefined) record.origin = parsed.origin;
  if (parsed.toplevelXid !== undefined) record.toplevelXid = parsed.toplevelXid;
  return record;
}

const EMPTY = Buffer.alloc(0);

function badRecord(lsn: Lsn, detail: string): never {
  throw new WalDecodeError("BAD_RECORD", lsn, detail);
}

function tooShort(lsn: Lsn, n: number, what: string, pos: number, totalLength: number): never {
  return badRecord(lsn, `record too short for ${what}: needs ${n} bytes at offset ${pos}, record is ${totalLength}`);
}

function hex32(n: number): string {
  return "0x" + n.toString(16).toUpperCase().padStart(8, "0");
}

/** Sum of stored image bytes (pg_waldump's fpi_len); rec_len = totalLength - this. */
export function fpiLength(record: DecodedRecord): number {
  let n = 0;
  for (const b of record.blocks) if (b.image) n += b.image.length;
  return n;
}
