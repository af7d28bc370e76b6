// A typed client for the page service (tests, benchmarks, tools): startup, pagestream with
// pipelined requests answered in order, and fullbackup as a stream of tar chunks.
import net from "node:net";
import type { Lsn } from "../lsn.ts";
import type { ForkNumber, RelTag } from "../reltag.ts";
import { message, type Frame } from "../replication/protocol.ts";
import { parseServerFields } from "../replication/errors.ts";
import {
  decodeResponse, encodeRequest, LATEST_LSN, RequestTag, ResponseTag,
  type PagestreamRequest, type PagestreamResult, type PagestreamSlruKind, type PagestreamVersion,
} from "./messages.ts";
import { FrameReceiver } from "../replication/frame-receiver.ts";

/** Socket reads land in one buffer of this size per connection, reused for every read. */
const READ_BUFFER_BYTES = 256 * 1024;

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

export class PageServiceError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
  }
}

export interface ReadAt {
  /** default: latest */
  lsn?: Lsn;
  notModifiedSince?: Lsn;
}

export class PageServiceClient {
  private readonly receiver: FrameReceiver;
  private waiters: Array<() => void> = [];
  private error: Error | undefined;
  private reqid = 0n;
  private socket!: net.Socket;

  private constructor() {
    this.receiver = new FrameReceiver(() => this.wake(), (err) => this.fail(err));
  }

