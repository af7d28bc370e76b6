// Turns a contiguous WAL byte stream (replication CopyData payloads, or segment files) into
// complete records: validates page headers, stitches records that span pages and segments,
// computes EndRecPtr, and hands each record's bytes to decodeRecord (record.ts).
//   walreceiver / segment files -> WalStreamDecoder.feed() -> next() -> DecodedRecord -> ingest
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import path from "node:path";
import { formatLsn, type Lsn } from "../lsn.ts";
import { WalDecodeError } from "./errors.ts";
import { decodeRecord, SIZE_OF_XLOG_RECORD, type DecodedRecord } from "./record.ts";
import { RmgrId } from "./rmgrs.ts";

export const XLOG_BLCKSZ = 8192;
export const DEFAULT_WAL_SEGMENT_SIZE = 16 * 1024 * 1024;
export const XLOG_PAGE_MAGIC = 0xd110;
export const SIZE_OF_XLOG_SHORT_PHD = 24;
export const SIZE_OF_XLOG_LONG_PHD = 40;

export const XLP_FIRST_IS_CONTRECORD = 0x01;
export const XLP_LONG_HEADER = 0x02;
export const XLP_BKP_REMOVABLE = 0x04;
export const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x08;
const XLP_ALL_FLAGS = 0x0f;

const XLOG_SWITCH = 0x40;

const align8 = (n: number) => Math.ceil(n / 8) * 8;

export interface WalStreamDecoderOptions {
  /** wal_segment_size of the cluster (checked against long page headers). Default 16 MiB. */
  segmentSize?: number;
  /** expected system identifier; if unset, the first long header's sysid is adopted */
  systemId?: bigint;
  /** verify record CRCs (default true) */
  verifyCrc?: boolean;
  /**
   * Records are not copies of their own: one that lies within a WAL page is a view into the
   * decoder's buffer, one that spans pages is assembled in a buffer reused for the next such
   * record. Their bytes (raw, mainData, block data and images) are valid only until the next
   * next() or feed(). For a consumer that is done with each record before asking for the next
   * (ingest). Default false.
   */
  borrowRecordBytes?: boolean;
}

/**
 * Incremental WAL decoder. Feed it the WAL bytes that start at `startLsn`, in order, in chunks
 * of any size; call next() until it returns undefined (= needs more bytes). `startLsn` is either
 * a page/segment start (a continuation of an earlier record at that page is skipped) or the
 * start of a record. Bytes are copied into an internal buffer that is compacted as records are
 * consumed, so memory stays around one record plus one chunk.
 */
export class WalStreamDecoder {
  readonly segmentSize: number;
  /** sysid from the long page headers (undefined until one is seen) */
  systemId: bigint | undefined;
  /** xlp_tli of the last page header read */
  timeline = 0;
  /** page address of the last page header read */
  lastPageAddr: Lsn | undefined;

  /** records are views into `buf` or into `assemblyBuffer` (see WalStreamDecoderOptions) */
  private readonly borrowRecordBytes: boolean;
  /** decodeRecord options, made once rather than per record */
  private readonly decodeOptions: { verifyCrc: boolean; endLsn?: Lsn };
  /** next unread stream position (a record start, a page start, or a skip target) */
  private pos: number;
  /** buffer holds stream bytes [bufStart, bufStart + bufLen) */
  private buf: Buffer;
  private bufStart: number;
  private bufLen = 0;
  /** skipping a continuation record at the first page we were started on */
  private skipContinuation: boolean;
  /** LSN of the previously returned record, for the xl_prev check */
  private prevRecord: number | undefined;

  constructor(startLsn: Lsn, opts: WalStreamDecoderOptions = {}) {
    this.segmentSize = opts.segmentSize ?? DEFAULT_WAL_SEGMENT_SIZE;
    this.systemId = opts.systemId;
    this.decodeOptions = { verifyCrc: opts.verifyCrc ?? true, endLsn: undefined };
    this.borrowRecordBytes = opts.borrowRecordBytes ?? false;
    this.pos = Number(startLsn);
    if (this.pos % 8 !== 0) throw new RangeError(`WAL decoder start ${formatLsn(startLsn)} is not 8-byte aligned`);
    this.bufStart = this.pos;
    this.buf = Buffer.allocUnsafe(64 * 1024);
    this.skipContinuation = this.pos % XLOG_BLCKSZ === 0;
  }

