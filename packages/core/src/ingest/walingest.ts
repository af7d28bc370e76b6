// WAL ingest: turns each decoded record into versioned key-value writes (see docs/key-layout.md).
//   walreceiver -> WalStreamDecoder -> WalIngest -> TimelineStore (one atomic batch per step)
// Block references are stored as page images (a block whose full-page image applies) or as the raw record
// keyed by each block it touches, at the record's end LSN. Records that change things no block
// reference describes (relation create/truncate/drop, databases, CLOG, multixacts, relmap,
// checkpoints, visibility-map bits) are translated into writes on the keys they affect.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ, ForkNumber, type RelTag } from "../reltag.ts";
import {
  checkpointKey, controlFileKey, dbDirEntryKey, decodeRelKey, entityPrefix, KeySpace, relBlockKey, relDirEntryKey, relmapFileKey, relSizeKey, replicationOriginKey,
  SlruKind, slruSegSizeKey, tablespaceDirEntryKey, twoPhaseFileKey,
} from "../storage/keys.ts";
import { derivedValue, DerivedKind, imageValue, readU32Value, readU64Value, type StoredValue, TOMBSTONE, u32Value, u64Value, ValueKind, walRecordValue } from "../storage/values.ts";
import { IngestBatch } from "./ingest-batch.ts";
import type { HotPage, HotPages } from "./hot-pages.ts";
import { withParameterChange } from "../basebackup/control.ts";
import { applyRecord } from "../walredo/apply.ts";
import { type BlockRef, type DecodedRecord, withoutImages } from "../wal/record.ts";
import {
  CHECKPOINT_SIZE, CheckPointField, CLOG_XACTS_PER_PAGE, COMMIT_TS_XACTS_PER_PAGE, FSM_SLOTS_PER_PAGE, fsmLeafToPhysical, HEAPBLOCKS_PER_VM_PAGE, MULTIXACT_MEMBERS_PER_PAGE, MULTIXACT_OFFSETS_PER_PAGE,
  parseXactOutcome, readRelFileNode, RM, SLRU_PAGES_PER_SEGMENT, TRANSACTION_STATUS_ABORTED, TRANSACTION_STATUS_COMMITTED,
  XACT_ABORT, XACT_ABORT_PREPARED, XACT_COMMIT, XACT_COMMIT_PREPARED, XACT_OPMASK, XACT_PREPARE, XLOG_CHECKPOINT_ONLINE,
  XLOG_CHECKPOINT_SHUTDOWN, XLOG_END_OF_RECOVERY, END_OF_RECOVERY_THIS_TLI, END_OF_RECOVERY_PREV_TLI, XLOG_NEXTOID, XLOG_PARAMETER_CHANGE, XLOG_TBLSPC_CREATE, XLOG_TBLSPC_DROP, PARAMETER_CHANGE_TRACK_COMMIT_TIMESTAMP,
  DO_NOT_REPLICATE_ORIGIN, INVALID_REPLICATION_ORIGIN, XACT_PREPARE_ORIGIN_LSN_OFFSET, XLOG_REPLORIGIN_DROP, XLOG_REPLORIGIN_SET,
} from "./records.ts";

export { IngestBatch };

const ZERO_PAGE = Buffer.alloc(BLCKSZ);
const XID_CHECKPOINT_INTERVAL = 1024;
const FORKS = [ForkNumber.Main, ForkNumber.Fsm, ForkNumber.VisibilityMap, ForkNumber.Init];

/** Versioned reads of the timeline's state (TimelineStore, or a PageReader that follows ancestors). */
export interface VersionLookup {
  getVersion(entityKey: Buffer, lsn: Lsn): Promise<{ lsn: Lsn; value: StoredValue } | undefined>;
  scanLatest(prefix: Buffer, lsn: Lsn): Promise<Array<{ entityKey: Buffer; lsn: Lsn; value: StoredValue }>>;
}

/** Will-init records of at least this many bytes (and without images) are stored as WalRecordInLog. */
const RECORD_IN_LOG_MIN_BYTES = 2048;

/** Blocks of one relation fork (ascending). */
export interface PagesOfFork {
  rel: RelTag;
  fork: ForkNumber;
  blocks: number[];
}

/** What ingest tracks per relation fork. */
interface ForkState {
  readonly spcNode: number;
  readonly dbNode: number;
  readonly relNode: number;
  readonly fork: ForkNumber;
  /** nblocks; -1 = known not to exist; undefined = not looked up yet */
  size: number | undefined;
  /** blocks written since the last drain, and the records stored per block since its last base (approximate: reset on restart, capped) */
  chains: Map<number, number> | undefined;
  /** the fork's hot pages by block (ingest/hot-pages.ts) */
  hot: Map<number, HotPage> | undefined;
}

/**
 * Fork states found by the relation's numbers: every block reference looks its fork up, and a
 * string key per lookup (plus one per block for chain counting) was a large share of ingest CPU.
 */
class ForkStates {
  private readonly byRelNode = new Map<number, ForkState[]>();

  get(rel: RelTag, fork: ForkNumber): ForkState {
    let list = this.byRelNode.get(rel.relNode);
    if (list === undefined) {
      list = [];
      this.byRelNode.set(rel.relNode, list);
    }
    for (let i = 0; i < list.length; i++) {
      const s = list[i];
      if (s.fork === fork && s.dbNode === rel.dbNode && s.spcNode === rel.spcNode) return s;
    }
    const state: ForkState = { spcNode: rel.spcNode, dbNode: rel.dbNode, relNode: rel.relNode, fork, size: undefined, chains: undefined, hot: undefined };
    list.push(state);
    return state;
  }

  *[Symbol.iterator](): IterableIterator<ForkState> {
    for (const list of this.byRelNode.values()) yield* list;
  }
}

