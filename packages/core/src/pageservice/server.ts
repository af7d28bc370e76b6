// The page service: PostgreSQL wire protocol on a TCP port (default 127.0.0.1:64000). A client
// sends `pagestream_v2|v3 <tenant> <timeline>` and then GetPage/Exists/Nblocks/DbSize/
// GetSlruSegment requests as CopyData (messages.ts); `fullbackup <tenant> <timeline> [lsn]` streams
// a tar as CopyOut. A bad request gets an error and the stream stays usable; a broken frame only
// closes that connection.
import net from "node:net";
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";
import { BLCKSZ } from "../reltag.ts";
import { message, MessageReader, ProtocolViolation } from "../replication/protocol.ts";
import { SlruKind } from "../storage/keys.ts";
import type { TenantManager, TimelineHandle } from "../tenant/tenant-manager.ts";
import { WaitLsnTimeoutError } from "../tenant/tenant-manager.ts";
import { UnsupportedRecordError } from "../redo/types.ts";
import {
  decodeRequest, encodeResponseFrame, LATEST_LSN, MalformedRequestError, PagestreamSlruKind, RequestTag, ResponseTag,
  type PagestreamRequest, type PagestreamResult, type PagestreamVersion,
} from "./messages.ts";

const SSL_REQUEST = 80877103;
const GSS_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;
const MAX_STARTUP = 10_000;
const MAX_IN_FLIGHT = 32;

export class PageServiceRequestError extends Error {}

export interface PageServiceOptions {
  manager: TenantManager;
  /** how long a request for an LSN not yet ingested waits (default 60 s) */
  waitLsnMs?: number;
  /** streams a full backup tar of a timeline at an LSN (absent: the command is refused) */
  fullBackup?: (handle: TimelineHandle, lsn: Lsn | undefined, write: (chunk: Buffer, reuse?: boolean) => Promise<void>) => Promise<void>;
  onRequest?: (kind: string, seconds: number, ok: boolean) => void;
  onConnection?: (delta: 1 | -1) => void;
  log?: (level: "debug" | "warn", message: string, fields?: Record<string, unknown>) => void;
}

function errorResponse(code: string, text: string, severity = "ERROR"): Buffer {
  return message("E").char("S").cstring(severity).char("V").cstring(severity).char("C").cstring(code).char("M").cstring(text).int8(0).end();
}

const READY = message("Z").char("I").end();

const SLRU_KINDS: Record<PagestreamSlruKind, SlruKind> = {
  [PagestreamSlruKind.Clog]: SlruKind.Clog,
  [PagestreamSlruKind.MultiXactMembers]: SlruKind.MultiXactMembers,
  [PagestreamSlruKind.MultiXactOffsets]: SlruKind.MultiXactOffsets,
};

const REQUEST_NAMES = ["exists", "nblocks", "get_page", "db_size", "get_slru_segment"];

