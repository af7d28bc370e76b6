// Relation scans: every page of relation fork block ranges as of an LSN, read with forward passes
// over the store instead of a GetPage (two reverse seeks) per block. Full backups read every
// relation; walking the block key space in key order (relation, fork, block, then LSN) reads each
// version once, sequentially. A RelationScanner keeps its cursors from one relation fork to the
// next, so reading many relations in key order is one pass per key space rather than new
// iterators (and their first round trips) per relation. The result is byte-identical to
// PageReader.getPage for every block:
//   - per block, only the versions since the newest base (Image, Tombstone, will-init) at or
//     below the LSN are kept; older ones are dropped as soon as a newer base shows up;
//   - a materialized image (key space 0x15, scanned alongside, forward too) at m <= LSN is a base
//     the same way getPage uses it: versions at or below m are dropped, and it is the start page
//     when no newer base exists on this timeline;
//   - a run (several record/derived versions of a block in one entry keyed by the first one's
//     LSN, values.ts) is expanded, and each of its versions taken as if stored on its own;
//   - a block whose own history runs out continues from the ancestor's page at
//     min(LSN, branch point), taken from a lazy scan of the ancestor (one for the whole scanner,
//     advanced block by block like this timeline's);
//   - entries of keys between the blocks asked for (versions above the LSN, blocks past a
//     truncation, relations dropped or not asked for) are skipped; a gap of more than a batch is
//     crossed with a seek.
// Replay goes through reader.replayStoredFrom, so redo (and its errors) are getPage's own; with
// parallelReplay, long chains go to the reader's redo workers (reader.replayOnWorker) while the
// scan reads the next blocks, and come back as PendingPage.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ, type ForkNumber, type RelTag } from "../reltag.ts";
import { ENTITY_KEY_LENGTH, KeySpace, materializedBlockKey, relBlockKey, STORE_KEY_LENGTH, storeKey } from "../storage/keys.ts";
import type { AppendFiles, FileRef } from "../storage/append-files.ts";
import type { StoreSnapshot } from "../storage/timeline-store.ts";
import { type ImageExtent, ImageExtentIndex } from "../storage/image-extents.ts";
import { decodeValue, expandEntry, imageValue, isBaseValue, readImageRef, replayedVersions, runNewestLsn, storedNewestLsn, ValueKind } from "../storage/values.ts";
import type { PageReader } from "./page-reader.ts";

/** entries per LevelDB round trip */
const BATCH_ENTRIES = 256;
/**
 * bytes of versions a parallel-replay scan has on redo workers at most, by default (each job is a
 * copy of its chain): beyond it a long chain replays on the scan's own thread. One job may exceed
 * it alone. (8 MB rebuilt the redo bench's pages as fast as 32 or 128 MB did: the scan's own
 * thread then replays a hot page while the workers replay others.)
 */
const MAX_OFFLOADED_BYTES = 8 * 1024 * 1024;
/**
 * classic-level cuts a batch once it has read this many bytes (its default, 16 KiB, is two page
 * images: a round trip per two images); 1 MiB keeps batches at BATCH_ENTRIES for typical values.
 */
const BATCH_BYTES = 1024 * 1024;

/**
 * A page that is exactly one full image in a timeline's page image files: where it is, and in
 * whose files (this timeline's, or an ancestor's for a block the branch never changed).
 */
export interface StoredImage extends FileRef {
  images: AppendFiles;
}

/** The full page a stored value of kind ImageRef refers to, in `images`; undefined for anything else. */
function storedPage(raw: Buffer, images: AppendFiles): StoredImage | undefined {
  if (raw[0] !== ValueKind.ImageRef) return undefined;
  const ref = readImageRef(raw);
  return ref.length === BLCKSZ ? { file: ref.file, offset: ref.offset, length: ref.length, images } : undefined;
}

/** The page itself: a stored image is read from its files. */
function pageOf(found: Buffer | StoredImage): Buffer {
  return found instanceof Buffer ? found : (found as StoredImage).images.read(found as StoredImage);
}

/** The page of what pageOrImage found: a stored image read, a worker's page once it is rebuilt. */
export function settledPage(found: Found): Buffer | Promise<Buffer> {
  return found instanceof PendingPage ? found.page : pageOf(found);
}

type Entry = [Buffer, Buffer];

/**
 * A page a redo worker is rebuilding (scans with `parallelReplay`): the scan has gone on to the
 * next blocks meanwhile, and `page` settles with the page (or the block's error).
 */
export class PendingPage {
  constructor(readonly page: Promise<Buffer>) {
    // (surfaced by whoever awaits it; not unhandled if a failed scan never gets there)
    page.catch(() => {});
  }
}

/** A block's page: the page itself, the stored image it is exactly, or one being rebuilt on a worker. */
type Found = Buffer | StoredImage | PendingPage;

/** What a scan took for one block from its cursors. */
interface BlockVersions {
  /** the newest materialized image at or below the LSN */
  materialized: { lsn: Lsn; raw: Buffer } | undefined;
  /** versions in (materialized image, LSN], from the newest base on; oldest first */
  chain: Array<{ lsn: Lsn; raw: Buffer }>;
  /** entries of the block at or below the LSN read from the cursor being taken from */
  taken: number;
  /** the cursor holds an entry of the block above the LSN */
  above: boolean;
}

