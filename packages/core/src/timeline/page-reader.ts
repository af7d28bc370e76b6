// GetPage@LSN: rebuilds a page as of an LSN from the versions stored for it. Finds the newest
// base at or below the LSN (an image, a materialized image, a will-init record, or nothing =
// a zero page), then replays the records and derived changes above it in LSN order through
// the rmgr table (redo/rmgrs.ts). Pages whose chain is long get a materialized image so later
// reads replay at most `maxReplay` records.
import { formatLsn, type Lsn } from "../lsn.ts";
import { BLCKSZ, ForkNumber, type RelTag } from "../reltag.ts";
import { readControlFile } from "../basebackup/control.ts";
import { getPageLsn } from "../redo/page.ts";
import { storeKey, walRecordLogKey, checkpointKey, controlFileKey, relmapFileKey, decodeRelKey, dbDirEntryKey, entityPrefix, KeySpace, materializedBlockKey, materializedSlruKey, relBlockKey, relSizeKey, type SlruKind, slruBlockKey, slruSegSizeKey } from "../storage/keys.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { decodeLoggedRecord, decodeRecordLogPiece, lastRecordBefore } from "../storage/record-log.ts";
import { ImageExtentIndex } from "../storage/image-extents.ts";
import { PageCache, sharedPageCache } from "./page-cache.ts";
import { decodeStoredVersions, decodeValue, imageValue, needsOtherStoredPage, readU32Value, readU64Value, replayedVersions, RUN_MEMBER_HEADER, runLength, runMemberOffset, type StoredChain, storedNewestLsn, storedVersionsAbove, type StoredValue, ValueKind } from "../storage/values.ts";
import { applyDerived } from "../redo/derived.ts";
import { applyStoredVersion, applyWalRecordValue, needsOtherPage, PageReadError, type ReplayTarget } from "../walredo/apply.ts";
import { type RedoPool, sharedRedoPool } from "../walredo/pool.ts";

export const DEFAULT_MAX_REPLAY = 100;
/** versions a materialization above the reader's last page for the block reads in its first round trip */
const MATERIALIZE_FIRST_BATCH = 64;
/** materialized images a reader may be storing at once (materializeLater) */
const MATERIALIZATIONS_IN_FLIGHT = 64;
/** pages a reader keeps from its recent materializations (1 MiB): the hot pages of a workload */
const MATERIALIZED_PAGES_KEPT = 128;

/** The page LSN (pd_lsn). */
export const pageLsn = getPageLsn;

/** GetPage reads of all readers between the page cache and their result */
let readsInFlight = 0;

/** read only: the start page of a job whose chain has its own base */
const ZERO_PAGE = Buffer.alloc(BLCKSZ);

export interface PageReaderOptions {
  maxReplay?: number;
  /** rebuilt pages (default: the process-wide cache, STRATA_PAGE_CACHE_MB) */
  pageCache?: PageCache;
  /** the parent timeline and the branch point: history at or below it is read from there */
  ancestor?: { reader: PageReader; lsn: Lsn };
  /** redo workers for long chains (default: the process-wide pool, STRATA_REDO_WORKERS); null: replay on this thread */
  redoPool?: RedoPool | null;
}

export class PageReader {
  readonly maxReplay: number;
  readonly ancestor: { reader: PageReader; lsn: Lsn } | undefined;
  readonly pageCache: PageCache;
  readonly redoPool: RedoPool | null;
  /**
   * The last page each recent materialization produced, and the LSN of the newest version in it
   * (entity key latin1 -> page), most recent last. Versions are only ever added above the newest
   * one stored, so a later materialization of the block replays just the versions above that LSN
   * onto this page: no search for the previous image, no image read, no chain read past it.
   */
  private readonly materializedPages = new Map<string, { page: Buffer; lsn: Lsn }>();

  /** materialized images being stored (materializeLater) */
  private readonly materializing = new Set<Promise<void>>();
  /** what they store: entity key (latin1) @ LSN */
  private readonly materializingIds = new Set<string>();

  constructor(readonly store: TimelineStore, options: PageReaderOptions = {}) {
    this.maxReplay = options.maxReplay ?? DEFAULT_MAX_REPLAY;
    this.pageCache = options.pageCache ?? sharedPageCache;
    this.ancestor = options.ancestor;
    this.redoPool = options.redoPool === undefined ? sharedRedoPool : options.redoPool;
  }

  private ancestorLsn(lsn: Lsn): Lsn {
    return lsn < this.ancestor!.lsn ? lsn : this.ancestor!.lsn;
  }

