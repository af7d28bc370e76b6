// One page rebuild handed to a redo worker, as one transferable buffer: the block, the start
// page, and the versions to replay as they are stored (storage/values.ts), with the directory of
// the store whose record log and page image files the stored references point into. Moving a
// chain between threads as objects (a structured clone of thousands of small Buffers) would cost
// more than replaying it.
//
// [header 32][store directory, UTF-8][start page 8192][version...]
//   header:  versions u32 LE, spcNode u32, dbNode u32, relNode u32, blockNumber u32, fork u8,
//            hint bits logged u8, directory length u16 LE, 8 bytes zero
//   version: LSN u64 LE, length u32 LE, then the stored value's `length` bytes
import type { Lsn } from "../lsn.ts";
import { BLCKSZ, type ForkNumber } from "../reltag.ts";
import type { ReplayTarget } from "./apply.ts";

const HEADER = 32;
const VERSION_HEADER = 12;

export interface ReplayJob {
  /** the directory of the store the versions were read from (TimelineStore.dir) */
  storeDir: string;
  page: Buffer;
  /** stored values, oldest first (an entry may be a run of versions: storage/values.ts) */
  versions: ReadonlyArray<{ lsn: Lsn; raw: Buffer }>;
  target: ReplayTarget;
  hintBitsLogged: boolean;
}

/** The job in one buffer of its own (copies of the page and of every version). */
export function encodeReplayJob(job: ReplayJob): Buffer {
  if (job.page.length !== BLCKSZ) throw new RangeError(`a replay starts from a ${BLCKSZ}-byte page, not ${job.page.length} bytes`);
  const dirLength = Buffer.byteLength(job.storeDir);
  if (dirLength > 0xffff) throw new RangeError("store directory name too long for a replay job");
  const versions = job.versions;
  let size = HEADER + dirLength + BLCKSZ;
  for (let i = 0; i < versions.length; i++) size += VERSION_HEADER + versions[i].raw.length;
  // (not from Node's shared pool: the buffer is transferred whole; not zero-filled: every byte is
  // written below, and a chain's copy is megabytes for a hot page)
  const out = Buffer.allocUnsafeSlow(size);
  out.fill(0, 0, HEADER);
  out.writeUInt32LE(versions.length, 0);
  out.writeUInt32LE(job.target.rel.spcNode, 4);
  out.writeUInt32LE(job.target.rel.dbNode, 8);
  out.writeUInt32LE(job.target.rel.relNode, 12);
  out.writeUInt32LE(job.target.blockNumber, 16);
  out[20] = job.target.fork;
  out[21] = job.hintBitsLogged ? 1 : 0;
  out.writeUInt16LE(dirLength, 22);
  out.write(job.storeDir, HEADER);
  let pos = HEADER + dirLength;
  out.set(job.page, pos);
  pos += BLCKSZ;
  for (let i = 0; i < versions.length; i++) {
    const { lsn, raw } = versions[i];
    // (two u32 writes: writeBigUInt64LE costs several times more)
    out.writeUInt32LE(Number(lsn & 0xffff_ffffn), pos);
    out.writeUInt32LE(Number(lsn >> 32n), pos + 4);
    out.writeUInt32LE(raw.length, pos + 8);
    out.set(raw, pos + VERSION_HEADER);
    pos += VERSION_HEADER + raw.length;
  }
  return out;
}

/** The job back from its buffer; the page and the versions are views into it. */
export function decodeReplayJob(buffer: Buffer): ReplayJob {
  if (buffer.length < HEADER) throw new RangeError(`replay job of ${buffer.length} bytes is truncated`);
  const count = buffer.readUInt32LE(0);
  const target: ReplayTarget = {
    rel: { spcNode: buffer.readUInt32LE(4), dbNode: buffer.readUInt32LE(8), relNode: buffer.readUInt32LE(12) },
    blockNumber: buffer.readUInt32LE(16),
    fork: buffer[20] as ForkNumber,
  };
  const dirLength = buffer.readUInt16LE(22);
  let pos = HEADER + dirLength + BLCKSZ;
  if (pos > buffer.length) throw new RangeError(`replay job of ${buffer.length} bytes is truncated`);
  const storeDir = buffer.toString("utf8", HEADER, HEADER + dirLength);
  const page = buffer.subarray(HEADER + dirLength, pos);
  const versions: Array<{ lsn: Lsn; raw: Buffer }> = new Array(count);
  for (let i = 0; i < count; i++) {
    if (pos + VERSION_HEADER > buffer.length) throw new RangeError(`replay job: version ${i} of ${count} is truncated`);
    const lsn = BigInt(buffer.readUInt32LE(pos)) | (BigInt(buffer.readUInt32LE(pos + 4)) << 32n);
    const length = buffer.readUInt32LE(pos + 8);
    const start = pos + VERSION_HEADER;
    if (length === 0 || start + length > buffer.length) throw new RangeError(`replay job: version ${i} of ${count} has a bad length ${length}`);
    versions[i] = { lsn, raw: buffer.subarray(start, start + length) };
    pos = start + length;
  }
  if (pos !== buffer.length) throw new RangeError(`replay job: ${buffer.length - pos} trailing bytes`);
  return { storeDir, page, versions, target, hintBitsLogged: buffer[21] === 1 };
}
