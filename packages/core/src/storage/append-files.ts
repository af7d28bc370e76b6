// Append-only files next to the LevelDB store, for values LevelDB should not carry: full 8 KB page
// images (store/page-images/*.img) and the WAL record log's pieces (store/record-log/*.log). A
// large value stored in LevelDB is copied again by every compaction that passes over it (and
// compaction competes with ingest for the CPU), and every scan that walks past it copies it into
// JavaScript. Here each value is appended once and the LevelDB entry holds a 13-byte reference
// (storage/values.ts, storage/record-log.ts), so compactions and scans move references and only
// the values a read needs are read.
//
// Durability: the values a commit references are written and fdatasync'ed before the LevelDB
// batch that references them, so a durable reference always points at durable bytes. A crash can
// leave bytes no entry references at a file's end; they are never read, and appends continue
// after them.
import { closeSync, constants, fstatSync, mkdirSync, openSync, readdirSync, readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import path from "node:path";

/** Files are started anew past this size, so no single file grows without bound. */
export const APPEND_FILE_BYTES = 1024 * 1024 * 1024;
/**
 * A read that continues where the previous read of its file ended, or a little after it (a full
 * backup or relation scan over pages stored one after another, as an import stores them, or over
 * a bulk load's records in the record log; a WAL range read piece by piece) fetches this much at
 * once and serves the next reads from it: one pread per 32 pages instead of one per page.
 */
const READ_AHEAD_BYTES = 256 * 1024;
/** how far past the previous read's end a read may start and still count as sequential (readRef) */
const SEQUENTIAL_GAP_BYTES = 64 * 1024;

/** Where a store keeps its page images and its record log (directory inside the store's, file suffix). */
export const IMAGE_FILES = { dir: "page-images", suffix: "img" } as const;
export const RECORD_LOG_FILES = { dir: "record-log", suffix: "log" } as const;

/** Where a stored value is. */
export interface FileRef {
  file: number;
  offset: number;
  length: number;
}

/** Reads stored values by their references (the store's AppendFiles). */
export interface FileRefReader {
  read(ref: FileRef): Buffer;
}

/**
 * The LevelDB value standing for a value stored at `ref`: a byte saying what it is (an image, a
 * record log piece), then file, offset and length as u32 BE.
 */
export function fileRefValue(kind: number, ref: FileRef): Buffer {
  const value = Buffer.allocUnsafe(13);
  value[0] = kind;
  value.writeUInt32BE(ref.file, 1);
  value.writeUInt32BE(ref.offset, 5);
  value.writeUInt32BE(ref.length, 9);
  return value;
}

/** The reference in a value written by fileRefValue; `what` names it in the error for a malformed one. */
export function readFileRef(value: Buffer, what: string): FileRef {
  if (value.length !== 13) throw new Error(`corrupt stored value: ${what} of ${value.length} bytes`);
  return { file: value.readUInt32BE(1), offset: value.readUInt32BE(5), length: value.readUInt32BE(9) };
}

export class AppendFiles {
  private currentFile: number;
  /** where the next staged value goes in the current file */
  private nextOffset: number;
  /** staged values not yet handed to a write, in staging order */
  private pending: Array<{ file: number; offset: number; bytes: Buffer }> = [];
  /** writes run one after another; each takes everything staged before it started */
  private writing: Promise<void> = Promise.resolve();
  private readonly appendHandles = new Map<number, FileHandle>();
  private readonly readFds = new Map<number, number>();
  /**
   * Per file written by this instance, where its completely written bytes end: a read-ahead never
   * goes past it, so it never holds bytes of a write still in progress. Files older than the one
   * open at startup are complete.
   */
  private readonly writtenEnd = new Map<number, number>();
  private readonly firstOpenFile: number;
  /** the last read's file and end, to recognise sequential reads */
  private lastReadFile = 0;
  private lastReadEnd = -1;
  /** bytes read ahead: `bytes` holds the file's bytes from `offset` on */
  private window: { file: number; offset: number; bytes: Buffer } | undefined;
  private closed = false;

  private constructor(
    private readonly dir: string,
    /** file names are NNNNNNNN.<suffix> */
    private readonly suffix: string,
    file: number,
    size: number,
    private readonly fileBytes: number,
  ) {
    this.currentFile = file;
    this.nextOffset = size;
    this.firstOpenFile = file;
    this.writtenEnd.set(file, size);
  }

  /** Opens (creating if needed) the files NNNNNNNN.<suffix> under `dir`; appends continue after the newest file's end. */
  static open(dir: string, options: { suffix: string; fileBytes?: number }): AppendFiles {
    const { suffix } = options;
    mkdirSync(dir, { recursive: true });
    let newest = 0;
    for (const name of readdirSync(dir)) {
      const m = /^(\d{8})\.(\w+)$/.exec(name);
      if (m && m[2] === suffix) newest = Math.max(newest, Number(m[1]));
    }
    let size = 0;
    if (newest > 0) {
      const fd = openSync(path.join(dir, fileName(newest, suffix)), "r");
      try {
        size = fstatSync(fd).size;
      } finally {
        closeSync(fd);
      }
    }
    return new AppendFiles(dir, suffix, Math.max(newest, 1), size, options.fileBytes ?? APPEND_FILE_BYTES);
  }

  /**
   * Reserves room for `bytes` and returns where they will be. They are written by the next
   * `flush()`; the caller must not modify `bytes` until then, nor store the reference before it.
   */
  stage(bytes: Buffer): FileRef {
    if (this.closed) throw new Error(`${this.name(this.currentFile)}: the files are closed`);
    if (this.nextOffset > 0 && this.nextOffset + bytes.length > this.fileBytes) {
      this.currentFile++;
      this.nextOffset = 0;
    }
    const ref = { file: this.currentFile, offset: this.nextOffset, length: bytes.length };
    this.pending.push({ file: ref.file, offset: ref.offset, bytes });
    this.nextOffset += bytes.length;
    return ref;
  }

  /** Writes and syncs every value staged so far (and any staged meanwhile). */
  flush(): Promise<void> {
    const step = this.writing.then(() => this.writePending());
    // a failed write fails its callers; the next flush starts afresh
    this.writing = step.catch(() => {});
    return step;
  }

  private async writePending(): Promise<void> {
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    const newFiles: number[] = [];
    const touched = new Set<number>();
    for (let i = 0; i < batch.length; ) {
      // consecutive values of one file go out in one positioned write
      let j = i + 1;
      while (j < batch.length && batch[j].file === batch[i].file && batch[j].offset === batch[j - 1].offset + batch[j - 1].bytes.length) j++;
      const file = batch[i].file;
      let handle = this.appendHandles.get(file);
      if (!handle) {
        // positioned writes (not O_APPEND): each value goes exactly where its reference points
        handle = await open(path.join(this.dir, fileName(file, this.suffix)), constants.O_RDWR | constants.O_CREAT, 0o600);
        if ((await handle.stat()).size === 0) newFiles.push(file);
        this.appendHandles.set(file, handle);
      }
      const buffers = batch.slice(i, j).map((p) => p.bytes);
      const expected = buffers.reduce((n, b) => n + b.length, 0);
      const { bytesWritten } = await handle.writev(buffers, batch[i].offset);
      if (bytesWritten !== expected) throw new Error(`${this.name(file)}: short write (${bytesWritten} of ${expected} bytes at ${batch[i].offset})`);
      this.writtenEnd.set(file, Math.max(this.writtenEnd.get(file) ?? 0, batch[i].offset + expected));
      touched.add(file);
      i = j;
    }
    for (const file of touched) await this.appendHandles.get(file)!.datasync();
    // one file is appended at a time: the handles of older ones are done
    for (const [n, h] of this.appendHandles) {
      if (n < this.currentFile) {
        this.appendHandles.delete(n);
        await h.close();
      }
    }
    // a new file's directory entry must be durable before anything references it
    if (newFiles.length) {
      const dirHandle = await open(this.dir, "r");
      try {
        await dirHandle.sync();
      } finally {
        await dirHandle.close();
      }
    }
  }

  /**
   * The bytes of a stored value (a new buffer, the caller's to keep or modify). Synchronous: from
   * the OS page cache a pread takes microseconds, less than a trip through libuv's thread pool; a
   * read that goes to disk holds the event loop for that one read.
   */
  read(ref: FileRef): Buffer {
    return this.readRef(ref, true);
  }

  /**
   * The bytes of a stored value, possibly a view into the read-ahead window: for values that are
   * only read (WAL records from the record log), never modified. A view keeps its window (256 KiB)
   * alive as long as it is referenced; a full backup replays one such record per bulk-loaded
   * page, and a buffer of its own (an 8 KiB allocation, about 1.5 us here) cost more than the read.
   */
  readShared(ref: FileRef): Buffer {
    return this.readRef(ref, false);
  }

  private readRef(ref: FileRef, copy: boolean): Buffer {
    const window = this.window;
    const end = ref.offset + ref.length;
    // a read at or a little after the previous one's end walks forward through the file: the
    // record log's records lie one after another with 20 bytes of header between them, and a
    // bulk load's multi-insert records (read by a scan in block order) with few others between
    const sequential = this.lastReadFile === ref.file && ref.offset >= this.lastReadEnd && ref.offset - this.lastReadEnd <= SEQUENTIAL_GAP_BYTES;
    this.lastReadFile = ref.file;
    this.lastReadEnd = end;
    if (window && window.file === ref.file && ref.offset >= window.offset && end <= window.offset + window.bytes.length) {
      // copied out unless shared: the caller may keep or modify its page, and must not pin the whole window
      const view = window.bytes.subarray(ref.offset - window.offset, end - window.offset);
      return copy ? Buffer.from(view) : view;
    }
    const fd = this.readFd(ref.file);
    const complete = ref.file < this.firstOpenFile ? Infinity : (this.writtenEnd.get(ref.file) ?? 0);
    const ahead = Math.min(READ_AHEAD_BYTES, complete - ref.offset);
    if (sequential && ahead > ref.length) {
      const bytes = Buffer.allocUnsafeSlow(ahead);
      const n = readSync(fd, bytes, 0, ahead, ref.offset);
      if (n < ref.length) throw this.truncated(ref, n);
      this.window = { file: ref.file, offset: ref.offset, bytes: bytes.subarray(0, n) };
      const view = bytes.subarray(0, ref.length);
      return copy ? Buffer.from(view) : view;
    }
    const out = Buffer.allocUnsafe(ref.length);
    const n = readSync(fd, out, 0, ref.length, ref.offset);
    if (n !== ref.length) throw this.truncated(ref, n);
    return out;
  }

  /**
   * Reads `length` bytes at `offset` of `file` (one stored value, or several stored one after
   * another) straight into `target` at `at`: a full backup reads runs of consecutive page images
   * into its output chunk with one pread, without a buffer per page.
   */
  readInto(file: number, offset: number, length: number, target: Buffer, at: number): void {
    const n = readSync(this.readFd(file), target, at, length, offset);
    if (n !== length) throw this.truncated({ file, offset, length }, n);
  }

  /** A file's name for messages: its directory and file name. */
  private name(file: number): string {
    return `${path.basename(this.dir)}/${fileName(file, this.suffix)}`;
  }

  private truncated(ref: FileRef, n: number): Error {
    return new Error(`${this.name(ref.file)} is truncated: ${n} of ${ref.length} bytes at offset ${ref.offset}`);
  }

  private readFd(file: number): number {
    let fd = this.readFds.get(file);
    if (fd === undefined) {
      fd = openSync(path.join(this.dir, fileName(file, this.suffix)), "r");
      this.readFds.set(file, fd);
    }
    return fd;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.writing;
    for (const handle of this.appendHandles.values()) await handle.close();
    this.appendHandles.clear();
    for (const fd of this.readFds.values()) closeSync(fd);
    this.readFds.clear();
    this.window = undefined;
  }
}

function fileName(file: number, suffix: string): string {
  return `${String(file).padStart(8, "0")}.${suffix}`;
}

/** files a reader keeps open */
const READER_OPEN_FILES = 16;

/**
 * Read-only access to AppendFiles' files from another thread (a redo worker), by directory and
 * suffix. A chain holds at most a page image or two and a large record in these files (its base),
 * so every read is one pread of just its bytes.
 */
export class AppendFilesReader implements FileRefReader {
  private readonly fds = new Map<number, number>();

  constructor(
    private readonly dir: string,
    private readonly suffix: string,
  ) {}

  read(ref: FileRef): Buffer {
    const out = Buffer.allocUnsafe(ref.length);
    const n = readSync(this.fd(ref.file), out, 0, ref.length, ref.offset);
    if (n !== ref.length) throw new Error(`${path.basename(this.dir)}/${fileName(ref.file, this.suffix)} is truncated: ${n} of ${ref.length} bytes at offset ${ref.offset}`);
    return out;
  }

  private fd(file: number): number {
    let fd = this.fds.get(file);
    if (fd !== undefined) {
      // most recently used last
      this.fds.delete(file);
      this.fds.set(file, fd);
      return fd;
    }
    fd = openSync(path.join(this.dir, fileName(file, this.suffix)), "r");
    this.fds.set(file, fd);
    if (this.fds.size > READER_OPEN_FILES) {
      const [oldest, oldestFd] = this.fds.entries().next().value!;
      this.fds.delete(oldest);
      closeSync(oldestFd);
    }
    return fd;
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
