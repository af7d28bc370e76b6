// The per-timeline versioned key-value store on classic-level (LevelDB). Every write to a
// timeline goes through one atomic batch together with the timeline's durable LSN markers,
// so a crash leaves either all of an ingest step or none of it. Full-page images and WAL record log
// pieces go to the store's append-only files first (synced), and the batch holds references to
// them (append-files.ts).
import path from "node:path";
import { ClassicLevel } from "classic-level";
import { BACKGROUND_SLICE_MS, turnsEvery } from "../event-loop.ts";
import { failpoint } from "../failpoints.ts";
import type { Lsn } from "../lsn.ts";
import { ENTITY_KEY_LENGTH, KeySpace, storeKey } from "./keys.ts";
import { AppendFiles, type FileRef, type FileRefReader, IMAGE_FILES, RECORD_LOG_FILES } from "./append-files.ts";
import { pieceRefValue, RECORD_LOG_PIECE } from "./record-log.ts";
import { ImageExtentIndex } from "./image-extents.ts";
import { decodeStoredVersions, decodeValue, expandEntry, imageExtentValue, imageRefValue, isBaseValue, isExternalizableImage, runLength, runNewestLsn, type StoredChain, ValueKind, type StoredValue, type ValueFiles } from "./values.ts";

export interface TimelineMarkers {
  /** end of the last WAL record stored */
  lastRecordLsn: Lsn;
  /** everything up to here is durable on disk */
  diskConsistentLsn: Lsn;
  /** first LSN readable on this timeline (branch point or import end) */
  startLsn: Lsn;
}

const MARKERS_KEY = Buffer.from("meta/markers");

/**
 * An entry to commit. `stored` is called with where the commit put the value's bytes when it goes
 * to the record log files (a log piece): values referring into the piece are completed then.
 */
export interface StoreEntry {
  key: Buffer;
  value: Buffer;
  stored?: (where: FileRef) => void;
}

/** Receives each version key (entity key + LSN) about to be written; `undefined` on close. */
export type WriteListener = (storeKey: Buffer | undefined) => void;

/** A consistent view of the store for several iterators (LevelDB snapshot); close it when done. */
export type StoreSnapshot = ReturnType<ClassicLevel<Buffer, Buffer>["snapshot"]>;

/** key spaces whose getVersion results are cached (not pages, not the record log) */
const VERSION_CACHED: boolean[] = [];
for (const space of [KeySpace.RelSize, KeySpace.RelDirEntry, KeySpace.DbDirEntry, KeySpace.RelmapFile, KeySpace.SlruSegSize, KeySpace.TwoPhaseFile, KeySpace.Checkpoint, KeySpace.ControlFile]) {
  VERSION_CACHED[space] = true;
}
const VERSION_CACHE_LIMIT = 50_000;
/** scanLatest: entries per read, and versions of one entity in a row after which it seeks past them */
const SCAN_BATCH = 1000;
const SCAN_SEEK_AFTER = 64;



/** The version an entry holds at `lsn`: itself, or a run's newest member at or below it. */
function newestAtOrBelow(keyLsn: Lsn, raw: Buffer, lsn: Lsn, files: ValueFiles): { lsn: Lsn; value: StoredValue } {
  if (raw[0] !== ValueKind.Run) return { lsn: keyLsn, value: decodeValue(raw, files) };
  const members = expandEntry(keyLsn, raw);
  let i = members.length - 1;
  while (i > 0 && members[i].lsn > lsn) i--;
  return { lsn: members[i].lsn, value: decodeValue(members[i].raw) };
}

/**
 * LevelDB keeps each open table file memory-mapped, and every page of it that a compaction or read
 * touched stays in the process's RSS while the file is open. With its default (1000 files of
 * 2 MB) RSS grew with the store, past the whole database; this bounds the mapped part to about
 * (MAX_OPEN_FILES - 10) x 2 MB per store.
 */
const MAX_OPEN_FILES = 32;
/** Bytes of versions per batch a history cut copies (TimelineStore.cutHistory). */
const COPY_BATCH_BYTES = 4 * 1024 * 1024;