export class WalIngest {
  /** per relation fork: nblocks (-1 = known not to exist) and chain lengths */
  private readonly forks = new ForkStates();
  /** SLRU segment sizes in pages (-1: none) by slruSegmentId */
  private readonly slruSizes = new Map<number, number>();
  private checkpoint: Buffer;
  private checkpointDirty = false;
  /**
   * The xid after the newest one seen, exactly (the checkpoint's nextXid is rounded up): where
   * commit timestamps start when the source turns track_commit_timestamp on. In memory only;
   * after a restart the checkpoint's value stands in until the next checkpoint record.
   */
  private nextXidSeen: number | undefined;

  /** pages with a chain length entry (over all fork states; capped) */
  private chainCount = 0;
  /** pages whose chains reached `longChainThreshold` since the last drain, and the version that did */
  private longChains: Array<{ rel: RelTag; fork: ForkNumber; block: number; lsn: Lsn }> = [];
  longChainThreshold = 50;
  /** pages kept rebuilt as their records are stored (none unless set) */
  hotPages: HotPages | undefined;

  /** A base (image, will-init record) was stored for the block: its chain starts over. */
  private resetChain(state: ForkState, block: number) {
    this.setChain(state, block, 0);
  }

  private countChain(state: ForkState, rel: RelTag, block: number, lsn: Lsn) {
    const n = (state.chains?.get(block) ?? 0) + 1;
    if (n >= this.longChainThreshold) {
      // a hot page makes its own images
      if (state.hot?.has(block) !== true) {
        this.longChains.push({ rel, fork: state.fork, block, lsn });
        this.hotPages?.begin((state.hot ??= new Map()), rel, state.fork, block, lsn);
      }
      this.setChain(state, block, 0);
      return;
    }
    this.setChain(state, block, n);
  }

  private setChain(state: ForkState, block: number, n: number) {
    let chains = state.chains;
    if (this.chainCount >= 500_000) {
      for (const s of this.forks) s.chains = undefined;
      this.chainCount = 0;
      chains = undefined;
    }
    if (!chains) chains = state.chains = new Map();
    const before = chains.size;
    chains.set(block, n);
    this.chainCount += chains.size - before;
  }

  /**
   * Blocks written since the last drain (as counted here: since this ingest opened, and forgotten
   * past 500k blocks), by relation fork with blocks ascending; they count as unwritten again. What
   * compaction cuts (timeline/history-cut.ts).
   */
  drainWrittenPages(): PagesOfFork[] {
    const out: PagesOfFork[] = [];
    for (const state of this.forks) {
      const chains = state.chains;
      if (!chains || chains.size === 0) continue;
      const blocks = [...chains.keys()].sort((a, b) => a - b);
      out.push({ rel: { spcNode: state.spcNode, dbNode: state.dbNode, relNode: state.relNode }, fork: state.fork, blocks });
      state.chains = undefined;
    }
    this.chainCount = 0;
    return out;
  }

  /**
   * Pages that should get a materialized image (their record chains grew long), with the version
   * at which they did; those above `upTo` (not durable yet) stay for a later call.
   */
  drainLongChains(upTo?: Lsn): Array<{ rel: RelTag; fork: ForkNumber; block: number; lsn: Lsn }> {
    const all = this.longChains;
    if (upTo === undefined || all.every((page) => page.lsn <= upTo)) {
      this.longChains = [];
      return all;
    }
    this.longChains = all.filter((page) => page.lsn > upTo);
    return all.filter((page) => page.lsn <= upTo);
  }

  /** The source's timeline as of the last checkpoint or promotion ingested (0 before any). */
  get sourceTimeline(): number {
    return this.checkpoint.readUInt32LE(CheckPointField.thisTimeLineID);
  }

  private constructor(
    private readonly lookup: VersionLookup,
    checkpoint: Buffer | undefined,
    /** replication origins' apply progress (remote LSN) by origin id, as stored so far */
    private readonly origins: Map<number, Lsn>,
  ) {
    this.checkpoint = checkpoint ? Buffer.from(checkpoint) : Buffer.alloc(CHECKPOINT_SIZE);
  }

  /** `lookup` reads the timeline's current state (its store, falling through to ancestors). */
  static async load(lookup: VersionLookup, lsn: Lsn): Promise<WalIngest> {
    const cp = await lookup.getVersion(checkpointKey(), lsn);
    const origins = new Map<number, Lsn>();
    for (const entry of await lookup.scanLatest(entityPrefix(KeySpace.ReplicationOrigin), lsn)) {
      const remoteLsn = readU64Value(entry.value);
      if (remoteLsn !== undefined) origins.set(entry.entityKey.readUInt32BE(1), remoteLsn);
    }
    return new WalIngest(lookup, cp?.value.kind === ValueKind.Image ? cp.value.bytes : undefined, origins);
  }

  /**
   * A replication origin's apply progress moved to `remoteLsn` (replorigin_advance during redo: it
   * only moves forward unless forced; DoNotReplicateId is not tracked).
   */
  private advanceOrigin(batch: IngestBatch, originId: number, remoteLsn: Lsn, force: boolean, lsn: Lsn) {
    if (originId === INVALID_REPLICATION_ORIGIN || originId === DO_NOT_REPLICATE_ORIGIN) return;
    const current = this.origins.get(originId);
    if (current !== undefined && !force && current >= remoteLsn) return;
    this.origins.set(originId, remoteLsn);
    batch.put(replicationOriginKey(originId), lsn, u64Value(remoteLsn));
  }

  /** RM_REPLORIGIN_ID: pg_replication_origin_advance (SET) and pg_replication_origin_drop (DROP). */
  private ingestReplicationOrigin(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn) {
    const data = record.mainData;
    if (info === XLOG_REPLORIGIN_SET) this.advanceOrigin(batch, data.readUInt16LE(8), data.readBigUInt64LE(0), data[10] !== 0, lsn);
    else if (info === XLOG_REPLORIGIN_DROP) {
      const originId = data.readUInt16LE(0);
      if (this.origins.delete(originId)) batch.put(replicationOriginKey(originId), lsn, TOMBSTONE);
    }
  }

  private relSize(rel: RelTag, fork: ForkNumber, lsn: Lsn): Promise<number> {
    return this.stateSize(this.forks.get(rel, fork), lsn);
  }