/** Serves pagestream requests for one timeline (exported for tests and in-process use). A GetPage result may be the page cache's own buffer: read it, do not modify it. */
export async function handleRequest(options: PageServiceOptions, handle: TimelineHandle, request: PagestreamRequest): Promise<PagestreamResult> {
  if (request.requestLsn === 0n) throw new PageServiceRequestError("invalid request LSN 0/0");
  if (request.requestLsn < request.notModifiedSince) {
    throw new PageServiceRequestError(`request LSN ${formatLsn(request.requestLsn)} is below not_modified_since ${formatLsn(request.notModifiedSince)}`);
  }
  let markers = await handle.store.readMarkers();
  let lsn: Lsn;
  if (request.notModifiedSince > markers.lastRecordLsn) {
    try {
      markers = await options.manager.waitForLsn(handle.tenantId, handle.timelineId, request.notModifiedSince, options.waitLsnMs ?? 60_000);
    } catch (err) {
      if (err instanceof WaitLsnTimeoutError) throw new PageServiceRequestError(err.message);
      throw err;
    }
    lsn = request.notModifiedSince;
  } else {
    lsn = request.requestLsn < markers.lastRecordLsn ? request.requestLsn : markers.lastRecordLsn;
  }
  if (lsn < markers.startLsn) throw new PageServiceRequestError(`LSN ${formatLsn(lsn)} is below the first readable LSN ${formatLsn(markers.startLsn)} of this timeline`);
  const reader = handle.reader;
  switch (request.tag) {
    case RequestTag.Exists:
      return { tag: ResponseTag.Exists, exists: await reader.relExists(request.rel, request.fork, lsn) };
    case RequestTag.Nblocks: {
      const size = await reader.relSize(request.rel, request.fork, lsn);
      if (size === undefined) throw new PageServiceRequestError(`relation ${request.rel.spcNode}/${request.rel.dbNode}/${request.rel.relNode} fork ${request.fork} does not exist at ${formatLsn(lsn)}`);
      return { tag: ResponseTag.Nblocks, blocks: size };
    }
    case RequestTag.GetPage: {
      const size = await reader.relSize(request.rel, request.fork, lsn);
      // like Neon: a block past the end (e.g. of a fork extended without WAL) reads as zeros
      if (size === undefined || request.block >= size) return { tag: ResponseTag.GetPage, page: Buffer.alloc(BLCKSZ) };
      // the page is only copied into the response
      return { tag: ResponseTag.GetPage, page: await reader.getPage(request.rel, request.fork, request.block, lsn, { readOnly: true }) };
    }
    case RequestTag.DbSize:
      return { tag: ResponseTag.DbSize, bytes: BigInt(await reader.dbSize(1663, request.dbNode, lsn)) };
    case RequestTag.GetSlruSegment: {
      const kind = SLRU_KINDS[request.kind];
      const pages = (await reader.slruSegmentSize(kind, request.segno, lsn)) ?? 0;
      const out = Buffer.alloc(pages * BLCKSZ);
      for (let block = 0; block < pages; block++) (await reader.getSlruPage(kind, request.segno, block, lsn)).copy(out, block * BLCKSZ);
      return { tag: ResponseTag.GetSlruSegment, pages: out };
    }
  }
}

class Connection {
  private startupBuffer: Buffer | undefined = Buffer.alloc(0);
  private readonly reader = new MessageReader();
  private stream: { handle: TimelineHandle; version: PagestreamVersion } | undefined;
  private busy = false;
  private closed = false;

  constructor(private readonly socket: net.Socket, private readonly options: PageServiceOptions) {
    socket.setNoDelay(true);
    socket.on("data", (chunk) => this.onData(chunk));
    socket.on("error", (err) => options.log?.("debug", "page service connection error", { err: err.message }));
    socket.on("close", () => {
      this.closed = true;
      options.onConnection?.(-1);
    });
    options.onConnection?.(1);
  }

  private corked = false;

  private send(buf: Buffer) {
    if (this.closed) return;
    // responses finished in the same tick go out in one write (pipelined clients send many requests)
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(buf);
  }

  private fatal(code: string, text: string) {
    if (!this.closed) this.socket.end(errorResponse(code, text, "FATAL"));
    this.closed = true;
  }

  private onData(chunk: Buffer) {
    if (this.startupBuffer) {
      this.startupBuffer = Buffer.concat([this.startupBuffer, chunk]);
      while (this.startupBuffer && this.startupBuffer.length >= 8) {
        const length = this.startupBuffer.readInt32BE(0);
        if (length < 8 || length > MAX_STARTUP) return this.fatal("08P01", `invalid startup packet length ${length}`);
        if (this.startupBuffer.length < length) return;
        const code = this.startupBuffer.readInt32BE(4);
        const rest = this.startupBuffer.subarray(length);
        this.startupBuffer = rest;
        if (code === SSL_REQUEST || code === GSS_REQUEST) {
          this.send(Buffer.from("N")); // loopback service: no TLS
          continue;
        }
        if (code === CANCEL_REQUEST) return this.socket.end();
        if (code !== PROTOCOL_3) return this.fatal("08P01", `unsupported frontend protocol ${code >> 16}.${code & 0xffff}`);
        this.startupBuffer = undefined;
        this.send(
          Buffer.concat([
            message("R").int32(0).end(),
            message("S").cstring("server_version").cstring("15.0 (strata page service)").end(),
            message("S").cstring("client_encoding").cstring("UTF8").end(),
            message("S").cstring("standard_conforming_strings").cstring("on").end(),
            message("S").cstring("DateStyle").cstring("ISO, MDY").end(),
            message("S").cstring("integer_datetimes").cstring("on").end(),
            READY,
          ]),
        );
        if (rest.length) this.reader.feed(rest);
        break;
      }
      if (this.startupBuffer) return;
    } else {
      this.reader.feed(chunk);
    }
    void this.drain();
  }