  /** Position up to which bytes have been fed (the next fed byte belongs here). */
  get fedUpTo(): Lsn {
    return BigInt(this.bufStart + this.bufLen);
  }

  /** Bytes currently held (unconsumed record/page bytes); stays around one record plus one chunk. */
  get bufferedBytes(): number {
    return this.bufLen;
  }

  /** Where the next record (or page header) is expected. */
  get position(): Lsn {
    return BigInt(this.pos);
  }

  /** Appends the next contiguous WAL bytes. The chunk is copied; the caller may reuse it. */
  feed(chunk: Uint8Array): void {
    let data = chunk;
    const end = this.bufStart + this.bufLen;
    // bytes the decoder already skipped past (the padding after XLOG_SWITCH) are dropped on arrival
    if (this.pos > end) {
      const drop = Math.min(this.pos - end, data.length);
      data = data.subarray(drop);
      this.bufStart += drop; // bufLen is 0 here: everything buffered was consumed
    }
    if (data.length === 0) return;
    this.compact();
    const needed = this.bufLen + data.length;
    if (needed > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(needed, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.bufLen);
      this.buf = bigger;
    }
    this.buf.set(data, this.bufLen);
    this.bufLen += data.length;
  }

  /** Drops consumed bytes from the front of the buffer. */
  private compact(): void {
    const consumed = Math.min(this.pos - this.bufStart, this.bufLen);
    if (consumed <= 0) return;
    if (consumed < this.bufLen) this.buf.copy(this.buf, 0, consumed, this.bufLen);
    this.bufLen -= consumed;
    this.bufStart += consumed;
    // shrink a buffer that grew for one huge record
    if (this.buf.length > 4 * 1024 * 1024 && this.bufLen < this.buf.length / 8) {
      const smaller = Buffer.allocUnsafe(Math.max(64 * 1024, this.bufLen * 2));
      this.buf.copy(smaller, 0, 0, this.bufLen);
      this.buf = smaller;
    }
  }

  private have(at: number, n: number): boolean {
    return at >= this.bufStart && at + n <= this.bufStart + this.bufLen;
  }

  /** Reads and validates the page header at `pageAddr` (must be buffered); returns its size, info, rem_len. */
  private readPageHeader(pageAddr: number): { size: number; info: number; remLen: number } {
    const o = pageAddr - this.bufStart;
    const b = this.buf;
    const lsn = BigInt(pageAddr);
    const magic = b.readUInt16LE(o);
    const info = b.readUInt16LE(o + 2);
    if (magic !== XLOG_PAGE_MAGIC) {
      throw new WalDecodeError("BAD_PAGE_HEADER", lsn, `invalid magic number 0x${magic.toString(16).padStart(4, "0").toUpperCase()} in WAL page`);
    }
    if (info & ~XLP_ALL_FLAGS) throw new WalDecodeError("BAD_PAGE_HEADER", lsn, `invalid info bits 0x${info.toString(16)} in WAL page`);
    const tli = b.readUInt32LE(o + 4);
    const pageaddr = b.readBigUInt64LE(o + 8);
    const remLen = b.readUInt32LE(o + 16);
    const segStart = pageAddr % this.segmentSize === 0;
    let size = SIZE_OF_XLOG_SHORT_PHD;
    if (info & XLP_LONG_HEADER) {
      size = SIZE_OF_XLOG_LONG_PHD;
      if (!this.have(pageAddr, size)) return { size: -1, info, remLen };
      const sysid = b.readBigUInt64LE(o + 24);
      const segSize = b.readUInt32LE(o + 32);
      const blcksz = b.readUInt32LE(o + 36);
      if (this.systemId !== undefined && sysid !== this.systemId) {
        throw new WalDecodeError("BAD_PAGE_HEADER", lsn, `WAL file is from different database system: WAL file database system identifier is ${sysid}, expected ${this.systemId}`);
      }
      if (segSize !== this.segmentSize) throw new WalDecodeError("BAD_PAGE_HEADER", lsn, `WAL file has segment size ${segSize}, expected ${this.segmentSize}`);
      if (blcksz !== XLOG_BLCKSZ) throw new WalDecodeError("BAD_PAGE_HEADER", lsn, `WAL file has XLOG_BLCKSZ ${blcksz}, expected ${XLOG_BLCKSZ}`);
      this.systemId = sysid;
    } else if (segStart) {
      throw new WalDecodeError("BAD_PAGE_HEADER", lsn, `invalid info bits 0x${info.toString(16)} in WAL segment start page (no long header)`);
    }
    if (pageaddr !== lsn) {
      throw new WalDecodeError("BAD_PAGE_ADDRESS", lsn, `unexpected pageaddr ${formatLsn(pageaddr)} in WAL page`);
    }
    if (tli < this.timeline) {
      throw new WalDecodeError("BAD_PAGE_HEADER", lsn, `out-of-sequence timeline ID ${tli} (after ${this.timeline}) in WAL page`);
    }
    this.timeline = tli;
    this.lastPageAddr = lsn;
    return { size, info, remLen };
  }

