// Drives ingest for one timeline: WAL bytes in stream order -> decoder -> WalIngest -> one atomic
// store batch per step, committed together with last_record_lsn / disk_consistent_lsn. After a
// crash, streaming resumes at the durable last_record_lsn, so no record is lost or stored twice.
import { formatLsn, type Lsn } from "../lsn.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { WalStreamDecoder } from "../wal/reader.ts";
import type { DecodedRecord } from "../wal/record.ts";
import { IngestBatch, WalIngest } from "./walingest.ts";

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

  static async open(store: TimelineStore): Promise<TimelineIngestor> {
    const markers = await store.readMarkers();
    if (markers.lastRecordLsn === 0n) throw new Error("timeline has no starting point: import a base backup first");
    return new TimelineIngestor(store, await WalIngest.load(store, markers.lastRecordLsn), markers);
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

  /**
   * Feeds WAL bytes that start at `chunkStart` (must continue the stream) and commits every
   * complete record they finish, in batches of at most `maxBatchBytes`. Returns the new durable LSN.
   */
  async ingestWal(chunk: Buffer, chunkStart: Lsn, maxBatchBytes = 8 * 1024 * 1024): Promise<Lsn> {
    if (this.failed) throw new IngestStoppedError(`ingest stopped: ${this.failed.message}`);
    const expected = this.expectedNext ?? this.lastRecordLsn;
    if (chunkStart > expected) throw new Error(`WAL gap: expected data at ${formatLsn(expected)}, got ${formatLsn(chunkStart)}`);
    if (chunkStart < expected) {
      // the primary may resend from an earlier point after a reconnect: skip what we have
      const skip = Number(expected - chunkStart);
      if (skip >= chunk.length) return this.lastRecordLsn;
      chunk = chunk.subarray(skip);
      chunkStart = expected;
    }
    this.expectedNext = chunkStart + BigInt(chunk.length);
    this.decoder.feed(chunk);
    let batch = new IngestBatch();
    let batchRecords = 0;
    let batchEnd = this.lastRecordLsn;
    for (;;) {
      let record: DecodedRecord | undefined;
      try {
        record = this.decoder.next();
      } catch (err) {
        // commit what decoded cleanly before the bad record, then stop this timeline
        if (batchRecords) await this.commit(batch, batchEnd, batchRecords);
        this.failed = err as Error;
        throw err;
      }
      if (!record) break;
      // database-level records scan the store's directories: make earlier writes visible first
      if (record.rmid === 4 && batchRecords) {
        await this.commit(batch, batchEnd, batchRecords);
        batch = new IngestBatch();
        batchRecords = 0;
      }
      await this.walIngest.ingest(record, batch);
      batchRecords++;
      batchEnd = record.endLsn;
      if (batch.bytes >= maxBatchBytes) {
        await this.commit(batch, batchEnd, batchRecords);
        batch = new IngestBatch();
        batchRecords = 0;
      }
    }
    if (batchRecords) await this.commit(batch, batchEnd, batchRecords);
    return this.lastRecordLsn;
  }

  private async commit(batch: IngestBatch, endLsn: Lsn, records: number) {
    await this.store.commit(batch.entries, { lastRecordLsn: endLsn, diskConsistentLsn: endLsn, startLsn: this.startLsn });
    this.lastRecordLsn = endLsn;
    this.totalRecords += records;
    this.totalBytes += batch.bytes;
  }
}
