// The physical WAL stream (START_REPLICATION in CopyBoth mode): yields XLogData in LSN order to the
// walreceiver, answers keepalives that request a reply and sends periodic standby status updates with
// the positions the caller reported. Flow control is pull-based: frames are read from the socket only
// as fast as the consumer asks (the connection pauses the socket beyond its high-water mark).
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";
import type { ReplicationConnection } from "./connection.ts";
import { parseServerFields, PrimaryError, ReplicationStreamClosed } from "./errors.ts";
import { BodyReader, type Frame, message, parseDataRow, parseRowDescription, pgTimestampNow, pgTimestampToDate, ProtocolViolation } from "./protocol.ts";

export interface StartReplicationOptions {
  /** Physical slot to stream from (its restart_lsn advances with the flushed position we report). */
  slot?: string;
  /** Any LSN up to the primary's flush position; need not be aligned. */
  startLsn: Lsn;
  timeline?: number;
  /** Period of unsolicited standby status updates. Default 1000 ms; 0 disables them. */
  statusIntervalMs?: number;
  /**
   * Once a read finds the sender caught up, leave the socket unread this long and take what came
   * meanwhile in one read (ReplicationConnection.batchLiveReads). Default 5 ms; 0 reads every
   * message as it arrives.
   */
  liveReadWaitMs?: number;
}

/** WAL is durable only at the next group commit anyway (walreceiver, 20 ms): 5 ms more to read it is small */
const LIVE_READ_WAIT_MS = 5;

export interface XLogData {
  /** LSN of data[0]. */
  walStart: Lsn;
  /** The primary's flush/send limit when this message was sent (not the end of `data`). */
  walEnd: Lsn;
  sendTime: Date;
  /** Raw WAL bytes, page headers included, exactly as in the segment files. */
  data: Buffer;
}

export interface StandbyStatus {
  written: Lsn;
  /** Durable position: with a slot, the primary may recycle WAL before it. */
  flushed: Lsn;
  applied: Lsn;
}

/** Set when the primary ended the stream because the requested timeline is historic. */
export interface TimelineSwitch {
  nextTimeline: number;
  nextTimelineStartLsn: Lsn;
}

type State = "streaming" | "stopping" | "done" | "failed";

export class ReplicationStream implements AsyncIterable<XLogData> {
  /** End LSN of the last XLogData received. */
  lastReceivedLsn: Lsn;
  /** Latest walEnd the primary reported (XLogData or keepalive). */
  serverWalEnd: Lsn = 0n;
  /** Set when the server ended the copy at a timeline switch. */
  endOfTimeline: TimelineSwitch | null = null;

  private state: State = "streaming";
  private error: Error | null = null;
  private status: StandbyStatus = { written: 0n, flushed: 0n, applied: 0n };
  private timer: NodeJS.Timeout | null = null;
  private reading: Promise<XLogData | null> | null = null;
  private serverSentCommandComplete = false;
  /** a frame takeBuffered() read but left for readNext() to handle */
  private heldFrame: Frame | undefined;

  /** @internal use ReplicationConnection.startReplication */
  constructor(
    private readonly conn: ReplicationConnection,
    readonly startLsn: Lsn,
    statusIntervalMs: number,
  ) {
    this.lastReceivedLsn = startLsn;
    if (statusIntervalMs > 0) {
      this.timer = setInterval(() => this.writeStatus(false), statusIntervalMs);
      this.timer.unref();
    }
  }

  /**
   * Records the caller's positions and sends a standby status update now. Later periodic updates
   * and keepalive replies repeat the latest values. `written` never reports less than received.
   */
  sendStatus(status: Partial<StandbyStatus>, replyRequested = false): void {
    if (status.written !== undefined) this.status.written = status.written;
    if (status.flushed !== undefined) this.status.flushed = status.flushed;
    if (status.applied !== undefined) this.status.applied = status.applied;
    this.writeStatus(replyRequested);
  }

  get reportedStatus(): Readonly<StandbyStatus> {
    return { ...this.status };
  }

  private writeStatus(replyRequested: boolean): void {
    if (this.conn.isClosed) this.stopTimer();
    if (this.state !== "streaming" || this.conn.isClosed) return;
    const written = this.status.written > this.lastReceivedLsn ? this.status.written : this.lastReceivedLsn;
    const r = message("d").char("r").uint64(written).uint64(this.status.flushed).uint64(this.status.applied);
    this.conn.write(r.int64(pgTimestampNow()).int8(replyRequested ? 1 : 0).end());
  }