  private async drain() {
    if (this.busy) return;
    this.busy = true;
    try {
      for (;;) {
        if (this.closed) return;
        let frame;
        try {
          frame = this.reader.next();
        } catch (err) {
          if (err instanceof ProtocolViolation) return this.fatal("08P01", err.message);
          throw err;
        }
        if (!frame) return;
        if (frame.type === "X") {
          await this.tail;
          return void this.socket.end();
        }
        if (this.stream) {
          if (frame.type === "d") await this.enqueuePagestream(frame.body);
          else if (frame.type === "c") {
            await this.tail;
            // CopyDone from the client: end of the stream
            this.stream = undefined;
            this.send(Buffer.concat([message("C").cstring("COPY 0").end(), READY]));
          } else {
            await this.tail;
            return this.fatal("08P01", `unexpected message "${frame.type}" during pagestream`);
          }
          continue;
        }
        if (frame.type === "Q") await this.onQuery(frame.body.toString("utf8").replace(/\0+$/, ""));
        else this.send(Buffer.concat([errorResponse("08P01", `unsupported message type "${frame.type}"; use the simple query protocol`), READY]));
      }
    } catch (err) {
      this.options.log?.("warn", "page service connection failed", { err: (err as Error).message });
      this.fatal("XX000", (err as Error).message);
    } finally {
      this.busy = false;
    }
  }

  private resolve(tenantId: string | undefined, timelineId: string | undefined): TimelineHandle {
    if (!tenantId || !timelineId || !/^[0-9a-f]{32}$/.test(tenantId) || !/^[0-9a-f]{32}$/.test(timelineId)) {
      throw new PageServiceRequestError("expected <tenant_id> <timeline_id> as 32 hex characters each");
    }
    const handle = this.options.manager.get(tenantId, timelineId);
    if (!handle) throw new PageServiceRequestError(`tenant ${tenantId} has no timeline ${timelineId} on this pageserver`);
    return handle;
  }

