// Cuts the bytes a client reads into protocol v3 frames (the replication connection, the page
// service client). The socket reads into one reused buffer (net's `onread`: no 64 KiB allocation
// per read), so whatever must outlive a read is copied here, once: a frame's body into a buffer of
// exactly its size. While a CopyData sink is set (fullbackup), CopyData bodies are not copied at
// all: each piece goes to the sink as a view of the read buffer, which is valid until the sink
// returns or the promise it returns settles. (protocol.ts's MessageReader serves sockets whose
// chunks are handed over for good: the page service's accepted connections.)
import { ProtocolViolation, type Frame } from "./protocol.ts";

/** Largest non-CopyData message accepted; guards against garbage or a desynchronised stream. */
const MAX_FRAME_BYTES = 1 << 30;
const EMPTY = Buffer.alloc(0);

export type CopyDataSink = (piece: Buffer) => void | Promise<void>;

export class FrameReceiver {
  /** complete frames not yet taken */
  private readonly frames: Frame[] = [];
  /** bytes of the frames not taken yet */
  private queued = 0;
  private readonly header = Buffer.alloc(5);
  private headerFill = 0;
  private frameType = "";
  /** the body being collected, for a frame that is not streamed */
  private body: Buffer | undefined;
  private bodyFill = 0;
  /** bytes left of a CopyData body that goes to the sink */
  private streaming = 0;
  /** where receive() stopped while a sink's promise was pending */
  private parked: { buf: Buffer; pos: number; end: number } | undefined;
  sink: CopyDataSink | undefined;

  /**
   * @param onFrames called after bytes completed one or more frames
   * @param onError a sink failed, or the stream broke while a sink was pending (receive() itself
   *   throws a ProtocolViolation on a broken stream)
   */
  constructor(private readonly onFrames: () => void, private readonly onError: (err: Error) => void) {}

  /** Bytes received but not yet taken as frames (for flow control). */
  get bufferedBytes(): number {
    return this.queued + this.bodyFill;
  }

  /** The next complete frame, if any. */
  next(): Frame | undefined {
    const frame = this.frames.shift();
    if (frame) this.queued -= frame.body.length;
    return frame;
  }

  /**
   * Takes bytes [pos, end) of `buf`. Returns false when a sink returned a promise: the caller must
   * not overwrite `buf` (pause the socket) until `resumed` is called back.
   */
  receive(buf: Buffer, pos: number, end: number, resumed: () => void): boolean {
    const before = this.frames.length;
    try {
      while (pos < end) {
        if (this.streaming > 0) {
          const n = Math.min(this.streaming, end - pos);
          const piece = buf.subarray(pos, pos + n);
          pos += n;
          this.streaming -= n;
          const sink = this.sink;
          if (!sink) continue; // the sink went away (its error was reported): drop the rest
          let pending: void | Promise<void>;
          try {
            pending = sink(piece);
          } catch (err) {
            this.failSink(err as Error);
            continue;
          }
          if (pending instanceof Promise) {
            this.parked = { buf, pos, end };
            pending.then(
              () => this.unpark(resumed),
              (err) => {
                this.failSink(err as Error);
                this.unpark(resumed);
              },
            );
            return false;
          }
        } else if (this.body) {
          const n = Math.min(this.body.length - this.bodyFill, end - pos);
          buf.copy(this.body, this.bodyFill, pos, pos + n);
          pos += n;
          this.bodyFill += n;
          if (this.bodyFill === this.body.length) {
            this.frames.push({ type: this.frameType, body: this.body });
            this.queued += this.body.length;
            this.body = undefined;
            this.bodyFill = 0;
          }
        } else {
          const n = Math.min(5 - this.headerFill, end - pos);
          buf.copy(this.header, this.headerFill, pos, pos + n);
          pos += n;
          this.headerFill += n;
          if (this.headerFill === 5) this.startFrame();
        }
      }
      return true;
    } finally {
      if (this.frames.length !== before) this.onFrames();
    }
  }

  private startFrame(): void {
    this.headerFill = 0;
    this.frameType = String.fromCharCode(this.header[0]);
    const length = this.header.readInt32BE(1);
    if (length < 4) throw new ProtocolViolation(`invalid length ${length} for message type "${this.frameType}" (stream out of sync?)`);
    const bodyLength = length - 4;
    if (this.frameType === "d" && this.sink) {
      this.streaming = bodyLength;
      return;
    }
    if (bodyLength > MAX_FRAME_BYTES) throw new ProtocolViolation(`invalid length ${length} for message type "${this.frameType}" (stream out of sync?)`);
    if (bodyLength === 0) this.frames.push({ type: this.frameType, body: EMPTY });
    else {
      this.body = Buffer.allocUnsafe(bodyLength);
      this.bodyFill = 0;
    }
  }

  private unpark(resumed: () => void): void {
    const parked = this.parked!;
    this.parked = undefined;
    let more: boolean;
    try {
      more = this.receive(parked.buf, parked.pos, parked.end, resumed);
    } catch (err) {
      this.onError(err as Error);
      return;
    }
    if (more) resumed();
  }

  private failSink(err: Error): void {
    this.sink = undefined;
    this.onError(err);
  }
}