  private async stateSize(state: ForkState, lsn: Lsn): Promise<number> {
    if (state.size !== undefined) return state.size;
    const version = await this.lookup.getVersion(relSizeKey(state, state.fork), lsn);
    const size = readU32Value(version?.value) ?? -1;
    state.size = size;
    return size;
  }

  private setRelSize(batch: IngestBatch, rel: RelTag, fork: ForkNumber, size: number, lsn: Lsn) {
    this.setStateSize(batch, this.forks.get(rel, fork), size, lsn);
  }

  private setStateSize(batch: IngestBatch, state: ForkState, size: number, lsn: Lsn) {
    const existed = (state.size ?? -1) >= 0;
    state.size = size;
    batch.put(relSizeKey(state, state.fork), lsn, u32Value(size));
    if (!existed) batch.put(relDirEntryKey(state, state.fork), lsn, imageValue(Buffer.from("r")));
  }

  private dropRel(batch: IngestBatch, rel: RelTag, fork: ForkNumber, lsn: Lsn) {
    this.forks.get(rel, fork).size = -1;
    batch.put(relSizeKey(rel, fork), lsn, TOMBSTONE);
    batch.put(relDirEntryKey(rel, fork), lsn, TOMBSTONE);
  }

  /** Grows the fork to cover `block`; its size must have been looked up already. */
  private extendTo(batch: IngestBatch, state: ForkState, block: number, lsn: Lsn) {
    const size = state.size;
    if (size === undefined) throw new Error("ingest: relation size not looked up before extending it");
    if (size <= block) this.setStateSize(batch, state, block + 1, lsn);
  }

  /** The SLRU segment's size in pages (-1: none), or a promise when it must be looked up first. */
  private slruSize(kind: SlruKind, segno: number, lsn: Lsn): number | Promise<number> {
    const cached = this.slruSizes.get(slruSegmentId(kind, segno));
    if (cached !== undefined) return cached;
    return this.lookup.getVersion(slruSegSizeKey(kind, segno), lsn).then((version) => {
      // a concurrent lookup of the same segment may have cached (and grown) it meanwhile
      const id = slruSegmentId(kind, segno);
      if (!this.slruSizes.has(id)) this.slruSizes.set(id, readU32Value(version?.value) ?? -1);
      return this.slruSizes.get(id)!;
    });
  }

  /** Writes an SLRU page version (growing its segment); synchronous unless the segment's size must be looked up. */
  private putSlruPage(batch: IngestBatch, kind: SlruKind, pageno: number, value: Buffer, lsn: Lsn): Promise<void> | undefined {
    const segno = Math.floor(pageno / SLRU_PAGES_PER_SEGMENT);
    const block = pageno % SLRU_PAGES_PER_SEGMENT;
    batch.putSlruBlock(kind, segno, block, lsn, value);
    const size = this.slruSize(kind, segno, lsn);
    if (typeof size === "number") {
      this.growSlruSegment(batch, kind, segno, block, lsn);
      return undefined;
    }
    return size.then(() => this.growSlruSegment(batch, kind, segno, block, lsn));
  }

  /** Grows the segment (its size looked up already) to cover `block`. */
  private growSlruSegment(batch: IngestBatch, kind: SlruKind, segno: number, block: number, lsn: Lsn) {
    // the size as cached now: a lookup of the same segment that finished meanwhile may have grown it
    if (this.slruSizes.get(slruSegmentId(kind, segno))! > block) return;
    this.slruSizes.set(slruSegmentId(kind, segno), block + 1);
    batch.put(slruSegSizeKey(kind, segno), lsn, u32Value(block + 1));
  }

  /**
   * Keeps the checkpoint's nextXid past every xid seen. Like Neon, it is advanced in steps of
   * 1024 (a safe over-estimate for a backup's nextXid) so the checkpoint value is rewritten
   * once per 1024 transactions instead of on every commit.
   */
  private advanceNextXid(xid: number) {
    if (xid === 0) return;
    if (this.nextXidSeen === undefined || ((xid + 1 - this.nextXidSeen) | 0) > 0) this.nextXidSeen = (xid + 1) >>> 0;
    // FullTransactionId as u64 LE = xid (low u32) then epoch (high u32): plain numbers, no BigInt
    // work on every record
    const current = this.checkpoint.readUInt32LE(CheckPointField.nextXid);
    // xids compare modulo 2^32; only move forward
    if (current !== 0 && ((xid + 1 - current) | 0) <= 0) return;
    let nextXid = Math.ceil((xid + 1) / XID_CHECKPOINT_INTERVAL) * XID_CHECKPOINT_INTERVAL;
    let nextEpoch = this.checkpoint.readUInt32LE(CheckPointField.nextXid + 4);
    if (nextXid > 0xffffffff) {
      nextXid -= 0x100000000;
      nextEpoch += 1;
    } else if (nextXid < current) nextEpoch += 1;
    if (nextXid < 3) nextXid = 3; // FirstNormalTransactionId after wraparound
    if (nextEpoch > 0xffffffff) throw new RangeError("nextXid epoch overflows 64 bits");
    this.checkpoint.writeUInt32LE(nextXid, CheckPointField.nextXid);
    this.checkpoint.writeUInt32LE(nextEpoch, CheckPointField.nextXid + 4);
    this.checkpointDirty = true;
  }

  /** Adds the writes for one record to the batch. */
  async ingest(record: DecodedRecord, batch: IngestBatch): Promise<void> {
    await this.ingestRecord(record, batch);
  }

  /**
   * ingest(), synchronous (returns undefined) for the common record whose lookups are all cached,
   * otherwise a promise: most records need no I/O, and a promise plus await per record was a
   * measurable share of ingest CPU.
   */
  ingestRecord(record: DecodedRecord, batch: IngestBatch): Promise<void> | undefined {
    // the block loop extends forks: look their sizes up first (in block order) where not cached;
    // nothing can write a size meanwhile (every write also caches it), so this equals looking
    // each up just before it is needed
    const blocks = record.blocks;
    for (let i = 0; i < blocks.length; i++) {
      if (this.forks.get(blocks[i].rel, blocks[i].forkNum).size === undefined) {
        return this.lookUpBlockSizes(record).then(() => this.ingestResolved(record, batch));
      }
    }
    return this.ingestResolved(record, batch);
  }

