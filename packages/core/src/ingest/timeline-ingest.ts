// Drives ingest for one timeline: WAL bytes in stream order -> decoder -> WalIngest -> one atomic
// store batch per step, committed together with last_record_lsn / disk_consistent_lsn. After a
// crash, streaming resumes at the durable last_record_lsn, so no record is lost or stored twice.
import { turnEventLoop } from "../event-loop.ts";
import { formatLsn, type Lsn } from "../lsn.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { readControlFile } from "../basebackup/control.ts";
import { controlFileKey, timelineHistoryKey } from "../storage/keys.ts";
import { imageValue, ValueKind } from "../storage/values.ts";
import type { TimelineHistoryFile } from "../replication/timeline-history.ts";
import { DEFAULT_WAL_SEGMENT_SIZE, WalStreamDecoder } from "../wal/reader.ts";
import type { DecodedRecord } from "../wal/record.ts";
import { IngestBatch, type VersionLookup, WalIngest } from "./walingest.ts";
import type { HotPages, ReadyImage } from "./hot-pages.ts";

export interface IngestProgress {
  lastRecordLsn: Lsn;
  diskConsistentLsn: Lsn;
  records: number;
  bytes: number;
}

export class IngestStoppedError extends Error {}

/**
 * While a commit is in flight, ingest yields to the event loop after about this much work,
 * counted as record bytes plus YIELD_RECORD_COST per record (~1000 small records or 1 MB of large
 * ones: a few milliseconds).
 */
const YIELD_AFTER_WORK = 1024 * 1024;
const YIELD_RECORD_COST = 1024;

export class TimelineIngestor {
  private decoder: WalStreamDecoder;
  private walIngest: WalIngest;
  private lastRecordLsn: Lsn;
  private readonly startLsn: Lsn;
  /** set when a record failed to decode: nothing after it is stored */
  failed: Error | undefined;
  totalRecords = 0;
  totalBytes = 0;

  private constructor(
    private readonly store: TimelineStore,
    walIngest: WalIngest,
    markers: { lastRecordLsn: Lsn; startLsn: Lsn },
    readonly segmentSize: number,
    /** the database system identifier in the timeline's pg_control (undefined: none stored) */
    readonly systemId: bigint | undefined,
    private readonly hotPages: HotPages | undefined,
  ) {
    this.walIngest = walIngest;
    walIngest.hotPages = hotPages;
    // a chain this long begins a hot page
    if (hotPages) walIngest.longChainThreshold = hotPages.threshold;
    this.pending = this.newBatch();
    this.lastRecordLsn = markers.lastRecordLsn;
    this.startLsn = markers.startLsn;
    // ingest is done with each record before it feeds more: records may borrow the decoder's bytes
    this.decoder = new WalStreamDecoder(markers.lastRecordLsn, { borrowRecordBytes: true, segmentSize });
  }

  /**
   * `lookup` (default: the store itself) is how ingest reads current state, e.g. through
   * ancestors. With `hotPages`, pages with long record chains are kept rebuilt as they are
   * ingested (ingest/hot-pages.ts): their owner adopts them and stores the ready images.
   */
  static async open(store: TimelineStore, lookup: VersionLookup = store, options: { hotPages?: HotPages } = {}): Promise<TimelineIngestor> {
    const markers = await store.readMarkers();
    if (markers.lastRecordLsn === 0n) throw new Error("timeline has no starting point: import a base backup first");
    // the cluster's wal_segment_size (initdb --wal-segsize: long page headers start its segments)
    // and system identifier (the walreceiver follows only that system)
    const control = await lookup.getVersion(controlFileKey(), markers.lastRecordLsn);
    const settings = control?.value.kind === ValueKind.Image ? readControlFile(control.value.bytes) : undefined;
    return new TimelineIngestor(store, await WalIngest.load(lookup, markers.lastRecordLsn), markers, settings?.segmentSize ?? DEFAULT_WAL_SEGMENT_SIZE, settings?.systemId, options.hotPages);
  }

  /**
   * Pages whose record chains grew long since the last call (for background materialization), at
   * or below `upTo` when given, with the version at which they did.
   */
  drainLongChains(upTo?: Lsn) {
    return this.walIngest.drainLongChains(upTo);
  }

