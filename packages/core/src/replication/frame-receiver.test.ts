import { describe, expect, it } from "vitest";
import { message } from "./protocol.ts";
import { FrameReceiver } from "./frame-receiver.ts";

/** A CopyOut exchange: CopyOutResponse, CopyData messages of various sizes, CopyDone, CommandComplete, ReadyForQuery. */
function exchange(): { wire: Buffer; copyData: Buffer } {
  const pieces: Buffer[] = [];
  const bodies: Buffer[] = [];
  pieces.push(message("H").int8(0).int16(0).end());
  for (const size of [1, 0, 300, 8192 * 15, 7]) {
    const body = Buffer.alloc(size);
    for (let i = 0; i < size; i++) body[i] = (i * 31 + size) & 0xff;
    bodies.push(body);
    pieces.push(message("d").bytes(body).end());
  }
  pieces.push(message("c").end(), message("C").cstring("SELECT 1").end(), message("Z").int8(0x49).end());
  return { wire: Buffer.concat(pieces), copyData: Buffer.concat(bodies) };
}

/** Feeds `wire` through one reused buffer of `readSize` bytes, as the socket does. */
async function feed(receiver: FrameReceiver, wire: Buffer, readSize: number): Promise<void> {
  const readBuffer = Buffer.alloc(readSize);
  for (let at = 0; at < wire.length; ) {
    const n = Math.min(readSize, wire.length - at);
    wire.copy(readBuffer, 0, at, at + n);
    at += n;
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    if (!receiver.receive(readBuffer, 0, n, resume)) await resumed;
    readBuffer.fill(0xee); // the next read overwrites the buffer
  }
}

describe("FrameReceiver", () => {
  it("copies whole frames out of a reused read buffer, whatever the read size", async () => {
    const { wire } = exchange();
    for (const readSize of [1, 2, 5, 6, 4096, 65536, wire.length]) {
      const receiver = new FrameReceiver(() => {}, (err) => { throw err; });
      await feed(receiver, wire, readSize);
      const frames = [];
      for (let f = receiver.next(); f; f = receiver.next()) frames.push(f);
      expect(frames.map((f) => f.type).join("")).toBe("HdddddcCZ");
      expect(frames[4].body.length).toBe(8192 * 15);
      expect(frames[4].body[100]).toBe((100 * 31 + 8192 * 15) & 0xff);
      expect(frames[7].body.toString("latin1")).toBe("SELECT 1\0");
    }
  });

  it("streams CopyData bodies to a sink, pausing the reads while the sink's promise is pending", async () => {
    const { wire, copyData } = exchange();
    for (const readSize of [3, 1000, 65536]) {
      const receiver = new FrameReceiver(() => {}, (err) => { throw err; });
      const got: Buffer[] = [];
      let busy = false;
      receiver.sink = (piece) => {
        expect(busy).toBe(false);
        got.push(Buffer.from(piece));
        if (got.length % 2) return; // every other piece synchronously
        busy = true;
        return new Promise<void>((resolve) => setImmediate(() => { busy = false; resolve(); }));
      };
      await feed(receiver, wire, readSize);
      expect(Buffer.concat(got).equals(copyData)).toBe(true);
      const types = [];
      for (let f = receiver.next(); f; f = receiver.next()) types.push(f.type);
      expect(types.join("")).toBe("HcCZ");
    }
  });

  it("reports a failing sink and drops the rest of its data, and refuses a broken length", async () => {
    const { wire } = exchange();
    const errors: Error[] = [];
    const receiver = new FrameReceiver(() => {}, (err) => errors.push(err));
    receiver.sink = async () => {
      throw new Error("disk full");
    };
    await feed(receiver, wire, 4096);
    expect(errors.map((e) => e.message)).toEqual(["disk full"]);
    expect(receiver.sink).toBeUndefined();

    const broken = new FrameReceiver(() => {}, () => {});
    expect(() => broken.receive(Buffer.from([0x44, 0, 0, 0, 2]), 0, 5, () => {})).toThrow(/invalid length 2 for message type "D"/);
  });
});