  /**
   * Returns the next complete record, or undefined when more bytes must be fed first.
   * Throws WalDecodeError on invalid WAL (the decoder is then unusable).
   */
  next(): DecodedRecord | undefined {
    for (;;) {
      const pos = this.pos;
      if (pos % XLOG_BLCKSZ === 0) {
        // at a page start: the page header comes first
        if (!this.have(pos, SIZE_OF_XLOG_SHORT_PHD)) return undefined;
        const hdr = this.readPageHeader(pos);
        if (hdr.size < 0) return undefined;
        if (this.skipContinuation) {
          this.skipContinuation = false;
          if (hdr.info & XLP_FIRST_IS_CONTRECORD) {
            const room = XLOG_BLCKSZ - hdr.size;
            if (hdr.remLen >= room) {
              // the whole page belongs to the earlier record; keep skipping on the next page
              this.skipContinuation = true;
              this.pos = pos + XLOG_BLCKSZ;
            } else {
              this.pos = pos + hdr.size + align8(hdr.remLen);
            }
            continue;
          }
        } else if (hdr.info & XLP_FIRST_IS_CONTRECORD) {
          throw new WalDecodeError("BAD_PAGE_HEADER", BigInt(pos), `contrecord is requested by ${formatLsn(BigInt(pos + hdr.size))}`);
        }
        this.pos = pos + hdr.size;
        continue;
      }

      // at a record start inside a page: xl_tot_len is always on this page
      if (!this.have(pos, 4)) return undefined;
      const recLsn = BigInt(pos);
      const totLen = this.buf.readUInt32LE(pos - this.bufStart);
      if (totLen < SIZE_OF_XLOG_RECORD) {
        throw new WalDecodeError(totLen === 0 ? "ZERO_LENGTH" : "BAD_RECORD", recLsn, `invalid record length: wanted ${SIZE_OF_XLOG_RECORD}, got ${totLen}`);
      }
      const pageEnd = pos - (pos % XLOG_BLCKSZ) + XLOG_BLCKSZ;
      let record: Buffer;
      let endPos: number; // stream position just after the record's last byte
      if (pos + totLen <= pageEnd) {
        if (!this.have(pos, totLen)) return undefined;
        const o = pos - this.bufStart;
        if (this.borrowRecordBytes) record = this.buf.subarray(o, o + totLen);
        else {
          // copy: the record owns its bytes (allocUnsafe + copy, no intermediate view)
          record = Buffer.allocUnsafe(totLen);
          this.buf.copy(record, 0, o, o + totLen);
        }
        endPos = pos + totLen;
      } else {
        // spans pages: first make sure every piece (and each page header) is buffered
        const pieces = this.locateContinuation(pos, pageEnd, totLen);
        if (pieces === undefined) return undefined;
        if (pieces === "overwritten") {
          // a crash cut this record off; the WAL continues with an OVERWRITE_CONTRECORD at that page
          continue;
        }
        // a borrowed record spanning pages is assembled in a buffer reused from one record to the next
        record = this.borrowRecordBytes ? this.assembly(totLen) : Buffer.allocUnsafe(totLen);
        let filled = 0;
        for (let i = 0; i < pieces.length; i += 2) {
          const o = pieces[i] - this.bufStart;
          this.buf.copy(record, filled, o, o + pieces[i + 1]);
          filled += pieces[i + 1];
        }
        endPos = pieces[pieces.length - 2] + pieces[pieces.length - 1];
      }

      let next = align8(endPos);
      // (one BigInt per record for its end, made here rather than derived in decodeRecord)
      this.decodeOptions.endLsn = BigInt(next);
      const decoded = decodeRecord(record, recLsn, this.decodeOptions);
      const prev = Number(decoded.prev);
      if (this.prevRecord !== undefined ? prev !== this.prevRecord : prev >= pos) {
        throw new WalDecodeError("BAD_RECORD", recLsn, `record with incorrect prev-link ${formatLsn(decoded.prev)}`);
      }
      if (decoded.rmid === RmgrId.XLOG && (decoded.info & 0xf0) === XLOG_SWITCH) {
        // the rest of the segment is padding; the next record starts in the next segment
        next = Math.ceil(next / this.segmentSize) * this.segmentSize;
        decoded.endLsn = BigInt(next);
      }
      this.prevRecord = pos;
      this.pos = next;
      return decoded;
    }
  }