  private async lookUpBlockSizes(record: DecodedRecord) {
    for (const block of record.blocks) await this.stateSize(this.forks.get(block.rel, block.forkNum), record.endLsn);
  }

  private ingestResolved(record: DecodedRecord, batch: IngestBatch): Promise<void> | undefined {
    const lsn = record.endLsn;
    // the log keeps records without their page images: those are stored under their blocks
    // (as images or in the block's record), and a second copy was about half of what FPI-heavy
    // WAL (index builds, first changes after a checkpoint) wrote
    const logged = withoutImages(record);
    batch.logRecord(record.lsn, lsn, logged, logged !== record.raw);
    // a large record that starts its page over (a bulk load's multi-insert pages) is stored by
    // reference to its copy in the log: LevelDB then does not carry (and compact) every such
    // page a second time. Records with images are logged without them, and small ones stay inline.
    const referenced = logged === record.raw && record.raw.length >= RECORD_IN_LOG_MIN_BYTES;

    const info = record.info & 0xf0;
    // a will-init record's value is the same under each of its blocks: built once
    let recordValueInit: Buffer | undefined;
    const blocks = record.blocks;
    for (let i = 0; i < blocks.length; i++) {
      const block = blocks[i];
      const state = this.forks.get(block.rel, block.forkNum);
      // A block whose image applies is that image after redo (PostgreSQL restores it and skips
      // the block's changes; GiST clears a flag after it): stored as the page it becomes, not as
      // the record, whatever the rmgr. Records that do not decode that far stay records, so a
      // read reports them as before.
      const image = block.hasImage && block.applyImage ? imageValueFromRecord(record, block) : undefined;
      const base = image !== undefined || block.willInit || (block.hasImage && block.applyImage);
      if (image) batch.putBlock(block.rel, block.forkNum, block.blockNumber, lsn, image);
      else if (base) {
        const value = (recordValueInit ??= referenced ? batch.lastRecordInLog(true) : walRecordValue(record.raw, record.lsn, true));
        batch.putBlock(block.rel, block.forkNum, block.blockNumber, lsn, value);
      } else {
        // the common case: written straight into the block's run
        batch.putBlockRecord(block.rel, block.forkNum, block.blockNumber, lsn, record.lsn, record.raw);
      }
      // a hot page takes every version stored for it (before counting: a count reaching the
      // threshold begins an entry at this version, which must not take it again)
      const hot = state.hot;
      if (hot !== undefined) {
        const entry = hot.get(block.blockNumber);
        if (entry !== undefined) this.hotPages!.applyStored(entry, record, i, lsn);
        else if (block.willInit) this.hotPages!.beginAtInit(hot, block.rel, state.fork, block.blockNumber, record, i, lsn);
      }
      if (base) this.resetChain(state, block.blockNumber);
      else this.countChain(state, block.rel, block.blockNumber, lsn);
      this.extendTo(batch, state, block.blockNumber, lsn);
    }

    this.advanceNextXid(record.xid);
    let rest: Promise<void> | undefined;
    switch (record.rmid) {
      case RM.XLOG:
        rest = this.ingestXlog(record, info, batch, lsn);
        break;
      case RM.XACT:
        rest = this.ingestXact(record, info, batch, lsn);
        break;
      case RM.SMGR:
        rest = this.ingestSmgr(record, info, batch, lsn);
        break;
      case RM.CLOG:
        rest = this.ingestClog(record, info, batch, lsn);
        break;
      case RM.DBASE:
        rest = this.ingestDatabase(record, info, batch, lsn);
        break;
      case RM.MULTIXACT:
        rest = this.ingestMultiXact(record, info, batch, lsn);
        break;
      case RM.COMMIT_TS:
        rest = this.ingestCommitTs(record, info, batch, lsn);
        break;
      case RM.TBLSPC: {
        // xl_tblspc_create_rec {ts_id, ts_path} / xl_tblspc_drop_rec {ts_id}: the tablespace's
        // directory (a full backup writes it even while nothing is in it); its location is not kept
        const spcNode = record.mainData.readUInt32LE(0);
        if (info === XLOG_TBLSPC_CREATE) batch.put(tablespaceDirEntryKey(spcNode), lsn, imageValue(Buffer.from("t")));
        else if (info === XLOG_TBLSPC_DROP) batch.put(tablespaceDirEntryKey(spcNode), lsn, TOMBSTONE);
        break;
      }
      case RM.RELMAP: {
        const dbNode = record.mainData.readUInt32LE(0);
        const spcNode = record.mainData.readUInt32LE(4);
        const nbytes = record.mainData.readInt32LE(8);
        batch.put(relmapFileKey(spcNode, dbNode), lsn, imageValue(record.mainData.subarray(12, 12 + nbytes)));
        batch.put(dbDirEntryKey(spcNode, dbNode), lsn, imageValue(Buffer.from("m")));
        break;
      }
      case RM.HEAP:
      case RM.HEAP2:
        rest = this.ingestVisibilityMapClears(record, info, batch, lsn);
        break;
      case RM.REPLORIGIN:
        this.ingestReplicationOrigin(record, info, batch, lsn);
        break;
    }
    if (rest) return rest.then(() => this.putCheckpointIfDirty(batch, lsn));
    this.putCheckpointIfDirty(batch, lsn);
    return undefined;
  }

  private putCheckpointIfDirty(batch: IngestBatch, lsn: Lsn) {
    if (this.checkpointDirty) {
      batch.put(checkpointKey(), lsn, imageValue(this.checkpoint));
      this.checkpointDirty = false;
    }
  }