  /** The newest version of an entity at or below `lsn`, following the timeline's ancestors. */
  async getVersion(entityKey: Buffer, lsn: Lsn): Promise<{ lsn: Lsn; value: StoredValue } | undefined> {
    const own = await this.store.getVersion(entityKey, lsn);
    if (own || !this.ancestor) return own;
    return this.ancestor.reader.getVersion(entityKey, this.ancestorLsn(lsn));
  }

  /** Newest version per entity under `prefix` at or below `lsn`; this timeline's versions win. */
  async scanLatest(prefix: Buffer, lsn: Lsn): Promise<Array<{ entityKey: Buffer; lsn: Lsn; value: StoredValue }>> {
    const own = await this.store.scanLatest(prefix, lsn);
    if (!this.ancestor) return own;
    const merged = new Map<string, { entityKey: Buffer; lsn: Lsn; value: StoredValue }>();
    for (const entry of await this.ancestor.reader.scanLatest(prefix, this.ancestorLsn(lsn))) merged.set(entry.entityKey.toString("hex"), entry);
    for (const entry of own) merged.set(entry.entityKey.toString("hex"), entry);
    return [...merged.keys()].sort().map((k) => merged.get(k)!);
  }

  /**
   * The block's imported page on this timeline (an image extent at or below `lsn`), in a buffer
   * of its own: the base of a chain that has no newer one.
   */
  private async importedPage(rel: RelTag, fork: ForkNumber, blockNumber: number, lsn: Lsn): Promise<{ page: Buffer; lsn: Lsn } | undefined> {
    const extent = (await this.store.imageExtents()).find(rel, fork, blockNumber, lsn);
    return extent && { page: this.store.images.read(ImageExtentIndex.pageRef(extent, blockNumber)), lsn: extent.lsn };
  }

  /** The base a chain that ran out on this timeline continues from (the ancestor's page at the branch point). */
  private async ancestorPage(rel: RelTag, fork: ForkNumber, blockNumber: number, lsn: Lsn): Promise<Buffer> {
    if (!this.ancestor) return Buffer.alloc(BLCKSZ);
    return Buffer.from(await this.ancestor.reader.getPage(rel, fork, blockNumber, this.ancestorLsn(lsn)));
  }

  /** The 8192-byte page of a relation fork block as of `lsn`. */
  async getPage(
    rel: RelTag,
    fork: ForkNumber,
    blockNumber: number,
    lsn: Lsn,
    options: { materializeAbove?: number; /** the caller never modifies the page: it may be the cache's own buffer */ readOnly?: boolean } = {},
  ): Promise<Buffer> {
    const entity = relBlockKey(rel, fork, blockNumber);
    // materialization must see the replay itself; every other read may be served from the cache
    const materializing = options.materializeAbove !== undefined;
    if (!materializing) {
      const cached = this.pageCache.get(this.store, entity, lsn, options.readOnly);
      if (cached) return cached;
    }
    readsInFlight++;
    try {
      return await this.rebuildPage(rel, fork, blockNumber, lsn, entity, materializing, options.materializeAbove);
    } finally {
      readsInFlight--;
    }
  }