  /** reused for borrowed records that span pages (full-page images mostly) */
  private assemblyBuffer: Buffer | undefined;

  private assembly(length: number): Buffer {
    let buf = this.assemblyBuffer;
    // kept for reuse up to 1 MiB; a larger record gets a buffer of its own
    if (buf === undefined || buf.length < length) {
      buf = Buffer.allocUnsafe(Math.max(length, 4 * XLOG_BLCKSZ));
      if (buf.length <= 1024 * 1024) this.assemblyBuffer = buf;
    }
    return buf.subarray(0, length);
  }

  /**
   * For a record starting at `pos` that runs past `pageEnd`: returns [streamPos, length, ...]
   * pieces covering its `totLen` bytes, after validating each continuation page header, or
   * undefined if not all bytes are buffered yet.
   */
  private locateContinuation(pos: number, pageEnd: number, totLen: number): number[] | "overwritten" | undefined {
    const pieces = [pos, pageEnd - pos];
    let got = pageEnd - pos;
    let page = pageEnd;
    if (!this.have(pos, got)) return undefined;
    while (got < totLen) {
      if (!this.have(page, SIZE_OF_XLOG_SHORT_PHD)) return undefined;
      const hdr = this.readPageHeader(page);
      if (hdr.size < 0) return undefined;
      if (!(hdr.info & XLP_FIRST_IS_CONTRECORD)) {
        if (hdr.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD) {
          this.prevRecord = pos;
          this.pos = page;
          return "overwritten";
        }
        throw new WalDecodeError("BAD_PAGE_HEADER", BigInt(page), `there is no contrecord flag (record at ${formatLsn(BigInt(pos))})`);
      }
      if (hdr.remLen === 0 || hdr.remLen !== totLen - got) {
        throw new WalDecodeError("BAD_PAGE_HEADER", BigInt(page), `invalid contrecord length ${hdr.remLen} (expected ${totLen - got}) for record at ${formatLsn(BigInt(pos))}`);
      }
      const start = page + hdr.size;
      const len = Math.min(totLen - got, XLOG_BLCKSZ - hdr.size);
      if (!this.have(start, len)) return undefined;
      pieces.push(start, len);
      got += len;
      page += XLOG_BLCKSZ;
    }
    return pieces;
  }

  /** Returns all complete records currently decodable. */
  *drain(): Generator<DecodedRecord> {
    for (let r = this.next(); r; r = this.next()) yield r;
  }
}