  private ingestXlog(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn): Promise<void> | undefined {
    if (info === XLOG_CHECKPOINT_SHUTDOWN || info === XLOG_CHECKPOINT_ONLINE) {
      const incoming = record.mainData;
      const nextXid = this.checkpoint.readBigUInt64LE(CheckPointField.nextXid);
      incoming.copy(this.checkpoint, 0, 0, CHECKPOINT_SIZE);
      const incomingNextXid = incoming.readUInt32LE(CheckPointField.nextXid);
      if (this.nextXidSeen === undefined || ((incomingNextXid - this.nextXidSeen) | 0) > 0) this.nextXidSeen = incomingNextXid;
      // nextXid tracked from records may be ahead of an online checkpoint's snapshot
      if (nextXid > this.checkpoint.readBigUInt64LE(CheckPointField.nextXid)) this.checkpoint.writeBigUInt64LE(nextXid, CheckPointField.nextXid);
      // redo = the record's end for a shutdown checkpoint (a clean point), 0 for online ones
      this.checkpoint.writeBigUInt64LE(info === XLOG_CHECKPOINT_SHUTDOWN ? record.endLsn : 0n, CheckPointField.redo);
      this.checkpointDirty = true;
    } else if (info === XLOG_END_OF_RECOVERY) {
      // a promotion: the source writes on a new timeline from here (a backup's pg_control, and the
      // walreceiver's check that a server's history includes our WAL, go by it)
      this.checkpoint.writeUInt32LE(record.mainData.readUInt32LE(END_OF_RECOVERY_THIS_TLI), CheckPointField.thisTimeLineID);
      this.checkpoint.writeUInt32LE(record.mainData.readUInt32LE(END_OF_RECOVERY_PREV_TLI), CheckPointField.prevTimeLineID);
      this.checkpointDirty = true;
    } else if (info === XLOG_NEXTOID) {
      this.checkpoint.writeUInt32LE(record.mainData.readUInt32LE(0), CheckPointField.nextOid);
      this.checkpointDirty = true;
    } else if (info === XLOG_PARAMETER_CHANGE) {
      // the source restarted with other settings; for commit timestamps this is what
      // CommitTsParameterChange does on a standby: turning on starts at the next xid (keeping
      // bounds already set), turning off invalidates them
      const on = record.mainData[PARAMETER_CHANGE_TRACK_COMMIT_TIMESTAMP] !== 0;
      if (on && !this.commitTsActive()) {
        const start = this.nextXidSeen ?? this.checkpoint.readUInt32LE(CheckPointField.nextXid);
        this.checkpoint.writeUInt32LE(start, CheckPointField.oldestCommitTsXid);
        this.checkpoint.writeUInt32LE(start, CheckPointField.newestCommitTsXid);
        this.checkpointDirty = true;
      } else if (!on && this.commitTsActive()) {
        this.checkpoint.writeUInt32LE(0, CheckPointField.oldestCommitTsXid);
        this.checkpoint.writeUInt32LE(0, CheckPointField.newestCommitTsXid);
        this.checkpointDirty = true;
      }
      return this.putParameterChange(record.mainData, batch, lsn);
    }
    return undefined;
  }

  /** A new version of the timeline's pg_control with the source's new settings (max_prepared_transactions, wal_level…). */
  private async putParameterChange(xlrec: Buffer, batch: IngestBatch, lsn: Lsn) {
    const control = await this.lookup.getVersion(controlFileKey(), lsn);
    // a timeline without pg_control (no import) has nothing a backup could start from anyway
    if (control?.value.kind !== ValueKind.Image) return;
    batch.put(controlFileKey(), lsn, imageValue(withParameterChange(control.value.bytes, xlrec)));
  }

  /**
   * Whether the source records commit timestamps at this point of the WAL: PostgreSQL keeps the
   * bounds (oldestCommitTsXid, newestCommitTsXid) valid exactly while the module is active, and
   * the tracked checkpoint holds them (from the import, checkpoint records and the changes here).
   */
  private commitTsActive(): boolean {
    return this.checkpoint.readUInt32LE(CheckPointField.oldestCommitTsXid) !== 0;
  }

  /** The commit timestamp entries of a committed transaction tree, one derived value per pg_commit_ts page. */
  private setCommitTs(batch: IngestBatch, xids: readonly number[], time: bigint, origin: number, lsn: Lsn): Promise<void> | undefined {
    return this.putPerSlruPage(batch, SlruKind.CommitTs, xids, COMMIT_TS_XACTS_PER_PAGE, lsn, (pageXids) => {
      const payload = Buffer.allocUnsafe(10 + 4 * pageXids.length);
      payload.writeBigInt64LE(time, 0);
      payload.writeUInt16LE(origin, 8);
      for (let k = 0; k < pageXids.length; k++) payload.writeUInt32LE(pageXids[k], 10 + 4 * k);
      return derivedValue(DerivedKind.CommitTsSet, payload);
    });
  }

  /**
   * One SLRU page version per page the xids fall on, made by `valueOf` from that page's xids (one
   * value per page and LSN: a second would replace the first; subxids need not be sorted).
   * Synchronous unless a segment size must be looked up.
   */
  private putPerSlruPage(batch: IngestBatch, kind: SlruKind, xids: readonly number[], perPage: number, lsn: Lsn, valueOf: (pageXids: number[]) => Buffer): Promise<void> | undefined {
    const byPage = new Map<number, number[]>();
    for (const xid of xids) {
      const page = Math.floor(xid / perPage);
      (byPage.get(page) ?? byPage.set(page, []).get(page)!).push(xid);
    }
    let pending: Promise<void> | undefined;
    for (const [pageno, pageXids] of byPage) {
      const put = this.putSlruPage(batch, kind, pageno, valueOf(pageXids), lsn);
      if (put) pending = pending ? pending.then(() => put) : put;
    }
    return pending;
  }