  private async rebuildPage(rel: RelTag, fork: ForkNumber, blockNumber: number, lsn: Lsn, entity: Buffer, materializing: boolean, materializeAbove: number | undefined): Promise<Buffer> {
    const token = this.store.writeToken();
    let materialized: { lsn: Lsn; value: StoredValue } | undefined;
    let chain: StoredChain | undefined;
    // a cached older page: replay only the versions after it (a hot page read again, or reads
    // walking forward through history)
    const entityId = materializing ? entity.toString("latin1") : "";
    const older = materializing ? this.lastMaterialized(entityId, lsn) : this.pageCache.getOlder(this.store, entity, lsn);
    if (older) {
      // (a materialization reads everything above its last page: it replays all of it anyway, and
      // it runs once the chain is ~50 versions long: one LevelDB round trip for them, not three)
      const newer = materializing
        ? await this.store.getStoredChain(entity, lsn, older.validTo, undefined, MATERIALIZE_FIRST_BATCH)
        : await this.store.getStoredChain(entity, lsn, older.validTo, Math.floor(this.maxReplay / 2) + 1);
      if (!newer.truncated) {
        chain = newer;
        // an incomplete chain continues from the cached page, as from a materialized image
        // (copied before replay changes it)
        if (!newer.complete) materialized = { lsn: older.fromLsn, value: { kind: ValueKind.Image, bytes: older.page } };
      }
    }
    if (!chain) ({ chain, materialized } = await this.chainAboveMaterialized(entity, materializedBlockKey(rel, fork, blockNumber), lsn));
    // the page the versions apply to: none (zeros) when the chain has its base. A materialized
    // image's buffer may be the page cache's or the last materialization's: not replayed onto
    // in place (sharedStart)
    let start: Buffer | undefined;
    let sharedStart = false;
    let imported: { page: Buffer; lsn: Lsn } | undefined;
    const versions = chain.versions;
    if (!chain.complete && materialized?.value.kind === ValueKind.Image) {
      start = materialized.value.bytes;
      sharedStart = true;
    } else if (!chain.complete) {
      imported = await this.importedPage(rel, fork, blockNumber, lsn);
      start = imported ? imported.page : await this.ancestorPage(rel, fork, blockNumber, lsn);
    }
    let replayed = 0;
    for (let i = 0; i < versions.length; i++) replayed += replayedVersions(versions[i].raw);
    const rebuilt = this.replayStored(start, sharedStart, chain, { rel, fork, blockNumber });
    const page = rebuilt instanceof Buffer ? rebuilt : await rebuilt;
    const newest = versions.length ? storedNewestLsn(versions[versions.length - 1]) : materialized ? materialized.lsn : imported ? imported.lsn : (this.ancestor?.lsn ?? 0n);
    // cached with no await since the check: a write starting later closes the entry itself.
    // (A page read through the ancestor below the branch point is not valid from `newest` on.)
    const latest = this.store.knownLastRecordLsn;
    const openEnded = this.store.unchangedSince(token) && latest !== undefined && lsn >= latest;
    // background materialization does not fill the cache: it would evict pages clients read
    if (lsn >= newest && !materializing) this.pageCache.put(this.store, entity, page, newest, lsn, openEnded);
    // materialize well before the limit, so reads stay under maxReplay as chains keep growing
    const threshold = materializeAbove ?? Math.floor(this.maxReplay / 2);
    if (replayed > threshold && versions.length) {
      const key = materializedBlockKey(rel, fork, blockNumber);
      // an explicit materialization is done when its image is stored; a read does not wait for it
      if (materializing) await this.store.putDerived(key, newest, imageValue(page));
      else await this.materializeLater(key, newest, imageValue(page));
    }
    if (materializing && lsn >= newest) this.rememberMaterialized(entityId, page, newest);
    return page;
  }

  /**
   * The versions to replay for an entity at `lsn`, oldest first. Newest versions first, a bounded
   * number: most chains reach their base (an image or a will-init record) within it. Only a longer
   * chain looks for a materialized image (at `materializedKey`) to start from; the chain then
   * holds the versions above it and is not complete.
   */
  private async chainAboveMaterialized(entity: Buffer, materializedKey: Buffer, lsn: Lsn): Promise<{ chain: StoredChain; materialized: { lsn: Lsn; value: StoredValue } | undefined }> {
    const chain = await this.store.getStoredChain(entity, lsn, undefined, Math.max(16, Math.floor(this.maxReplay / 2) + 1));
    if (!chain.truncated) return { chain, materialized: undefined };
    const materialized = await this.store.getVersion(materializedKey, lsn);
    const oldestRead = chain.versions[0]?.lsn;
    if (materialized !== undefined && oldestRead !== undefined && materialized.lsn >= oldestRead) {
      // the usual case (materialization keeps chains short): the first read already holds every
      // version above the image, so don't read them again
      const above = materialized.lsn;
      return { chain: { ...storedVersionsAbove(chain.versions, above), complete: false, truncated: false }, materialized };
    }
    return { chain: await this.store.getStoredChain(entity, lsn, materialized?.lsn), materialized };
  }

  private lastMaterialized(entityId: string, lsn: Lsn): { page: Buffer; fromLsn: Lsn; validTo: Lsn } | undefined {
    const last = this.materializedPages.get(entityId);
    if (!last || last.lsn > lsn) return undefined;
    return { page: last.page, fromLsn: last.lsn, validTo: last.lsn };
  }

  private rememberMaterialized(entityId: string, page: Buffer, lsn: Lsn): void {
    this.materializedPages.delete(entityId);
    this.materializedPages.set(entityId, { page: Buffer.from(page), lsn });
    if (this.materializedPages.size > MATERIALIZED_PAGES_KEPT) this.materializedPages.delete(this.materializedPages.keys().next().value!);
  }

  private hintBits: Promise<boolean> | undefined;
  /** the answer once known: replay then needs no await per record */
  private hintBitsKnown: boolean | undefined;

