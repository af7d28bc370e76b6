// Hot pages: pages whose record chains keep growing (the page of a pgbench branch row takes
// thousands of updates a second), kept rebuilt in memory while ingest stores their records. Their
// materialized images are then copies of that page, made from the records ingest has just decoded,
// instead of a read of each chain back from LevelDB and a second decode of every record in it
// (about a sixth of a pageserver's CPU while it followed a pgbench primary).
//
// A page becomes hot in two steps. When its chain reaches the threshold at version V, ingest begins
// an entry (`begin`): from then on it keeps copies of the page's records, and reports the page as a
// long chain at V. The materializer rebuilds the page at V from the store and hands it over
// (`adopt`), which replays the kept records onto it. From then on ingest applies each record of the
// page as it stores it (`applyStored`); after every `threshold` records a copy of the page is a
// ready image (`drainReady`), stored as the materialized image once ingest is durable that far.
//
// The page mirrors the stored chain: every version ingest stores for it from a record is applied
// to it, and any other write of the block (a derived version: visibility-map bits, truncation, a
// copied database) drops the entry (`dropKey`). A record whose redo fails drops it too: reads of the
// store report such records. Entries are few and bounded (the least recently changed go first).
import type { Lsn } from "../lsn.ts";
import { BLCKSZ, type ForkNumber, type RelTag } from "../reltag.ts";
import { applyRecord } from "../walredo/apply.ts";
import { decodeRecord, type BlockRef, type DecodedRecord } from "../wal/record.ts";

/** hot (and pending) pages kept per timeline, 8 KB each; the least recently changed go first */
export const HOT_PAGES_LIMIT = 512;
/**
 * Records kept for a page until it is adopted, in thresholds, and for all pages (beyond either,
 * the page is dropped): the hottest pages take hundreds of records while the materializer gets
 * to them, and a page dropped for it only begins again, with another rebuild.
 */
const PENDING_THRESHOLDS = 20;
const PENDING_RECORDS_LIMIT = 20_000;

/** A page of the ingestor's hot set. */
export interface HotPage {
  readonly id: string;
  readonly rel: RelTag;
  readonly fork: ForkNumber;
  readonly block: number;
  /** the fork's entries by block, where ingest finds this one */
  readonly byBlock: Map<number, HotPage>;
  /** the page as of `lsn`; undefined until adopted */
  page: Buffer | undefined;
  /** pending: the version the adopted page must be at; hot: the last version applied */
  lsn: Lsn;
  /** records applied since the last image (ready or base) */
  records: number;
  /** copies of the records stored after `lsn` while pending: raw bytes, start LSN, version (end) LSN, block index */
  pending: Array<{ raw: Buffer; recordLsn: Lsn; lsn: Lsn; blockIndex: number }>;
}

/** A copy of a hot page, to be stored as its materialized image at `lsn`. */
export interface ReadyImage {
  rel: RelTag;
  fork: ForkNumber;
  block: number;
  lsn: Lsn;
  page: Buffer;
}

/** a will-init record begins a hot page when one of this many blocks before it is one */
const INIT_NEIGHBOURS = 8;

const pageId = (spcNode: number, dbNode: number, relNode: number, fork: number, block: number) => `${spcNode}/${dbNode}/${relNode}/${fork}/${block}`;

export class HotPages {
  private readonly entries = new Map<string, HotPage>();
  /** entries per relNode: most writes dropKey sees are of relations without any */
  private readonly relNodes = new Map<number, number>();
  /**
   * Whether pages may begin: the owner turns it off while the timeline catches up on a backlog,
   * when the materializer adopts pages only now and then and kept records would pile up for nothing.
   */
  accepting = true;
  private ready: ReadyImage[] = [];
  /**
   * Whether redo stamps hint-bit-only changes (wal_log_hints or checksums, from the timeline's
   * pg_control): set by the owner before ingest starts. Until then no page is hot.
   */
  hintBitsLogged: boolean | undefined;
  /** records kept by pending pages */
  private pendingRecords = 0;
  /** records applied at ingest, pages adopted, and pages begun at a will-init record (for tests) */
  applied = 0;
  adopted = 0;
  begunAtInit = 0;

