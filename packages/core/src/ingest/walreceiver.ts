// The walreceiver: follows a primary over physical replication for one timeline.
//   primary --XLogData--> WalReceiver --bytes--> TimelineIngestor --batch--> TimelineStore
// It streams from the timeline's durable LSN through a named physical slot, reports only durable
// positions as flushed (so the slot keeps WAL until it is stored), and reconnects with backoff when
// the primary restarts or the connection drops; a primary promoted since (a new timeline) is followed
// across its switch point. A record that cannot be decoded, or diverged histories, stop it for good.
import { formatLsn, type Lsn } from "../lsn.ts";
import type { ForkNumber, RelTag } from "../reltag.ts";
import { ReplicationConnection } from "../replication/connection.ts";
import { PrimaryError } from "../replication/errors.ts";
import { checkOnHistory, historyFilesFrom, parseTimelineHistory, TimelineHistoryError, timelineOfLsn, type TimelineHistoryEntry } from "../replication/timeline-history.ts";
import { WalDecodeError } from "../wal/errors.ts";
import { IngestStoppedError, TimelineIngestor } from "./timeline-ingest.ts";
import type { ReadyImage } from "./hot-pages.ts";

/** The primary answering is not the system the timeline follows. */
export class DifferentSystemError extends Error {}

export type WalReceiverState = "connecting" | "streaming" | "backoff" | "failed" | "stopped";

export interface WalReceiverStatus {
  state: WalReceiverState;
  primaryFlushLsn: Lsn;
  lastError: string | null;
  reconnects: number;
  receivedBytes: number;
  records: number;
  /** bytes of the records durably ingested (received bytes also count page headers and the zeros after a segment switch) */
  recordBytes: number;
}

/** WAL messages already received are ingested together up to about this many bytes */
const INGEST_BYTES_AT_ONCE = 1024 * 1024;

export interface WalReceiverOptions {
  primary: string;
  slot: string;
  applicationName?: string;
  initialBackoffMs?: number;
  /** longest time received WAL may wait before it is committed (fsync) in one group */
  groupCommitMs?: number;
  maxBackoffMs?: number;
  onDurable?(lsn: Lsn, bytes: number, records: number): void;
  /** pages whose record chains grew long (at `lsn` each): materialize them in the background */
  onLongChains?(pages: Array<{ rel: RelTag; fork: ForkNumber; block: number; lsn: Lsn }>, durable: Lsn): void;
  /** copies of hot pages (ingest/hot-pages.ts), durable: store them as materialized images */
  onReadyImages?(images: ReadyImage[]): void;
  onEvent?(event: "connected" | "reconnect" | "failed", detail: string): void;
}

export class WalReceiver {
  readonly status: WalReceiverStatus = { state: "connecting", primaryFlushLsn: 0n, lastError: null, reconnects: 0, receivedBytes: 0, records: 0, recordBytes: 0 };
  private stopped = false;
  private connection: ReplicationConnection | undefined;
  private loop: Promise<void> | undefined;
  private wakeBackoff: (() => void) | undefined;
  private readonly stopWaiters = new Set<() => void>();

  constructor(private readonly ingestor: TimelineIngestor, private readonly options: WalReceiverOptions) {}

  /**
   * Races `promises` against stop(). A fresh stop promise per call, dropped afterwards: racing one
   * long-lived promise would attach a reaction per call that keeps every winner (each WAL message)
   * alive until the receiver stops.
   */
  private async untilStop<T>(promises: Array<Promise<T>>): Promise<T | "stop"> {
    if (this.stopped) return "stop";
    let wake!: () => void;
    const stop = new Promise<"stop">((resolve) => (wake = () => resolve("stop")));
    this.stopWaiters.add(wake);
    try {
      return await Promise.race([...promises, stop]);
    } finally {
      this.stopWaiters.delete(wake);
    }
  }

  get lastRecordLsn(): Lsn {
    return this.ingestor.resumeLsn;
  }