  /**
   * Whether the cluster WAL-logs hint bits (data checksums or wal_log_hints, from the timeline's
   * pg_control); read once per reader. Checksums cannot change on a running cluster; a later
   * change of wal_log_hints is not followed.
   */
  private hintBitsLogged(lsn: Lsn): Promise<boolean> {
    this.hintBits ??= this.getControlFile(lsn).then(
      (control) => {
        if (!control) return (this.hintBitsKnown = false);
        const settings = readControlFile(control);
        return (this.hintBitsKnown = settings.dataChecksumVersion !== 0 || settings.walLogHints);
      },
      () => (this.hintBitsKnown = false),
    );
    return this.hintBits;
  }

  /**
   * Rebuilds a block from its versions as stored (oldest first, as `getStoredChain` returns them)
   * on top of `start` (undefined: a zero page; `sharedStart`: a buffer replay must not modify)
   * and returns the page. A chain of the redo pool's `minVersions` or more goes to a redo worker when
   * one is free and other reads are in flight (see RedoPool's callerFirst); otherwise it is
   * decoded and replayed here, synchronously (the page, and redo errors thrown) unless a version
   * needs a read (applyVersion).
   */
  replayStored(start: Buffer | undefined, sharedStart: boolean, chain: Pick<StoredChain, "versions" | "count">, target: ReplayTarget): Buffer | Promise<Buffer> {
    const versions = chain.versions;
    // offloaded when the main thread has other reads to serve meanwhile (or the workers are busy
    // already): one read alone is served sooner here than through a thread's round trip
    if (this.redoPool && chain.count >= this.redoPool.minVersions && (!this.redoPool.callerFirst || readsInFlight > 1 || this.redoPool.pending > 0)) {
      const hintBitsLogged = this.hintBitsKnown;
      if (hintBitsLogged === undefined) return this.hintBitsLogged(versions[versions.length - 1].lsn).then(() => this.replayStored(start, sharedStart, chain, target));
      // (a copied page is a base: only the first version can be one)
      if (!needsOtherStoredPage(versions[0].raw)) {
        // the job holds copies: if the worker fails, everything is still here to replay, which
        // throws the error with its type and details as any replay here would
        const offloaded = this.redoPool.replay({ storeDir: this.store.dir, page: start ?? ZERO_PAGE, versions, target, hintBitsLogged }, chain.count);
        if (offloaded) return offloaded.catch(() => this.replayStoredHere(start, sharedStart, versions, target));
      }
    }
    return this.replayStoredHere(start, sharedStart, versions, target);
  }

  /**
   * Hands a chain (`count` versions, runs counted whole) to a redo worker if the pool can take it
   * now, for a caller with other work to do meanwhile (a scan reading its next blocks): the page
   * it rebuilds from `start`, or undefined to replay here instead (no pool, a short chain, a free
   * worker not ready, or the cluster's hint-bit setting not read yet). The job holds copies:
   * `start` and the versions are left as they were, and a worker failure is replayed here, which
   * reports the error as a replay here would.
   */
  replayOnWorker(start: Buffer, versions: ReadonlyArray<{ lsn: Lsn; raw: Buffer }>, count: number, target: ReplayTarget): Promise<Buffer> | undefined {
    const pool = this.redoPool;
    const hintBitsLogged = this.hintBitsKnown;
    if (!pool || count < pool.minVersions || hintBitsLogged === undefined || versions.length === 0 || needsOtherStoredPage(versions[0].raw)) return undefined;
    const offloaded = pool.replay({ storeDir: this.store.dir, page: start, versions, target, hintBitsLogged }, count);
    return offloaded?.catch(() => this.replayStoredHere(start, false, versions, target));
  }

  private replayStoredHere(start: Buffer | undefined, sharedStart: boolean, versions: ReadonlyArray<{ lsn: Lsn; raw: Buffer }>, target: ReplayTarget): Buffer | Promise<Buffer> {
    return this.replayStoredFrom(start === undefined ? undefined : sharedStart ? Buffer.from(start) : start, versions, target);
  }

