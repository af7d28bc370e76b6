// Errors of the replication client. PrimaryError carries a server ErrorResponse (SQLSTATE in .code);
// PrimaryConnectError is a failure to reach or talk to the primary at all; ReplicationStreamClosed
// tells the walreceiver the stream is gone and from which LSN to reconnect.
import { formatLsn, type Lsn } from "../lsn.ts";
import { BodyReader } from "./protocol.ts";

/** Fields of an ErrorResponse/NoticeResponse, keyed by the protocol's field letters. */
export type ServerMessageFields = Record<string, string>;

export function parseServerFields(body: Buffer): ServerMessageFields {
  const r = new BodyReader(body);
  const fields: ServerMessageFields = {};
  while (r.remaining > 0) {
    const code = r.int8();
    if (code === 0) break;
    fields[String.fromCharCode(code)] = r.cstring();
  }
  return fields;
}

/** An ErrorResponse from the primary. `code` is the SQLSTATE (e.g. 28P01, 42710, 58P01). */
export class PrimaryError extends Error {
  override readonly name = "PrimaryError";
  readonly severity: string;
  readonly code: string;
  readonly serverMessage: string;
  readonly detail?: string;
  readonly hint?: string;

  constructor(
    readonly fields: ServerMessageFields,
    context?: string,
  ) {
    const text = fields.M ?? "unknown error";
    const detail = fields.D ? `\nDETAIL: ${fields.D}` : "";
    const hint = fields.H ? `\nHINT: ${fields.H}` : "";
    super(`${context ? context + ": " : ""}${text}${detail}${hint}`);
    this.severity = fields.V ?? fields.S ?? "ERROR";
    this.code = fields.C ?? "XX000";
    this.serverMessage = text;
    this.detail = fields.D;
    this.hint = fields.H;
  }
}

/** The primary could not be reached, or the connection broke outside a replication stream. */
export class PrimaryConnectError extends Error {
  override readonly name = "PrimaryConnectError";
  constructor(
    message: string,
    readonly errno?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type StreamCloseReason = "connection-lost" | "server-shutdown";

/** The replication stream ended without the client asking; reconnect from `lastReceivedLsn`. */
export class ReplicationStreamClosed extends Error {
  override readonly name = "ReplicationStreamClosed";
  constructor(
    readonly reason: StreamCloseReason,
    readonly lastReceivedLsn: Lsn,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `replication stream from primary ${reason === "server-shutdown" ? "ended by primary shutdown" : "lost"} after ${formatLsn(lastReceivedLsn)}: ${detail}; reconnect and restart from ${formatLsn(lastReceivedLsn)}`,
      options,
    );
  }
}
