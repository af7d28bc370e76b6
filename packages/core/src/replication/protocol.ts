// Frontend/backend protocol v3 framing: one chainable writer that builds every outgoing message,
// an incremental reader that cuts socket chunks into {type, body} frames (the page service's side,
// fed by 'data' events; clients reading into a reused buffer use frame-receiver.ts), and a cursor
// for parsing message bodies. No message is assembled or parsed by hand anywhere else.
import type { Lsn } from "../lsn.ts";

/** Builds one message: optional 1-byte tag, int32 length (patched by end()), then the fields. */
export class MessageWriter {
  private buf: Buffer;
  private pos = 0;
  private readonly lengthAt: number;

  constructor(tag?: string, initialSize = 64) {
    this.buf = Buffer.allocUnsafe(Math.max(initialSize, 16));
    if (tag !== undefined) {
      if (tag.length !== 1) throw new RangeError(`message tag must be one character, got "${tag}"`);
      this.buf[this.pos++] = tag.charCodeAt(0);
    }
    this.lengthAt = this.pos;
    this.pos += 4;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int8(v: number): this {
    this.ensure(1);
    this.buf.writeUInt8(v & 0xff, this.pos);
    this.pos += 1;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  /** Unsigned 64-bit (LSNs). */
  uint64(v: bigint): this {
    this.ensure(8);
    this.buf.writeBigUInt64BE(v, this.pos);
    this.pos += 8;
    return this;
  }

  /** Signed 64-bit (timestamps). */
  int64(v: bigint): this {
    this.ensure(8);
    this.buf.writeBigInt64BE(v, this.pos);
    this.pos += 8;
    return this;
  }

  /** A single ASCII byte such as a CopyData sub-type ('r', 'h'). */
  char(c: string): this {
    return this.int8(c.charCodeAt(0));
  }

  /** UTF-8 text followed by a NUL. */
  cstring(s: string): this {
    const len = Buffer.byteLength(s);
    this.ensure(len + 1);
    this.buf.write(s, this.pos, "utf8");
    this.pos += len;
    this.buf[this.pos++] = 0;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** Patches the length (which counts itself but not the tag) and returns the finished message. */
  end(): Buffer {
    this.buf.writeInt32BE(this.pos - this.lengthAt, this.lengthAt);
    return this.buf.subarray(0, this.pos);
  }
}

/** Shorthand: `message('Q').cstring(sql).end()`. */
export function message(tag?: string): MessageWriter {
  return new MessageWriter(tag);
}

export interface Frame {
  /** Message type byte as a one-character string ('R', 'E', 'd', …). */
  type: string;
  /** Message body without tag and length. A view into the received chunk when it fits in one. */
  body: Buffer;
}

/** Largest message we accept; guards against garbage or a desynchronised stream. */
const MAX_MESSAGE_BYTES = 1 << 30;

/**
 * Incremental frame reader over chunks the caller hands over for good (socket 'data' events, as
 * the page service's accepted sockets deliver them). Chunks are kept in a list (never concatenated
 * as a whole); a frame's body is a zero-copy view when it lies inside one chunk, and only the
 * bytes of that one frame are copied when it spans chunks, so memory follows what arrived, not
 * what a length field announces. Work is linear in the bytes fed.
 */
export class MessageReader {
  private chunks: Buffer[] = [];
  private head = 0; // index of the first live chunk
  private offset = 0; // read offset inside chunks[head]
  private buffered = 0;

  feed(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The next complete frame, or undefined if more bytes are needed. */
  next(): Frame | undefined {
    if (this.buffered < 5) return undefined;
    const header = this.peek(5);
    const type = String.fromCharCode(header[0]);
    const length = header.readInt32BE(1);
    if (length < 4 || length > MAX_MESSAGE_BYTES) {
      throw new ProtocolViolation(`invalid length ${length} for message type "${type}" (stream out of sync?)`);
    }
    if (this.buffered < 1 + length) return undefined;
    this.skip(5);
    const body = this.take(length - 4);
    return { type, body };
  }

  private peek(n: number): Buffer {
    const first = this.chunks[this.head];
    if (first.length - this.offset >= n) return first.subarray(this.offset, this.offset + n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (let i = this.head, off = this.offset; filled < n; i++, off = 0) {
      const c = this.chunks[i];
      const k = Math.min(n - filled, c.length - off);
      c.copy(out, filled, off, off + k);
      filled += k;
    }
    return out;
  }

  private skip(n: number): void {
    this.take(n);
  }

  private take(n: number): Buffer {
    if (n === 0) return EMPTY;
    this.buffered -= n;
    const first = this.chunks[this.head];
    let out: Buffer;
    if (first.length - this.offset >= n) {
      out = first.subarray(this.offset, this.offset + n);
      this.offset += n;
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[this.head];
        const k = Math.min(n - filled, c.length - this.offset);
        c.copy(out, filled, this.offset, this.offset + k);
        filled += k;
        this.offset += k;
        if (this.offset === c.length) this.dropHead();
      }
    }
    if (this.head < this.chunks.length && this.offset === this.chunks[this.head].length) this.dropHead();
    return out;
  }

  private dropHead(): void {
    this.chunks[this.head] = EMPTY;
    this.head++;
    this.offset = 0;
    // Compact the list now and then so it doesn't grow without bound.
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);

export class ProtocolViolation extends Error {
  constructor(message: string) {
    super(`protocol violation from primary: ${message}`);
    this.name = "ProtocolViolation";
  }
}

/** Sequential reader over one message body. */
export class BodyReader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new ProtocolViolation(`message body too short (need ${n} bytes at ${this.pos} of ${this.buf.length})`);
  }

  int8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }

  char(): string {
    return String.fromCharCode(this.int8());
  }

  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  lsn(): Lsn {
    return this.uint64();
  }

  int64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new ProtocolViolation("unterminated string in message body");
    const s = this.buf.toString("utf8", this.pos, end);
    this.pos = end + 1;
    return s;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  rest(): Buffer {
    const b = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return b;
  }
}

/** PostgreSQL timestamps: microseconds since 2000-01-01 00:00:00 UTC. */
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

export function pgTimestampNow(): bigint {
  return BigInt(Date.now() - PG_EPOCH_MS) * 1000n;
}

export function pgTimestampToDate(micros: bigint): Date {
  return new Date(Number(micros / 1000n) + PG_EPOCH_MS);
}

/** Column names of a RowDescription. */
export function parseRowDescription(body: Buffer): string[] {
  const r = new BodyReader(body);
  const n = r.int16();
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    names.push(r.cstring());
    r.bytes(18); // table oid, attnum, type oid, typlen, typmod, format
  }
  return names;
}

/** Values of a DataRow in text format (null for SQL NULL). */
export function parseDataRow(body: Buffer): (string | null)[] {
  const r = new BodyReader(body);
  const n = r.int16();
  const values: (string | null)[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    values.push(len < 0 ? null : r.bytes(len).toString("utf8"));
  }
  return values;
}