/** pg_wal file name of the segment holding `lsn`. */
export function walFileName(timeline: number, lsn: Lsn, segmentSize = DEFAULT_WAL_SEGMENT_SIZE): string {
  const segno = lsn / BigInt(segmentSize);
  const perId = 0x100000000n / BigInt(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return hex(timeline) + hex(segno / perId) + hex(segno % perId);
}

export interface ReadWalSegmentsOptions {
  segmentSize?: number;
  /** timeline to read; default: the highest timeline that has the first segment */
  timeline?: number;
  /** bytes fed to the decoder per call (default: whole segment) — exercises incremental feeding */
  chunkSize?: number | (() => number);
  verifyCrc?: boolean;
}

/**
 * Decodes the records in [fromLsn, toLsn) from the segment files of a pg_wal directory, like
 * `pg_waldump -s from -e to`: only records that lie completely before `toLsn` are returned.
 * Without `toLsn`, reads until the end of valid WAL (a zeroed or recycled page, or a missing file).
 */
export function* readWalSegments(walDir: string, fromLsn: Lsn, toLsn?: Lsn, opts: ReadWalSegmentsOptions = {}): Generator<DecodedRecord> {
  const segmentSize = opts.segmentSize ?? DEFAULT_WAL_SEGMENT_SIZE;
  const timeline = opts.timeline ?? pickTimeline(walDir, fromLsn, segmentSize);
  const decoder = new WalStreamDecoder(fromLsn, { segmentSize, verifyCrc: opts.verifyCrc });
  const nextChunk = typeof opts.chunkSize === "function" ? opts.chunkSize : () => (opts.chunkSize as number | undefined) ?? segmentSize;
  const seg = BigInt(segmentSize);
  let at = fromLsn;
  while (toLsn === undefined || at < toLsn) {
    const file = path.join(walDir, walFileName(timeline, at, segmentSize));
    if (!existsSync(file)) {
      if (toLsn === undefined) return;
      throw new Error(`WAL segment ${file} is missing (needed for ${formatLsn(at)})`);
    }
    const segStart = (at / seg) * seg;
    const bytes = readFileSync(file);
    let off = Number(at - segStart);
    let end = bytes.length;
    if (toLsn !== undefined && toLsn < segStart + seg) end = Number(toLsn - segStart);
    while (off < end) {
      const n = Math.min(Math.max(1, nextChunk()), end - off);
      decoder.feed(bytes.subarray(off, off + n));
      off += n;
      try {
        yield* decoder.drain();
      } catch (err) {
        if (toLsn === undefined && err instanceof WalDecodeError && endOfWal(err)) return;
        throw err;
      }
    }
    at = segStart + seg;
  }
}

/**
 * Where the valid WAL in a pg_wal directory ends, reading from `from` (a record or page start):
 * the end of the last record before anything invalid (zeros, a recycled segment, a torn record
 * whose CRC fails, a missing file). That is where PostgreSQL's crash recovery stops replaying.
 */
export function endOfValidWal(walDir: string, from: Lsn, opts: { segmentSize?: number; timeline?: number } = {}): Lsn {
  const suffix = walFileName(0, from, opts.segmentSize ?? DEFAULT_WAL_SEGMENT_SIZE).slice(8);
  if (!readdirSync(walDir).some((f) => f.length === 24 && f.endsWith(suffix))) return from; // nothing written past it
  let end = from;
  try {
    for (const record of readWalSegments(walDir, from, undefined, opts)) end = record.endLsn;
  } catch (err) {
    if (!(err instanceof WalDecodeError)) throw err;
  }
  return end;
}

function endOfWal(err: WalDecodeError): boolean {
  return err.code === "ZERO_LENGTH" || err.code === "BAD_PAGE_ADDRESS" || (err.code === "BAD_PAGE_HEADER" && err.message.includes("magic"));
}

function pickTimeline(walDir: string, lsn: Lsn, segmentSize: number): number {
  const suffix = walFileName(0, lsn, segmentSize).slice(8);
  const tlis = readdirSync(walDir)
    .filter((f) => f.length === 24 && /^[0-9A-F]{24}$/.test(f) && f.endsWith(suffix))
    .map((f) => parseInt(f.slice(0, 8), 16));
  if (tlis.length === 0) throw new Error(`no WAL segment for ${formatLsn(lsn)} in ${walDir}`);
  return Math.max(...tlis);
}

/**
 * The raw WAL bytes [from, to) of one timeline (default: the highest one that has the segment
 * of `from`), read from the segment files of a pg_wal directory.
 */
export function readWalRange(walDir: string, from: Lsn, to: Lsn, opts: { timeline?: number; segmentSize?: number } = {}): Buffer {
  const segmentSize = BigInt(opts.segmentSize ?? DEFAULT_WAL_SEGMENT_SIZE);
  const timeline = opts.timeline ?? pickTimeline(walDir, from, Number(segmentSize));
  const out = Buffer.alloc(Number(to - from));
  for (let pos = from; pos < to; ) {
    const segStart = pos - (pos % segmentSize);
    const n = Number((to < segStart + segmentSize ? to : segStart + segmentSize) - pos);
    const fd = openSync(path.join(walDir, walFileName(timeline, pos, Number(segmentSize))), "r");
    try {
      readSync(fd, out, Number(pos - from), n, Number(pos - segStart));
    } finally {
      closeSync(fd);
    }
    pos += BigInt(n);
  }
  return out;
}