  /**
   * Applies versions of one block as stored (oldest first: whole runs or their members) to `page`
   * on this thread, from entry `v` (member `m` of a run) on, and returns the page. Each version is
   * decoded just before it is applied: a long chain's decoded values never all live at once (a
   * chain a catch-up left behind ran to hundreds of thousands of records). The versions' buffers
   * are the caller's own and may become the page. No start page: zeros, or the chain's first
   * version when it is an image. Synchronous (the page, and redo errors thrown) unless a version
   * needs a read (applyVersion).
   */
  replayStoredFrom(page: Buffer | undefined, versions: ReadonlyArray<{ lsn: Lsn; raw: Buffer }>, target: ReplayTarget, v = 0, m = 0): Buffer | Promise<Buffer> {
    const files = this.store.valueFiles;
    for (; v < versions.length; v++, m = 0) {
      const { lsn, raw } = versions[v];
      const hintBitsLogged = this.hintBitsKnown;
      // Inline WAL records (the usual version) are applied where they lie, as the redo workers do
      // (walredo/rebuild.ts): no buffer and object per member of a run, nor per record.
      if (page !== undefined && hintBitsLogged !== undefined && raw[0] === ValueKind.WalRecord) {
        page = applyWalRecordValue(page, raw, 0, raw.length, lsn, target, hintBitsLogged);
      } else if (raw[0] === ValueKind.Run) {
        const count = runLength(raw);
        let pos = runMemberOffset(raw, m);
        for (; m < count; m++) {
          if (pos + RUN_MEMBER_HEADER > raw.length) throw new Error(`corrupt stored run: version ${m} of ${count} is truncated`);
          const memberLsn = raw.readBigUInt64BE(pos);
          const length = raw.readUInt32BE(pos + 8);
          const at = pos + RUN_MEMBER_HEADER;
          if (length === 0 || at + length > raw.length) throw new Error(`corrupt stored run: version ${m} of ${count} has a bad length ${length}`);
          pos = at + length;
          if (page !== undefined && hintBitsLogged !== undefined && raw[at] === ValueKind.WalRecord) {
            page = applyWalRecordValue(page, raw, at, length, memberLsn, target, hintBitsLogged);
            continue;
          }
          const applied = this.applyFirstOrNext(page, decodeValue(raw.subarray(at, at + length), files), memberLsn, target);
          if (applied instanceof Promise) {
            const [nextV, nextM] = [v, m + 1];
            return applied.then((next) => this.replayStoredFrom(next, versions, target, nextV, nextM));
          }
          page = applied;
        }
        if (pos !== raw.length) throw new Error(`corrupt stored run: ${raw.length - pos} trailing bytes`);
      } else {
        const applied = this.applyFirstOrNext(page, decodeValue(raw, files), lsn, target);
        if (applied instanceof Promise) {
          const nextV = v + 1;
          return applied.then((next) => this.replayStoredFrom(next, versions, target, nextV, 0));
        }
        page = applied;
      }
    }
    return page ?? Buffer.alloc(BLCKSZ);
  }

  /** applyVersion, onto a zero page when there is none yet (an image is then the page itself). */
  private applyFirstOrNext(page: Buffer | undefined, value: StoredValue, versionLsn: Lsn, target: ReplayTarget): Buffer | Promise<Buffer> {
    if (page === undefined) {
      if (value.kind === ValueKind.Image) return value.bytes;
      page = Buffer.alloc(BLCKSZ);
    }
    return this.applyVersion(page, value, versionLsn, target);
  }

  /**
   * Applies one version. Synchronous (a Buffer) unless it needs a read (a copied page, or the
   * hint-bit setting not looked up yet): a promise and an await per replayed record were a
   * measurable share of replay.
   */
  private applyVersion(page: Buffer, value: StoredValue, versionLsn: Lsn, target: ReplayTarget): Buffer | Promise<Buffer> {
    if (needsOtherPage(value)) {
      const source = decodeRelKey(value.payload.subarray(0, 19));
      return this.getPage(source.rel, source.fork, source.block, value.payload.readBigUInt64BE(19));
    }
    const hintBitsLogged = this.hintBitsKnown;
    if (hintBitsLogged === undefined && value.kind === ValueKind.WalRecord) return this.hintBitsLogged(versionLsn).then((logged) => applyStoredVersion(page, value, versionLsn, target, logged));
    return applyStoredVersion(page, value, versionLsn, target, hintBitsLogged ?? false);
  }

  /**
   * Stores a materialized image without the read that made it waiting, up to
   * MATERIALIZATIONS_IN_FLIGHT at once (beyond that the returned promise settles when one is
   * done). Storing one writes and fdatasyncs the page image files, which took 300 ms on a busy
   * disk: a full backup's SLRU pages and a GetPage request used to wait for that. Images stored
   * together share one write and sync. An image that cannot be stored is only a missed shortcut:
   * the history is intact, and the next read replays it again.
   */
  materializeLater(entityKey: Buffer, lsn: Lsn, value: Buffer): Promise<void> | undefined {
    // reads of a hot page meanwhile would store the same image again
    const id = `${entityKey.toString("latin1")}@${lsn}`;
    if (this.materializingIds.has(id)) return undefined;
    this.materializingIds.add(id);
    const stored = this.store.putDerived(entityKey, lsn, value).catch(() => {});
    this.materializing.add(stored);
    void stored.then(() => {
      this.materializing.delete(stored);
      this.materializingIds.delete(id);
    });
    return this.materializing.size >= MATERIALIZATIONS_IN_FLIGHT ? Promise.race(this.materializing) : undefined;
  }