interface RawIterator {
  nextv(size: number): Promise<Entry[]>;
  seek(target: Buffer): void;
  close(): Promise<void>;
}

/**
 * Orders a key by its entity fields after the key-space byte (relation, fork, block): store keys
 * and entity keys of 0x10 and 0x15 compare alike; the LSN is not compared.
 */
function compareEntity(key: Buffer, entity: Buffer): number {
  // in JS: Buffer.compare with offsets is a native call (with argument checks) per entry
  for (let i = 1; i < ENTITY_KEY_LENGTH; i++) {
    const d = key[i] - entity[i];
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * A forward iterator over one key space, read in batches with the next batch requested while the
 * current one is being replayed (LevelDB reads run on libuv's threads, redo on the main thread).
 * Positioned by entity (`skipTo`): forward by skipping entries, or by a seek when a whole batch
 * lies before the target; backward (a target at or before the previous one) by a seek.
 */
class Cursor {
  private iterator: RawIterator | undefined;
  /** the entity the iterator starts at: a target below it needs a new iterator */
  private openedAt: Buffer | undefined;
  /** the entity of the last skipTo since the iterator was opened or sought */
  private lastTarget: Buffer | undefined;
  private batch: Entry[] = [];
  private pos = 0;
  private ended = false;
  private ahead: Promise<Entry[]> | undefined;
  /** iterators opened and seeks made (tests and probes) */
  readonly stats = { opened: 0, seeks: 0 };

  constructor(
    private readonly reader: PageReader,
    readonly space: KeySpace,
    /** exclusive upper bound, an entity key (undefined: the end of the key space) */
    private readonly end: Buffer | undefined,
    /** the scan's consistent view: every iterator reads it */
    private readonly snapshot: StoreSnapshot,
  ) {}

  private keyAt(entity: Buffer): Buffer {
    const key = storeKey(entity, 0n);
    key[0] = this.space;
    return key;
  }

  private open(target: Buffer): void {
    const lt = this.end ? this.keyAt(this.end) : Buffer.from([this.space + 1]);
    // the raw db iterator rather than store.iterate: it takes highWaterMarkBytes
    this.iterator = this.reader.store.db.iterator({ gte: this.keyAt(target), lt, highWaterMarkBytes: BATCH_BYTES, snapshot: this.snapshot }) as unknown as RawIterator;
    this.openedAt = target;
    this.lastTarget = undefined;
    this.stats.opened++;
    // start reading at once: a scan's cursors then load their first batches in parallel
    this.readAhead();
  }

  private readAhead(): void {
    this.ahead = this.iterator!.nextv(BATCH_ENTRIES);
    this.ahead.catch(() => {}); // surfaced by the next take; must not go unhandled if never awaited
  }

  private take(): Promise<Entry[]> {
    const pending = this.ahead ?? this.iterator!.nextv(BATCH_ENTRIES);
    this.ahead = undefined;
    return pending;
  }

  /** Drops what is buffered or being read and goes to `target`. */
  private async reposition(target: Buffer): Promise<void> {
    const pending = this.ahead;
    this.ahead = undefined;
    this.batch = [];
    this.pos = 0;
    this.ended = false;
    // abstract-level refuses to seek while a read is in flight; its result is not wanted
    if (pending) await pending.catch(() => {});
    if (compareEntity(target, this.openedAt!) < 0) {
      // the iterator's range starts after the target: a seek there would end it
      const old = this.iterator!;
      this.iterator = undefined;
      await old.close();
      this.open(target);
      return;
    }
    // (a store key, seekForward's, is sought as it is)
    this.iterator!.seek(target.length === STORE_KEY_LENGTH ? target : this.keyAt(target));
    this.lastTarget = undefined;
    this.stats.seeks++;
    this.readAhead();
  }

  /**
   * Positions the cursor at the first entry of entity `target` or after it. Entries before it are
   * skipped; when a freshly loaded batch lies wholly before the target (a dropped relation's
   * leftovers, blocks past a truncation, many versions above the LSN), the rest of the gap is
   * crossed with a seek rather than read. At most a batch is read for nothing per gap: the one
   * already in flight when the gap was found.
   */
  async skipTo(target: Buffer): Promise<void> {
    if (this.skipBuffered(target)) return;
    if (!this.iterator) this.open(target);
    else if (this.lastTarget && compareEntity(target, this.lastTarget) <= 0) await this.reposition(target);
    this.lastTarget = target;
    for (;;) {
      if (this.pos < this.batch.length) {
        if (compareEntity(this.batch[this.batch.length - 1][0], target) >= 0) {
          while (compareEntity(this.batch[this.pos][0], target) < 0) this.pos++;
          return;
        }
        this.pos = this.batch.length;
      }
      if (this.ended) return;
      const batch = await this.take();
      this.pos = 0;
      if (batch.length === 0) {
        this.batch = [];
        this.ended = true;
        return;
      }
      this.batch = batch;
      if (compareEntity(batch[batch.length - 1][0], target) < 0) {
        await this.reposition(target);
        this.lastTarget = target;
        continue;
      }
      this.readAhead();
    }
  }

  /**
   * skipTo without I/O when what is buffered settles it (the target is within the current batch,
   * or the range has ended): the common case, a block right after the previous one. False: call skipTo.
   */
  skipBuffered(target: Buffer): boolean {
    if (!this.iterator || (this.lastTarget && compareEntity(target, this.lastTarget) <= 0)) return false;
    if (this.pos < this.batch.length) {
      if (compareEntity(this.batch[this.batch.length - 1][0], target) < 0) return false;
      while (compareEntity(this.batch[this.pos][0], target) < 0) this.pos++;
    } else if (!this.ended) return false;
    this.lastTarget = target;
    return true;
  }

  /** The current entry if it is already buffered (undefined: call fill). */
  head(): Entry | undefined {
    return this.pos < this.batch.length ? this.batch[this.pos] : undefined;
  }

  /** Loads the next batch; the current entry, or undefined at the end of the range. */
  async fill(): Promise<Entry | undefined> {
    while (this.pos >= this.batch.length) {
      if (this.ended || !this.iterator) return undefined;
      const batch = await this.take();
      this.pos = 0;
      // fewer than asked is not the end (the byte limit cuts batches): only an empty batch is
      if (batch.length === 0) {
        this.batch = [];
        this.ended = true;
        return undefined;
      }
      this.batch = batch;
      this.readAhead();
    }
    return this.batch[this.pos];
  }

  advance(): void {
    this.pos++;
  }

  /** Whether nothing follows what is buffered: the range has ended (or was never opened). */
  atEnd(): boolean {
    return this.pos >= this.batch.length && (this.ended || !this.iterator);
  }

  /** The last entry of the batch taken (also once it has been read through). */
  lastTaken(): Entry | undefined {
    return this.batch.length ? this.batch[this.batch.length - 1] : undefined;
  }

  /**
   * Moves forward to store key `key` (of the entity of the last skipTo) with a seek, dropping what
   * is buffered or being read: the entries before it are not read at all.
   */
  async seekForward(key: Buffer): Promise<void> {
    const target = this.lastTarget;
    await this.reposition(key);
    this.lastTarget = target;
  }

  /** Waits for a read-ahead in flight (abstract-level defers close until it finishes). */
  async close(): Promise<void> {
    this.batch = [];
    this.ahead = undefined;
    const iterator = this.iterator;
    this.iterator = undefined;
    await iterator?.close();
  }
}

const lsnOf = (key: Buffer) => key.readBigUInt64BE(ENTITY_KEY_LENGTH);

/** Adds a version in (floor, lsn] to a block's chain (oldest first), which restarts at a base. */
function addVersion(chain: Array<{ lsn: Lsn; raw: Buffer }>, versionLsn: Lsn, raw: Buffer, floor: Lsn | undefined, lsn: Lsn): void {
  if (versionLsn > lsn || (floor !== undefined && versionLsn <= floor)) return;
  if (isBaseValue(raw)) chain.length = 0; // older versions are never needed again
  chain.push({ lsn: versionLsn, raw });
}

/** One timeline's pass; `page` is called for blocks in increasing key order (any order is correct, only slower). */
class TimelineScan {
  private readonly blocks: Cursor;
  private readonly materialized: Cursor;
  /** versions moved by history cuts (opened on the first block read below its cut) */
  private history: Cursor | undefined;
  /**
   * One view of the store for all of this scan's reads: a history cut moves versions from one key
   * space to another in one batch, and cursors opened on either side of it must agree.
   */
  private readonly snapshot: StoreSnapshot;
  /** created on the first block that needs it, so a branch that rewrote everything never reads its parent */
  private ancestorScan: TimelineScan | undefined;
  private closed = false;
  /** this timeline's image extents, read on the first block that needs them */
  private extents: ImageExtentIndex | undefined;
  /** bytes of the chains now on redo workers (parallelReplay) */
  private offloadedBytes = 0;
  /** the extent the last imported page came from (it holds the following blocks too) */
  private lastExtent: { rel: RelTag; fork: ForkNumber; extent: ImageExtent } | undefined;

  constructor(
    private readonly reader: PageReader,
    private readonly lsn: Lsn,
    private readonly end: Buffer | undefined,
    /** a compaction pass's own scan: background work does not wait for it */
    private readonly background = false,
    /** long chains go to redo workers and come back as PendingPage (this timeline's only: an ancestor's page is a start page here) */
    private readonly parallelReplay = false,
    private readonly maxOffloadedBytes = MAX_OFFLOADED_BYTES,
  ) {
    this.snapshot = reader.store.db.snapshot();
    if (!background) reader.store.scansInProgress++;
    this.blocks = new Cursor(reader, KeySpace.RelBlock, end, this.snapshot);
    this.materialized = new Cursor(reader, KeySpace.MaterializedBlock, end, this.snapshot);
  }

  /** iterators opened and seeks made, this timeline and its ancestors' scans */
  stats(): { opened: number; seeks: number } {
    const cursors = [this.blocks, this.materialized, ...(this.history ? [this.history] : [])];
    const own = { opened: 0, seeks: 0 };
    for (const cursor of cursors) {
      own.opened += cursor.stats.opened;
      own.seeks += cursor.stats.seeks;
    }
    const ancestor = this.ancestorScan?.stats();
    return ancestor ? { opened: own.opened + ancestor.opened, seeks: own.seeks + ancestor.seeks } : own;
  }

  /** The page of `block` of a relation fork; `target` is its relBlockKey. */
  async page(rel: RelTag, fork: ForkNumber, block: number, target: Buffer): Promise<Buffer> {
    return settledPage(await this.pageOrImage(rel, fork, block, target));
  }

  /**
   * As `page`, but a page that is exactly one full image stored in page image files comes back
   * as that image's reference, not read yet: the caller reads it where it wants it. A block the
   * branch never changed comes back as the ancestor's answer, its image reference included.
   *
   * Synchronous (no promise) when the cursors hold what the block needs and nothing else needs
   * I/O, the usual case for the next block of a relation: a promise per block, and resolving it
   * with a Buffer (a `then` lookup along Buffer's prototype chain), were about a tenth of a full
   * backup's main thread. Errors are thrown synchronously in that case.
   */
  pageOrImage(rel: RelTag, fork: ForkNumber, block: number, target: Buffer, into?: Buffer): Found | Promise<Found> {
    // usually both cursors are positioned from what they hold; otherwise they move (and, when
    // opening or seeking, read) in parallel
    const materializedReady = this.materialized.skipBuffered(target);
    const blocksReady = this.blocks.skipBuffered(target);
    if (!materializedReady || !blocksReady) return this.positionAndRead(rel, fork, block, target, into, materializedReady, blocksReady);
    return this.readVersions(rel, fork, block, target, into);
  }

  private async positionAndRead(rel: RelTag, fork: ForkNumber, block: number, target: Buffer, into: Buffer | undefined, materializedReady: boolean, blocksReady: boolean): Promise<Found> {
    // both settled before an error is thrown: no cursor may still be moving after this read
    const moved = await Promise.allSettled([materializedReady || this.materialized.skipTo(target), blocksReady || this.blocks.skipTo(target)]);
    for (const result of moved) if (result.status === "rejected") throw result.reason;
    return this.readVersions(rel, fork, block, target, into);
  }

  /** The block's versions from both cursors (loading a batch only when one runs out), then its page. */
  private readVersions(rel: RelTag, fork: ForkNumber, block: number, target: Buffer, into: Buffer | undefined): Found | Promise<Found> {
    const versions: BlockVersions = { materialized: undefined, chain: [], taken: 0, above: false };
    if (this.takeMaterialized(target, versions) && this.takeVersions(this.blocks, target, versions) && !this.mayBeCutAbove(versions)) return this.pageFrom(rel, fork, block, target, into, versions);
    return this.readVersionsAsync(rel, fork, block, target, into, versions);
  }

  /**
   * Whether the block's versions at or below the LSN may have been moved by a history cut above
   * the LSN: it has versions here, but none at or below the LSN. (A cut leaves the block's newest
   * base here, above everything it moved; a block with no versions here has none there either.)
   */
  private mayBeCutAbove(versions: BlockVersions): boolean {
    return versions.taken === 0 && versions.above;
  }

  private async readVersionsAsync(rel: RelTag, fork: ForkNumber, block: number, target: Buffer, into: Buffer | undefined, versions: BlockVersions): Promise<Found> {
    while (!this.takeMaterialized(target, versions)) {
      if (this.materializedAhead(target)) await this.skipToNewestMaterialized(target, versions);
      else await this.materialized.fill();
    }
    await this.takeAllVersions(this.blocks, target, versions);
    if (this.mayBeCutAbove(versions) && (await this.reader.store.mayHaveHistory())) {
      this.history ??= new Cursor(this.reader, KeySpace.RelBlockHistory, this.end, this.snapshot);
      await this.history.skipTo(target);
      await this.takeAllVersions(this.history, target, versions);
    }
    return this.pageFrom(rel, fork, block, target, into, versions);
  }

  private async takeAllVersions(cursor: Cursor, target: Buffer, versions: BlockVersions): Promise<void> {
    while (!this.takeVersions(cursor, target, versions)) {
      if (this.obsoleteAhead(cursor, target, versions)) await this.skipObsolete(cursor, target, versions);
      else await cursor.fill();
    }
  }

  /**
   * Whether the batch the materialized cursor just read through ended inside the block's images
   * at or below the LSN: a hot page gets one every few dozen writes, and only the newest counts.
   */
  private materializedAhead(target: Buffer): boolean {
    const last = this.materialized.lastTaken();
    return last !== undefined && compareEntity(last[0], target) === 0 && lsnOf(last[0]) <= this.lsn;
  }

  /** Takes the block's newest materialized image at or below the LSN with one lookup, and seeks past the rest. */
  private async skipToNewestMaterialized(target: Buffer, versions: BlockVersions): Promise<void> {
    const entity = Buffer.from(target.subarray(0, ENTITY_KEY_LENGTH));
    entity[0] = KeySpace.MaterializedBlock;
    const lookup = this.reader.store.iterateReverse(storeKey(entity, 0n), storeKey(entity, this.lsn + 1n), 1, this.snapshot);
    try {
      const [newest] = await lookup.nextv(1);
      if (newest && (!versions.materialized || lsnOf(newest[0]) > versions.materialized.lsn)) versions.materialized = { lsn: lsnOf(newest[0]), raw: newest[1] };
    } finally {
      await lookup.close();
    }
    await this.materialized.seekForward(storeKey(entity, this.lsn + 1n));
  }

  /**
   * Whether the batch the blocks cursor just read through ended inside the block's versions at or
   * below its materialized image: a page written often (a hot row's page) has a long history
   * there that the materialized image makes needless, and it grows with every write.
   */
  private obsoleteAhead(cursor: Cursor, target: Buffer, versions: BlockVersions): boolean {
    const last = cursor.lastTaken();
    return versions.materialized !== undefined && last !== undefined && compareEntity(last[0], target) === 0 && lsnOf(last[0]) <= versions.materialized.lsn;
  }

  /**
   * Crosses the rest of the block's versions at or below its materialized image with a seek
   * instead of reading them: at most a batch of them is read per block, however long the history
   * (a full backup used to read a hot page's whole history every time). The last entry at or below
   * the image is looked up on its own: a run keyed there may hold versions above it.
   */
  private async skipObsolete(cursor: Cursor, target: Buffer, versions: BlockVersions): Promise<void> {
    const floor = versions.materialized!.lsn;
    const entity = Buffer.from(target.subarray(0, ENTITY_KEY_LENGTH));
    entity[0] = cursor.space;
    const taken = cursor.lastTaken()![0];
    const lookup = this.reader.store.iterateReverse(storeKey(entity, 0n), storeKey(entity, floor + 1n), 1, this.snapshot);
    try {
      const [last] = await lookup.nextv(1);
      // (the entry the batch ended with was taken already)
      if (last && last[1][0] === ValueKind.Run && !last[0].equals(taken)) {
        for (const member of expandEntry(lsnOf(last[0]), last[1])) addVersion(versions.chain, member.lsn, member.raw, floor, this.lsn);
      }
    } finally {
      await lookup.close();
    }
    // (the versions skipped are at or below the LSN)
    versions.taken++;
    await cursor.seekForward(storeKey(entity, floor + 1n));
  }

  /**
   * Takes the block's materialized images that the cursor holds; the newest at or below the LSN
   * is kept. False when its batch ran out first: load the next one and call again.
   */
  private takeMaterialized(target: Buffer, versions: BlockVersions): boolean {
    for (;;) {
      const entry = this.materialized.head();
      if (!entry) return this.materialized.atEnd();
      if (compareEntity(entry[0], target) !== 0) return true;
      const entryLsn = lsnOf(entry[0]);
      if (entryLsn > this.lsn) return true; // the block's later versions are left to the next skipTo
      versions.materialized = { lsn: entryLsn, raw: entry[1] };
      this.materialized.advance();
    }
  }

  /**
   * Takes the block's versions in (materialized image, LSN] that the cursor holds into the chain,
   * from the newest base on. False when its batch ran out first: load the next one and call again.
   */
  private takeVersions(cursor: Cursor, target: Buffer, versions: BlockVersions): boolean {
    const floor = versions.materialized?.lsn;
    for (;;) {
      const entry = cursor.head();
      if (!entry) return cursor.atEnd();
      if (compareEntity(entry[0], target) !== 0) return true;
      const entryLsn = lsnOf(entry[0]);
      // versions above the LSN (all later ones of the block too) are left to the next skipTo,
      // which seeks past them when there are more than a batch
      if (entryLsn > this.lsn) {
        versions.above = true;
        return true;
      }
      cursor.advance();
      versions.taken++;
      if (entry[1][0] !== ValueKind.Run) {
        addVersion(versions.chain, entryLsn, entry[1], floor, this.lsn);
        continue;
      }
      // a run's versions (never bases) lie at and above its key. One wholly in (image, LSN] is
      // taken whole: replay expands it in place, a redo worker too (a catch-up's hot block took
      // hundreds of thousands of versions in runs, and an object and a view for each were most of
      // a scan's work on them); one wholly at or below the materialized image is dropped; one
      // across either bound is expanded, and its versions checked one by one
      const newest = runNewestLsn(entry[1]);
      if (floor !== undefined && newest <= floor) continue;
      if ((floor === undefined || entryLsn > floor) && newest <= this.lsn) versions.chain.push({ lsn: entryLsn, raw: entry[1] });
      else for (const member of expandEntry(entryLsn, entry[1])) addVersion(versions.chain, member.lsn, member.raw, floor, this.lsn);
    }
  }

  /** The page from the block's versions: a stored image's reference, or rebuilt (in `into` when there is a start image to read). */
  private pageFrom(rel: RelTag, fork: ForkNumber, block: number, target: Buffer, into: Buffer | undefined, versions: BlockVersions): Found | Promise<Found> {
    const { materialized, chain } = versions;
    const images = this.reader.store.images;
    // the common case after an import: the page is its one stored image
    const onlyImage = chain.length === 1 ? storedPage(chain[0].raw, images) : undefined;
    if (onlyImage) return onlyImage;
    const complete = chain.length > 0 && isBaseValue(chain[0].raw);
    // the block's imported page (in an image extent): the base of a chain without a newer one
    let imported: StoredImage | undefined;
    if (!complete && !materialized) {
      const found = this.importedImage(rel, fork, block);
      // (the extents are read on the first block that needs them; then this is done again)
      if (found instanceof Promise) return found.then(() => this.pageFrom(rel, fork, block, target, into, versions));
      imported = found;
    }
    if (chain.length === 0) {
      // nothing to replay: the page is the materialized image, the imported one, the ancestor's
      // page, or zeros
      const materializedImage = materialized && storedPage(materialized.raw, images);
      if (materializedImage) return materializedImage;
      if (imported) return imported;
      // (a branch's fresh endpoint reads every block this way: the ancestor's stored images
      // stay references, read straight into the backup's chunk, runs of them with one pread)
      if (!materialized && this.reader.ancestor) return this.ancestorScanner().pageOrImage(rel, fork, block, target, into);
    }

    // the start page read from the image files straight into `into`, when there is one: no buffer
    // of its own, and the caller finds the rebuilt page where it wants it
    const intoStart = into && (complete ? storedPage(chain[0].raw, images) : materialized ? storedPage(materialized.raw, images) : imported);
    // decoded buffers (iterator entries, image file reads) are ours alone: replay uses them as
    // pages. Each version is decoded as it is replayed, not all first: a block's chain after a
    // catch-up ran to hundreds of thousands of records, and decoded at once they all lived until
    // the end of its replay (hundreds of MB of heap).
    const files = this.reader.store.valueFiles;
    let from = intoStart && complete ? 1 : 0;
    // the same start page as getPage
    let page: Buffer;
    if (intoStart) {
      page = into!;
      images.readInto(intoStart.file, intoStart.offset, BLCKSZ, page, 0);
    } else if (complete) {
      // a chain starting at an image replays onto that image's own buffer: no zero page needed
      const first = decodeValue(chain[0].raw, files);
      if (first.kind === ValueKind.Image) {
        // (an image stored inline: stores written before the image files)
        if (chain.length === 1 && first.bytes.length === BLCKSZ) return first.bytes;
        page = first.bytes;
        from = 1;
      } else {
        // a will-init record or change, or a tombstone: each starts the page over from zeros in
        // the buffer it is given (walredo/apply.ts), so `into` needs no zeroing first
        page = into ?? Buffer.alloc(BLCKSZ);
      }
    } else {
      const materializedValue = materialized && decodeValue(materialized.raw, images);
      if (materializedValue?.kind === ValueKind.Image) page = materializedValue.bytes;
      else if (imported) page = pageOf(imported);
      else if (this.reader.ancestor) return this.ancestorPage(rel, fork, block, target, into).then((start) => this.replay(rel, fork, block, start, chain, from));
      else page = into ? into.fill(0) : Buffer.alloc(BLCKSZ);
    }
    return this.replay(rel, fork, block, page, chain, from);
  }

  /**
   * Replays the versions (from `from` on) onto the start page as getPage does, and materializes a
   * long chain as getPage does. With parallelReplay, a long chain goes to a redo worker when one
   * can take it, and the block comes back as a PendingPage: the scan reads on meanwhile.
   */
  private replay(rel: RelTag, fork: ForkNumber, block: number, start: Buffer, chain: ReadonlyArray<{ lsn: Lsn; raw: Buffer }>, from: number): Buffer | Promise<Buffer> | PendingPage {
    if (from >= chain.length) return start;
    if (this.parallelReplay) {
      let count = 0;
      let bytes = 0;
      for (let i = from; i < chain.length; i++) {
        count += replayedVersions(chain[i].raw);
        bytes += chain[i].raw.length;
      }
      if (this.offloadedBytes === 0 || this.offloadedBytes + bytes <= this.maxOffloadedBytes) {
        const versions = from === 0 ? chain : chain.slice(from);
        const rebuilt = this.reader.replayOnWorker(start, versions, count, { rel, fork, blockNumber: block });
        if (rebuilt) {
          this.offloadedBytes += bytes;
          const settled = rebuilt.finally(() => (this.offloadedBytes -= bytes));
          return new PendingPage(settled.then((page) => this.materializeIfLong(rel, fork, block, page, chain)));
        }
      }
    }
    const replayed = this.reader.replayStoredFrom(start, chain, { rel, fork, blockNumber: block }, from);
    if (replayed instanceof Promise) return replayed.then((page) => this.materializeIfLong(rel, fork, block, page, chain));
    return this.materializeIfLong(rel, fork, block, replayed, chain);
  }

  /** Materializes a long chain, as getPage does, so later reads of the block replay less. */
  private materializeIfLong(rel: RelTag, fork: ForkNumber, block: number, page: Buffer, chain: ReadonlyArray<{ lsn: Lsn; raw: Buffer }>): Buffer | Promise<Buffer> {
    let replayed = 0;
    for (let i = 0; i < chain.length; i++) replayed += replayedVersions(chain[i].raw);
    if (replayed <= Math.floor(this.reader.maxReplay / 2)) return page;
    // (at the newest version replayed: the last entry may be a run, keyed by its first)
    const full = this.reader.materializeLater(materializedBlockKey(rel, fork, block), storedNewestLsn(chain[chain.length - 1]), imageValue(page));
    return full ? full.then(() => page) : page;
  }

  /**
   * The block's page in this timeline's image extents at or below the LSN, as a reference. Blocks
   * come in order, so the extent of the previous one usually holds the next.
   */
  private importedImage(rel: RelTag, fork: ForkNumber, block: number): StoredImage | undefined | Promise<StoredImage | undefined> {
    if (!this.extents) {
      return this.reader.store.imageExtents().then((extents) => {
        this.extents = extents;
        return this.importedImage(rel, fork, block);
      });
    }
    const last = this.lastExtent;
    let extent: ImageExtent | undefined;
    if (last && !this.extents.overlapping && last.fork === fork && last.rel.relNode === rel.relNode && last.rel.dbNode === rel.dbNode && last.rel.spcNode === rel.spcNode && block >= last.extent.firstBlock && block < last.extent.firstBlock + last.extent.blocks) {
      extent = last.extent;
    } else {
      if (this.extents.size === 0) return undefined;
      extent = this.extents.find(rel, fork, block, this.lsn);
      if (extent) this.lastExtent = { rel, fork, extent };
    }
    // (the same shape as storedPage's: the callers stay monomorphic)
    return extent && { file: extent.file, offset: ImageExtentIndex.pageOffset(extent, block), length: BLCKSZ, images: this.reader.store.images };
  }

  private ancestorScanner(): TimelineScan {
    const ancestor = this.reader.ancestor!;
    this.ancestorScan ??= new TimelineScan(ancestor.reader, this.lsn < ancestor.lsn ? this.lsn : ancestor.lsn, this.end, this.background);
    return this.ancestorScan;
  }

  private async ancestorPage(rel: RelTag, fork: ForkNumber, block: number, target: Buffer, into: Buffer | undefined): Promise<Buffer> {
    // a buffer no one else holds (`into`, replay or an iterator value), so replay here may modify it
    const found = await this.ancestorScanner().pageOrImage(rel, fork, block, target, into);
    if (found instanceof PendingPage) return found.page; // (not from an ancestor's scan: it replays itself)
    if (found instanceof Buffer || !into) return pageOf(found);
    const image = found as StoredImage;
    image.images.readInto(image.file, image.offset, BLCKSZ, into, 0);
    return into;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.background) this.reader.store.scansInProgress--;
    const results = await Promise.allSettled([this.blocks.close(), this.materialized.close(), this.history?.close(), this.ancestorScan?.close()]);
    // (after the iterators that read it)
    results.push(...(await Promise.allSettled([this.snapshot.close()])));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
}

/** A block of a relation fork. */
export interface RelationBlock {
  rel: RelTag;
  fork: ForkNumber;
  block: number;
}

export interface RelationScannerOptions {
  /**
   * Where reading stops (exclusive): the scanner's iterators end there, so no read-ahead goes past
   * it; reading a block at or after it is refused. Default: the end of the key space.
   */
  end?: RelationBlock;
  /**
   * Background work (a compaction pass): not counted in the store's `scansInProgress`, which
   * background work yields to.
   */
  background?: boolean;
  /**
   * Long chains (the redo pool's minVersions or more) are replayed on the reader's redo workers
   * while the scan reads the next blocks: `pageOrImage` then returns a PendingPage for them, and
   * `pages` keeps up to PIPELINE_DEPTH of them in flight, yielding in block order.
   */
  parallelReplay?: boolean;
  /**
   * With parallelReplay: bytes of chains on the workers at once (default 8 MB; each job is a copy
   * of its chain). A long chain beyond it replays on the scan's thread; one alone may exceed it.
   */
  maxOffloadedBytes?: number;
}

/** pages `RelationScanner.pages` reads ahead of the one it yields while workers rebuild them */
const PIPELINE_DEPTH = 32;

function checkBlock(block: number): void {
  if (!Number.isInteger(block) || block < 0 || block > 0xffff_ffff) throw new RangeError(`invalid block number ${block}`);
}

/**
 * Pages of many relation forks as of one LSN, read through one forward pass per key space (and
 * per ancestor timeline): its cursors stay open from one read to the next. Read blocks in key
 * order — by tablespace, database, relation, fork, then block (as listRelations lists them) —
 * for one pass; any order gives the same pages, but each step back is a seek. Each page is
 * byte-identical to `reader.getPage(rel, fork, block, lsn)` (a zero page for a block without any
 * version on any timeline). Memory: a few iterator batches per cursor and one block's chain per
 * timeline. One read at a time; `close` when done (also after an error).
 */
export class RelationScanner {
  private readonly scan: TimelineScan;
  private readonly end: Buffer | undefined;
  private busy = false;
  private closed = false;

  constructor(
    reader: PageReader,
    readonly lsn: Lsn,
    options: RelationScannerOptions = {},
  ) {
    if (options.end) checkBlock(options.end.block);
    this.end = options.end && relBlockKey(options.end.rel, options.end.fork, options.end.block);
    this.scan = new TimelineScan(reader, lsn, this.end, options.background, options.parallelReplay, options.maxOffloadedBytes);
  }

  /** iterators opened and seeks made so far, over all timelines */
  get stats(): { opened: number; seeks: number } {
    return this.scan.stats();
  }

  /** The page of one block. Errors (redo, corrupt values) are thrown for that block; the scanner stays usable. */
  async page(rel: RelTag, fork: ForkNumber, block: number): Promise<Buffer> {
    return settledPage(await this.pageOrImage(rel, fork, block));
  }

  /**
   * As `page`, but a block whose page is one full image in page image files (this timeline's or
   * an ancestor's) comes back as its reference (read it with `readImagesInto`). A page that is
   * rebuilt may be rebuilt in `into` (BLCKSZ bytes the caller lends for this read, e.g. its place
   * in an output buffer) and then comes back as `into` itself; its contents are undefined when
   * the page comes back in another buffer or as a reference.
   *
   * A block that needs no I/O (the usual next block) comes back as is, not as a promise; `await`
   * takes either. Errors always come as a rejected promise. With `parallelReplay`, a long chain's
   * page may come back as a PendingPage (never rebuilt in `into`): the next block can be read at
   * once, and its `page` settles with the page or the block's error.
   */
  pageOrImage(rel: RelTag, fork: ForkNumber, block: number, into?: Buffer): Found | Promise<Found> {
    let found: Found | Promise<Found>;
    try {
      checkBlock(block);
      if (this.closed) throw new Error("relation scanner is closed");
      if (this.busy) throw new Error("relation scanner: one read at a time");
      const target = relBlockKey(rel, fork, block);
      if (this.end && compareEntity(target, this.end) >= 0) throw new RangeError(`block ${block} of ${rel.spcNode}/${rel.dbNode}/${rel.relNode} fork ${fork} is past the scanner's end`);
      if (into && into.length !== BLCKSZ) throw new RangeError(`a page is rebuilt into ${BLCKSZ} bytes, not ${into.length}`);
      this.busy = true;
      found = this.scan.pageOrImage(rel, fork, block, target, into);
    } catch (err) {
      this.busy = false;
      return Promise.reject(err);
    }
    if (!(found instanceof Promise)) {
      this.busy = false;
      return found;
    }
    return found.finally(() => {
      this.busy = false;
    });
  }

  /**
   * Reads `length` bytes of the page image files at an image's file and offset into `target` at
   * `at`: that image from `pageOrImage`, or several stored right after it in the same files.
   */
  readImagesInto(first: StoredImage, length: number, target: Buffer, at: number): void {
    first.images.readInto(first.file, first.offset, length, target, at);
  }

  /** Blocks [fromBlock, toBlock) of a relation fork in block order. */
  async *pages(rel: RelTag, fork: ForkNumber, fromBlock: number, toBlock: number): AsyncGenerator<{ blockNumber: number; page: Buffer }> {
    if (!Number.isInteger(fromBlock) || !Number.isInteger(toBlock) || fromBlock < 0 || toBlock > 0xffff_ffff) {
      throw new RangeError(`invalid block range [${fromBlock}, ${toBlock})`);
    }
    // pages being rebuilt on workers wait here, in block order, while the next blocks are read
    const ahead: Array<{ blockNumber: number; page: Buffer | Promise<Buffer> }> = [];
    for (let block = fromBlock; block < toBlock; block++) {
      ahead.push({ blockNumber: block, page: settledPage(await this.pageOrImage(rel, fork, block)) });
      while (ahead.length > 0 && (ahead.length >= PIPELINE_DEPTH || !(ahead[0].page instanceof Promise))) {
        const next = ahead.shift()!;
        yield { blockNumber: next.blockNumber, page: await next.page };
      }
    }
    for (const next of ahead) yield { blockNumber: next.blockNumber, page: await next.page };
  }

  /** Closes the iterators (waiting for reads in flight). */
  async close(): Promise<void> {
    this.closed = true;
    await this.scan.close();
  }
}

/**
 * Every page of blocks [fromBlock, toBlock) of a relation fork as of `lsn`, in block order, each
 * byte-identical to `reader.getPage(rel, fork, block, lsn)` (blocks without any version on any
 * timeline are zero pages). Streams: memory holds a few iterator batches and one block's chain
 * per timeline. Errors (redo, corrupt values) are thrown for the block being read. To read many
 * relations, a RelationScanner reuses its iterators from one to the next.
 */
export async function* scanRelationPages(
  reader: PageReader,
  rel: RelTag,
  fork: ForkNumber,
  fromBlock: number,
  toBlock: number,
  lsn: Lsn,
): AsyncGenerator<{ blockNumber: number; page: Buffer }> {
  if (!Number.isInteger(fromBlock) || !Number.isInteger(toBlock) || fromBlock < 0 || toBlock > 0xffff_ffff) {
    throw new RangeError(`invalid block range [${fromBlock}, ${toBlock})`);
  }
  if (fromBlock >= toBlock) return;
  const scanner = new RelationScanner(reader, lsn, { end: { rel, fork, block: toBlock } });
  try {
    yield* scanner.pages(rel, fork, fromBlock, toBlock);
  } finally {
    await scanner.close();
  }
}
