// The pageserver's live tenants: opens each active timeline's store when its tenant is attached
// (only after the tenant's creation committed), runs a walreceiver for timelines that follow a
// primary, answers "wait until LSN is durable", and closes everything on detach/shutdown.
import { existsSync } from "node:fs";
import { formatLsn, mayBePastPageHeader, pageStartIfPastHeader, type Lsn } from "../lsn.ts";
import type { ForkNumber, RelTag } from "../reltag.ts";
import { dropPrimarySlot, importFromPrimary, preparePrimarySlot, type PrimaryImportResult } from "../ingest/import-primary.ts";
import { bootstrapTimeline } from "../ingest/bootstrap.ts";
import { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import { HotPages, type ReadyImage } from "../ingest/hot-pages.ts";
import { materializedBlockKey } from "../storage/keys.ts";
import { imageValue } from "../storage/values.ts";
import { readControlFile } from "../basebackup/control.ts";
import { WalReceiver, type WalReceiverStatus } from "../ingest/walreceiver.ts";
import { TimelineStore, type TimelineMarkers } from "../storage/timeline-store.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { endOfValidWal, readWalRange } from "../wal/reader.ts";
import { diskUsageBytes, tenantDir, timelineStoreDir } from "./tenant-storage.ts";
import path from "node:path";
import { Compactor, compactionFromEnv, type CompactionSettings } from "./compactor.ts";
import type { HistoryCutResult } from "../timeline/history-cut.ts";

export interface TimelineSpec {
  id: string;
  parentTimelineId?: string | null;
  ancestorLsn?: Lsn;
  primaryUrl?: string | null;
  slotName?: string | null;
}

export interface TimelineHandle {
  tenantId: string;
  timelineId: string;
  store: TimelineStore;
  reader: PageReader;
  receiver?: WalReceiver;
  parentTimelineId?: string;
}

export interface TimelineSizes {
  /** bytes the timeline's directory takes on disk */
  physicalBytes: number;
  /** bytes of all relation forks at `lsn` (null when the timeline is not attached) */
  logicalBytes: number | null;
  /** the timeline's last_record_lsn the logical size is at */
  lsn: Lsn | null;
}

/** how long timelineSizes keeps a figure (the dashboard asks every second, metrics on each scrape) */
const SIZES_MAX_AGE_MS = 1000;

export interface IngestEvents {
  onDurable?(tenantId: string, timelineId: string, lsn: Lsn, bytes: number, records: number): void;
  onReceiverEvent?(tenantId: string, timelineId: string, event: string, detail: string): void;
  /** a compaction pass (history cut) finished, or stopped, at `lsn` */
  /** `underLoad`: a pass its timeline got because its primary was never quiet for the compaction's maxWaitMs */
  onCompaction?(tenantId: string, timelineId: string, result: HistoryCutResult, lsn: Lsn, underLoad: boolean): void;
  onCompactionError?(tenantId: string, timelineId: string, err: Error): void;
}

export class WaitLsnTimeoutError extends Error {}
/** A read below the timeline's first readable LSN. */
export class LsnOutOfRangeError extends Error {}
/** The relation (fork) does not exist at the LSN, or the block lies beyond its end. */
export class PageNotFoundError extends Error {}

/** One sample of a timeline's ingest progress, for the dashboard's LSN chart. */
export interface ProgressPoint {
  time: number;
  lastRecordLsn: Lsn;
  diskConsistentLsn: Lsn;
  primaryFlushLsn: Lsn | null;
  /** WAL bytes per second ingested since the previous sample */
  ingestRate: number;
}

const PROGRESS_POINTS = 600;
const MATERIALIZE_QUEUE_LIMIT = 10_000;
/** pages materialized (rebuilt, or hot pages' images stored) at once by the background materializer */
const MATERIALIZE_GROUP = 8;
/** a timeline this far behind its primary is catching up on a backlog */
export const CATCH_UP_LAG_BYTES = 16n * 1024n * 1024n;
/** while catching up, background materialization does one group per this long */
export const CATCH_UP_MATERIALIZE_INTERVAL_MS = 1000;

/**
 * How long the background materializer waits before its next group: no wait, unless the
 * timeline's walreceiver is streaming a backlog (CATCH_UP_LAG_BYTES behind what the primary has
 * flushed). Ingest then goes first: materializing hot pages replays their records, about a sixth
 * of the main thread during a catch-up, and reads at an LSN not yet ingested must wait anyway;
 * one group per interval still runs, and a read that finds a long chain stores its own image.
 */
export function materializeWaitMs(receiver: { status: Pick<WalReceiverStatus, "state" | "primaryFlushLsn">; lastRecordLsn: Lsn } | undefined): number {
  if (!receiver || receiver.status.state !== "streaming") return 0;
  return receiver.status.primaryFlushLsn - receiver.lastRecordLsn > CATCH_UP_LAG_BYTES ? CATCH_UP_MATERIALIZE_INTERVAL_MS : 0;
}

/** Work for the background materializer: rebuild a page at `lsn` (for ingest's hot pages, if given), or store a hot page's ready image. */
type MaterializeTask = { rel: RelTag; fork: ForkNumber; block: number; lsn: Lsn; hotPages?: HotPages } | ReadyImage;

export class TenantManager {
  private readonly timelines = new Map<string, TimelineHandle>();
  private readonly waiters = new Set<() => void>();
  private readonly progress = new Map<string, ProgressPoint[]>();
  private sampler: NodeJS.Timeout | undefined;

  private readonly compactor: Compactor;
  /** each timeline's last compaction pass since the pageserver started */
  private readonly lastCompaction = new Map<string, { at: number; lsn: Lsn; result: HistoryCutResult }>();

  constructor(readonly dataDir: string, private readonly events: IngestEvents = {}, sampleIntervalMs = 1000, compaction: CompactionSettings = compactionFromEnv()) {
    const split = (key: string) => key.split("/") as [string, string];
    this.compactor = new Compactor(
      compaction,
      (key, result, lsn, underLoad) => {
        this.lastCompaction.set(key, { at: Date.now(), lsn, result });
        this.events.onCompaction?.(...split(key), result, lsn, underLoad);
      },
      (key, err) => this.events.onCompactionError?.(...split(key), err),
    );
    if (sampleIntervalMs > 0) {
      this.sampler = setInterval(() => void this.sample().catch(() => {}), sampleIntervalMs);
      this.sampler.unref();
    }
  }

  private async sample() {
    const now = Date.now();
    for (const [key, handle] of this.timelines) {
      const markers = await handle.store.readMarkers().catch(() => undefined);
      if (!markers) continue;
      const points = this.progress.get(key) ?? this.progress.set(key, []).get(key)!;
      const previous = points[points.length - 1];
      const rate = previous && now > previous.time ? Number(markers.lastRecordLsn - previous.lastRecordLsn) / ((now - previous.time) / 1000) : 0;
      points.push({
        time: now,
        lastRecordLsn: markers.lastRecordLsn,
        diskConsistentLsn: markers.diskConsistentLsn,
        primaryFlushLsn: handle.receiver ? handle.receiver.status.primaryFlushLsn : null,
        ingestRate: Math.max(0, rate),
      });
      if (points.length > PROGRESS_POINTS) points.splice(0, points.length - PROGRESS_POINTS);
      // (detached while its markers were read: a pass must not start on a closing store)
      if (this.timelines.get(key) === handle) this.compactor.tick(key, handle, now);
    }
  }

  /** Recent progress samples of a timeline (about one per second, the last ten minutes). */
  progressOf(tenantId: string, timelineId: string): ProgressPoint[] {
    return this.progress.get(this.key(tenantId, timelineId)) ?? [];
  }

  private key(tenantId: string, timelineId: string) {
    return `${tenantId}/${timelineId}`;
  }

  async attach(tenantId: string, timelines: Array<string | TimelineSpec>): Promise<void> {
    // parents first: a branch reads through its ancestor's reader
    const pending = timelines.map((entry) => (typeof entry === "string" ? { id: entry } : entry));
    const ordered: TimelineSpec[] = [];
    while (pending.length) {
      const index = pending.findIndex((spec) => !spec.parentTimelineId || this.timelines.has(this.key(tenantId, spec.parentTimelineId)) || ordered.some((o) => o.id === spec.parentTimelineId));
      if (index < 0) throw new Error(`timeline ${pending[0].id} of tenant ${tenantId} has a missing ancestor ${pending[0].parentTimelineId}`);
      ordered.push(...pending.splice(index, 1));
    }
    for (const spec of ordered) {
      const key = this.key(tenantId, spec.id);
      if (this.timelines.has(key)) continue;
      const store = await TimelineStore.open(timelineStoreDir(this.dataDir, tenantId, spec.id));
      const parent = spec.parentTimelineId ? this.get(tenantId, spec.parentTimelineId) : undefined;
      const reader = new PageReader(store, parent ? { ancestor: { reader: parent.reader, lsn: spec.ancestorLsn ?? 0n } } : {});
      const handle: TimelineHandle = { tenantId, timelineId: spec.id, store, reader, parentTimelineId: spec.parentTimelineId ?? undefined };
      this.timelines.set(key, handle);
      if (spec.primaryUrl && spec.slotName) await this.startReceiver(tenantId, spec.id, spec.primaryUrl, spec.slotName);
    }
  }

  /** Starts following `primaryUrl` (an external primary, or an endpoint on this branch) through `slot`. */
  async startReceiver(tenantId: string, timelineId: string, primaryUrl: string, slot: string): Promise<void> {
    const handle = this.get(tenantId, timelineId);
    if (!handle) throw new Error(`timeline ${timelineId} is not attached`);
    if (handle.receiver) throw new Error(`timeline ${timelineId} already has a walreceiver`);
    // the receiver's hot pages: adopted by the background materializer, which stores their images
    const hotPages = new HotPages();
    const ingestor = await TimelineIngestor.open(handle.store, handle.reader, { hotPages });
    hotPages.hintBitsLogged = await handle.reader.walLogsHintBits(ingestor.resumeLsn);
    handle.receiver = new WalReceiver(ingestor, {
      primary: primaryUrl,
      slot,
      applicationName: `strata_${timelineId.slice(0, 16)}`,
      onDurable: (lsn, bytes, records) => {
        this.events.onDurable?.(tenantId, timelineId, lsn, bytes, records);
        for (const wake of this.waiters) wake();
      },
      onEvent: (event, detail) => this.events.onReceiverEvent?.(tenantId, timelineId, event, detail),
      onLongChains: (pages) => {
        // (no new hot pages during a catch-up: the materializer adopts them only now and then)
        hotPages.accepting = materializeWaitMs(handle.receiver) === 0;
        this.materializeLater(handle, pages.map((page) => ({ ...page, hotPages })));
      },
      onReadyImages: (images) => this.materializeLater(handle, images),
    });
    handle.receiver.start();
  }

  /**
   * Gets `primaryUrl` ready for the timeline to follow it instead of the server it follows now (a
   * failover to a promoted standby at another address): checked to be the timeline's database
   * system, with the slot created there if missing (preparePrimarySlot). Changes nothing else.
   */
  async preparePrimary(tenantId: string, timelineId: string, primaryUrl: string, slot: string): Promise<"created" | "exists"> {
    if (!this.get(tenantId, timelineId)) throw new Error(`timeline ${timelineId} is not attached`);
    return preparePrimarySlot(primaryUrl, slot, await this.systemId(tenantId, timelineId));
  }

  /**
   * Moves the timeline's walreceiver to another server (preparePrimary first): the running one
   * stops, keeping what it received, and the new one streams from the timeline's durable LSN, so
   * nothing is skipped or stored twice.
   */
  async switchReceiver(tenantId: string, timelineId: string, primaryUrl: string, slot: string): Promise<void> {
    const handle = this.get(tenantId, timelineId);
    if (!handle) throw new Error(`timeline ${timelineId} is not attached`);
    const running = handle.receiver;
    handle.receiver = undefined;
    // (not stopReceiver: the timeline is not going idle, so no compaction pass is due)
    await running?.stop();
    await this.startReceiver(tenantId, timelineId, primaryUrl, slot);
  }

  async stopReceiver(tenantId: string, timelineId: string): Promise<void> {
    const handle = this.get(tenantId, timelineId);
    if (!handle?.receiver) return;
    const receiver = handle.receiver;
    handle.receiver = undefined;
    await receiver.stop();
    // the timeline is idle now (an endpoint stopped): cut it before the next start reads it
    if (this.timelines.get(this.key(tenantId, timelineId)) === handle) this.compactor.receiverStopped(this.key(tenantId, timelineId), handle, receiver);
  }

  /**
   * Ingests the WAL of a stopped postgres straight from its pg_wal directory, from where the
   * timeline ends up to `upTo`: an endpoint that stopped before its walreceiver got every record
   * (e.g. it had not connected yet). Without `upTo`, every valid record there (`endOfValidWal`),
   * as the crash recovery of a postgres that died would replay them: its commits were
   * acknowledged once flushed there, whether or not they had been streamed. The receiver must be
   * stopped.
   */
  async ingestFromWalDir(tenantId: string, timelineId: string, walDir: string, upTo?: Lsn): Promise<Lsn> {
    const handle = this.get(tenantId, timelineId);
    if (!handle) throw new Error(`timeline ${timelineId} is not attached`);
    if (handle.receiver) throw new Error(`timeline ${timelineId} still has a walreceiver`);
    const ingestor = await TimelineIngestor.open(handle.store, handle.reader);
    const from = ingestor.resumeLsn;
    const end = upTo ?? endOfValidWal(walDir, from, { segmentSize: ingestor.segmentSize });
    if (from >= end) return from;
    // a segment at a time: what a lagging receiver left behind can be any size
    const segment = BigInt(ingestor.segmentSize);
    let durable = from;
    for (let pos = from; pos < end; ) {
      const segmentEnd = pos - (pos % segment) + segment;
      const next = segmentEnd < end ? segmentEnd : end;
      durable = await ingestor.ingestWal(readWalRange(walDir, pos, next, { segmentSize: ingestor.segmentSize }), pos);
      pos = next;
    }
    if (durable < end) throw new Error(`WAL in ${walDir} ends at ${formatLsn(durable)}, before ${formatLsn(end)}`);
    this.events.onDurable?.(tenantId, timelineId, durable, ingestor.totalBytes, ingestor.totalRecords);
    const pages = ingestor.drainLongChains();
    if (pages.length) this.materializeLater(handle, pages);
    for (const wake of this.waiters) wake();
    return durable;
  }

  private materializing = new Map<string, Promise<void>>();
  private materializeQueues = new Map<string, Map<string, MaterializeTask>>();

  /**
   * Background half of the bounded-replay policy: rebuild pages whose chains grew long (at the
   * version given), so the reader stores a materialized image and later reads replay only what
   * came after it, and hand a rebuilt page to the ingest that asked for it (a hot page, which
   * then makes its own images: those are stored here too). Pages that cannot be rebuilt (a
   * record type without redo) are left; reading them reports why.
   */
  private materializeLater(handle: TimelineHandle, tasks: MaterializeTask[]) {
    const key = this.key(handle.tenantId, handle.timelineId);
    let queue = this.materializeQueues.get(key);
    if (!queue) this.materializeQueues.set(key, (queue = new Map()));
    // bounded and deduplicated: a page queued twice is rebuilt once, at the newer LSN
    for (const task of tasks) {
      if (queue.size >= MATERIALIZE_QUEUE_LIMIT) break;
      const id = `${task.rel.spcNode}/${task.rel.dbNode}/${task.rel.relNode}/${task.fork}/${task.block}`;
      queue.set("page" in task ? `image ${id}` : id, task);
    }
    if (this.materializing.has(key)) return;
    const run = (async () => {
      while (queue.size && this.timelines.has(key)) {
        // a few pages at a time: their images then share one write and fdatasync of the page
        // image files (each one alone would pay its own)
        const group: MaterializeTask[] = [];
        for (const [id, task] of queue) {
          if (group.length === MATERIALIZE_GROUP) break;
          queue.delete(id);
          group.push(task);
        }
        const images = group.filter((task): task is ReadyImage => "page" in task);
        const stored =
          images.length > 0 &&
          handle.store.putDerivedMany(images.map((image) => ({ entityKey: materializedBlockKey(image.rel, image.fork, image.block), lsn: image.lsn, value: imageValue(image.page) }))).catch(() => {});
        await Promise.all([stored, ...group.map((task) => ("page" in task ? undefined : this.rebuild(handle, task)))]);
        // let ingest and reads go first (all of it while the timeline catches up on a backlog)
        const wait = materializeWaitMs(handle.receiver);
        if (wait === 0) await new Promise((resolve) => setImmediate(resolve));
        else {
          // in short steps: a detach, or the end of the backlog, ends the wait
          const until = Date.now() + wait;
          while (Date.now() < until && this.timelines.has(key) && materializeWaitMs(handle.receiver) > 0) await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    })();
    this.materializing.set(key, run);
    void run.finally(() => this.materializing.delete(key));
  }

  /** Rebuilds a page for the materializer (and hands it to its hot pages). */
  private async rebuild(handle: TimelineHandle, task: { rel: RelTag; fork: ForkNumber; block: number; lsn: Lsn; hotPages?: HotPages }): Promise<void> {
    try {
      const page = await handle.reader.materialize(task.rel, task.fork, task.block, task.lsn);
      // (no await since the rebuild: what ingest stored meanwhile is what the hot page keeps)
      task.hotPages?.adopt(task.rel, task.fork, task.block, task.lsn, page);
    } catch {
      task.hotPages?.abandon(task.rel, task.fork, task.block, task.lsn);
    }
  }

  /** Fills a (not yet attached) timeline with a fresh initdb cluster. */
  async bootstrap(tenantId: string, timelineId: string): Promise<{ lsn: Lsn }> {
    const store = await TimelineStore.open(timelineStoreDir(this.dataDir, tenantId, timelineId));
    try {
      return await bootstrapTimeline(store);
    } finally {
      await store.close();
    }
  }

  /** Imports a primary's base backup into a (not yet attached) timeline store. */
  async importFromPrimary(tenantId: string, timelineId: string, primaryUrl: string, slotName: string, onProgress?: (done: number, total: number | null) => void): Promise<PrimaryImportResult> {
    const store = await TimelineStore.open(timelineStoreDir(this.dataDir, tenantId, timelineId));
    try {
      return await importFromPrimary(store, primaryUrl, slotName, onProgress);
    } finally {
      await store.close();
    }
  }

  /**
   * Drops the timeline's replication slot on the primary it follows (its tenant is being deleted;
   * its walreceiver must have stopped). Checked against the system identifier in the timeline's
   * pg_control while its storage exists. See dropPrimarySlot.
   */
  async releasePrimarySlot(tenantId: string, timelineId: string, primaryUrl: string, slot: string): Promise<"dropped" | "absent"> {
    // a store that cannot be read (a create cut short) still had its slot recorded by name: drop it
    const systemId = await this.systemId(tenantId, timelineId).catch(() => undefined);
    return dropPrimarySlot(primaryUrl, slot, { systemId });
  }

  /** The system identifier in a timeline's pg_control, attached or not (undefined: none stored). */
  private async systemId(tenantId: string, timelineId: string): Promise<bigint | undefined> {
    const handle = this.get(tenantId, timelineId);
    const dir = timelineStoreDir(this.dataDir, tenantId, timelineId);
    if (!handle && !existsSync(dir)) return undefined;
    const store = handle?.store ?? (await TimelineStore.open(dir));
    try {
      const control = await (handle?.reader ?? new PageReader(store)).getControlFile((await store.readMarkers()).lastRecordLsn);
      return control ? readControlFile(control).systemId : undefined;
    } finally {
      if (!handle) await store.close();
    }
  }

  /** Closes one timeline (e.g. a branch whose creation failed). */
  async detachTimeline(tenantId: string, timelineId: string): Promise<void> {
    const key = this.key(tenantId, timelineId);
    const handle = this.timelines.get(key);
    if (!handle) return;
    this.timelines.delete(key);
    this.progress.delete(key);
    await this.compactor.detach(key);
    this.lastCompaction.delete(key);
    this.sizes.delete(key);
    await handle.receiver?.stop();
    await handle.store.close();
  }

  async detach(tenantId: string): Promise<void> {
    for (const [key, handle] of this.timelines) {
      if (handle.tenantId !== tenantId) continue;
      this.timelines.delete(key);
      this.progress.delete(key);
      await this.materializing.get(key);
      await this.compactor.detach(key);
      this.lastCompaction.delete(key);
      await handle.receiver?.stop();
      await handle.store.close();
    }
  }

  get(tenantId: string, timelineId: string): TimelineHandle | undefined {
    return this.timelines.get(this.key(tenantId, timelineId));
  }

  async markers(tenantId: string, timelineId: string): Promise<TimelineMarkers | undefined> {
    return this.get(tenantId, timelineId)?.store.readMarkers();
  }

  receiverStatus(tenantId: string, timelineId: string): WalReceiverStatus | undefined {
    return this.get(tenantId, timelineId)?.receiver?.status;
  }

  /**
   * What "latest" means for a read of a timeline: every record its WAL source (its primary, or
   * its endpoint's postgres) has flushed, as far as the walreceiver has heard (every replication
   * message carries it), so a commit acknowledged before the request is included even while
   * ingest is still behind it. Without a streaming source, what the timeline has ingested (its
   * first readable LSN before it has ingested anything). Not waited for: callers wait for it
   * (waitForLsn) as for an LSN given.
   */
  async latestLsn(tenantId: string, timelineId: string): Promise<Lsn> {
    const handle = this.get(tenantId, timelineId);
    if (!handle) throw new Error(`timeline ${timelineId} is not attached`);
    const markers = await handle.store.readMarkers();
    const ingested = markers.lastRecordLsn > markers.startLsn ? markers.lastRecordLsn : markers.startLsn;
    const status = handle.receiver?.status;
    const sourceFlushed = status?.state === "streaming" ? status.primaryFlushLsn : 0n;
    return sourceFlushed > ingested ? sourceFlushed : ingested;
  }

  /** Resolves once the timeline has durably stored WAL up to `lsn`; fails after `timeoutMs`. */
  async waitForLsn(tenantId: string, timelineId: string, requested: Lsn, timeoutMs: number): Promise<TimelineMarkers> {
    const deadline = Date.now() + timeoutMs;
    const lsn = await this.pastHeaderToPageStart(tenantId, timelineId, requested);
    for (;;) {
      const handle = this.get(tenantId, timelineId);
      if (!handle) throw new Error(`timeline ${timelineId} is not attached`);
      const markers = await handle.store.readMarkers();
      if (markers.diskConsistentLsn >= lsn) return markers;
      const status = handle.receiver?.status;
      if (status?.state === "failed") throw new Error(`ingest for timeline ${timelineId} has stopped: ${status.lastError}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WaitLsnTimeoutError(
          `timed out after ${timeoutMs} ms waiting for LSN ${formatLsn(requested)}; timeline is durable up to ${formatLsn(markers.diskConsistentLsn)}` +
            (status?.lastError ? ` (walreceiver: ${status.state}, last error: ${status.lastError})` : ""),
        );
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, 250));
        this.waiters.add(wake);
      });
    }
  }

  /** pageStartIfPastHeader with the timeline's own WAL segment size (read only when it matters). */
  private async pastHeaderToPageStart(tenantId: string, timelineId: string, lsn: Lsn): Promise<Lsn> {
    if (!mayBePastPageHeader(lsn)) return lsn;
    const control = await this.get(tenantId, timelineId)?.reader.getControlFile(lsn).catch(() => undefined);
    return pageStartIfPastHeader(lsn, control ? readControlFile(control).segmentSize : undefined);
  }

  /** The attached timelines (tenant id, timeline id). */
  attachedTimelines(): Array<{ tenantId: string; timelineId: string }> {
    return [...this.timelines.values()].map((handle) => ({ tenantId: handle.tenantId, timelineId: handle.timelineId }));
  }

  /** Lag inputs of every timeline that follows a primary. */
  receivers(): Array<{ tenantId: string; timelineId: string; primaryFlushLsn: Lsn; lastRecordLsn: Lsn }> {
    const out = [];
    for (const handle of this.timelines.values()) {
      if (!handle.receiver) continue;
      out.push({ tenantId: handle.tenantId, timelineId: handle.timelineId, primaryFlushLsn: handle.receiver.status.primaryFlushLsn, lastRecordLsn: handle.receiver.lastRecordLsn });
    }
    return out;
  }

  /**
   * GetPage@LSN with PostgreSQL's expectations: `lsn` defaults to the latest durable LSN; an LSN
   * not yet ingested waits up to `waitMs`; below the timeline's first readable LSN is refused;
   * a missing relation or a block past its end is an error, as smgrread would raise.
   */
  async readPage(tenantId: string, timelineId: string, rel: RelTag, fork: ForkNumber, blockNumber: number, lsn: Lsn | undefined, waitMs: number): Promise<{ page: Buffer; lsn: Lsn }> {
    const handle = this.get(tenantId, timelineId);
    if (!handle) throw new Error(`timeline ${timelineId} is not attached`);
    let markers = await handle.store.readMarkers();
    const target = lsn ?? (await this.latestLsn(tenantId, timelineId));
    if (target < markers.startLsn) {
      throw new LsnOutOfRangeError(`LSN ${formatLsn(target)} is below the first readable LSN ${formatLsn(markers.startLsn)} of timeline ${timelineId}`);
    }
    if (target > markers.lastRecordLsn) markers = await this.waitForLsn(tenantId, timelineId, target, waitMs);
    const size = await handle.reader.relSize(rel, fork, target);
    const name = `${rel.spcNode}/${rel.dbNode}/${rel.relNode} fork ${fork}`;
    if (size === undefined) throw new PageNotFoundError(`relation ${name} does not exist at ${formatLsn(target)}`);
    if (blockNumber >= size) throw new PageNotFoundError(`block ${blockNumber} is beyond the end of relation ${name} (${size} blocks) at ${formatLsn(target)}`);
    return { page: await handle.reader.getPage(rel, fork, blockNumber, target), lsn: target };
  }

  /**
   * Compacts a timeline now (a history cut of every block with history at its durable LSN), after
   * any pass already running; returns what it did and the LSN it cut at.
   */
  async compactNow(tenantId: string, timelineId: string): Promise<{ lsn: Lsn; result: HistoryCutResult }> {
    const handle = this.get(tenantId, timelineId);
    if (!handle) throw new Error(`timeline ${timelineId} is not attached`);
    const lsn = (await handle.store.readMarkers()).lastRecordLsn;
    return { lsn, result: await this.compactor.compactNow(this.key(tenantId, timelineId), handle, lsn) };
  }

  /** per timeline: the figure being computed or last computed, when it was asked for, and the last one computed */
  private readonly sizes = new Map<string, { at: number; sizes: Promise<TimelineSizes>; settled: TimelineSizes | undefined }>();

  /**
   * What a timeline takes on disk (its directory: LevelDB, page image and record log files) and
   * the size of its databases at its last_record_lsn (PageReader.logicalSize; null when it is not
   * attached). Computed at most every SIZES_MAX_AGE_MS per timeline (listings and metrics ask
   * often; a walk of a large store's files takes milliseconds).
   */
  timelineSizes(tenantId: string, timelineId: string): Promise<TimelineSizes> {
    const key = this.key(tenantId, timelineId);
    const cached = this.sizes.get(key);
    if (cached && Date.now() - cached.at < SIZES_MAX_AGE_MS) return cached.sizes;
    const previous = cached?.settled;
    const handle = this.get(tenantId, timelineId);
    const sizes = (async (): Promise<TimelineSizes> => {
      const physicalBytes = await diskUsageBytes(path.dirname(timelineStoreDir(this.dataDir, tenantId, timelineId)));
      if (!handle) return { physicalBytes, logicalBytes: null, lsn: null };
      const lsn = (await handle.store.readMarkers()).lastRecordLsn;
      // the databases' size changes only with new WAL: an unchanged LSN keeps the last figure
      const logicalBytes = previous?.lsn === lsn && previous.logicalBytes !== null ? previous.logicalBytes : await handle.reader.logicalSize(lsn).catch(() => null);
      return { physicalBytes, logicalBytes, lsn };
    })();
    const entry = { at: Date.now(), sizes, settled: previous };
    this.sizes.set(key, entry);
    // (an error is the caller's, and not kept)
    sizes.then(
      (done) => void (entry.settled = done),
      () => {
        if (this.sizes.get(key) === entry) this.sizes.delete(key);
      },
    );
    return sizes;
  }

  /** What a tenant's directory takes on disk (all its timelines). */
  tenantDiskBytes(tenantId: string): Promise<number> {
    return diskUsageBytes(tenantDir(this.dataDir, tenantId));
  }

  /** The timeline's last compaction pass since the pageserver started (when it ended, its LSN, what it did). */
  compactionStatus(tenantId: string, timelineId: string): { at: number; lsn: Lsn; result: HistoryCutResult } | undefined {
    return this.lastCompaction.get(this.key(tenantId, timelineId));
  }

  get attachedTimelineCount(): number {
    return this.timelines.size;
  }

  async shutdown(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    for (const handle of this.timelines.values()) {
      await this.compactor.detach(this.key(handle.tenantId, handle.timelineId));
      await handle.receiver?.stop();
      await this.materializing.get(this.key(handle.tenantId, handle.timelineId));
      await handle.store.close();
    }
    this.timelines.clear();
  }
}
