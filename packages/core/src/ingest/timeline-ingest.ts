// Drives ingest for one timeline: WAL bytes in stream order -> decoder -> WalIngest -> one atomic
// store batch per step, committed together with last_record_lsn / disk_consistent_lsn. After a
// crash, streaming resumes at the durable last_record_lsn, so no record is lost or stored twice.
import { formatLsn, type Lsn } from "../lsn.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { WalStreamDecoder } from "../wal/reader.ts";
import type { DecodedRecord } from "../wal/record.ts";
import { IngestBatch, type VersionLookup, WalIngest } from "./walingest.ts";

export interface IngestProgress {
  lastRecordLsn: Lsn;
  diskConsistentLsn: Lsn;
  records: number;
  bytes: number;
}

export class IngestStoppedError extends Error {}

export class TimelineIngestor {
  private decoder: WalStreamDecoder;
  private walIngest: WalIngest;
  private lastRecordLsn: Lsn;
  private readonly startLsn: Lsn;
  /** set when a record failed to decode: nothing after it is stored */
  failed: Error | undefined;
  totalRecords = 0;
  totalBytes = 0;

  private constructor(private readonly store: TimelineStore, walIngest: WalIngest, markers: { lastRecordLsn: Lsn; startLsn: Lsn }) {
    this.walIngest = walIngest;
    this.lastRecordLsn = markers.lastRecordLsn;
    this.startLsn = markers.startLsn;
    this.decoder = new WalStreamDecoder(markers.lastRecordLsn);
  }

  /** `lookup` (default: the store itself) is how ingest reads current state, e.g. through ancestors. */
  static async open(store: TimelineStore, lookup: VersionLookup = store): Promise<TimelineIngestor> {
    const markers = await store.readMarkers();
    if (markers.lastRecordLsn === 0n) throw new Error("timeline has no starting point: import a base backup first");
    return new TimelineIngestor(store, await WalIngest.load(lookup, markers.lastRecordLsn), markers);
  }

  /** Pages whose record chains grew long since the last call (for background materialization). */
  drainLongChains() {
    return this.walIngest.drainLongChains();
  }

  /** Where the WAL stream must resume: the end of the last durably stored record. */
  get resumeLsn(): Lsn {
    return this.lastRecordLsn;
  }

  /** Position the decoder has consumed up to (for the stream's byte accounting). */
  private expectedNext: Lsn | undefined;

  /** Decoded records not yet committed (the walreceiver groups messages into one commit). */
  private pending = new IngestBatch();
  private pendingRecords = 0;
  private pendingEnd: Lsn = 0n;

  get hasPending(): boolean {
    return this.pendingRecords > 0;
  }

  /**
   * Feeds WAL bytes that start at `chunkStart` (must continue the stream). Complete records are
   * added to the pending batch, which is committed whenever it reaches `maxBatchBytes` and, with
   * `flush` (the default), at the end. Returns the durable LSN.
   */
  async ingestWal(chunk: Buffer, chunkStart: Lsn, options: { flush?: boolean; maxBatchBytes?: number } | number = {}): Promise<Lsn> {
    const { flush = true, maxBatchBytes = 8 * 1024 * 1024 } = typeof options === "number" ? { maxBatchBytes: options } : options;
    if (this.failed) throw new IngestStoppedError(`ingest stopped: ${this.failed.message}`);
    const expected = this.expectedNext ?? this.lastRecordLsn;
    if (chunkStart > expected) throw new Error(`WAL gap: expected data at ${formatLsn(expected)}, got ${formatLsn(chunkStart)}`);
    if (chunkStart < expected) {
      // the primary may resend from an earlier point after a reconnect: skip what we have
      const skip = Number(expected - chunkStart);
      if (skip >= chunk.length) return flush ? this.flush() : this.lastRecordLsn;
      chunk = chunk.subarray(skip);
      chunkStart = expected;
    }
    this.expectedNext = chunkStart + BigInt(chunk.length);
    this.decoder.feed(chunk);
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
        await this.walIngest.ingest(record, this.pending);
        this.pendingRecords++;
        this.pendingEnd = record.endLsn;
        if (this.pending.bytes >= maxBatchBytes) await this.flush();
      }
      if (flush) await this.flush();
    } catch (err) {
      // the in-memory ingest state may be ahead of the store now: this ingestor is done
      this.failed ??= err as Error;
      throw err;
    }
    return this.lastRecordLsn;
  }

  /** Commits the pending records (one synced batch with the new markers). Returns the durable LSN. */
  async flush(): Promise<Lsn> {
    if (this.pendingRecords === 0) return this.lastRecordLsn;
    const batch = this.pending;
    const records = this.pendingRecords;
    const endLsn = this.pendingEnd;
    this.pending = new IngestBatch();
    this.pendingRecords = 0;
    try {
      await this.store.commit(batch.entries, { lastRecordLsn: endLsn, diskConsistentLsn: endLsn, startLsn: this.startLsn });
    } catch (err) {
      // the records are gone from memory but not stored: never continue past them
      this.failed ??= err as Error;
      throw err;
    }
    this.lastRecordLsn = endLsn;
    this.totalRecords += records;
    this.totalBytes += batch.bytes;
    return endLsn;
  }
}