  /** Copies of hot pages to store as their materialized images, at or below `durable`. */
  drainReadyImages(durable: Lsn): ReadyImage[] {
    return this.hotPages?.drainReady(durable) ?? [];
  }

  /** A batch whose writes of relation blocks other than records' own drop those hot pages. */
  private newBatch(): IngestBatch {
    const hot = this.hotPages;
    return new IngestBatch(hot && ((key) => hot.dropKey(key)));
  }

  /** Blocks written since the last drain (WalIngest.drainWrittenPages). */
  drainWrittenPages() {
    return this.walIngest.drainWrittenPages();
  }

  /** Where the WAL stream must resume: the end of the last durably stored record. */
  get resumeLsn(): Lsn {
    return this.lastRecordLsn;
  }

  /**
   * The timeline of the WAL stored so far: xlp_tli of the last WAL page read since this ingestor
   * opened, else the source's timeline as of the last checkpoint or promotion stored (undefined
   * when neither is known).
   */
  get walTimeline(): number | undefined {
    return this.decoder.timeline || this.walIngest.sourceTimeline || undefined;
  }

  /**
   * Keeps the history files of the timelines the source's WAL has passed through (as its server
   * sent them), each at the LSN where that timeline begins; they are stored with the next records
   * committed. A full backup puts them in pg_wal, where PostgreSQL serves them to a standby or a
   * base backup of the endpoint.
   */
  noteTimelineHistory(files: readonly TimelineHistoryFile[]): void {
    for (const file of files) this.pending.put(timelineHistoryKey(file.timeline), file.startLsn, imageValue(Buffer.from(file.content)));
  }

  /** Position the decoder has consumed up to (for the stream's byte accounting). */
  private expectedNext: Lsn | undefined;

  /** Decoded records not yet committed (the walreceiver groups messages into one commit). */
  private pending: IngestBatch;
  private pendingRecords = 0;
  private pendingEnd: Lsn = 0n;

  /**
   * The commit being written in the background (at most one). The next batch is decoded and built
   * meanwhile, so LevelDB's write+fsync overlaps with CPU work. Markers and counters advance only
   * when it is durable; it is awaited (and its error surfaced) before the next commit starts and
   * by flush(). Lookups made meanwhile cannot miss its writes: WalIngest caches every size it
   * writes, and records that scan the store (database records) flush first.
   */
  private inflight: Promise<void> | undefined;
  /** the commit in flight has finished (durable or failed) */
  private inflightSettled = false;

  /** decode work since ingest last yielded to the event loop (see YIELD_AFTER_WORK) */
  private workSinceTurn = 0;

  /** Records not yet durable: pending in memory, or in a commit still being written. */
  get hasPending(): boolean {
    return this.pendingRecords > 0 || this.inflight !== undefined;
  }