  private async ingestCommitTs(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn) {
    if (info === 0x00) {
      // ZEROPAGE {int pageno}
      await this.putSlruPage(batch, SlruKind.CommitTs, record.mainData.readInt32LE(0), imageValue(ZERO_PAGE), lsn);
    } else if (info === 0x10) {
      // TRUNCATE {int pageno, TransactionId oldestXid}: AdvanceOldestCommitTsXid; the segments
      // stay, as for CLOG truncation (the compute removes them at its own next truncation)
      const oldestXid = record.mainData.readUInt32LE(4);
      const oldest = this.checkpoint.readUInt32LE(CheckPointField.oldestCommitTsXid);
      if (oldest !== 0 && ((oldestXid - oldest) | 0) > 0) {
        this.checkpoint.writeUInt32LE(oldestXid, CheckPointField.oldestCommitTsXid);
        this.checkpointDirty = true;
      }
    }
  }

  /** Sets the xids' CLOG status, one derived value per CLOG page; synchronous unless a size must be looked up. */
  private setClogStatus(batch: IngestBatch, xids: readonly number[], status: number, lsn: Lsn): Promise<void> | undefined {
    // the common case: one xid, no grouping
    if (xids.length === 1) return this.putSlruPage(batch, SlruKind.Clog, Math.floor(xids[0] / CLOG_XACTS_PER_PAGE), clogStatusValue(status, xids), lsn);
    return this.putPerSlruPage(batch, SlruKind.Clog, xids, CLOG_XACTS_PER_PAGE, lsn, (pageXids) => clogStatusValue(status, pageXids));
  }

  /** Synchronous for a commit or abort whose lookups are all cached (the common case). */
  private ingestXact(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn): Promise<void> | undefined {
    const op = info & XACT_OPMASK;
    if (op === XACT_COMMIT || op === XACT_ABORT || op === XACT_COMMIT_PREPARED || op === XACT_ABORT_PREPARED) {
      const isCommit = op === XACT_COMMIT || op === XACT_COMMIT_PREPARED;
      const outcome = parseXactOutcome(record.mainData, record.info, isCommit);
      // a transaction applied from a replication origin: its apply progress (xact_redo_commit/abort)
      if (outcome.originLsn !== undefined && record.origin !== undefined) this.advanceOrigin(batch, record.origin, outcome.originLsn, false, lsn);
      const topXid = outcome.twophaseXid ?? record.xid;
      const xids = outcome.subxacts.length === 0 ? (topXid === 0 ? [] : [topXid]) : [topXid, ...outcome.subxacts].filter((x) => x !== 0);
      for (const x of outcome.subxacts) this.advanceNextXid(x);
      let slruPuts = this.setClogStatus(batch, xids, isCommit ? TRANSACTION_STATUS_COMMITTED : TRANSACTION_STATUS_ABORTED, lsn);
      if (isCommit && xids.length > 0 && this.commitTsActive()) {
        const commitTs = this.setCommitTs(batch, xids, outcome.commitTsTime, record.origin ?? 0, lsn);
        if (commitTs) slruPuts = slruPuts ? slruPuts.then(() => commitTs) : commitTs;
      }
      if (outcome.droppedRels.length === 0 && !slruPuts) {
        if (op === XACT_COMMIT_PREPARED || op === XACT_ABORT_PREPARED) batch.put(twoPhaseFileKey(topXid), lsn, TOMBSTONE);
        return undefined;
      }
      return (async () => {
        await slruPuts;
        for (const rel of outcome.droppedRels) {
          for (const fork of FORKS) if ((await this.relSize(rel, fork, lsn)) >= 0) this.dropRel(batch, rel, fork, lsn);
        }
        if (op === XACT_COMMIT_PREPARED || op === XACT_ABORT_PREPARED) batch.put(twoPhaseFileKey(topXid), lsn, TOMBSTONE);
      })();
    } else if (op === XACT_PREPARE) {
      batch.put(twoPhaseFileKey(record.xid), lsn, imageValue(record.mainData));
      // as PrepareRedoAdd: a prepare applied from an origin advances it too
      if (record.origin !== undefined && record.mainData.length >= XACT_PREPARE_ORIGIN_LSN_OFFSET + 8) {
        this.advanceOrigin(batch, record.origin, record.mainData.readBigUInt64LE(XACT_PREPARE_ORIGIN_LSN_OFFSET), false, lsn);
      }
    }
    return undefined;
  }

  private async ingestSmgr(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn) {
    const data = record.mainData;
    if (info === 0x10) {
      const rel = readRelFileNode(data, 0);
      const fork = data.readInt32LE(12) as ForkNumber;
      if ((await this.relSize(rel, fork, lsn)) < 0) this.setRelSize(batch, rel, fork, 0, lsn);
    } else if (info === 0x20) {
      const blkno = data.readUInt32LE(0);
      const rel = readRelFileNode(data, 4);
      const flags = data.readInt32LE(16);
      if (flags & 1 && (await this.relSize(rel, ForkNumber.Main, lsn)) >= 0) this.setRelSize(batch, rel, ForkNumber.Main, blkno, lsn);
      if (flags & 4) {
        // like FreeSpaceMapPrepareTruncateRel: the FSM page holding the first removed heap block
        // keeps its earlier slots (the rest is zeroed by redo from the derived value), later pages go
        const fsmSize = await this.relSize(rel, ForkNumber.Fsm, lsn);
        const logicalPage = Math.floor(blkno / FSM_SLOTS_PER_PAGE);
        const firstSlot = blkno % FSM_SLOTS_PER_PAGE;
        const physical = fsmLeafToPhysical(logicalPage);
        const newSize = firstSlot === 0 ? physical : physical + 1;
        if (fsmSize > physical) {
          if (firstSlot !== 0) {
            const payload = Buffer.alloc(4);
            payload.writeUInt32LE(firstSlot, 0);
            batch.put(relBlockKey(rel, ForkNumber.Fsm, physical), lsn, derivedValue(DerivedKind.ZeroFsmTail, payload));
          }
          if (newSize < fsmSize) this.setRelSize(batch, rel, ForkNumber.Fsm, newSize, lsn);
        }
      }
      if (flags & 2) {
        const vmSize = await this.relSize(rel, ForkNumber.VisibilityMap, lsn);
        const vmBlocks = Math.ceil(blkno / HEAPBLOCKS_PER_VM_PAGE);
        if (vmSize >= 0) {
          const lastVmBlock = Math.floor(blkno / HEAPBLOCKS_PER_VM_PAGE);
          if (blkno % HEAPBLOCKS_PER_VM_PAGE !== 0 && lastVmBlock < vmSize) {
            const payload = Buffer.alloc(4);
            payload.writeUInt32LE(blkno, 0);
            batch.put(relBlockKey(rel, ForkNumber.VisibilityMap, lastVmBlock), lsn, derivedValue(DerivedKind.TruncateVisibilityMap, payload));
          }
          if (vmBlocks < vmSize) this.setRelSize(batch, rel, ForkNumber.VisibilityMap, vmBlocks, lsn);
        }
      }
    }
  }