  /** Takes one socket read; false pauses the socket (a fullbackup sink is busy with the buffer). */
  private received(buf: Buffer, n: number): boolean {
    try {
      return this.receiver.receive(buf, 0, n, () => this.socket.resume());
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
  }

  private fail(err: Error) {
    this.error ??= err;
    this.socket.destroy();
    this.wake();
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** The next message from the server. */
  async frame(): Promise<Frame> {
    for (;;) {
      const frame = this.receiver.next();
      if (frame) return frame;
      if (this.error) throw this.error;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  static async connect(host: string, port: number): Promise<PageServiceClient> {
    const client = new PageServiceClient();
    const socket = net.connect({ port, host, onread: { buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES), callback: (n: number, buf: Buffer) => client.received(buf, n) } });
    client.socket = socket;
    socket.setNoDelay(true);
    socket.on("error", (err) => {
      client.error ??= err;
      client.wake();
    });
    socket.on("close", () => {
      client.error ??= new PageServiceError("page service connection closed");
      client.wake();
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const params = Buffer.from("user\0strata\0application_name\0strata-client\0\0");
    const startup = Buffer.alloc(8);
    startup.writeInt32BE(8 + params.length, 0);
    startup.writeInt32BE(196608, 4);
    socket.write(Buffer.concat([startup, params]));
    await client.untilReady();
    return client;
  }

  /** Reads messages until ReadyForQuery; throws the first ErrorResponse. */
  private async untilReady(): Promise<Frame[]> {
    const frames: Frame[] = [];
    let error: PageServiceError | undefined;
    for (;;) {
      const frame = await this.frame();
      if (frame.type === "E") {
        const fields = parseServerFields(frame.body);
        error ??= new PageServiceError(fields.M ?? "page service error", fields.C);
        if (fields.S === "FATAL") throw error;
      } else if (frame.type === "Z") {
        if (error) throw error;
        return frames;
      } else frames.push(frame);
    }
  }

  /** Runs a simple command that returns no rows (e.g. `set …`). */
  async command(sql: string): Promise<void> {
    this.socket.write(message("Q").cstring(sql).end());
    await this.untilReady();
  }

  async pagestream(tenantId: string, timelineId: string, version: PagestreamVersion = 2): Promise<Pagestream> {
    this.socket.write(message("Q").cstring(`pagestream_v${version} ${tenantId} ${timelineId}`).end());
    const frame = await this.frame();
    if (frame.type === "E") {
      const fields = parseServerFields(frame.body);
      await this.untilReady().catch(() => {});
      throw new PageServiceError(fields.M ?? "pagestream refused", fields.C);
    }
    if (frame.type !== "W") throw new PageServiceError(`expected CopyBothResponse, got "${frame.type}"`);
    return new Pagestream(this, version, () => this.nextReqid());
  }

  private nextReqid() {
    return ++this.reqid;
  }

  /**
   * Streams `fullbackup`: calls `onChunk` with each piece of the tar, in order. A piece is a view
   * of the connection's read buffer, valid until `onChunk` returns or the promise it returns
   * settles (reading pauses until then): copy what must live longer.
   */
  async fullbackup(tenantId: string, timelineId: string, lsn: string | undefined, onChunk: (chunk: Buffer) => void | Promise<void>): Promise<void> {
    this.receiver.sink = onChunk;
    try {
      this.socket.write(message("Q").cstring(`fullbackup ${tenantId} ${timelineId}${lsn ? ` ${lsn}` : ""}`).end());
      let error: PageServiceError | undefined;
      for (;;) {
        const frame = await this.frame();
        if (frame.type === "E") {
          const fields = parseServerFields(frame.body);
          error ??= new PageServiceError(fields.M ?? "fullbackup failed", fields.C);
        } else if (frame.type === "Z") {
          if (error) throw error;
          return;
        }
      }
    } finally {
      this.receiver.sink = undefined;
    }
  }

  write(buf: Buffer) {
    this.socket.write(buf);
  }

  /** Writes raw bytes (for tests of malformed input). */
  writeRaw(buf: Buffer) {
    this.socket.write(buf);
  }

  close() {
    if (!this.socket.destroyed) this.socket.end(message("X").end());
  }
}

export class Pagestream {
  private pending: Array<{ request: PagestreamRequest; resolve: (r: PagestreamResult) => void; reject: (e: Error) => void }> = [];
  private reading = false;

  constructor(private readonly client: PageServiceClient, readonly version: PagestreamVersion, private readonly reqid: () => bigint) {}

  /** Sends a request now (pipelined) and resolves with its response, in request order. */
  send(request: DistributiveOmit<PagestreamRequest, "reqid">): Promise<PagestreamResult> {
    const full = { ...request, reqid: this.reqid() } as PagestreamRequest;
    this.client.write(message("d").bytes(encodeRequest(full, this.version)).end());
    const promise = new Promise<PagestreamResult>((resolve, reject) => this.pending.push({ request: full, resolve, reject }));
    void this.pump();
    return promise;
  }

  /** Sends raw CopyData (for tests of malformed requests); resolves with the response. */
  sendRaw(body: Buffer, decodeAs: PagestreamRequest): Promise<PagestreamResult> {
    this.client.write(message("d").bytes(body).end());
    const promise = new Promise<PagestreamResult>((resolve, reject) => this.pending.push({ request: decodeAs, resolve, reject }));
    void this.pump();
    return promise;
  }

  private async pump() {
    if (this.reading) return;
    this.reading = true;
    try {
      while (this.pending.length) {
        let frame;
        try {
          frame = await this.client.frame();
        } catch (err) {
          for (const p of this.pending.splice(0)) p.reject(err as Error);
          return;
        }
        if (frame.type !== "d") {
          const err = new PageServiceError(frame.type === "E" ? (parseServerFields(frame.body).M ?? "error") : `unexpected message "${frame.type}"`);
          for (const p of this.pending.splice(0)) p.reject(err);
          return;
        }
        const next = this.pending.shift()!;
        next.resolve(decodeResponse(frame.body, next.request, this.version));
      }
    } finally {
      this.reading = false;
    }
  }

  private header(at: ReadAt = {}) {
    const requestLsn = at.lsn ?? LATEST_LSN;
    return { requestLsn, notModifiedSince: at.notModifiedSince ?? (at.lsn ?? 0n) };
  }

  private async expect<T extends PagestreamResult["tag"]>(promise: Promise<PagestreamResult>, tag: T): Promise<Extract<PagestreamResult, { tag: T }>> {
    const result = await promise;
    if (result.tag === ResponseTag.Error) throw new PageServiceError(result.message);
    if (result.tag !== tag) throw new PageServiceError(`unexpected response tag ${result.tag}`);
    return result as Extract<PagestreamResult, { tag: T }>;
  }

  async exists(rel: RelTag, fork: ForkNumber, at?: ReadAt): Promise<boolean> {
    return (await this.expect(this.send({ tag: RequestTag.Exists, rel, fork, ...this.header(at) }), ResponseTag.Exists)).exists;
  }

  async nblocks(rel: RelTag, fork: ForkNumber, at?: ReadAt): Promise<number> {
    return (await this.expect(this.send({ tag: RequestTag.Nblocks, rel, fork, ...this.header(at) }), ResponseTag.Nblocks)).blocks;
  }

  async getPage(rel: RelTag, fork: ForkNumber, block: number, at?: ReadAt): Promise<Buffer> {
    return (await this.expect(this.send({ tag: RequestTag.GetPage, rel, fork, block, ...this.header(at) }), ResponseTag.GetPage)).page;
  }

  async dbSize(dbNode: number, at?: ReadAt): Promise<bigint> {
    return (await this.expect(this.send({ tag: RequestTag.DbSize, dbNode, ...this.header(at) }), ResponseTag.DbSize)).bytes;
  }

  async slruSegment(kind: PagestreamSlruKind, segno: number, at?: ReadAt): Promise<Buffer> {
    return (await this.expect(this.send({ tag: RequestTag.GetSlruSegment, kind, segno, ...this.header(at) }), ResponseTag.GetSlruSegment)).pages;
  }
}