  /**
   * Feeds WAL bytes that start at `chunkStart` (must continue the stream; several consecutive
   * pieces may be given at once). Complete records are
   * added to the pending batch, which is committed whenever it reaches `maxBatchBytes` (in the
   * background, while later records are decoded) and, with `flush` (the default), at the end.
   * Returns the durable LSN.
   */
  async ingestWal(chunk: Buffer | readonly Buffer[], chunkStart: Lsn, options: { flush?: boolean; maxBatchBytes?: number } | number = {}): Promise<Lsn> {
    const { flush = true, maxBatchBytes = 8 * 1024 * 1024 } = typeof options === "number" ? { maxBatchBytes: options } : options;
    if (this.failed) throw new IngestStoppedError(`ingest stopped: ${this.failed.message}`);
    // consecutive pieces (messages received together) are fed one after the other: no copy to join them
    let fed = false;
    for (let part of Array.isArray(chunk) ? chunk : [chunk as Buffer]) {
      const expected = this.expectedNext ?? this.lastRecordLsn;
      if (chunkStart > expected) throw new Error(`WAL gap: expected data at ${formatLsn(expected)}, got ${formatLsn(chunkStart)}`);
      const partEnd = chunkStart + BigInt(part.length);
      if (chunkStart < expected) {
        // the primary may resend from an earlier point after a reconnect: skip what we have
        const skip = Number(expected - chunkStart);
        chunkStart = partEnd;
        if (skip >= part.length) continue;
        part = part.subarray(skip);
      }
      this.expectedNext = partEnd;
      this.decoder.feed(part);
      chunkStart = partEnd;
      fed = true;
    }
    if (!fed) return flush ? this.flush() : this.lastRecordLsn;
    try {
      for (;;) {
        let record: DecodedRecord | undefined;
        try {
          record = this.decoder.next();
        } catch (err) {
          // commit what decoded cleanly before the bad record, then stop this timeline
          await this.flush();
          this.failed = err as Error;
          throw err;
        }
        if (!record) break;
        // database-level records scan the store's directories: make earlier writes visible first
        if (record.rmid === 4) await this.flush();
        const ingesting = this.walIngest.ingestRecord(record, this.pending);
        if (ingesting) await ingesting; // most records need no lookup: no await, no microtask
        this.pendingRecords++;
        this.pendingEnd = record.endLsn;
        // A commit in flight advances only when the event loop turns (its writes and fsyncs
        // complete as I/O callbacks), and a chunk of small records keeps this loop busy for
        // milliseconds without one: give it a turn now and then, so the commit overlaps with
        // decoding instead of waiting for the next batch to fill.
        this.workSinceTurn += YIELD_RECORD_COST + record.totalLength;
        if (this.workSinceTurn >= YIELD_AFTER_WORK && this.inflight !== undefined && !this.inflightSettled) {
          this.workSinceTurn = 0;
          await turnEventLoop();
        }
        if (this.pending.bytes >= maxBatchBytes) {
          // at most one commit in flight: wait for the previous one, then start this one
          while (this.inflight) await this.settle();
          this.startCommit();
        }
      }
      if (flush) await this.flush();
    } catch (err) {
      // the in-memory ingest state may be ahead of the store now: this ingestor is done
      this.failed ??= err as Error;
      throw err;
    }
    return this.lastRecordLsn;
  }

  /**
   * Commits the pending records (one synced batch with the new markers) after any commit in flight.
   * Returns the durable LSN once everything ingested so far is durable.
   */
  async flush(): Promise<Lsn> {
    for (;;) {
      if (this.inflight) {
        await this.settle();
        continue;
      }
      if (this.pendingRecords === 0) return this.lastRecordLsn;
      // after a failure the pending batch may hold part of a record (or records after a lost one)
      if (this.failed) throw new IngestStoppedError(`ingest stopped: ${this.failed.message}`);
      this.startCommit();
    }
  }

  /**
   * Starts committing the pending records in the background, unless a commit is still being
   * written (they then wait for a later call). Returns the commit's durable LSN promise, or
   * undefined when nothing was started. Lets a caller that keeps receiving WAL (catch-up) group
   * commits by time without stalling on each fsync.
   */
  commitInBackground(): Promise<Lsn> | undefined {
    if (this.inflight && !this.inflightSettled) return undefined;
    if (this.failed || this.pendingRecords === 0) return undefined;
    // a settled commit's error (if any) is already `failed`, checked above
    this.inflight = undefined;
    const endLsn = this.startCommit();
    return this.inflight!.then(() => endLsn);
  }

  /** Waits for the commit in flight, if any; rethrows its error (once: it is then `failed`). */
  private async settle(): Promise<void> {
    const inflight = this.inflight;
    if (!inflight) return;
    try {
      await inflight;
    } finally {
      if (this.inflight === inflight) this.inflight = undefined;
    }
  }

  /** Starts committing the pending batch (the caller has settled the previous commit); returns the LSN it ends at. */
  private startCommit(): Lsn {
    const batch = this.pending;
    const records = this.pendingRecords;
    const endLsn = this.pendingEnd;
    this.pending = this.newBatch();
    this.pendingRecords = 0;
    this.inflightSettled = false;
    const done = this.store.commit(batch.finish(), { lastRecordLsn: endLsn, diskConsistentLsn: endLsn, startLsn: this.startLsn }).then(
      () => {
        // durable now: only from here may the resume point and the counters move
        this.lastRecordLsn = endLsn;
        this.totalRecords += records;
        this.totalBytes += batch.bytes;
        this.inflightSettled = true;
      },
      (err: Error) => {
        this.inflightSettled = true;
        // the records are gone from memory but not stored: never continue past them
        this.failed ??= err;
        throw err;
      },
    );
    // the error is delivered by settle(); don't report it as unhandled meanwhile
    done.catch(() => {});
    this.inflight = done;
    return endLsn;
  }
}
