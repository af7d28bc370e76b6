// Streaming tar (ustar) reader for BASE_BACKUP archives. It pulls chunks from a source, hands each
// entry's content to the consumer as an async iterable of views into those chunks, and never holds
// more than one chunk plus a 512-byte header. Handles pax ('x') and GNU long-name ('L'/'K') headers,
// base-256 sizes, and checks header checksums.

export type TarEntryType = "file" | "dir" | "symlink";

export interface TarEntry {
  /** Path inside the archive, without a trailing slash (e.g. "base/1/1259"). */
  path: string;
  size: number;
  mode: number;
  type: TarEntryType;
  /** Symlink target (pg_tblspc/<oid> links). */
  linkTarget?: string;
  mtime: Date;
}

export type ChunkPull = () => Promise<Buffer | null>;

export type TarEntryHandler = (entry: TarEntry, body: AsyncIterable<Buffer>) => Promise<void>;

const BLOCK = 512;
const MAX_META_BYTES = 1 << 20;

export class TarFormatError extends Error {
  override readonly name = "TarFormatError";
}

/** Buffered reader over a chunk source; hands out views, copies only to assemble headers. */
export class ByteSource {
  private buf: Buffer | null = null;
  private eof = false;

  constructor(private readonly pull: ChunkPull) {}

  /** Up to `max` bytes (at least 1), or null at end of input. */
  async read(max: number): Promise<Buffer | null> {
    while (!this.buf || this.buf.length === 0) {
      if (this.eof) return null;
      const next = await this.pull();
      if (next === null) {
        this.eof = true;
        return null;
      }
      this.buf = next;
    }
    const out = this.buf.length <= max ? this.buf : this.buf.subarray(0, max);
    this.buf = this.buf.length <= max ? null : this.buf.subarray(max);
    return out;
  }

  /** Exactly n bytes; null if the input ends before the first byte; throws if it ends midway. */
  async readExact(n: number): Promise<Buffer | null> {
    const first = await this.read(n);
    if (!first || first.length === n) return first;
    const out = Buffer.allocUnsafe(n);
    first.copy(out, 0);
    let filled = first.length;
    while (filled < n) {
      const more = await this.read(n - filled);
      if (!more) throw new TarFormatError(`archive truncated: needed ${n} bytes, got ${filled}`);
      more.copy(out, filled);
      filled += more.length;
    }
    return out;
  }

  async skip(n: number): Promise<void> {
    while (n > 0) {
      const b = await this.read(n);
      if (!b) throw new TarFormatError(`archive truncated while skipping ${n} bytes`);
      n -= b.length;
    }
  }

  /** Discards everything left. */
  async drain(): Promise<void> {
    while (await this.read(Number.MAX_SAFE_INTEGER)) {}
  }
}

/** The content of one entry; iterate at most once, and only while the entry handler runs. */
class EntryBody implements AsyncIterable<Buffer> {
  private remaining: number;
  private started = false;

  constructor(
    private readonly src: ByteSource,
    size: number,
    private readonly path: string,
  ) {
    this.remaining = size;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    if (this.started) throw new Error(`content of "${this.path}" can only be read once`);
    this.started = true;
    while (this.remaining > 0) {
      const chunk = await this.src.read(this.remaining);
      if (!chunk) throw new TarFormatError(`archive truncated inside "${this.path}" (${this.remaining} bytes missing)`);
      this.remaining -= chunk.length;
      yield chunk;
    }
  }

  /** Skips whatever the handler didn't read. */
  async finish(): Promise<void> {
    await this.src.skip(this.remaining);
    this.remaining = 0;
  }
}

/** Parses a whole archive, calling `onEntry` for each file, directory and symlink in order. */
export async function readTar(pull: ChunkPull, onEntry: TarEntryHandler): Promise<void> {
  const src = new ByteSource(pull);
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Map<string, string> | undefined;

  for (;;) {
    const header = await src.readExact(BLOCK);
    if (!header) return; // no end-of-archive marker; accept a clean end at a block boundary
    if (isZeroBlock(header)) {
      await src.drain(); // second zero block and any padding
      return;
    }
    verifyChecksum(header);
    const typeflag = header[156] === 0 ? "0" : String.fromCharCode(header[156]);
    const size = Number(pax?.get("size") ?? parseNumeric(header, 124, 12));
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;

    if (typeflag === "L" || typeflag === "K" || typeflag === "x" || typeflag === "g") {
      if (size > MAX_META_BYTES) throw new TarFormatError(`tar metadata entry of ${size} bytes is too large`);
      const meta = size > 0 ? await src.readExact(size) : Buffer.alloc(0);
      if (!meta && size > 0) throw new TarFormatError("archive truncated in a metadata entry");
      await src.skip(padding);
      if (typeflag === "L") longName = cString(meta!, 0, size);
      else if (typeflag === "K") longLink = cString(meta!, 0, size);
      else if (typeflag === "x") pax = parsePax(meta!);
      continue;
    }

    const ustarPrefix = header.toString("latin1", 257, 262) === "ustar" ? cString(header, 345, 155) : "";
    const rawName = ustarPrefix ? `${ustarPrefix}/${cString(header, 0, 100)}` : cString(header, 0, 100);
    const path = normalizePath(pax?.get("path") ?? longName ?? rawName);
    const linkTarget = pax?.get("linkpath") ?? longLink ?? cString(header, 157, 100);
    const mode = Number(parseNumeric(header, 100, 8));
    const mtime = new Date(Number(pax?.get("mtime") ?? parseNumeric(header, 136, 12)) * 1000);
    longName = longLink = pax = undefined;

    let type: TarEntryType;
    if (typeflag === "0" || typeflag === "7") type = "file";
    else if (typeflag === "5") type = "dir";
    else if (typeflag === "2") type = "symlink";
    else throw new TarFormatError(`unsupported tar entry type "${typeflag}" for "${path}"`);

    const contentSize = type === "file" ? size : 0;
    const body = new EntryBody(src, contentSize, path);
    await onEntry({ path, size: contentSize, mode, type, ...(type === "symlink" ? { linkTarget } : {}), mtime }, body);
    await body.finish();
    await src.skip(type === "file" ? padding : size + padding);
  }
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

function verifyChecksum(h: Buffer): void {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  const stored = Number(parseNumeric(h, 148, 8));
  if (stored !== sum) throw new TarFormatError(`tar header checksum mismatch (stored ${stored}, computed ${sum}) for "${cString(h, 0, 100)}"`);
}

/** Octal (NUL/space terminated) or GNU base-256 (high bit set) numeric field. */
function parseNumeric(h: Buffer, off: number, len: number): bigint {
  if (h[off] & 0x80) {
    let v = BigInt(h[off] & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(h[off + i]);
    return v;
  }
  const text = h.toString("latin1", off, off + len).replace(/\0.*$/s, "").trim();
  return text === "" ? 0n : BigInt("0o" + text);
}

function cString(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString("utf8", off, end < 0 || end > off + len ? off + len : end);
}

function normalizePath(p: string): string {
  return p.replace(/^\.\//, "").replace(/\/+$/, "");
}

/** pax records: "<len> <key>=<value>\n". */
function parsePax(b: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < b.length) {
    const space = b.indexOf(0x20, pos);
    if (space < 0) break;
    const len = Number(b.toString("latin1", pos, space));
    if (!Number.isInteger(len) || len <= 0) break;
    const record = b.toString("utf8", space + 1, pos + len - 1);
    const eq = record.indexOf("=");
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}
