// Neon's pagestream message layout (v2 and v3), as pure encode/decode functions over Buffers.
// Requests: tag u8, [reqid u64 (v3)], request_lsn u64, not_modified_since u64, body. Responses:
// tag 100+, with v3 echoing the request header (and the request's key fields) before the payload.
import type { Lsn } from "../lsn.ts";
import type { ForkNumber, RelTag } from "../reltag.ts";

export type PagestreamVersion = 2 | 3;

export const enum RequestTag {
  Exists = 0,
  Nblocks = 1,
  GetPage = 2,
  DbSize = 3,
  GetSlruSegment = 4,
}

export const enum ResponseTag {
  Exists = 100,
  Nblocks = 101,
  GetPage = 102,
  Error = 103,
  DbSize = 104,
  GetSlruSegment = 105,
}

/** SLRU kinds as the pagestream protocol numbers them. */
export const enum PagestreamSlruKind {
  Clog = 0,
  MultiXactMembers = 1,
  MultiXactOffsets = 2,
}

export const LATEST_LSN: Lsn = 0xffffffffffffffffn;

export interface RequestHeader {
  reqid: bigint;
  requestLsn: Lsn;
  notModifiedSince: Lsn;
}

export type PagestreamRequest = RequestHeader &
  (
    | { tag: RequestTag.Exists | RequestTag.Nblocks; rel: RelTag; fork: ForkNumber }
    | { tag: RequestTag.GetPage; rel: RelTag; fork: ForkNumber; block: number }
    | { tag: RequestTag.DbSize; dbNode: number }
    | { tag: RequestTag.GetSlruSegment; kind: PagestreamSlruKind; segno: number }
  );

export class MalformedRequestError extends Error {}

const BODY_SIZES: Record<number, number> = { [RequestTag.Exists]: 13, [RequestTag.Nblocks]: 13, [RequestTag.GetPage]: 17, [RequestTag.DbSize]: 4, [RequestTag.GetSlruSegment]: 5 };

function headerSize(version: PagestreamVersion) {
  return version === 3 ? 25 : 17;
}

/** Parses one request; throws MalformedRequestError with a message naming what is wrong. */
export function decodeRequest(buf: Buffer, version: PagestreamVersion): PagestreamRequest {
  if (buf.length < 1) throw new MalformedRequestError("empty pagestream request");
  const tag = buf[0];
  const bodySize = BODY_SIZES[tag];
  if (bodySize === undefined) throw new MalformedRequestError(`unknown pagestream request tag ${tag}`);
  const expected = headerSize(version) + bodySize;
  if (buf.length !== expected) throw new MalformedRequestError(`pagestream request tag ${tag} must be ${expected} bytes in v${version}, got ${buf.length}`);
  let off = 1;
  const reqid = version === 3 ? buf.readBigUInt64BE(off) : 0n;
  if (version === 3) off += 8;
  const requestLsn = buf.readBigUInt64BE(off);
  const notModifiedSince = buf.readBigUInt64BE(off + 8);
  off += 16;
  // no closures or spreads here: this runs for every page request
  switch (tag) {
    case RequestTag.Exists:
    case RequestTag.Nblocks:
    case RequestTag.GetPage: {
      const fork = buf[off + 12];
      if (fork > 3) throw new MalformedRequestError(`invalid fork number ${fork}`);
      const rel = { spcNode: buf.readUInt32BE(off), dbNode: buf.readUInt32BE(off + 4), relNode: buf.readUInt32BE(off + 8) };
      if (tag === RequestTag.GetPage) return { reqid, requestLsn, notModifiedSince, tag, rel, fork, block: buf.readUInt32BE(off + 13) };
      return { reqid, requestLsn, notModifiedSince, tag, rel, fork };
    }
    case RequestTag.DbSize:
      return { reqid, requestLsn, notModifiedSince, tag, dbNode: buf.readUInt32BE(off) };
    default: {
      const kind = buf[off];
      if (kind > 2) throw new MalformedRequestError(`invalid SLRU kind ${kind}`);
      return { reqid, requestLsn, notModifiedSince, tag: RequestTag.GetSlruSegment, kind, segno: buf.readUInt32BE(off + 1) };
    }
  }
}

export function encodeRequest(request: PagestreamRequest, version: PagestreamVersion): Buffer {
  const buf = Buffer.alloc(headerSize(version) + BODY_SIZES[request.tag]);
  buf[0] = request.tag;
  let off = 1;
  if (version === 3) {
    buf.writeBigUInt64BE(request.reqid, off);
    off += 8;
  }
  buf.writeBigUInt64BE(request.requestLsn, off);
  buf.writeBigUInt64BE(request.notModifiedSince, off + 8);
  off += 16;
  writeKey(buf, off, request);
  return buf;
}

function keySize(request: PagestreamRequest): number {
  return BODY_SIZES[request.tag];
}