  private async ingestClog(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn) {
    if (info === 0x00) {
      await this.putSlruPage(batch, SlruKind.Clog, record.mainData.readInt32LE(0), imageValue(ZERO_PAGE), lsn);
    } else if (info === 0x10) {
      // xl_clog_truncate {pageno, oldestXact, oldestXactDb}
      this.checkpoint.writeUInt32LE(record.mainData.readUInt32LE(4), CheckPointField.oldestXid);
      this.checkpoint.writeUInt32LE(record.mainData.readUInt32LE(8), CheckPointField.oldestXidDB);
      this.checkpointDirty = true;
    }
  }

  private async ingestMultiXact(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn) {
    const data = record.mainData;
    if (info === 0x00 || info === 0x10) {
      const kind = info === 0x00 ? SlruKind.MultiXactOffsets : SlruKind.MultiXactMembers;
      await this.putSlruPage(batch, kind, data.readInt32LE(0), imageValue(ZERO_PAGE), lsn);
    } else if (info === 0x20) {
      const mid = data.readUInt32LE(0);
      const moff = data.readUInt32LE(4);
      const nmembers = data.readInt32LE(8);
      const offsetPayload = Buffer.alloc(8);
      offsetPayload.writeUInt32LE(mid, 0);
      offsetPayload.writeUInt32LE(moff, 4);
      await this.putSlruPage(batch, SlruKind.MultiXactOffsets, Math.floor(mid / MULTIXACT_OFFSETS_PER_PAGE), derivedValue(DerivedKind.MultiXactOffset, offsetPayload), lsn);
      // members may span pages: one derived value per members page, each with its slice
      let i = 0;
      while (i < nmembers) {
        const offset = (moff + i) >>> 0;
        const pageno = Math.floor(offset / MULTIXACT_MEMBERS_PER_PAGE);
        let n = 0;
        while (i + n < nmembers && Math.floor(((moff + i + n) >>> 0) / MULTIXACT_MEMBERS_PER_PAGE) === pageno) n++;
        const payload = Buffer.alloc(8 + 8 * n);
        payload.writeUInt32LE(offset, 0);
        payload.writeUInt32LE(n, 4);
        data.copy(payload, 8, 12 + 8 * i, 12 + 8 * (i + n));
        await this.putSlruPage(batch, SlruKind.MultiXactMembers, pageno, derivedValue(DerivedKind.MultiXactMembers, payload), lsn);
        for (let k = 0; k < n; k++) this.advanceNextXid(data.readUInt32LE(12 + 8 * (i + k)));
        i += n;
      }
      const nextMulti = (mid + 1) >>> 0;
      if (((nextMulti - this.checkpoint.readUInt32LE(CheckPointField.nextMulti)) | 0) > 0) {
        this.checkpoint.writeUInt32LE(nextMulti, CheckPointField.nextMulti);
        this.checkpointDirty = true;
      }
      const nextOffset = (moff + nmembers) >>> 0;
      if (((nextOffset - this.checkpoint.readUInt32LE(CheckPointField.nextMultiOffset)) | 0) > 0) {
        this.checkpoint.writeUInt32LE(nextOffset, CheckPointField.nextMultiOffset);
        this.checkpointDirty = true;
      }
    } else if (info === 0x30) {
      this.checkpoint.writeUInt32LE(data.readUInt32LE(4), CheckPointField.oldestMulti);
      this.checkpoint.writeUInt32LE(data.readUInt32LE(0), CheckPointField.oldestMultiDB);
      this.checkpointDirty = true;
    }
  }

  private async ingestDatabase(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn) {
    const data = record.mainData;
    if (info === 0x00) {
      // CREATE_FILE_COPY: the new database starts as a copy of the source at this LSN
      const dbNode = data.readUInt32LE(0);
      const spcNode = data.readUInt32LE(4);
      const srcDb = data.readUInt32LE(8);
      const srcSpc = data.readUInt32LE(12);
      batch.put(dbDirEntryKey(spcNode, dbNode), lsn, imageValue(Buffer.from("m")));
      const relmap = await this.lookup.getVersion(relmapFileKey(srcSpc, srcDb), lsn);
      if (relmap?.value.kind === ValueKind.Image) batch.put(relmapFileKey(spcNode, dbNode), lsn, imageValue(relmap.value.bytes));
      for (const entry of await this.lookup.scanLatest(entityPrefix(KeySpace.RelDirEntry, srcSpc, srcDb), lsn)) {
        if (entry.value.kind === ValueKind.Tombstone) continue;
        const { rel: srcRel, fork } = decodeRelKey(entry.entityKey);
        const size = await this.relSize(srcRel, fork, lsn);
        if (size < 0) continue;
        const rel = { spcNode, dbNode, relNode: srcRel.relNode };
        this.setRelSize(batch, rel, fork, size, lsn);
        for (let block = 0; block < size; block++) {
          const payload = Buffer.alloc(29);
          relBlockKey(srcRel, fork, block).copy(payload, 0);
          payload.writeBigUInt64BE(lsn, 19);
          batch.put(relBlockKey(rel, fork, block), lsn, derivedValue(DerivedKind.CopyPageFrom, payload.subarray(0, 27), true));
        }
      }
    } else if (info === 0x10) {
      // CREATE_WAL_LOG: contents arrive as ordinary records
      batch.put(dbDirEntryKey(data.readUInt32LE(4), data.readUInt32LE(0)), lsn, imageValue(Buffer.from("d")));
    } else if (info === 0x20) {
      const dbNode = data.readUInt32LE(0);
      const n = data.readInt32LE(4);
      for (let i = 0; i < n; i++) {
        const spcNode = data.readUInt32LE(8 + 4 * i);
        for (const entry of await this.lookup.scanLatest(entityPrefix(KeySpace.RelDirEntry, spcNode, dbNode), lsn)) {
          if (entry.value.kind === ValueKind.Tombstone) continue;
          const { rel, fork } = decodeRelKey(entry.entityKey);
          if ((await this.relSize(rel, fork, lsn)) >= 0) this.dropRel(batch, rel, fork, lsn);
        }
        // relations created within this batch are not visible to scanLatest yet: drop them from the cache too
        for (const state of this.forks) {
          if (state.spcNode === spcNode && state.dbNode === dbNode && state.size !== undefined && state.size >= 0) {
            this.dropRel(batch, { spcNode, dbNode, relNode: state.relNode }, state.fork, lsn);
          }
        }
        batch.put(dbDirEntryKey(spcNode, dbNode), lsn, TOMBSTONE);
        batch.put(relmapFileKey(spcNode, dbNode), lsn, TOMBSTONE);
      }
    }
  }