  /** Blocks written since the last drain, for compaction. */
  drainWrittenPages() {
    return this.ingestor.drainWrittenPages();
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const wake of this.stopWaiters) wake();
    this.wakeBackoff?.();
    this.connection?.destroy();
    await this.loop;
    this.status.state = "stopped";
  }

  /**
   * The server's timeline whose WAL holds our resume point. A primary promoted since we last read
   * from it (a standby we followed, or one that took over the primary's address) is on a newer
   * timeline, but the WAL before its switch point is still the old timeline's: asked for the new
   * one there, it answers that the segment was removed. Streamed on the old timeline, it ends at the
   * switch point and the next connection continues on the new one. WAL of ours past the point where
   * the server left our timeline means the histories diverged: that is a permanent error.
   */
  private async timelineToStream(conn: ReplicationConnection, serverTimeline: number): Promise<number> {
    const resume = this.ingestor.resumeLsn;
    const ours = this.ingestor.walTimeline;
    // timeline 1 has no history: it was never on another one
    let history: TimelineHistoryEntry[] = [];
    let content = "";
    if (serverTimeline > 1) {
      try {
        content = await conn.timelineHistory(serverTimeline);
        history = parseTimelineHistory(content);
      } catch (err) {
        // no history file: a server started on this timeline from a copy (an endpoint started from
        // a full backup of a promoted primary's timeline, before backups carried it) has no
        // earlier timeline to serve
        if (err instanceof PrimaryError && err.code === "58P01") return serverTimeline;
        throw err;
      }
    }
    if (ours !== undefined) checkOnHistory(history, serverTimeline, ours, resume);
    // (kept only once the history is known to be ours)
    if (content) this.ingestor.noteTimelineHistory(historyFilesFrom(serverTimeline, content));
    return timelineOfLsn(history, serverTimeline, resume);
  }

  private async run(): Promise<void> {
    let backoff = this.options.initialBackoffMs ?? 200;
    const maxBackoff = this.options.maxBackoffMs ?? 10_000;
    const groupCommitMs = this.options.groupCommitMs ?? 20;
    let walGoneCount = 0;
    while (!this.stopped) {
      this.status.state = "connecting";
      try {
        const conn = await ReplicationConnection.connect(this.options.primary, { applicationName: this.options.applicationName ?? "strata" });
        this.connection = conn;
        if (this.stopped) {
          conn.destroy();
          break;
        }
        const identity = await conn.identifySystem();
        const expected = this.ingestor.systemId;
        if (expected !== undefined && identity.systemId !== expected.toString()) {
          // a different cluster now answers at this address (re-created, or another one): its WAL
          // at our LSN is not this timeline's history. Retried with backoff, as PostgreSQL's own
          // walreceiver does: the address may point at the right system again
          throw new DifferentSystemError(`the primary is a different database system: its system identifier is ${identity.systemId}, the timeline's is ${expected}`);
        }
        if (identity.xlogPos > this.status.primaryFlushLsn) this.status.primaryFlushLsn = identity.xlogPos;
        const timeline = await this.timelineToStream(conn, identity.timeline);
        const stream = await conn.startReplication({ slot: this.options.slot, startLsn: this.ingestor.resumeLsn, timeline });
        this.status.state = "streaming";
        this.status.lastError = null;
        this.options.onEvent?.("connected", formatLsn(this.ingestor.resumeLsn));
        backoff = this.options.initialBackoffMs ?? 200;
        // Read the next message while the previous one is ingested, and commit (fsync) at most
        // every `groupCommitMs` or when the stream goes quiet, not once per message.
        let next = stream.next();
        let lastCommit = Date.now();
        // what onDurable has been told so far (commits started by ingestWal itself are reported
        // with the next one)
        let reportedRecords = this.ingestor.totalRecords;
        let reportedBytes = this.ingestor.totalBytes;
        let reportedLsn = 0n;
        const reportDurable = (durable: Lsn) => {
          if (durable <= reportedLsn) return;
          reportedLsn = durable;
          stream.sendStatus({ flushed: durable, applied: durable });
          this.status.records = this.ingestor.totalRecords;
          this.status.recordBytes = this.ingestor.totalBytes;
          this.options.onDurable?.(durable, this.ingestor.totalBytes - reportedBytes, this.ingestor.totalRecords - reportedRecords);
          reportedRecords = this.ingestor.totalRecords;
          reportedBytes = this.ingestor.totalBytes;
          const longChains = this.ingestor.drainLongChains(durable);
          if (longChains.length) this.options.onLongChains?.(longChains, durable);
          const ready = this.ingestor.drainReadyImages(durable);
          if (ready.length) this.options.onReadyImages?.(ready);
        };
        const commit = async () => {
          const durable = await this.ingestor.flush();
          lastCommit = Date.now();
          reportDurable(durable);
        };
        // while WAL keeps arriving, group commits by time without waiting for each fsync: the
        // next messages are decoded while LevelDB writes (a failure stops the next ingestWal)
        const commitBehind = () => {
          const durable = this.ingestor.commitInBackground();
          if (!durable) return;
          lastCommit = Date.now();
          durable.then(reportDurable, () => {});
        };
        for (;;) {
          let message;
          if (this.ingestor.hasPending) {
            const wait = Math.max(0, groupCommitMs - (Date.now() - lastCommit));
            let timer: NodeJS.Timeout | undefined;
            const quiet = new Promise<"quiet">((resolve) => (timer = setTimeout(() => resolve("quiet"), wait)));
            const winner = await this.untilStop<Awaited<typeof next> | "quiet">([next, quiet]);
            clearTimeout(timer);
            if (winner === "stop") break;
            if (winner === "quiet") {
              await commit();
              continue;
            }
            message = winner;
          } else {
            const winner = await this.untilStop([next]);
            if (winner === "stop") break;
            message = winner;
          }
          if (stream.serverWalEnd > this.status.primaryFlushLsn) this.status.primaryFlushLsn = stream.serverWalEnd;
          if (!message) {
            await commit();
            break;
          }
          // the messages that arrived meanwhile go in with this one: one ingest call, not one each
          // (fed to the decoder one after the other, not joined)
          const more = stream.takeBuffered(INGEST_BYTES_AT_ONCE);
          next = stream.next();
          // avoid an unhandled rejection while we are busy ingesting; it is awaited next round
          next.catch(() => {});
          let bytes = message.data.length;
          for (const m of more) bytes += m.data.length;
          const data = more.length === 0 ? message.data : [message.data, ...more.map((m) => m.data)];
          if (bytes === 0) continue;
          await this.ingestor.ingestWal(data, message.walStart, { flush: false });
          walGoneCount = 0;
          this.status.receivedBytes += bytes;
          // no status update per message: under load the primary sends thousands of small ones,
          // and a reply to each cost both sides a syscall (11% of the pageserver's CPU). Replies go
          // with each commit (they carry the received position too) and on the stream's timer.
          if (Date.now() - lastCommit >= groupCommitMs) commitBehind();
        }
        if (this.stopped) {
          // keep what was received (the slot would resend it anyway) and drop the stream
          await this.ingestor.flush().catch(() => {});
          next.catch(() => {});
          conn.destroy();
          break;
        }
        await conn.close().catch(() => {});
      } catch (err) {
        this.connection?.destroy();
        // complete records already received are valid whatever happened to the connection
        // (a primary shutting down sends its shutdown checkpoint and then goes away)
        if (this.ingestor.hasPending) {
          try {
            const durable = await this.ingestor.flush();
            this.status.records = this.ingestor.totalRecords;
            this.status.recordBytes = this.ingestor.totalBytes;
            this.options.onDurable?.(durable, 0, 0);
          } catch {
            // the ingestor is marked failed; the next ingest call reports it
          }
        }
        if (this.stopped) break;
        const message = (err as Error).message;
        this.status.lastError = message;
        if (err instanceof IngestStoppedError || err instanceof WalDecodeError || err instanceof TimelineHistoryError) {
          this.status.state = "failed";
          this.options.onEvent?.("failed", message);
          return;
        }
        // permanent: a slot that does not exist, or WAL the primary has removed (seen on three
        // attempts in a row, so a momentary condition on a busy primary is retried)
        const walGone = err instanceof PrimaryError && (err.code === "58P01" || /already been removed|has been invalidated|can no longer/i.test(err.message));
        walGoneCount = walGone ? walGoneCount + 1 : 0;
        if (err instanceof PrimaryError && (err.code === "42704" || walGoneCount >= 3)) {
          this.status.state = "failed";
          this.options.onEvent?.("failed", message);
          return;
        }
        this.status.reconnects++;
        this.options.onEvent?.("reconnect", message);
      } finally {
        this.connection = undefined;
      }
      if (this.stopped) break;
      this.status.state = "backoff";
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff);
        this.wakeBackoff = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      backoff = Math.min(maxBackoff, backoff * 2);
    }
    this.status.state = "stopped";
  }
}