  constructor(
    readonly threshold = 50,
    readonly limit = HOT_PAGES_LIMIT,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Starts keeping the records of a page whose chain reached the threshold at version `lsn`. */
  begin(byBlock: Map<number, HotPage>, rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn): void {
    if (!this.accepting || byBlock.has(block)) return;
    this.add(byBlock, rel, fork, block, lsn);
  }

  /**
   * A record that starts block `block` over (will-init) was stored at `lsn`: if one of the
   * INIT_NEIGHBOURS blocks before it is hot (or pending), the page is hot from here on, built from
   * the record itself. That is how an append-only relation grows (each new page of pgbench's
   * history table takes about a hundred inserts; concurrent sessions fill a few neighbouring pages
   * at once), and such a page then needs no rebuild from the store to begin.
   */
  beginAtInit(byBlock: Map<number, HotPage>, rel: RelTag, fork: ForkNumber, block: number, record: DecodedRecord, blockIndex: number, lsn: Lsn): void {
    if (!this.accepting || this.hintBitsLogged === undefined || byBlock.has(block)) return;
    let neighbour = false;
    for (let before = Math.max(0, block - INIT_NEIGHBOURS); before < block && !neighbour; before++) neighbour = byBlock.has(before);
    if (!neighbour) return;
    const entry = this.add(byBlock, rel, fork, block, lsn);
    // (a page of its own: redo starts a will-init page over in the buffer it is given)
    const page = this.apply(entry, Buffer.alloc(BLCKSZ), record, record.blocks[blockIndex], lsn);
    if (page === undefined) return;
    entry.page = page;
    this.begunAtInit++;
  }

  private add(byBlock: Map<number, HotPage>, rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn): HotPage {
    if (this.entries.size >= this.limit) this.drop(this.entries.values().next().value!);
    const id = pageId(rel.spcNode, rel.dbNode, rel.relNode, fork, block);
    const entry: HotPage = { id, rel: { spcNode: rel.spcNode, dbNode: rel.dbNode, relNode: rel.relNode }, fork, block, byBlock, page: undefined, lsn, records: 0, pending: [] };
    byBlock.set(block, entry);
    this.entries.set(id, entry);
    this.relNodes.set(rel.relNode, (this.relNodes.get(rel.relNode) ?? 0) + 1);
    return entry;
  }

  /**
   * Ingest stored a version of the entry's page from `record` (block `blockIndex` of it) at
   * `lsn`: applied to the page, or kept until the page is adopted.
   */
  applyStored(entry: HotPage, record: DecodedRecord, blockIndex: number, lsn: Lsn): void {
    if (entry.page === undefined) {
      if (entry.pending.length >= PENDING_THRESHOLDS * this.threshold || this.pendingRecords >= PENDING_RECORDS_LIMIT) this.drop(entry);
      else {
        // (the record's bytes may be the decoder's, reused for the next ones)
        entry.pending.push({ raw: Buffer.from(record.raw), recordLsn: record.lsn, lsn, blockIndex });
        this.pendingRecords++;
      }
      return;
    }
    this.apply(entry, entry.page, record, record.blocks[blockIndex], lsn);
  }

  /**
   * The page of an entry begun at `lsn`, rebuilt from the store at exactly that LSN: the kept
   * records are replayed onto it and ingest applies the next ones. Returns whether the page is
   * hot now (not when the entry was dropped meanwhile, or began at another LSN).
   */
  adopt(rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn, page: Buffer): boolean {
    const entry = this.entries.get(pageId(rel.spcNode, rel.dbNode, rel.relNode, fork, block));
    if (entry === undefined || entry.page !== undefined || entry.lsn !== lsn) return false;
    const pending = entry.pending;
    entry.pending = [];
    this.pendingRecords -= pending.length;
    let current: Buffer | undefined = Buffer.from(page);
    for (let i = 0; i < pending.length && current !== undefined; i++) {
      const kept = pending[i];
      const record = decodeRecord(kept.raw, kept.recordLsn, { verifyCrc: false });
      current = this.apply(entry, current, record, record.blocks[kept.blockIndex], kept.lsn);
    }
    if (current === undefined) return false;
    entry.page = current;
    this.adopted++;
    return true;
  }

  /** Forgets an entry that will not be adopted at `lsn` (its rebuild failed). */
  abandon(rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn): void {
    const entry = this.entries.get(pageId(rel.spcNode, rel.dbNode, rel.relNode, fork, block));
    if (entry !== undefined && entry.page === undefined && entry.lsn === lsn) this.drop(entry);
  }

  /** A version of the block `entityKey` (a relation block key) was stored some other way. */
  dropKey(entityKey: Buffer): void {
    if (this.entries.size === 0 || !this.relNodes.has(entityKey.readUInt32BE(9))) return;
    const entry = this.entries.get(pageId(entityKey.readUInt32BE(1), entityKey.readUInt32BE(5), entityKey.readUInt32BE(9), entityKey[13], entityKey.readUInt32BE(14)));
    if (entry !== undefined) this.drop(entry);
  }

  /** Images ready at or below `durable` (the rest stay for a later call). */
  drainReady(durable: Lsn): ReadyImage[] {
    if (this.ready.length === 0) return [];
    const out = this.ready.filter((image) => image.lsn <= durable);
    this.ready = out.length === this.ready.length ? [] : this.ready.filter((image) => image.lsn > durable);
    return out;
  }

  /** Applies one record to the entry's page; undefined (and the entry dropped) if redo fails. */
  private apply(entry: HotPage, page: Buffer, record: DecodedRecord, block: BlockRef | undefined, lsn: Lsn): Buffer | undefined {
    if (block === undefined || this.hintBitsLogged === undefined) {
      this.drop(entry);
      return undefined;
    }
    let next: Buffer;
    try {
      record.endLsn = lsn;
      next = applyRecord(page, record, block, this.hintBitsLogged);
    } catch {
      this.drop(entry);
      return undefined;
    }
    this.applied++;
    entry.lsn = lsn;
    // most recently applied last: the limit drops pages that stopped changing (a full page of an
    // append-only table) before the ones that keep taking records
    if (entry.page !== undefined) {
      this.entries.delete(entry.id);
      this.entries.set(entry.id, entry);
    }
    if (block.willInit || (block.hasImage && block.applyImage)) entry.records = 0;
    else if (++entry.records >= this.threshold) {
      entry.records = 0;
      this.ready.push({ rel: entry.rel, fork: entry.fork, block: entry.block, lsn, page: Buffer.from(next) });
    }
    if (entry.page !== undefined) entry.page = next;
    return next;
  }

  private drop(entry: HotPage): void {
    if (this.entries.get(entry.id) !== entry) return;
    this.pendingRecords -= entry.pending.length;
    entry.pending = [];
    entry.byBlock.delete(entry.block);
    this.entries.delete(entry.id);
    const left = this.relNodes.get(entry.rel.relNode)! - 1;
    if (left === 0) this.relNodes.delete(entry.rel.relNode);
    else this.relNodes.set(entry.rel.relNode, left);
  }
}