  /** The next XLogData, or null when the stream has ended cleanly (stop() or timeline switch). */
  next(): Promise<XLogData | null> {
    if (this.reading) return Promise.reject(new Error("ReplicationStream.next() called while a previous next() is pending"));
    const p = this.readNext().finally(() => (this.reading = null));
    this.reading = p;
    return p;
  }

  /**
   * The XLogData messages already received after the last one returned, up to about `maxBytes`,
   * without waiting: a caller that ingests them together saves a promise and an event-loop turn
   * per message (under load the primary sends thousands of small ones a second). Keepalives met
   * on the way are answered; anything else stops the scan and is left for next().
   */
  takeBuffered(maxBytes: number): XLogData[] {
    const out: XLogData[] = [];
    if (this.reading || this.state !== "streaming") return out;
    let bytes = 0;
    while (bytes < maxBytes) {
      const frame = this.heldFrame ?? this.conn.nextBuffered();
      this.heldFrame = undefined;
      if (frame === undefined) break;
      const kind = frame.type === "d" && frame.body.length > 0 ? frame.body[0] : 0;
      if (kind === 0x6b /* k */) {
        const r = new BodyReader(frame.body);
        r.char();
        this.keepalive(r);
        continue;
      }
      const r = new BodyReader(frame.body);
      if (kind !== 0x77 /* w */ || (r.char(), r.lsn()) !== this.lastReceivedLsn) {
        this.heldFrame = frame;
        break;
      }
      const walStart = this.lastReceivedLsn;
      const walEnd = r.lsn();
      const sendTime = pgTimestampToDate(r.int64());
      const data = r.rest();
      this.lastReceivedLsn = walStart + BigInt(data.length);
      this.serverWalEnd = walEnd;
      out.push({ walStart, walEnd, sendTime, data });
      bytes += data.length;
    }
    return out;
  }

  /** A primary keepalive (after its kind byte): its WAL end, and the reply it asks for. */
  private keepalive(r: BodyReader): void {
    this.serverWalEnd = r.lsn();
    r.int64();
    if (r.int8() === 1) this.writeStatus(false);
  }

  private async readNext(): Promise<XLogData | null> {
    for (;;) {
      if (this.state === "done") return null;
      if (this.state === "failed") throw this.error;
      let frame = this.heldFrame;
      this.heldFrame = undefined;
      try {
        frame ??= await this.conn.readFrame();
      } catch (err) {
        const reason = this.serverSentCommandComplete ? "server-shutdown" : "connection-lost";
        const detail = this.serverSentCommandComplete ? "the walsender finished the stream and closed the connection" : (err as Error).message;
        this.fail(new ReplicationStreamClosed(reason, this.lastReceivedLsn, detail, { cause: err }));
        continue;
      }
      switch (frame.type) {
        case "d": {
          const r = new BodyReader(frame.body);
          const kind = r.char();
          if (kind === "w") {
            const walStart = r.lsn();
            const walEnd = r.lsn();
            const sendTime = pgTimestampToDate(r.int64());
            const data = r.rest();
            if (walStart !== this.lastReceivedLsn) {
              this.fail(new ProtocolViolation(`XLogData at ${formatLsn(walStart)} does not continue the stream at ${formatLsn(this.lastReceivedLsn)}`));
              continue;
            }
            this.lastReceivedLsn = walStart + BigInt(data.length);
            this.serverWalEnd = walEnd;
            if (this.state === "stopping") continue;
            return { walStart, walEnd, sendTime, data };
          }
          if (kind === "k") {
            this.keepalive(r);
            continue;
          }
          this.fail(new ProtocolViolation(`unknown CopyData message "${kind}" in replication stream`));
          continue;
        }
        case "c":
          // Server ended the copy (timeline switch, or the reply to our CopyDone).
          if (this.state === "streaming") this.conn.write(message("c").end());
          this.stopTimer();
          await this.finishCommand();
          continue;
        case "C":
          // A walsender that shuts down ends the COPY with CommandComplete and exits.
          this.serverSentCommandComplete = true;
          continue;
        case "E": {
          const err = new PrimaryError(parseServerFields(frame.body));
          await this.drainToReady();
          this.fail(err);
          continue;
        }
        default:
          this.fail(new ProtocolViolation(`unexpected message "${frame.type}" in replication stream`));
      }
    }
  }