  private async onQuery(query: string) {
    const words = query.trim().split(/\s+/);
    const command = (words[0] ?? "").toLowerCase();
    try {
      if (command === "") {
        this.send(Buffer.concat([message("I").end(), READY]));
      } else if (command === "pagestream_v2" || command === "pagestream_v3") {
        if (words.length !== 3) throw new PageServiceRequestError(`usage: ${command} <tenant_id> <timeline_id>`);
        this.stream = { handle: this.resolve(words[1], words[2]), version: command === "pagestream_v3" ? 3 : 2 };
        this.send(message("W").int8(0).int16(0).end());
      } else if (command === "fullbackup") {
        if (words.length < 3 || words.length > 4) throw new PageServiceRequestError("usage: fullbackup <tenant_id> <timeline_id> [lsn]");
        const handle = this.resolve(words[1], words[2]);
        let lsn: Lsn | undefined;
        if (words[3]) {
          try {
            lsn = parseLsn(words[3]);
          } catch (err) {
            throw new PageServiceRequestError((err as Error).message);
          }
        }
        if (!this.options.fullBackup) throw new PageServiceRequestError("fullbackup is not available on this pageserver");
        let started = false;
        const write = async (chunk: Buffer, reuse?: boolean) => {
          if (!started) {
            this.send(message("H").int8(0).int16(0).end());
            started = true;
          }
          if (this.closed) throw new Error("client went away");
          // the CopyData header and the chunk go out as one write without copying the chunk; a
          // chunk the backup reuses is done once its write is (TarSink)
          const header = Buffer.allocUnsafe(5);
          header[0] = 0x64; // 'd'
          header.writeUInt32BE(chunk.length + 4, 1);
          let flowing = true;
          const written = new Promise<void>((resolve, reject) => {
            this.socket.cork();
            this.socket.write(header);
            flowing = this.socket.write(chunk, (err) => (err ? reject(err) : resolve()));
            this.socket.uncork();
          });
          if (reuse) return written;
          written.catch(() => {}); // surfaces through `closed` and the next write
          if (!flowing) await drainOrClose(this.socket);
        };
        try {
          await this.options.fullBackup(handle, lsn, write);
        } catch (err) {
          if (!started) throw new PageServiceRequestError((err as Error).message);
          // mid-stream failure: the client sees an error instead of CopyDone
          this.send(Buffer.concat([errorResponse("XX000", `fullbackup failed: ${(err as Error).message}`), READY]));
          return;
        }
        if (!started) this.send(message("H").int8(0).int16(0).end());
        this.send(Buffer.concat([message("c").end(), message("C").cstring("SELECT 1").end(), READY]));
      } else if (command === "set") {
        this.send(Buffer.concat([message("C").cstring("SET").end(), READY]));
      } else {
        throw new PageServiceRequestError(`unknown page service command "${words[0]}"`);
      }
    } catch (err) {
      if (!(err instanceof PageServiceRequestError)) throw err;
      this.send(Buffer.concat([errorResponse(command.startsWith("pagestream") || command === "fullbackup" ? "42704" : "42601", err.message), READY]));
    }
  }

  /** responses go out in request order; up to MAX_IN_FLIGHT requests are served concurrently */
  private tail: Promise<void> = Promise.resolve();
  private outstanding = 0;

  private async enqueuePagestream(body: Buffer) {
    const response = this.onPagestream(body);
    this.outstanding++;
    this.tail = this.tail.then(async () => {
      for (const part of await response) this.send(part);
      this.outstanding--;
    });
    if (this.outstanding >= MAX_IN_FLIGHT) await this.tail;
  }

  /** The CopyData-framed response, as header and payload (written together, without a copy). */
  private async onPagestream(body: Buffer): Promise<Buffer[]> {
    const { handle, version } = this.stream!;
    const started = process.hrtime.bigint();
    let request: PagestreamRequest;
    try {
      request = decodeRequest(body, version);
    } catch (err) {
      if (!(err instanceof MalformedRequestError)) throw err;
      // no request to echo: answer with an error carrying a zero header
      const fake = { tag: RequestTag.DbSize, dbNode: 0, reqid: 0n, requestLsn: 0n, notModifiedSince: 0n } as PagestreamRequest;
      this.options.onRequest?.("malformed", 0, false);
      return encodeResponseFrame(fake, { tag: ResponseTag.Error, message: err.message }, version);
    }
    let result: PagestreamResult;
    let ok = true;
    try {
      result = await handleRequest(this.options, handle, request);
    } catch (err) {
      ok = false;
      if (!(err instanceof PageServiceRequestError) && !(err instanceof UnsupportedRecordError)) {
        this.options.log?.("warn", "page service request failed", { err: (err as Error).message });
      }
      result = { tag: ResponseTag.Error, message: (err as Error).message };
    }
    this.options.onRequest?.(REQUEST_NAMES[request.tag] ?? "unknown", Number(process.hrtime.bigint() - started) / 1e9, ok);
    return encodeResponseFrame(request, result, version);
  }
}

export function createPageServiceServer(options: PageServiceOptions): net.Server {
  return net.createServer((socket) => new Connection(socket, options));
}

export { LATEST_LSN };

/** Resolves when the socket can take more, or is gone (the next write then finds it closed). */
function drainOrClose(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    socket.once("drain", done);
    socket.once("close", done);
  });
}