export class TimelineStore {
  private constructor(
    /** the store's directory (LevelDB's, with the page image and record log directories inside) */
    readonly dir: string,
    readonly db: ClassicLevel<Buffer, Buffer>,
    /** full-page images, referenced from LevelDB entries (ValueKind.ImageRef) */
    readonly images: AppendFiles,
    /** the WAL record log's pieces, referenced from its LevelDB entries (storage/record-log.ts) */
    readonly recordLog: AppendFiles,
  ) {}

  /** Resolves values whose bytes are in the store's files: page images and logged records. */
  readonly valueFiles: ValueFiles = {
    read: (ref) => this.images.read(ref),
    // (records are only decoded, never modified: a view into the read-ahead window will do)
    readRecordLog: (ref) => this.recordLog.readShared(ref),
  };

  static async open(dir: string): Promise<TimelineStore> {
    // No snappy: LevelDB's compactions compressed every table block again on each level it went
    // through, 1.1 of the 7.2 CPU seconds a pageserver spent following a pgbench primary
    // (bench/ingest-live-overhead.mts); the tables are about twice the size without it, a tenth
    // more of a store whose page images and record log (never compressed) take the rest.
    const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: "buffer", valueEncoding: "buffer", writeBufferSize: 16 * 1024 * 1024, maxOpenFiles: MAX_OPEN_FILES, compression: false });
    await db.open();
    // inside the LevelDB directory (LevelDB leaves names it does not know alone): one directory per store
    return new TimelineStore(dir, db, AppendFiles.open(path.join(dir, IMAGE_FILES.dir), { suffix: IMAGE_FILES.suffix }), AppendFiles.open(path.join(dir, RECORD_LOG_FILES.dir), { suffix: RECORD_LOG_FILES.suffix }));
  }

  async close(): Promise<void> {
    // (readers do not wait for the materialized images they store: the store does, before closing)
    await Promise.allSettled(this.derivedWrites);
    for (const listener of this.writeListeners) listener(undefined);
    this.writeListeners.clear();
    await this.db.close();
    await this.images.close();
    await this.recordLog.close();
  }

  /**
   * The values to write for `entries`, once the full-page images and record log pieces among them
   * are written to the store's files and synced (each replaced by its reference): a durable
   * reference must point at durable bytes, so the entries are written only after this.
   */
  private async externalize(entries: ReadonlyArray<StoreEntry>): Promise<Buffer[]> {
    const values: Buffer[] = new Array(entries.length);
    let images = false;
    let pieces = false;
    for (let i = 0; i < entries.length; i++) {
      const { key, value } = entries[i];
      if (isExternalizableImage(value)) {
        values[i] = imageRefValue(this.images.stage(value.subarray(1)));
        images = true;
      } else if (value[0] === ValueKind.ExtentPages && key[0] === KeySpace.ImageExtent) {
        values[i] = imageExtentValue(this.images.stage(value.subarray(1)));
        images = true;
        this.extentsChanged = true;
      } else if (key[0] === KeySpace.WalRecordLog && value[0] === RECORD_LOG_PIECE) {
        const where = this.recordLog.stage(value);
        values[i] = pieceRefValue(where);
        // (values referring into the piece are completed here, before any of them is written)
        entries[i].stored?.(where);
        pieces = true;
      } else values[i] = value;
    }
    if (images || pieces) await Promise.all([images && this.images.flush(), pieces && this.recordLog.flush()]);
    return values;
  }

  /** the store is owned by one process: markers are cached after the first read */
  private markers: TimelineMarkers | undefined;

  async readMarkers(): Promise<TimelineMarkers> {
    if (this.markers) return { ...this.markers };
    const value = await this.db.get(MARKERS_KEY);
    if (!value) return { lastRecordLsn: 0n, diskConsistentLsn: 0n, startLsn: 0n };
    this.markers = {
      lastRecordLsn: value.readBigUInt64BE(0),
      diskConsistentLsn: value.readBigUInt64BE(8),
      startLsn: value.readBigUInt64BE(16),
    };
    return { ...this.markers };
  }

  /**
   * Newest versions of small metadata entities (relation sizes, directories, SLRU segment sizes,
   * checkpoint…) as last read, with the LSN range they are valid for, like the page cache: reads at
   * the latest LSN stay valid until a write of that entity closes them. Every GetPage checks a
   * relation size, so this saves a LevelDB round trip per page.
   */
  private readonly versionCache = new Map<string, { version: { lsn: Lsn; value: StoredValue } | undefined; fromLsn: Lsn; validTo: Lsn }>();

  /** The newest version of an entity at or below `lsn`, if any. */
  async getVersion(entityKey: Buffer, lsn: Lsn): Promise<{ lsn: Lsn; value: StoredValue } | undefined> {
    const cacheId = VERSION_CACHED[entityKey[0]] ? entityKey.toString("latin1") : undefined;
    if (cacheId !== undefined) {
      const cached = this.versionCache.get(cacheId);
      if (cached && lsn >= cached.fromLsn && (cached.validTo < 0n || lsn <= cached.validTo)) return cached.version;
    }
    const token = this.writeToken();
    const [entry] = await this.readRange({ gte: storeKey(entityKey, 0n), lte: storeKey(entityKey, lsn), reverse: true, limit: 1 }, 1);
    const version = entry && newestAtOrBelow(entry[0].readBigUInt64BE(ENTITY_KEY_LENGTH), entry[1], lsn, this.valueFiles);
    if (cacheId !== undefined) {
      const openEnded = this.unchangedSince(token) && this.markers !== undefined && lsn >= this.markers.lastRecordLsn;
      this.versionCache.delete(cacheId);
      this.versionCache.set(cacheId, { version, fromLsn: version?.lsn ?? 0n, validTo: openEnded ? -1n : lsn });
      if (this.versionCache.size > VERSION_CACHE_LIMIT) this.versionCache.delete(this.versionCache.keys().next().value!);
    }
    return version;
  }

  /**
   * The versions needed to reconstruct an entity at `lsn`, oldest first: back to (and including)
   * the newest Image, Tombstone or will-init record. `complete` is false when the history on this
   * timeline ran out before such a base (the caller continues in the ancestor). With `limit`, at
   * most that many versions are read; `truncated` then says the base was not among them.
   */
  async getReconstructChain(
    entityKey: Buffer,
    lsn: Lsn,
    aboveLsn?: Lsn,
    limit?: number,
    /** entries the first LevelDB round trip reads (more follow as needed; default 16, 4 above `aboveLsn`) */
    firstBatch?: number,
  ): Promise<{ versions: Array<{ lsn: Lsn; value: StoredValue }>; complete: boolean; truncated: boolean }> {
    const chain = await this.getStoredChain(entityKey, lsn, aboveLsn, limit, firstBatch);
    return { versions: decodeStoredVersions(chain.versions, this.valueFiles), complete: chain.complete, truncated: chain.truncated };
  }

  /**
   * getReconstructChain's versions as stored (a StoredChain: runs of versions may stay whole),
   * for replay elsewhere: a redo worker reads the record log and image files itself, so they are
   * not read on this thread.
   */
  async getStoredChain(entityKey: Buffer, lsn: Lsn, aboveLsn?: Lsn, limit?: number, firstBatch?: number): Promise<StoredChain> {
    const chain = await this.readChain(entityKey, lsn, aboveLsn, limit, firstBatch);
    // A block cut above `lsn` keeps its versions at or below the cut in the history key space
    // (timeline/history-cut.ts), and nothing at or below `lsn` here: read them there. (A block
    // with versions here at or below `lsn` has all it needs here.)
    if (chain.versions.length === 0 && !chain.complete && entityKey[0] === KeySpace.RelBlock && (await this.mayHaveHistory())) {
      const historyKey = Buffer.from(entityKey);
      historyKey[0] = KeySpace.RelBlockHistory;
      return this.readChain(historyKey, lsn, aboveLsn, limit, firstBatch);
    }
    return chain;
  }

  /** relation scans (full backups) reading this store now, for background work to yield to */
  scansInProgress = 0;

  private historyPresent: Promise<boolean> | undefined;

  /** Whether any history cut was ever stored (looked up once, then kept up to date). */
  mayHaveHistory(): Promise<boolean> {
    this.historyPresent ??= (async () => {
      const iterator = this.db.iterator({ gte: Buffer.from([KeySpace.RelBlockHistory]), lt: Buffer.from([KeySpace.RelBlockHistory + 1]), limit: 1, values: false });
      try {
        return (await iterator.nextv(1)).length > 0;
      } finally {
        await iterator.close();
      }
    })();
    return this.historyPresent;
  }

  private async readChain(
    entityKey: Buffer,
    lsn: Lsn,
    aboveLsn: Lsn | undefined,
    limit: number | undefined,
    firstBatch: number | undefined,
  ): Promise<StoredChain> {
    const versions: Array<{ lsn: Lsn; raw: Buffer }> = [];
    let count = 0;
    const done = (complete: boolean, truncated: boolean): StoredChain => ({ versions: versions.reverse(), count, complete, truncated });
    // no lower bound at `aboveLsn`: a run keyed at or below it may hold versions above it
    // a batch may hold many page images: let one round trip return it whole (default is 16 KiB)
    const iterator = this.db.iterator({ gte: storeKey(entityKey, 0n), lte: storeKey(entityKey, lsn), reverse: true, highWaterMarkBytes: 1024 * 1024 });
    const max = limit ?? Infinity;
    try {
      // most chains are short: the first batch usually reaches the base
      // (above a cached page: usually only a few newer versions, and the entry after them is read for nothing)
      for (let batchSize = Math.min(max, firstBatch ?? (aboveLsn === undefined ? 16 : 4)); batchSize > 0; batchSize = Math.min(batchSize * 4, 1024, Math.max(1, max - count))) {
        const entries = await iterator.nextv(batchSize);
        for (const [key, raw] of entries) {
          const keyLsn = key.readBigUInt64BE(ENTITY_KEY_LENGTH);
          if (raw[0] === ValueKind.Run) {
            // members are never bases. A run inside (aboveLsn, lsn] stays whole (one entry for
            // up to 256 versions, expanded where they are replayed); of others, the members in
            // it only, newest first
            if ((aboveLsn === undefined || keyLsn > aboveLsn) && runNewestLsn(raw) <= lsn) {
              versions.push({ lsn: keyLsn, raw });
              count += runLength(raw);
            } else {
              const members = expandEntry(keyLsn, raw);
              for (let i = members.length - 1; i >= 0; i--) {
                const member = members[i];
                if (member.lsn > lsn) continue;
                if (aboveLsn !== undefined && member.lsn <= aboveLsn) break;
                versions.push(member);
                count++;
              }
            }
          } else if (aboveLsn === undefined || keyLsn > aboveLsn) {
            versions.push({ lsn: keyLsn, raw });
            count++;
            if (isBaseValue(raw)) return done(true, false);
          }
          // nothing older than this entry lies above `aboveLsn`
          if (aboveLsn !== undefined && keyLsn <= aboveLsn) return done(false, false);
          if (count >= max) return done(false, true);
        }
        // nextv may return fewer entries than asked for (a byte budget); only none means the end
        if (entries.length === 0) break;
      }
    } finally {
      iterator.close().catch(() => {});
    }
    return done(false, false);
  }

  /** Up to `max` raw entries of a range in one round trip to LevelDB's thread. */
  private async readRange(options: { gte?: Buffer; gt?: Buffer; lte: Buffer; reverse: boolean; limit: number }, max: number): Promise<Array<[Buffer, Buffer]>> {
    const iterator = this.db.iterator(options);
    try {
      return await iterator.nextv(max);
    } finally {
      iterator.close().catch(() => {});
    }
  }

  /**
   * For every entity whose key starts with `prefix`: its newest version at or below `lsn`. One
   * forward pass over the versions; an entity whose versions fill the rest of a batch (a table's
   * size gets one per extension) is looked up on its own, and the pass seeks past its history.
   */
  async scanLatest(prefix: Buffer, lsn: Lsn): Promise<Array<{ entityKey: Buffer; lsn: Lsn; value: StoredValue }>> {
    const upper = Buffer.concat([prefix, Buffer.alloc(ENTITY_KEY_LENGTH + 8 - prefix.length, 0xff)]);
    const out: Array<{ entityKey: Buffer; lsn: Lsn; value: StoredValue }> = [];
    let entityKey: Buffer | undefined;
    let newest: [Buffer, Buffer] | undefined;
    let versions = 0;
    const finish = () => {
      if (entityKey && newest) out.push({ entityKey, ...newestAtOrBelow(newest[0].readBigUInt64BE(ENTITY_KEY_LENGTH), newest[1], lsn, this.valueFiles) });
      entityKey = newest = undefined;
    };
    const iterator = this.db.iterator({ gte: prefix, lte: upper });
    try {
      for (;;) {
        const batch = await iterator.nextv(SCAN_BATCH);
        if (batch.length === 0) break;
        for (const entry of batch) {
          const key = entry[0];
          if (!entityKey || key.compare(entityKey, 0, ENTITY_KEY_LENGTH, 0, ENTITY_KEY_LENGTH) !== 0) {
            finish();
            entityKey = key.subarray(0, ENTITY_KEY_LENGTH);
            versions = 0;
          }
          versions++;
          if (key.readBigUInt64BE(ENTITY_KEY_LENGTH) <= lsn) newest = entry;
        }
        if (versions >= SCAN_SEEK_AFTER && entityKey) {
          const long = entityKey;
          entityKey = newest = undefined;
          const version = await this.getVersion(long, lsn);
          if (version) out.push({ entityKey: long, ...version });
          iterator.seek(storeKey(long, 0xffff_ffff_ffff_ffffn));
        }
      }
      finish();
    } finally {
      await iterator.close();
    }
    return out;
  }

  /** Raw iteration over store keys, newest first, in [gte, lt) (of `snapshot` when given). */
  iterateReverse(gte: Buffer, lt: Buffer, limit = -1, snapshot?: StoreSnapshot) {
    return this.db.iterator({ gte, lt, limit, reverse: true, snapshot });
  }

  /**
   * Moves blocks' versions to the history key space and stores the bases they now start with
   * (timeline/history-cut.ts decides what). `moves` name 0x10 versions by block: the block's
   * entity key and the LSNs of its versions to move, oldest first; `images` are page images stored
   * at 0x10 keys (written to the page image files first, as any image).
   *
   * In two steps, so that memory stays bounded whatever a block's history (the hottest pages of
   * a 1 GB pgbench backlog took up to 374k records each): the versions are copied to 0x18 first, read back and
   * written in batches of about COPY_BATCH_BYTES; then one batch deletes them from 0x10 and stores
   * the images. Reads look in 0x18 only for what 0x10 has no longer, so until that batch they read
   * 0x10 as before; copies a crash leaves before it are the same keys and values a later cut
   * writes again. Not synced: the last batch is either whole or absent after a crash, and either
   * way the timeline reads the same pages. Returns the number of versions now in history.
   */
  async cutHistory(moves: ReadonlyArray<{ entity: Buffer; lsns: readonly Lsn[] }>, images: ReadonlyArray<{ key: Buffer; value: Buffer }>, copyBatchBytes = COPY_BATCH_BYTES): Promise<number> {
    if (moves.length === 0 && images.length === 0) return 0;
    for (const { entity } of moves) if (entity[0] !== KeySpace.RelBlock) throw new Error("cutHistory moves relation block versions only");
    const moved = await this.copyToHistory(moves, copyBatchBytes);
    failpoint("history-cut-after-copies");
    const imageEntries = images.map(({ key, value }) => ({ key, value }));
    // (no page changes at any LSN: what caches hold stays true, and a cut under way must not empty
    // the page cache of the blocks computes are reading)
    this.beginWrite(imageEntries, false);
    try {
      const stored = await this.externalize(imageEntries);
      const batch = this.db.batch();
      const turn = turnsEvery(BACKGROUND_SLICE_MS);
      for (const { entity, lsns } of moves) {
        for (const lsn of lsns) batch.del(storeKey(entity, lsn));
        await turn();
      }
      for (let i = 0; i < imageEntries.length; i++) batch.put(imageEntries[i].key, stored[i]);
      // known before the batch is visible: a read that finds a block's versions gone looks for them
      this.historyPresent = Promise.resolve(true);
      await batch.write();
      return moved;
    } finally {
      this.endWrite();
    }
  }

  /**
   * Copies the listed versions to the history key space, with one iterator over the blocks' keys;
   * returns how many it copied. An image an earlier cut stored at its LSN stands where that cut
   * moved the version at that LSN from: the version is history already, and the image (the page
   * it made) is not copied.
   */
  private async copyToHistory(moves: ReadonlyArray<{ entity: Buffer; lsns: readonly Lsn[] }>, batchBytes: number): Promise<number> {
    const blocks = moves.filter((move) => move.lsns.length > 0).sort((a, b) => a.entity.compare(b.entity));
    if (blocks.length === 0) return 0;
    const first = blocks[0];
    const last = blocks[blocks.length - 1];
    const iterator = this.db.iterator({ gte: storeKey(first.entity, first.lsns[0]), lte: storeKey(last.entity, last.lsns[last.lsns.length - 1]), highWaterMarkBytes: 1024 * 1024 });
    let copied = 0;
    let block = 0;
    let next = 0;
    let pending: Array<[Buffer, Buffer]> = [];
    let pendingBytes = 0;
    // (a batch of small versions is tens of thousands of puts: built in steps, so the event loop
    // serves reads meanwhile; nothing is written before batch.write)
    const turn = turnsEvery(BACKGROUND_SLICE_MS);
    const flush = async () => {
      const bases = pending.filter(([, value]) => value[0] === ValueKind.ImageRef || value[0] === ValueKind.Image).map(([key]) => key);
      const present = bases.length ? await this.db.getMany(bases) : [];
      const superseded = new Set(bases.filter((_, i) => present[i] !== undefined));
      const batch = this.db.batch();
      for (const [key, value] of pending) {
        if (superseded.has(key)) continue;
        batch.put(key, value);
        copied++;
        if ((copied & 255) === 0) await turn();
      }
      await batch.write();
      pending = [];
      pendingBytes = 0;
    };
    try {
      for (;;) {
        const entries = await iterator.nextv(256);
        if (entries.length === 0) break;
        for (const [key, value] of entries) {
          // the listed block this key is of, if any (blocks between them are passed over)
          let order = blocks[block].entity.compare(key, 0, ENTITY_KEY_LENGTH);
          while (order < 0 && block + 1 < blocks.length) {
            block++;
            next = 0;
            order = blocks[block].entity.compare(key, 0, ENTITY_KEY_LENGTH);
          }
          if (order !== 0) continue;
          const lsns = blocks[block].lsns;
          const lsn = key.readBigUInt64BE(ENTITY_KEY_LENGTH);
          while (next < lsns.length && lsns[next] < lsn) next++;
          if (next === lsns.length || lsns[next] !== lsn) continue;
          const historyKey = Buffer.from(key);
          historyKey[0] = KeySpace.RelBlockHistory;
          pending.push([historyKey, value]);
          pendingBytes += key.length + value.length;
          if (pendingBytes >= batchBytes) await flush();
        }
      }
      if (pending.length) await flush();
    } finally {
      await iterator.close();
    }
    return copied;
  }

  /** Raw iteration over store keys in [gte, lte], for tools such as waldump. */
  iterate(gte: Buffer, lte: Buffer, limit = -1) {
    return this.db.iterator({ gte, lte, limit });
  }

  private extentIndex: Promise<ImageExtentIndex> | undefined;
  private extentsChanged = false;

  /** This timeline's image extents (storage/image-extents.ts), read once and kept. */
  imageExtents(): Promise<ImageExtentIndex> {
    this.extentIndex ??= this.loadImageExtents().catch((err) => {
      this.extentIndex = undefined;
      throw err;
    });
    return this.extentIndex;
  }

  private async loadImageExtents(): Promise<ImageExtentIndex> {
    const entries: Array<[Buffer, Buffer]> = [];
    const iterator = this.db.iterator({ gte: Buffer.from([KeySpace.ImageExtent]), lt: Buffer.from([KeySpace.ImageExtent + 1]) });
    try {
      for (;;) {
        const batch = await iterator.nextv(1000);
        if (batch.length === 0) break;
        for (const entry of batch) entries.push(entry);
      }
    } finally {
      await iterator.close();
    }
    return new ImageExtentIndex(entries);
  }

  /** Stores derived data (e.g. a materialized page) outside the ingest stream; not synced. */
  putDerived(entityKey: Buffer, lsn: Lsn, value: Buffer): Promise<void> {
    return this.putDerivedMany([{ entityKey, lsn, value }]);
  }

  /** putDerived of several versions: one write (and sync) of their images, one LevelDB batch. */
  putDerivedMany(versions: Array<{ entityKey: Buffer; lsn: Lsn; value: Buffer }>): Promise<void> {
    const written = this.writeDerived(versions.map((v) => ({ key: storeKey(v.entityKey, v.lsn), value: v.value })));
    this.derivedWrites.add(written);
    const forget = () => this.derivedWrites.delete(written);
    written.then(forget, forget);
    return written;
  }

  private readonly derivedWrites = new Set<Promise<void>>();

  private async writeDerived(entries: Array<{ key: Buffer; value: Buffer }>): Promise<void> {
    this.beginWrite(entries);
    try {
      const stored = await this.externalize(entries);
      await this.db.batch(entries.map((e, i) => ({ type: "put" as const, key: e.key, value: stored[i] })));
    } finally {
      this.endWrite();
    }
  }

  private static nextId = 1;
  /** identifies this open store (e.g. in caches shared by all timelines) */
  readonly id = TimelineStore.nextId++;
  private writing = 0;
  private writeSeq = 0;
  private readonly writeListeners = new Set<WriteListener>();

  /**
   * Calls `listener` with every version key before it is written (and with `undefined` when the
   * store closes), so caches drop what the write makes stale before anyone can read it.
   */
  onWrite(listener: WriteListener): () => void {
    this.writeListeners.add(listener);
    return () => this.writeListeners.delete(listener);
  }

  /**
   * A token for "nothing was written since": a read that began with `writeToken()` and for which
   * `unchangedSince(token)` holds afterwards saw no write at all, finished or in flight.
   */
  writeToken(): number {
    return this.writing > 0 ? -1 : this.writeSeq;
  }

  unchangedSince(token: number): boolean {
    return token >= 0 && this.writing === 0 && this.writeSeq === token;
  }

  /** The durable last_record_lsn if it is known without I/O. */
  get knownLastRecordLsn(): Lsn | undefined {
    return this.markers?.lastRecordLsn;
  }

  /**
   * Before entries are written: reads meanwhile are not taken as seeing the latest state, and the
   * caches drop what the entries make stale, unless `changesPages` is false (a history cut stores
   * images of pages as they already read: every LSN reads the same before and after it).
   */
  private beginWrite(entries: ReadonlyArray<{ key: Buffer }>, changesPages = true) {
    this.writing++;
    this.writeSeq++;
    const cached = this.versionCache.size > 0;
    if (!changesPages || (!cached && this.writeListeners.size === 0)) return;
    for (let i = 0; i < entries.length; i++) {
      const key = entries[i].key;
      if (key.length !== ENTITY_KEY_LENGTH + 8) continue;
      if (cached && VERSION_CACHED[key[0]]) {
        const id = key.toString("latin1", 0, ENTITY_KEY_LENGTH);
        const entry = this.versionCache.get(id);
        if (entry) {
          const versionLsn = key.readBigUInt64BE(ENTITY_KEY_LENGTH);
          if (versionLsn <= entry.fromLsn) this.versionCache.delete(id);
          else if (entry.validTo < 0n || entry.validTo >= versionLsn) entry.validTo = versionLsn - 1n;
        }
      }
      for (const listener of this.writeListeners) listener(key);
    }
  }

  private endWrite() {
    // extents written: reload the index (one loaded while the batch was written may lack them)
    if (this.extentsChanged) this.extentIndex = undefined;
    this.extentsChanged = false;
    this.writing--;
    this.writeSeq++;
  }

  /** Writes the entries and the new markers in one atomic, synced batch. */
  async commit(entries: StoreEntry[], markers: TimelineMarkers): Promise<void> {
    const value = Buffer.alloc(24);
    value.writeBigUInt64BE(markers.lastRecordLsn, 0);
    value.writeBigUInt64BE(markers.diskConsistentLsn, 8);
    value.writeBigUInt64BE(markers.startLsn, 16);
    // a chained batch is several times faster than an array of operation objects here
    this.beginWrite(entries);
    try {
      const values = await this.externalize(entries);
      const batch = this.db.batch();
      for (let i = 0; i < entries.length; i++) batch.put(entries[i].key, values[i]);
      batch.put(MARKERS_KEY, value);
      await batch.write({ sync: true });
      this.markers = { ...markers };
    } finally {
      this.endWrite();
    }
  }
}
