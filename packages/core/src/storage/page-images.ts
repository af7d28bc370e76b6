// Page images kept outside LevelDB. An 8 KB image stored as a LevelDB value is copied again by
// every compaction that passes over it, and every scan that walks past it (a superseded image
// below a newer one) copies it into JavaScript. Here each image is appended once to a per-store
// file and the LevelDB entry holds a 13-byte reference (ValueKind.ImageRef, storage/values.ts),
// so compactions and scans move references and only the images a read needs are read.
//
// Durability: the images a commit references are written and fdatasync'ed before the LevelDB
// batch that references them, so a durable reference always points at durable bytes. A crash can
// leave bytes no entry references at a file's end; they are never read, and appends continue
// after them.
import { closeSync, constants, fstatSync, mkdirSync, openSync, readdirSync, readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import path from "node:path";

/** Files are started anew past this size, so no single file grows without bound. */
export const PAGE_IMAGE_FILE_BYTES = 1024 * 1024 * 1024;
const FILE_NAME = /^(\d{8})\.img$/;

export interface PageImageRef {
  file: number;
  offset: number;
  length: number;
}

export class PageImageFiles {
  private currentFile: number;
  /** where the next staged image goes in the current file */
  private nextOffset: number;
  /** staged images not yet handed to a write, in staging order */
  private pending: Array<{ file: number; offset: number; bytes: Buffer }> = [];
  /** writes run one after another; each takes everything staged before it started */
  private writing: Promise<void> = Promise.resolve();
  private readonly appendHandles = new Map<number, FileHandle>();
  private readonly readFds = new Map<number, number>();
  private closed = false;

  private constructor(
    private readonly dir: string,
    file: number,
    size: number,
    private readonly fileBytes: number,
  ) {
    this.currentFile = file;
    this.nextOffset = size;
  }

  /** Opens (creating if needed) the image files under `dir`; appends continue after the newest file's end. */
  static open(dir: string, options: { fileBytes?: number } = {}): PageImageFiles {
    mkdirSync(dir, { recursive: true });
    let newest = 0;
    for (const name of readdirSync(dir)) {
      const m = FILE_NAME.exec(name);
      if (m) newest = Math.max(newest, Number(m[1]));
    }
    let size = 0;
    if (newest > 0) {
      const fd = openSync(path.join(dir, fileName(newest)), "r");
      try {
        size = fstatSync(fd).size;
      } finally {
        closeSync(fd);
      }
    }
    return new PageImageFiles(dir, Math.max(newest, 1), size, options.fileBytes ?? PAGE_IMAGE_FILE_BYTES);
  }

  /**
   * Reserves room for `bytes` and returns where they will be. They are written by the next
   * `flush()`; the caller must not modify `bytes` until then, nor store the reference before it.
   */
  stage(bytes: Buffer): PageImageRef {
    if (this.closed) throw new Error("page image files are closed");
    if (this.nextOffset > 0 && this.nextOffset + bytes.length > this.fileBytes) {
      this.currentFile++;
      this.nextOffset = 0;
    }
    const ref = { file: this.currentFile, offset: this.nextOffset, length: bytes.length };
    this.pending.push({ file: ref.file, offset: ref.offset, bytes });
    this.nextOffset += bytes.length;
    return ref;
  }

  /** Writes and syncs every image staged so far (and any staged meanwhile). */
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
      // consecutive images of one file go out in one positioned write
      let j = i + 1;
      while (j < batch.length && batch[j].file === batch[i].file && batch[j].offset === batch[j - 1].offset + batch[j - 1].bytes.length) j++;
      const file = batch[i].file;
      let handle = this.appendHandles.get(file);
      if (!handle) {
        // positioned writes (not O_APPEND): each image goes exactly where its reference points
        handle = await open(path.join(this.dir, fileName(file)), constants.O_RDWR | constants.O_CREAT, 0o600);
        if ((await handle.stat()).size === 0) newFiles.push(file);
        this.appendHandles.set(file, handle);
      }
      const buffers = batch.slice(i, j).map((p) => p.bytes);
      const expected = buffers.reduce((n, b) => n + b.length, 0);
      const { bytesWritten } = await handle.writev(buffers, batch[i].offset);
      if (bytesWritten !== expected) throw new Error(`page image file ${fileName(file)}: short write (${bytesWritten} of ${expected} bytes at ${batch[i].offset})`);
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
   * The bytes of a stored image (a new buffer, the caller's to keep or modify). Synchronous: from
   * the OS page cache a pread takes microseconds, less than a trip through libuv's thread pool; a
   * read that goes to disk holds the event loop for that one read.
   */
  read(ref: PageImageRef): Buffer {
    let fd = this.readFds.get(ref.file);
    if (fd === undefined) {
      fd = openSync(path.join(this.dir, fileName(ref.file)), "r");
      this.readFds.set(ref.file, fd);
    }
    const out = Buffer.allocUnsafe(ref.length);
    const n = readSync(fd, out, 0, ref.length, ref.offset);
    if (n !== ref.length) throw new Error(`page image file ${fileName(ref.file)} is truncated: ${n} of ${ref.length} bytes at offset ${ref.offset}`);
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.writing;
    for (const handle of this.appendHandles.values()) await handle.close();
    this.appendHandles.clear();
    for (const fd of this.readFds.values()) closeSync(fd);
    this.readFds.clear();
  }
}

function fileName(file: number): string {
  return `${String(file).padStart(8, "0")}.img`;
}
