// Streaming tar (ustar) writer for the full backup. Entries are written one after another to an
// async sink; a file's content is pushed in chunks of any size and padded to 512 bytes when its
// declared size is reached, so nothing larger than one chunk is ever held. The reader side is
// replication/tar.ts.
import type { Writable } from "node:stream";

const BLOCK = 512;
const ZERO_BLOCKS = Buffer.alloc(2 * BLOCK);
/** largest size the 11 octal digits of a ustar header can express (8 GiB - 1) */
const MAX_USTAR_SIZE = 8 ** 11 - 1;

/**
 * Takes the archive's bytes in order; the promise resolves when the sink can take more. With
 * `reuse`, the caller will overwrite `chunk` later: the promise then resolves only once the sink
 * is done with it (written, or copied), and the caller may hand over more chunks before that.
 */
export type TarSink = (chunk: Buffer, reuse?: boolean) => Promise<void>;

export class TarWriteError extends Error {
  override readonly name = "TarWriteError";
}

/** Bytes an entry occupies in the archive: its header plus its content padded to 512. */
export function tarEntrySize(contentSize: number): number {
  return BLOCK + Math.ceil(contentSize / BLOCK) * BLOCK;
}

/** Bytes of the end-of-archive marker (two zero blocks). */
export const TAR_TRAILER_SIZE = 2 * BLOCK;

/** streams given an 'error' listener by toTarSink (one each, however many backups they carry) */
const quieted = new WeakSet<Writable>();

/**
 * Adapts a Writable (honouring backpressure; its errors surface) or an async chunk callback to a
 * sink. A chunk to be reused is done when the Writable's write callback fires. The Writable is
 * not ended: the caller owns it.
 */
export function toTarSink(out: Writable | TarSink): TarSink {
  if (typeof out === "function") return out;
  // a write error reaches the backup through the write callbacks (and the next write); without a
  // listener the stream's 'error' event (EPIPE when the reader is gone) would also end the process
  if (!quieted.has(out)) {
    quieted.add(out);
    out.on("error", () => {});
  }
  return (chunk, reuse) =>
    new Promise<void>((resolve, reject) => {
      if (out.destroyed || out.writableEnded) return reject(new TarWriteError("output stream is closed"));
      if (reuse) {
        out.write(chunk, (err) => (err ? reject(err) : resolve()));
        return;
      }
      const onClose = () => {
        out.off("drain", onDrain);
        reject(new TarWriteError("output stream closed"));
      };
      const onDrain = () => {
        out.off("close", onClose);
        resolve();
      };
      const flowing = out.write(chunk, (err) => {
        if (err) reject(err); // a no-op once settled
      });
      if (flowing) return resolve();
      out.once("drain", onDrain);
      out.once("close", onClose);
    });
}

function writeOctal(header: Buffer, value: number, offset: number, width: number): void {
  // width - 1 octal digits, then NUL
  header.write(value.toString(8).padStart(width - 1, "0"), offset, width - 1, "ascii");
  header[offset + width - 1] = 0;
}

/** Splits a path into ustar's prefix (≤155) and name (≤100) fields. */
function splitPath(path: string): { name: string; prefix: string } {
  if (Buffer.byteLength(path) <= 100) return { name: path, prefix: "" };
  for (let i = path.indexOf("/"); i >= 0; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name.length > 0) return { name, prefix };
  }
  throw new TarWriteError(`path too long for a ustar header: ${path}`);
}

function header(path: string, type: "file" | "dir", size: number, mode: number, mtime: number): Buffer {
  if (size > MAX_USTAR_SIZE) throw new TarWriteError(`${path}: ${size} bytes is too large for a ustar header`);
  const h = Buffer.alloc(BLOCK);
  const { name, prefix } = splitPath(type === "dir" ? `${path}/` : path);
  h.write(name, 0, 100, "utf8");
  writeOctal(h, mode, 100, 8);
  writeOctal(h, 0, 108, 8); // uid
  writeOctal(h, 0, 116, 8); // gid
  writeOctal(h, size, 124, 12);
  writeOctal(h, mtime, 136, 12);
  h.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  h[156] = type === "dir" ? 0x35 /* '5' */ : 0x30 /* '0' */;
  h.write("ustar\0", 257, 6, "ascii");
  h.write("00", 263, 2, "ascii");
  h.write(prefix, 345, 155, "utf8");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i];
  h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "ascii");
  return h;
}