function writeKey(buf: Buffer, off: number, request: PagestreamRequest): number {
  switch (request.tag) {
    case RequestTag.Exists:
    case RequestTag.Nblocks:
    case RequestTag.GetPage:
      buf.writeUInt32BE(request.rel.spcNode, off);
      buf.writeUInt32BE(request.rel.dbNode, off + 4);
      buf.writeUInt32BE(request.rel.relNode, off + 8);
      buf[off + 12] = request.fork;
      if (request.tag === RequestTag.GetPage) buf.writeUInt32BE(request.block, off + 13);
      break;
    case RequestTag.DbSize:
      buf.writeUInt32BE(request.dbNode, off);
      break;
    case RequestTag.GetSlruSegment:
      buf[off] = request.kind;
      buf.writeUInt32BE(request.segno, off + 1);
      break;
  }
  return off + keySize(request);
}

function echo(request: PagestreamRequest, version: PagestreamVersion, withKey: boolean): Buffer {
  if (version !== 3) return Buffer.alloc(0);
  const buf = Buffer.alloc(24 + (withKey ? keySize(request) : 0));
  buf.writeBigUInt64BE(request.reqid, 0);
  buf.writeBigUInt64BE(request.requestLsn, 8);
  buf.writeBigUInt64BE(request.notModifiedSince, 16);
  if (withKey) writeKey(buf, 24, request);
  return buf;
}

export type PagestreamResult =
  | { tag: ResponseTag.Exists; exists: boolean }
  | { tag: ResponseTag.Nblocks; blocks: number }
  | { tag: ResponseTag.GetPage; page: Buffer }
  | { tag: ResponseTag.DbSize; bytes: bigint }
  | { tag: ResponseTag.GetSlruSegment; pages: Buffer }
  | { tag: ResponseTag.Error; message: string };

/**
 * A response as CopyData-framed parts for a socket write: a GetPage response is a small head and
 * the page buffer itself (not copied); everything else is one buffer.
 */
export function encodeResponseFrame(request: PagestreamRequest, result: PagestreamResult, version: PagestreamVersion): Buffer[] {
  if (result.tag === ResponseTag.GetPage) {
    const key = version === 3 ? 24 + keySize(request) : 0;
    const head = Buffer.allocUnsafe(6 + key);
    head[0] = 0x64; // 'd'
    head.writeInt32BE(4 + 1 + key + result.page.length, 1);
    head[5] = ResponseTag.GetPage;
    if (key) echo(request, version, true).copy(head, 6);
    return [head, result.page];
  }
  const payload = encodeResponse(request, result, version);
  const header = Buffer.allocUnsafe(5);
  header[0] = 0x64;
  header.writeInt32BE(payload.length + 4, 1);
  return [header, payload];
}

export function encodeResponse(request: PagestreamRequest, result: PagestreamResult, version: PagestreamVersion): Buffer {
  const tag = Buffer.from([result.tag]);
  switch (result.tag) {
    case ResponseTag.Error:
      return Buffer.concat([tag, echo(request, version, false), Buffer.from(result.message.replace(/\0/g, " ") + "\0", "utf8")]);
    case ResponseTag.Exists:
      return Buffer.concat([tag, echo(request, version, true), Buffer.from([result.exists ? 1 : 0])]);
    case ResponseTag.Nblocks: {
      const n = Buffer.alloc(4);
      n.writeUInt32BE(result.blocks);
      return Buffer.concat([tag, echo(request, version, true), n]);
    }
    case ResponseTag.GetPage:
      return Buffer.concat([tag, echo(request, version, true), result.page]);
    case ResponseTag.DbSize: {
      const n = Buffer.alloc(8);
      n.writeBigInt64BE(result.bytes);
      return Buffer.concat([tag, echo(request, version, true), n]);
    }
    case ResponseTag.GetSlruSegment: {
      const n = Buffer.alloc(4);
      n.writeUInt32BE(result.pages.length / 8192);
      return Buffer.concat([tag, echo(request, version, true), n, result.pages]);
    }
  }
}

/** Parses a response to `request` (the client side). */
export function decodeResponse(buf: Buffer, request: PagestreamRequest, version: PagestreamVersion): PagestreamResult {
  const tag = buf[0];
  let off = 1;
  if (version === 3) off += 24 + (tag === ResponseTag.Error ? 0 : keySize(request));
  switch (tag) {
    case ResponseTag.Error:
      return { tag, message: buf.toString("utf8", off, buf.indexOf(0, off) < 0 ? buf.length : buf.indexOf(0, off)) };
    case ResponseTag.Exists:
      return { tag, exists: buf[off] === 1 };
    case ResponseTag.Nblocks:
      return { tag, blocks: buf.readUInt32BE(off) };
    case ResponseTag.GetPage:
      return { tag, page: buf.subarray(off, off + 8192) };
    case ResponseTag.DbSize:
      return { tag, bytes: buf.readBigInt64BE(off) };
    case ResponseTag.GetSlruSegment: {
      const n = buf.readUInt32BE(off);
      return { tag, pages: buf.subarray(off + 4, off + 4 + n * 8192) };
    }
    default:
      throw new MalformedRequestError(`unknown pagestream response tag ${tag}`);
  }
}