  /** After CopyDone: the optional next-timeline result set, CommandComplete(s), ReadyForQuery. */
  private async finishCommand(): Promise<void> {
    try {
      const results = await this.conn.readResults("end of START_REPLICATION");
      const tli = results.find((r) => r.columns.includes("next_tli"));
      if (tli?.rows[0]) {
        const row = tli.rows[0];
        this.endOfTimeline = {
          nextTimeline: Number(row[tli.columns.indexOf("next_tli")]),
          nextTimelineStartLsn: parseLsn(row[tli.columns.indexOf("next_tli_startpos")] ?? "0/0"),
        };
      }
      this.state = "done";
      this.conn.release();
    } catch (err) {
      if (err instanceof PrimaryError) this.conn.release(); // readResults read up to ReadyForQuery
      this.fail(err instanceof PrimaryError ? err : new ReplicationStreamClosed("connection-lost", this.lastReceivedLsn, (err as Error).message, { cause: err }));
    }
  }

  /** After an ErrorResponse the walsender returns to idle (ReadyForQuery) unless it exits. */
  private async drainToReady(): Promise<void> {
    try {
      for (;;) {
        const f = await this.conn.readFrame();
        if (f.type === "Z") {
          this.stopTimer();
          this.conn.release();
          return;
        }
      }
    } catch {
      // connection closed: nothing more to read
    }
  }

  private fail(err: Error): void {
    this.stopTimer();
    if (this.state === "failed") return;
    this.state = "failed";
    this.error = err;
    if (!(err instanceof PrimaryError) || this.conn.isClosed) {
      // Protocol state unknown or socket gone: the connection can't be reused.
      if (!(err instanceof ReplicationStreamClosed)) this.conn.destroy();
    }
  }

  /** @internal The command ended without a COPY phase (start point at a timeline's end). */
  markEnded(): void {
    this.stopTimer();
    this.state = "done";
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Ends the stream from our side (CopyDone), discards WAL still in flight and waits for the
   * primary to finish, leaving the connection usable for further commands.
   */
  async stop(): Promise<void> {
    if (this.state === "streaming") {
      this.stopTimer();
      this.state = "stopping";
      this.conn.write(message("c").end());
    }
    if (this.reading) await this.reading.catch(() => undefined);
    while (this.state === "stopping") await this.next().catch(() => undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<XLogData> {
    return {
      next: async () => {
        const m = await this.next();
        return m ? { value: m, done: false } : { value: undefined, done: true };
      },
      return: async () => {
        await this.stop();
        return { value: undefined, done: true };
      },
    };
  }
}

/** Sends START_REPLICATION and waits for CopyBothResponse (or the error / end-of-timeline result). */
export async function startReplication(conn: ReplicationConnection, options: StartReplicationOptions): Promise<ReplicationStream> {
  if (options.slot !== undefined && !/^[a-z0-9_]{1,63}$/.test(options.slot)) throw new RangeError(`invalid replication slot name "${options.slot}"`);
  let sql = "START_REPLICATION";
  if (options.slot) sql += ` SLOT ${options.slot}`;
  sql += ` PHYSICAL ${formatLsn(options.startLsn)}`;
  if (options.timeline !== undefined) sql += ` TIMELINE ${options.timeline}`;

  conn.acquire("START_REPLICATION");
  let handedOver = false;
  try {
    conn.write(message("Q").cstring(sql).end());
    const frame = await conn.readFrame();
    if (frame.type === "W") {
      handedOver = true;
      conn.batchLiveReads(options.liveReadWaitMs ?? LIVE_READ_WAIT_MS);
      return new ReplicationStream(conn, options.startLsn, options.statusIntervalMs ?? 1000);
    }
    if (frame.type === "E") {
      const err = new PrimaryError(parseServerFields(frame.body));
      await conn.readResults(sql).catch(() => undefined);
      throw err;
    }
    if (frame.type === "T") {
      // Start point is exactly the end of a historic timeline: no COPY, just the next-timeline row.
      const stream = new ReplicationStream(conn, options.startLsn, 0);
      await completeWithoutCopy(stream, conn, frame.body, sql);
      return stream;
    }
    throw new ProtocolViolation(`unexpected message "${frame.type}" in reply to ${sql}`);
  } finally {
    if (!handedOver) conn.release();
  }
}

async function completeWithoutCopy(stream: ReplicationStream, conn: ReplicationConnection, rowDescription: Buffer, sql: string) {
  const columns = parseRowDescription(rowDescription);
  let row: (string | null)[] | null = null;
  for (;;) {
    const f = await conn.readFrame();
    if (f.type === "D" && !row) row = parseDataRow(f.body);
    else if (f.type === "Z") break;
    else if (f.type === "E") {
      await conn.readResults(sql).catch(() => undefined);
      throw new PrimaryError(parseServerFields(f.body));
    }
  }
  if (row) {
    stream.endOfTimeline = {
      nextTimeline: Number(row[columns.indexOf("next_tli")]),
      nextTimelineStartLsn: parseLsn(row[columns.indexOf("next_tli_startpos")] ?? "0/0"),
    };
  }
  stream.markEnded();
}
