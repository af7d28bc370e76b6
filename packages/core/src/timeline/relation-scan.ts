// Relation scans: every page of a relation fork block range as of an LSN, with one forward pass
// over the store instead of a GetPage (two reverse seeks) per block. Full backups read whole
// relations; walking the block key range once in key order (block, then LSN) reads each version
// once, sequentially. The result is byte-identical to PageReader.getPage for every block:
//   - per block, only the versions since the newest base (Image, Tombstone, will-init) at or
//     below the LSN are kept; older ones are dropped as soon as a newer base shows up;
//   - a materialized image (key space 0x15, scanned alongside, forward too) at m <= LSN is a base
//     the same way getPage uses it: versions at or below m are dropped, and it is the start page
//     when no newer base exists on this timeline;
//   - a block whose own history runs out continues from the ancestor's page at
//     min(LSN, branch point), taken from a lazy scan of the ancestor advanced block by block.
// Replay goes through reader.replayVersions, so redo (and its errors) are getPage's own.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ, type ForkNumber, type RelTag } from "../reltag.ts";
import { ENTITY_KEY_LENGTH, materializedBlockKey, relBlockKey, storeKey } from "../storage/keys.ts";
import { decodeValue, imageValue, type StoredValue, ValueKind } from "../storage/values.ts";
import type { PageReader } from "./page-reader.ts";

/** entries per LevelDB round trip */
const BATCH_ENTRIES = 256;
/**
 * classic-level cuts a batch once it has read this many bytes (its default, 16 KiB, is two page
 * images: a round trip per two images); 1 MiB keeps batches at BATCH_ENTRIES for typical values.
 */
const BATCH_BYTES = 1024 * 1024;
const MAX_LSN = 0xffff_ffff_ffff_ffffn;
/** offset of the block number in a relation (or materialized) block entity key */
const BLOCK_OFFSET = 14;

type Entry = [Buffer, Buffer];

interface RawIterator {
  nextv(size: number): Promise<Entry[]>;
  close(): Promise<void>;
}

/**
 * A forward iterator read in batches, with the next batch requested while the current one is
 * being replayed (LevelDB reads run on libuv's threads, redo on the main thread).
 */
class Cursor {
  private batch: Entry[] = [];
  private pos = 0;
  private ended = false;
  private ahead: Promise<Entry[]> | undefined;

  constructor(private readonly iterator: RawIterator) {
    // start reading at once: a scan's cursors then load their first batches in parallel
    this.ahead = iterator.nextv(BATCH_ENTRIES);
    this.ahead.catch(() => {});
  }

  /** The current entry if it is already buffered (undefined: call fill). */
  head(): Entry | undefined {
    return this.pos < this.batch.length ? this.batch[this.pos] : undefined;
  }

  /** Loads the next batch; the current entry, or undefined at the end of the range. */
  async fill(): Promise<Entry | undefined> {
    while (this.pos >= this.batch.length) {
      if (this.ended) return undefined;
      const pending = this.ahead ?? this.iterator.nextv(BATCH_ENTRIES);
      this.ahead = undefined;
      const batch = await pending;
      // fewer than asked is not the end (the byte limit cuts batches): only an empty batch is
      if (batch.length === 0) {
        this.ended = true;
        return undefined;
      }
      this.batch = batch;
      this.pos = 0;
      this.ahead = this.iterator.nextv(BATCH_ENTRIES);
      this.ahead.catch(() => {}); // surfaced by the next fill; must not go unhandled if never awaited
    }
    return this.batch[this.pos];
  }

  advance(): void {
    this.pos++;
  }

  /** Waits for a read-ahead in flight (abstract-level defers close until it finishes). */
  async close(): Promise<void> {
    this.batch = [];
    await this.iterator.close();
  }
}

/** Image, Tombstone or a will-init record/derived change: a chain starts here (getReconstructChain's rule). */
function isBase(raw: Buffer): boolean {
  const kind = raw[0];
  if (kind === ValueKind.Image || kind === ValueKind.Tombstone) return true;
  return (kind === ValueKind.WalRecord || kind === ValueKind.Derived) && raw[1] === 1;
}

const blockOf = (key: Buffer) => key.readUInt32BE(BLOCK_OFFSET);
const lsnOf = (key: Buffer) => key.readBigUInt64BE(ENTITY_KEY_LENGTH);

/** One timeline's pass over [fromBlock, toBlock); `page` must be called with increasing blocks. */
class TimelineScan {
  private readonly blocks: Cursor;
  private readonly materialized: Cursor;
  /** created on the first block that needs it, so a branch that rewrote everything never reads its parent */
  private ancestorScan: TimelineScan | undefined;
  private closed = false;

  constructor(
    private readonly reader: PageReader,
    private readonly rel: RelTag,
    private readonly fork: ForkNumber,
    fromBlock: number,
    private readonly toBlock: number,
    private readonly lsn: Lsn,
  ) {
    this.blocks = this.open(relBlockKey(rel, fork, fromBlock), relBlockKey(rel, fork, toBlock - 1));
    try {
      this.materialized = this.open(materializedBlockKey(rel, fork, fromBlock), materializedBlockKey(rel, fork, toBlock - 1));
    } catch (err) {
      this.blocks.close().catch(() => {});
      throw err;
    }
  }