  /** Settles once the materialized images this reader started storing so far are stored (or failed). */
  async materializationsStored(): Promise<void> {
    await Promise.all(this.materializing);
  }

  /** Rebuilds a page at `lsn`, stores it as a materialized image (bounded replay) and returns it. */
  materialize(rel: RelTag, fork: ForkNumber, blockNumber: number, lsn: Lsn): Promise<Buffer> {
    return this.getPage(rel, fork, blockNumber, lsn, { materializeAbove: 0 });
  }

  /** Whether redo stamps hint-bit-only changes on this timeline (as replay here does). */
  walLogsHintBits(lsn: Lsn): Promise<boolean> {
    return this.hintBitsLogged(lsn);
  }

  /**
   * An SLRU page (pg_xact, pg_multixact) as of `lsn`. Every transaction's status is a version of
   * its CLOG page (32768 to a page), so a page's history is long: as for relation pages, a read
   * that replays more than maxReplay/2 versions stores the page as a materialized image (key
   * space 0x22), and later reads replay only the versions above the newest one at or below their
   * LSN. Without it a full backup replayed every transaction the cluster ever committed.
   */
  async getSlruPage(kind: SlruKind, segno: number, blockNumber: number, lsn: Lsn): Promise<Buffer> {
    const { chain: stored, materialized } = await this.chainAboveMaterialized(slruBlockKey(kind, segno, blockNumber), materializedSlruKey(kind, segno, blockNumber), lsn);
    const chain = { complete: stored.complete, versions: decodeStoredVersions(stored.versions, this.store.valueFiles) };
    let page: Buffer;
    if (!chain.complete && materialized?.value.kind === ValueKind.Image) page = Buffer.from(materialized.value.bytes);
    else if (!chain.complete && this.ancestor) page = Buffer.from(await this.ancestor.reader.getSlruPage(kind, segno, blockNumber, this.ancestorLsn(lsn)));
    else page = Buffer.alloc(BLCKSZ);
    let replayed = 0;
    for (const version of chain.versions) {
      if (version.value.kind === ValueKind.Image) page = Buffer.from(version.value.bytes);
      else if (version.value.kind === ValueKind.Tombstone) page = Buffer.alloc(BLCKSZ);
      else if (version.value.kind === ValueKind.Derived) {
        applyDerived(page, version.value.derived, version.value.payload);
        replayed++;
      } else throw new PageReadError(`unexpected WAL record stored for an SLRU page at ${formatLsn(version.lsn)}`);
    }
    if (replayed > Math.floor(this.maxReplay / 2)) await this.materializeLater(materializedSlruKey(kind, segno, blockNumber), chain.versions[chain.versions.length - 1].lsn, imageValue(page));
    return page;
  }

  async slruSegmentSize(kind: SlruKind, segno: number, lsn: Lsn): Promise<number | undefined> {
    return readU32Value((await this.getVersion(slruSegSizeKey(kind, segno), lsn))?.value);
  }

  /** Number of blocks of a relation fork at `lsn`, or undefined if it does not exist then. */
  async relSize(rel: RelTag, fork: ForkNumber, lsn: Lsn): Promise<number | undefined> {
    return readU32Value((await this.getVersion(relSizeKey(rel, fork), lsn))?.value);
  }

  /**
   * relSize of each fork, in the order given, from one scan of the size versions (scanLatest).
   * Looked up one by one, each lookup a LevelDB iterator, a full backup of a database with 13k
   * relation forks took 2.7 s before its first byte (and 70 ms for a small cluster's first one).
   */
  async relationSizes(forks: ReadonlyArray<{ rel: RelTag; fork: ForkNumber }>, lsn: Lsn): Promise<Array<number | undefined>> {
    const sizes = new Map<string, number | undefined>();
    for (const { entityKey, value } of await this.scanLatest(entityPrefix(KeySpace.RelSize), lsn)) sizes.set(entityKey.toString("latin1"), readU32Value(value));
    return forks.map(({ rel, fork }) => sizes.get(relSizeKey(rel, fork).toString("latin1")));
  }

  async relExists(rel: RelTag, fork: ForkNumber, lsn: Lsn): Promise<boolean> {
    return (await this.relSize(rel, fork, lsn)) !== undefined;
  }