export class TarWriter {
  /** bytes of the archive so far (handed to the sink, or queued for it in order) */
  written = 0;
  private open: { path: string; remaining: number; size: number } | undefined;
  private readonly mtime = Math.floor(Date.now() / 1000);
  /**
   * The sink's calls, in archive order: a chunk whose bytes are still being made (writeWhenReady)
   * holds back the ones after it, while its caller goes on.
   */
  private queue: Promise<void> = Promise.resolve();
  /** the first error of a queued write: nothing after it reaches the sink */
  private failure: { error: unknown } | undefined;
  /** writeWhenReady chunks not yet handed to the sink */
  private deferred = 0;

  constructor(private readonly sink: TarSink) {}

  private emit(chunk: Buffer | Promise<Buffer>, length: number, reuse = false): Promise<void> {
    this.written += length;
    // (a chunk still being made that fails is reported through the queue, not as unhandled)
    if (chunk instanceof Promise) chunk.catch(() => {});
    const sink = this.sink;
    const done = this.queue.then(async () => {
      if (this.failure) throw this.failure.error;
      const bytes = await chunk;
      if (bytes.length !== length) throw new TarWriteError(`a chunk of ${bytes.length} bytes where ${length} were announced`);
      await sink(bytes, reuse);
    });
    this.queue = done.catch((error: unknown) => {
      this.failure ??= { error };
    });
    return done;
  }

  private assertNoOpenFile(): void {
    if (this.open) throw new TarWriteError(`${this.open.path}: ${this.open.remaining} of ${this.open.size} bytes not written yet`);
  }

  async directory(path: string, mode = 0o700): Promise<void> {
    this.assertNoOpenFile();
    await this.emitSmall(header(path, "dir", 0, mode, this.mtime));
  }

  /** A whole file from one buffer. */
  async file(path: string, content: Buffer, mode = 0o600): Promise<void> {
    await this.beginFile(path, content.length, mode);
    if (content.length) await this.write(content);
    await this.endFile();
  }

  /** Starts a file of `size` bytes; its content follows through write(), then endFile(). */
  async beginFile(path: string, size: number, mode = 0o600): Promise<void> {
    this.assertNoOpenFile();
    await this.emitSmall(header(path, "file", size, mode, this.mtime));
    this.open = { path, remaining: size, size };
  }

  /**
   * Content of the open file. Without `reuse` the sink may keep the buffer: don't modify it
   * afterwards. With `reuse`, resolves once the sink is done with it (see TarSink).
   */
  async write(chunk: Buffer, reuse = false): Promise<void> {
    this.reserve(chunk.length);
    await this.emit(chunk, chunk.length, reuse);
  }

  /**
   * Content of the open file whose bytes are not ready yet (pages redo workers are still
   * rebuilding): `length` bytes, taken in their place in the archive once `ready` gives them.
   * Later entries and writes queue behind it, so the caller may go on reading meanwhile. Resolves
   * as write() does; rejects with `ready`'s error, and every later write then fails too.
   */
  writeWhenReady(ready: Promise<Buffer>, length: number, reuse = false): Promise<void> {
    this.reserve(length);
    this.deferred++;
    const done = this.emit(ready, length, reuse);
    done.then(
      () => this.deferred--,
      () => this.deferred--,
    );
    return done;
  }

  /**
   * Emits a header or padding: awaited as a write is, except behind a chunk that is not ready
   * yet, where the caller goes on (the few bytes wait in the queue; an error fails the writes
   * after it, and finish()).
   */
  private async emitSmall(bytes: Buffer): Promise<void> {
    const done = this.emit(bytes, bytes.length);
    if (this.deferred === 0) return done;
    done.catch(() => {});
  }

  private reserve(length: number): void {
    if (!this.open) throw new TarWriteError("write() without beginFile()");
    if (length > this.open.remaining) throw new TarWriteError(`${this.open.path}: content exceeds the declared ${this.open.size} bytes`);
    this.open.remaining -= length;
  }

  /** Closes the open file (its content must be complete) and pads it to a 512-byte boundary. */
  async endFile(): Promise<void> {
    const open = this.open;
    if (!open) throw new TarWriteError("endFile() without beginFile()");
    if (open.remaining !== 0) throw new TarWriteError(`${open.path}: ${open.remaining} of ${open.size} bytes missing`);
    this.open = undefined;
    const pad = (BLOCK - (open.size % BLOCK)) % BLOCK;
    if (pad) await this.emitSmall(ZERO_BLOCKS.subarray(0, pad));
  }

  /** Writes the end-of-archive marker. */
  async finish(): Promise<void> {
    this.assertNoOpenFile();
    await this.emit(ZERO_BLOCKS, ZERO_BLOCKS.length);
  }
}