  private open(first: Buffer, last: Buffer): Cursor {
    // the raw db iterator rather than store.iterate: it takes highWaterMarkBytes
    const iterator = this.reader.store.db.iterator({ gte: storeKey(first, 0n), lte: storeKey(last, MAX_LSN), highWaterMarkBytes: BATCH_BYTES });
    return new Cursor(iterator as unknown as RawIterator);
  }

  /** The newest materialized image of `block` at or below the LSN (entries of earlier blocks are skipped). */
  private async materializedAt(block: number): Promise<{ lsn: Lsn; raw: Buffer } | undefined> {
    let found: { lsn: Lsn; raw: Buffer } | undefined;
    for (;;) {
      const entry = this.materialized.head() ?? (await this.materialized.fill());
      if (!entry) return found;
      const entryBlock = blockOf(entry[0]);
      if (entryBlock > block) return found;
      if (entryBlock === block) {
        const entryLsn = lsnOf(entry[0]);
        if (entryLsn <= this.lsn) found = { lsn: entryLsn, raw: entry[1] };
      }
      this.materialized.advance();
    }
  }

  async page(block: number): Promise<Buffer> {
    const materialized = await this.materializedAt(block);
    const floor = materialized?.lsn;
    // versions of `block` in (floor, lsn], from the newest base on (if any); oldest first
    const chain: Array<{ lsn: Lsn; raw: Buffer }> = [];
    for (;;) {
      const entry = this.blocks.head() ?? (await this.blocks.fill());
      if (!entry) break;
      const entryBlock = blockOf(entry[0]);
      if (entryBlock > block) break;
      this.blocks.advance();
      if (entryBlock < block) continue; // a block the caller skipped (ancestor scans)
      const entryLsn = lsnOf(entry[0]);
      if (entryLsn > this.lsn || (floor !== undefined && entryLsn <= floor)) continue;
      if (isBase(entry[1])) chain.length = 0; // older versions are never needed again
      chain.push({ lsn: entryLsn, raw: entry[1] });
    }
    const complete = chain.length > 0 && isBase(chain[0].raw);

    const materializedValue = materialized && decodeValue(materialized.raw);
    // the common case after an import: the page is its one stored image. The iterator's value
    // buffer is ours alone (classic-level copies each entry), so it is returned without the copy
    // replay would make.
    if (chain.length === 1 && chain[0].raw[0] === ValueKind.Image && chain[0].raw.length === BLCKSZ + 1) return chain[0].raw.subarray(1);

    // the same start page as getPage
    let page: Buffer;
    if (complete) page = Buffer.alloc(BLCKSZ);
    else if (materializedValue?.kind === ValueKind.Image) page = Buffer.from(materializedValue.bytes);
    else if (this.reader.ancestor) page = await this.ancestorPage(block);
    else page = Buffer.alloc(BLCKSZ);

    const versions: Array<{ lsn: Lsn; value: StoredValue }> = chain.map((v) => ({ lsn: v.lsn, value: decodeValue(v.raw) }));
    if (versions.length === 0) return page;
    page = await this.reader.replayVersions(page, versions, { rel: this.rel, fork: this.fork, blockNumber: block });

    // materialize long chains as getPage does, so later reads of the block replay less
    let replayed = 0;
    for (const v of versions) if (v.value.kind === ValueKind.WalRecord || v.value.kind === ValueKind.Derived) replayed++;
    if (replayed > Math.floor(this.reader.maxReplay / 2)) {
      await this.reader.store.putDerived(materializedBlockKey(this.rel, this.fork, block), versions[versions.length - 1].lsn, imageValue(page));
    }
    return page;
  }

  private async ancestorPage(block: number): Promise<Buffer> {
    const ancestor = this.reader.ancestor!;
    if (!this.ancestorScan) {
      const at = this.lsn < ancestor.lsn ? this.lsn : ancestor.lsn;
      this.ancestorScan = new TimelineScan(ancestor.reader, this.rel, this.fork, block, this.toBlock, at);
    }
    // a buffer no one else holds (replay or an iterator value), so replay here may modify it
    return this.ancestorScan.page(block);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const results = await Promise.allSettled([this.blocks.close(), this.materialized.close(), this.ancestorScan?.close()]);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
}

/**
 * Every page of blocks [fromBlock, toBlock) of a relation fork as of `lsn`, in block order, each
 * byte-identical to `reader.getPage(rel, fork, block, lsn)` (blocks without any version on any
 * timeline are zero pages). Streams: memory holds a few iterator batches and one block's chain
 * per timeline. Errors (redo, corrupt values) are thrown for the block being read.
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
  const scan = new TimelineScan(reader, rel, fork, fromBlock, toBlock, lsn);
  try {
    for (let block = fromBlock; block < toBlock; block++) yield { blockNumber: block, page: await scan.page(block) };
  } finally {
    await scan.close();
  }
}