  /** Synchronous unless the visibility map's size must be looked up. */
  private ingestVisibilityMapClears(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn): Promise<void> | undefined {
    const data = record.mainData;
    const op = info & 0x70;
    const clears: Array<{ heapBlock: number; bits: number }> = [];
    let block0: BlockRef | undefined;
    let block1: BlockRef | undefined;
    for (const b of record.blocks) {
      if (b.id === 0) block0 = b;
      else if (b.id === 1) block1 = b;
    }
    if (!block0) return;
    if (record.rmid === RM.HEAP) {
      if (op === 0x00 && data[2] & 0x01) clears.push({ heapBlock: block0.blockNumber, bits: 0x03 });
      else if (op === 0x10 && data[7] & 0x01) clears.push({ heapBlock: block0.blockNumber, bits: 0x03 });
      else if (op === 0x20 || op === 0x40) {
        if (data[7] & 0x01) clears.push({ heapBlock: (block1 ?? block0).blockNumber, bits: 0x03 });
        if (data[7] & 0x02) clears.push({ heapBlock: block0.blockNumber, bits: 0x03 });
      } else if (op === 0x60 && data[7] & 0x01) clears.push({ heapBlock: block0.blockNumber, bits: 0x02 });
    } else {
      if (op === 0x50 && data[0] & 0x01) clears.push({ heapBlock: block0.blockNumber, bits: 0x03 });
      else if (op === 0x60 && data[7] & 0x01) clears.push({ heapBlock: block0.blockNumber, bits: 0x02 });
    }
    if (clears.length === 0) return undefined;
    const rel = block0.rel;
    const vm = this.forks.get(rel, ForkNumber.VisibilityMap);
    if (vm.size === undefined) return this.stateSize(vm, lsn).then((vmSize) => this.putVisibilityMapClears(batch, rel, vmSize, clears, lsn));
    this.putVisibilityMapClears(batch, rel, vm.size, clears, lsn);
    return undefined;
  }

  private putVisibilityMapClears(batch: IngestBatch, rel: RelTag, vmSize: number, clears: Array<{ heapBlock: number; bits: number }>, lsn: Lsn) {
    // one derived value per VM page (two heap blocks of one update can share a VM page)
    const perVmBlock = new Map<number, Array<{ heapBlock: number; bits: number }>>();
    for (const clear of clears) {
      const vmBlock = Math.floor(clear.heapBlock / HEAPBLOCKS_PER_VM_PAGE);
      if (vmBlock >= vmSize) continue; // PostgreSQL skips a VM page that doesn't exist
      const list = perVmBlock.get(vmBlock) ?? perVmBlock.set(vmBlock, []).get(vmBlock)!;
      if (!list.some((c) => c.heapBlock === clear.heapBlock)) list.push(clear);
    }
    for (const [vmBlock, list] of perVmBlock) {
      const payload = Buffer.alloc(5 * list.length);
      list.forEach((c, i) => {
        payload.writeUInt32LE(c.heapBlock, 5 * i);
        payload[5 * i + 4] = c.bits;
      });
      batch.put(relBlockKey(rel, ForkNumber.VisibilityMap, vmBlock), lsn, derivedValue(DerivedKind.ClearVisibilityMapBits, payload));
    }
  }
}

/** derivedValue(ClogSetStatus, [status][xid u32]...) in one allocation. */
function clogStatusValue(status: number, xids: readonly number[]): Buffer {
  const value = Buffer.allocUnsafe(4 + 4 * xids.length);
  value[0] = ValueKind.Derived;
  value[1] = 0;
  value[2] = DerivedKind.ClogSetStatus;
  value[3] = status;
  for (let i = 0; i < xids.length; i++) value.writeUInt32LE(xids[i], 4 + 4 * i);
  return value;
}

/** SLRU segments by one number (kind < 4). */
function slruSegmentId(kind: SlruKind, segno: number): number {
  return segno * 4 + kind;
}

/**
 * The Image value of the page a block with an applicable image has after redo (as GetPage would
 * rebuild it), restored straight into the value; undefined when it does not restore.
 */
function imageValueFromRecord(record: DecodedRecord, block: BlockRef): Buffer | undefined {
  // an unknown rmgr or an image that does not restore throws: the block then stays a record
  const value = Buffer.allocUnsafe(1 + BLCKSZ);
  value[0] = ValueKind.Image;
  try {
    applyRecord(ZERO_PAGE, record, block, false, value.subarray(1));
    return value;
  } catch {
    return undefined;
  }
}