  /** The stored WAL record that starts last before `lsn` (start and end LSN), following ancestors. */
  async recordBefore(lsn: Lsn): Promise<{ start: Lsn; end: Lsn } | undefined> {
    // the last piece keyed below `lsn` starts with a record before it, so it holds the answer
    for await (const [, value] of this.store.iterateReverse(storeKey(walRecordLogKey(), 0n), storeKey(walRecordLogKey(), lsn), 1)) {
      const record = lastRecordBefore(value, lsn, this.store.recordLog);
      if (record) return { start: record.start, end: record.end };
    }
    return this.ancestor ? this.ancestor.reader.recordBefore(this.ancestorLsn(lsn)) : undefined;
  }

  /**
   * The nearest record boundary at or below `lsn`: `lsn` itself if a record ends there, the end of
   * the record before otherwise (an LSN inside a record is rounded down to where that record began).
   */
  async roundToRecordBoundary(lsn: Lsn): Promise<Lsn> {
    const containing = await this.recordBefore(lsn);
    if (!containing) return lsn;
    if (containing.end <= lsn) return containing.end;
    const previous = await this.recordBefore(containing.start);
    return previous ? previous.end : containing.start;
  }

  /**
   * The end LSN of the last transaction commit at or before `time` (ms since the epoch), scanning
   * the stored WAL back from `upTo`. Undefined when no commit that early is stored.
   */
  async lsnForTime(time: number, upTo: Lsn): Promise<Lsn | undefined> {
    const micros2000 = BigInt(time - Date.UTC(2000, 0, 1)) * 1000n;
    for await (const [, value] of this.store.iterateReverse(storeKey(walRecordLogKey(), 0n), storeKey(walRecordLogKey(), upTo))) {
      const records = decodeRecordLogPiece(value, this.store.recordLog);
      for (let i = records.length - 1; i >= 0; i--) {
        const { start, end, raw } = records[i];
        // the newest piece may run past `upTo` (e.g. an ancestor's records after the branch point)
        if (start >= upTo) continue;
        const rmid = raw[17];
        const op = raw[16] & 0x70;
        if (rmid !== 1 || (op !== 0x00 && op !== 0x30)) continue;
        const record = decodeLoggedRecord(records[i]);
        if (record.mainData.readBigInt64LE(0) <= micros2000) return end;
      }
    }
    return this.ancestor ? this.ancestor.reader.lsnForTime(time, this.ancestor.lsn) : undefined;
  }

  /** Every relation fork that exists at `lsn` (optionally of one database). */
  async listRelations(lsn: Lsn, db?: { spcNode: number; dbNode: number }): Promise<Array<{ rel: RelTag; fork: ForkNumber }>> {
    const prefix = db ? entityPrefix(KeySpace.RelDirEntry, db.spcNode, db.dbNode) : entityPrefix(KeySpace.RelDirEntry);
    const out: Array<{ rel: RelTag; fork: ForkNumber }> = [];
    for (const entry of await this.scanLatest(prefix, lsn)) {
      if (entry.value.kind === ValueKind.Tombstone) continue;
      const { rel, fork } = decodeRelKey(entry.entityKey);
      out.push({ rel, fork });
    }
    return out;
  }

  /** Databases (tablespace, database oid) that exist at `lsn`; dbNode 0 is the global (shared) directory. */
  async listDatabases(lsn: Lsn): Promise<Array<{ spcNode: number; dbNode: number }>> {
    const out: Array<{ spcNode: number; dbNode: number }> = [];
    for (const entry of await this.scanLatest(entityPrefix(KeySpace.DbDirEntry), lsn)) {
      if (entry.value.kind === ValueKind.Tombstone) continue;
      out.push({ spcNode: entry.entityKey.readUInt32BE(1), dbNode: entry.entityKey.readUInt32BE(5) });
    }
    return out;
  }

  /** User tablespaces (CREATE TABLESPACE, not dropped) that exist at `lsn`. */
  async listTablespaces(lsn: Lsn): Promise<number[]> {
    const out: number[] = [];
    for (const entry of await this.scanLatest(entityPrefix(KeySpace.TablespaceDirEntry), lsn)) {
      if (entry.value.kind !== ValueKind.Tombstone) out.push(entry.entityKey.readUInt32BE(1));
    }
    return out;
  }

  /** SLRU segments of a kind at `lsn`, with their size in pages. */
  async listSlruSegments(kind: SlruKind, lsn: Lsn): Promise<Array<{ segno: number; pages: number }>> {
    const out: Array<{ segno: number; pages: number }> = [];
    for (const entry of await this.scanLatest(entityPrefix(KeySpace.SlruSegSize, kind), lsn)) {
      const pages = readU32Value(entry.value);
      if (pages !== undefined) out.push({ segno: entry.entityKey.readUInt32BE(5), pages });
    }
    return out;
  }

  /** Prepared transactions pending at `lsn`: xid -> 2PC state file body (without its CRC). */
  async listTwoPhase(lsn: Lsn): Promise<Array<{ xid: number; state: Buffer }>> {
    const out: Array<{ xid: number; state: Buffer }> = [];
    for (const entry of await this.scanLatest(entityPrefix(KeySpace.TwoPhaseFile), lsn)) {
      if (entry.value.kind === ValueKind.Image) out.push({ xid: entry.entityKey.readUInt32BE(1), state: Buffer.from(entry.value.bytes) });
    }
    return out;
  }

  /** The history files of the timelines the WAL passed through up to `lsn` (pg_wal/<TLI>.history), oldest first. */
  async listTimelineHistories(lsn: Lsn): Promise<Array<{ timeline: number; content: Buffer }>> {
    const out: Array<{ timeline: number; content: Buffer }> = [];
    for (const entry of await this.scanLatest(entityPrefix(KeySpace.TimelineHistory), lsn)) {
      if (entry.value.kind === ValueKind.Image) out.push({ timeline: entry.entityKey.readUInt32BE(1), content: Buffer.from(entry.value.bytes) });
    }
    return out;
  }

  /** Replication origins with their apply progress (remote LSN) at `lsn`, by origin id. */
  async listReplicationOrigins(lsn: Lsn): Promise<Array<{ id: number; remoteLsn: Lsn }>> {
    const out: Array<{ id: number; remoteLsn: Lsn }> = [];
    for (const entry of await this.scanLatest(entityPrefix(KeySpace.ReplicationOrigin), lsn)) {
      const remoteLsn = readU64Value(entry.value);
      if (remoteLsn !== undefined) out.push({ id: entry.entityKey.readUInt32BE(1), remoteLsn });
    }
    return out.sort((a, b) => a.id - b.id);
  }

  /** pg_filenode.map of a database (dbNode 0 with spcNode 1664: global) at `lsn`. */
  async getRelmap(spcNode: number, dbNode: number, lsn: Lsn): Promise<Buffer | undefined> {
    const version = await this.getVersion(relmapFileKey(spcNode, dbNode), lsn);
    return version?.value.kind === ValueKind.Image ? Buffer.from(version.value.bytes) : undefined;
  }

  /** The tracked CheckPoint (88 bytes; redo = end LSN of a shutdown checkpoint, else 0) at `lsn`. */
  async getCheckpoint(lsn: Lsn): Promise<Buffer | undefined> {
    const version = await this.getVersion(checkpointKey(), lsn);
    return version?.value.kind === ValueKind.Image ? Buffer.from(version.value.bytes) : undefined;
  }

  /** The pg_control file imported with the timeline's base backup (8192 bytes). */
  async getControlFile(lsn: Lsn): Promise<Buffer | undefined> {
    const version = await this.getVersion(controlFileKey(), lsn);
    return version?.value.kind === ValueKind.Image ? Buffer.from(version.value.bytes) : undefined;
  }

  /**
   * Size in bytes of every relation fork of every database (and of the shared catalogs) at
   * `lsn`: the data a full backup holds, without SLRUs and configuration files.
   */
  async logicalSize(lsn: Lsn): Promise<number> {
    // (the databases together: each read waits for a turn of the event loop, which ingest keeps busy)
    const sizes = await Promise.all((await this.listDatabases(lsn)).map((db) => this.dbSize(db.spcNode, db.dbNode, lsn)));
    let total = 0;
    for (const size of sizes) total += size;
    return total;
  }

  /** Total size in bytes of all relation forks of a database at `lsn`. */
  async dbSize(spcNode: number, dbNode: number, lsn: Lsn): Promise<number> {
    const exists = await this.getVersion(dbDirEntryKey(spcNode, dbNode), lsn);
    if (!exists || exists.value.kind === ValueKind.Tombstone) throw new PageReadError(`database ${spcNode}/${dbNode} does not exist at ${formatLsn(lsn)}`);
    let blocks = 0;
    for (const entry of await this.scanLatest(entityPrefix(KeySpace.RelSize, spcNode, dbNode), lsn)) blocks += readU32Value(entry.value) ?? 0;
    return blocks * BLCKSZ;
  }
}
