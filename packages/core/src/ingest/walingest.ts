// WAL ingest: turns each decoded record into versioned key-value writes (see docs/key-layout.md).
//   walreceiver -> WalStreamDecoder -> WalIngest -> TimelineStore (one atomic batch per step)
// Block references are stored as page images (full-page-image records) or as the raw record
// keyed by each block it touches, at the record's end LSN. Records that change things no block
// reference describes (relation create/truncate/drop, databases, CLOG, multixacts, relmap,
// checkpoints, visibility-map bits) are translated into writes on the keys they affect.
import type { Lsn } from "../lsn.ts";
import { ForkNumber, type RelTag } from "../reltag.ts";
import {
  checkpointKey, dbDirEntryKey, decodeRelKey, entityPrefix, KeySpace, relBlockKey, relDirEntryKey, relmapFileKey,
  relSizeKey, SlruKind, slruBlockKey, slruSegSizeKey, twoPhaseFileKey, walRecordLogKey, storeKey,
} from "../storage/keys.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { derivedValue, DerivedKind, imageValue, readU32Value, type StoredValue, TOMBSTONE, u32Value, ValueKind, walRecordValue } from "../storage/values.ts";
import { setPageLsn } from "../redo/page.ts";
import { restoreBlockImage } from "../wal/image.ts";
import type { DecodedRecord } from "../wal/record.ts";
import {
  CHECKPOINT_SIZE, CheckPointField, CLOG_XACTS_PER_PAGE, FSM_SLOTS_PER_PAGE, fsmLeafToPhysical, HEAPBLOCKS_PER_VM_PAGE, MULTIXACT_MEMBERS_PER_PAGE, MULTIXACT_OFFSETS_PER_PAGE,
  parseXactOutcome, readRelFileNode, RM, SLRU_PAGES_PER_SEGMENT, TRANSACTION_STATUS_ABORTED, TRANSACTION_STATUS_COMMITTED,
  XACT_ABORT, XACT_ABORT_PREPARED, XACT_COMMIT, XACT_COMMIT_PREPARED, XACT_OPMASK, XACT_PREPARE, XLOG_CHECKPOINT_ONLINE,
  XLOG_CHECKPOINT_SHUTDOWN, XLOG_FPI, XLOG_FPI_FOR_HINT, XLOG_NEXTOID,
} from "./records.ts";

const ZERO_PAGE = Buffer.alloc(8192);
const XID_CHECKPOINT_INTERVAL = 1024;
const FORKS = [ForkNumber.Main, ForkNumber.Fsm, ForkNumber.VisibilityMap, ForkNumber.Init];

/** Versioned reads of the timeline's state (TimelineStore, or a PageReader that follows ancestors). */
export interface VersionLookup {
  getVersion(entityKey: Buffer, lsn: Lsn): Promise<{ lsn: Lsn; value: StoredValue } | undefined>;
  scanLatest(prefix: Buffer, lsn: Lsn): Promise<Array<{ entityKey: Buffer; lsn: Lsn; value: StoredValue }>>;
}

/** Writes of one ingest step, committed atomically with the timeline's markers. */
export class IngestBatch {
  readonly entries: Array<{ key: Buffer; value: Buffer }> = [];
  bytes = 0;
  put(entityKey: Buffer, lsn: Lsn, value: Buffer) {
    this.entries.push({ key: storeKey(entityKey, lsn), value });
    this.bytes += value.length + 27;
  }
}

function relId(rel: RelTag, fork: ForkNumber): string {
  return `${rel.spcNode}/${rel.dbNode}/${rel.relNode}/${fork}`;
}

export class WalIngest {
  /** nblocks per relation fork; -1 = known not to exist */
  private readonly relSizes = new Map<string, number>();
  private readonly slruSizes = new Map<string, number>();
  private checkpoint: Buffer;
  private checkpointDirty = false;

  /** records stored per page since its last image (approximate: reset on restart, capped) */
  private readonly chainLengths = new Map<string, number>();
  /** pages whose chains reached `longChainThreshold` since the last drain */
  private longChains: Array<{ rel: RelTag; fork: ForkNumber; block: number }> = [];
  longChainThreshold = 50;

  private countChain(rel: RelTag, fork: ForkNumber, block: number, willInit: boolean) {
    const id = relId(rel, fork) + `/${block}`;
    if (willInit) {
      this.chainLengths.delete(id);
      return;
    }
    const n = (this.chainLengths.get(id) ?? 0) + 1;
    if (n >= this.longChainThreshold) {
      this.longChains.push({ rel, fork, block });
      this.chainLengths.delete(id);
      return;
    }
    if (this.chainLengths.size >= 500_000) this.chainLengths.clear();
    this.chainLengths.set(id, n);
  }

  /** Pages that should get a materialized image (their record chains grew long). */
  drainLongChains(): Array<{ rel: RelTag; fork: ForkNumber; block: number }> {
    const out = this.longChains;
    this.longChains = [];
    return out;
  }

  private constructor(private readonly lookup: VersionLookup, checkpoint: Buffer | undefined) {
    this.checkpoint = checkpoint ? Buffer.from(checkpoint) : Buffer.alloc(CHECKPOINT_SIZE);
  }

  /** `lookup` reads the timeline's current state (its store, falling through to ancestors). */
  static async load(lookup: VersionLookup, lsn: Lsn): Promise<WalIngest> {
    const cp = await lookup.getVersion(checkpointKey(), lsn);
    return new WalIngest(lookup, cp?.value.kind === ValueKind.Image ? cp.value.bytes : undefined);
  }

  private async relSize(rel: RelTag, fork: ForkNumber, lsn: Lsn): Promise<number> {
    const id = relId(rel, fork);
    const cached = this.relSizes.get(id);
    if (cached !== undefined) return cached;
    const version = await this.lookup.getVersion(relSizeKey(rel, fork), lsn);
    const size = readU32Value(version?.value) ?? -1;
    this.relSizes.set(id, size);
    return size;
  }

  private setRelSize(batch: IngestBatch, rel: RelTag, fork: ForkNumber, size: number, lsn: Lsn) {
    const id = relId(rel, fork);
    const existed = (this.relSizes.get(id) ?? -1) >= 0;
    this.relSizes.set(id, size);
    batch.put(relSizeKey(rel, fork), lsn, u32Value(size));
    if (!existed) batch.put(relDirEntryKey(rel, fork), lsn, imageValue(Buffer.from("r")));
  }

  private dropRel(batch: IngestBatch, rel: RelTag, fork: ForkNumber, lsn: Lsn) {
    this.relSizes.set(relId(rel, fork), -1);
    batch.put(relSizeKey(rel, fork), lsn, TOMBSTONE);
    batch.put(relDirEntryKey(rel, fork), lsn, TOMBSTONE);
  }

  private async extendTo(batch: IngestBatch, rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn) {
    const size = await this.relSize(rel, fork, lsn);
    if (size <= block) this.setRelSize(batch, rel, fork, block + 1, lsn);
  }

  private async slruSize(kind: SlruKind, segno: number, lsn: Lsn): Promise<number> {
    const id = `${kind}/${segno}`;
    const cached = this.slruSizes.get(id);
    if (cached !== undefined) return cached;
    const version = await this.lookup.getVersion(slruSegSizeKey(kind, segno), lsn);
    const size = readU32Value(version?.value) ?? -1;
    this.slruSizes.set(id, size);
    return size;
  }

  private async putSlruPage(batch: IngestBatch, kind: SlruKind, pageno: number, value: Buffer, lsn: Lsn) {
    const segno = Math.floor(pageno / SLRU_PAGES_PER_SEGMENT);
    const block = pageno % SLRU_PAGES_PER_SEGMENT;
    batch.put(slruBlockKey(kind, segno, block), lsn, value);
    const size = await this.slruSize(kind, segno, lsn);
    if (size <= block) {
      this.slruSizes.set(`${kind}/${segno}`, block + 1);
      batch.put(slruSegSizeKey(kind, segno), lsn, u32Value(block + 1));
    }
  }

  /**
   * Keeps the checkpoint's nextXid past every xid seen. Like Neon, it is advanced in steps of
   * 1024 (a safe over-estimate for a backup's nextXid) so the checkpoint value is rewritten
   * once per 1024 transactions instead of on every commit.
   */
  private advanceNextXid(xid: number) {
    if (xid === 0) return;
    const next = this.checkpoint.readBigUInt64LE(CheckPointField.nextXid);
    const epoch = next >> 32n;
    const current = Number(next & 0xffffffffn);
    // xids compare modulo 2^32; only move forward
    if (current !== 0 && ((xid + 1 - current) | 0) <= 0) return;
    let nextXid = Math.ceil((xid + 1) / XID_CHECKPOINT_INTERVAL) * XID_CHECKPOINT_INTERVAL;
    let nextEpoch = epoch;
    if (nextXid > 0xffffffff) {
      nextXid -= 0x100000000;
      nextEpoch += 1n;
    } else if (nextXid < current) nextEpoch += 1n;
    if (nextXid < 3) nextXid = 3; // FirstNormalTransactionId after wraparound
    this.checkpoint.writeBigUInt64LE((nextEpoch << 32n) | BigInt(nextXid), CheckPointField.nextXid);
    this.checkpointDirty = true;
  }

  /** Adds the writes for one record to the batch. */
  async ingest(record: DecodedRecord, batch: IngestBatch): Promise<void> {
    const lsn = record.endLsn;
    const log = Buffer.allocUnsafe(8 + record.raw.length);
    log.writeBigUInt64BE(record.endLsn, 0);
    record.raw.copy(log, 8);
    batch.put(walRecordLogKey(), record.lsn, imageValue(log));

    const info = record.info & 0xf0;
    const isFpiRecord = record.rmid === RM.XLOG && (info === XLOG_FPI || info === XLOG_FPI_FOR_HINT);
    for (const block of record.blocks) {
      if (isFpiRecord && block.hasImage && block.applyImage) {
        const page = restoreBlockImage(block, record.lsn);
        if (!page.equals(ZERO_PAGE)) {
          // like redo: the restored page carries the LSN of the record that wrote it
          setPageLsn(page, lsn);
        }
        batch.put(relBlockKey(block.rel, block.forkNum, block.blockNumber), lsn, imageValue(page));
        this.chainLengths.delete(relId(block.rel, block.forkNum) + `/${block.blockNumber}`);
      } else {
        const willInit = block.willInit || (block.hasImage && block.applyImage);
        batch.put(relBlockKey(block.rel, block.forkNum, block.blockNumber), lsn, walRecordValue(record.raw, record.lsn, willInit));
        this.countChain(block.rel, block.forkNum, block.blockNumber, willInit);
      }
      await this.extendTo(batch, block.rel, block.forkNum, block.blockNumber, lsn);
    }

    this.advanceNextXid(record.xid);
    switch (record.rmid) {
      case RM.XLOG:
        this.ingestXlog(record, info);
        break;
      case RM.XACT:
        await this.ingestXact(record, info, batch, lsn);
        break;
      case RM.SMGR:
        await this.ingestSmgr(record, info, batch, lsn);
        break;
      case RM.CLOG:
        await this.ingestClog(record, info, batch, lsn);
        break;
      case RM.DBASE:
        await this.ingestDatabase(record, info, batch, lsn);
        break;
      case RM.MULTIXACT:
        await this.ingestMultiXact(record, info, batch, lsn);
        break;
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
        await this.ingestVisibilityMapClears(record, info, batch, lsn);
        break;
    }
    if (this.checkpointDirty) {
      batch.put(checkpointKey(), lsn, imageValue(this.checkpoint));
      this.checkpointDirty = false;
    }
  }

  private ingestXlog(record: DecodedRecord, info: number) {
    if (info === XLOG_CHECKPOINT_SHUTDOWN || info === XLOG_CHECKPOINT_ONLINE) {
      const incoming = record.mainData;
      const nextXid = this.checkpoint.readBigUInt64LE(CheckPointField.nextXid);
      incoming.copy(this.checkpoint, 0, 0, CHECKPOINT_SIZE);
      // nextXid tracked from records may be ahead of an online checkpoint's snapshot
      if (nextXid > this.checkpoint.readBigUInt64LE(CheckPointField.nextXid)) this.checkpoint.writeBigUInt64LE(nextXid, CheckPointField.nextXid);
      // redo = the record's end for a shutdown checkpoint (a clean point), 0 for online ones
      this.checkpoint.writeBigUInt64LE(info === XLOG_CHECKPOINT_SHUTDOWN ? record.endLsn : 0n, CheckPointField.redo);
      this.checkpointDirty = true;
    } else if (info === XLOG_NEXTOID) {
      this.checkpoint.writeUInt32LE(record.mainData.readUInt32LE(0), CheckPointField.nextOid);
      this.checkpointDirty = true;
    }
  }

  private async setClogStatus(batch: IngestBatch, xids: number[], status: number, lsn: Lsn) {
    const byPage = new Map<number, number[]>();
    for (const xid of xids) {
      const page = Math.floor(xid / CLOG_XACTS_PER_PAGE);
      (byPage.get(page) ?? byPage.set(page, []).get(page)!).push(xid);
    }
    for (const [pageno, pageXids] of byPage) {
      const payload = Buffer.allocUnsafe(1 + 4 * pageXids.length);
      payload[0] = status;
      pageXids.forEach((x, i) => payload.writeUInt32LE(x, 1 + 4 * i));
      await this.putSlruPage(batch, SlruKind.Clog, pageno, derivedValue(DerivedKind.ClogSetStatus, payload), lsn);
    }
  }

  private async ingestXact(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn) {
    const op = info & XACT_OPMASK;
    if (op === XACT_COMMIT || op === XACT_ABORT || op === XACT_COMMIT_PREPARED || op === XACT_ABORT_PREPARED) {
      const isCommit = op === XACT_COMMIT || op === XACT_COMMIT_PREPARED;
      const outcome = parseXactOutcome(record.mainData, record.info, isCommit);
      const topXid = outcome.twophaseXid ?? record.xid;
      const xids = [topXid, ...outcome.subxacts].filter((x) => x !== 0);
      for (const x of outcome.subxacts) this.advanceNextXid(x);
      await this.setClogStatus(batch, xids, isCommit ? TRANSACTION_STATUS_COMMITTED : TRANSACTION_STATUS_ABORTED, lsn);
      for (const rel of outcome.droppedRels) {
        for (const fork of FORKS) if ((await this.relSize(rel, fork, lsn)) >= 0) this.dropRel(batch, rel, fork, lsn);
      }
      if (op === XACT_COMMIT_PREPARED || op === XACT_ABORT_PREPARED) batch.put(twoPhaseFileKey(topXid), lsn, TOMBSTONE);
    } else if (op === XACT_PREPARE) {
      batch.put(twoPhaseFileKey(record.xid), lsn, imageValue(record.mainData));
    }
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
        for (const [id, size] of this.relSizes) {
          const [spc, db, relNode, fork] = id.split("/").map(Number);
          if (spc === spcNode && db === dbNode && size >= 0) this.dropRel(batch, { spcNode: spc, dbNode: db, relNode }, fork as ForkNumber, lsn);
        }
        batch.put(dbDirEntryKey(spcNode, dbNode), lsn, TOMBSTONE);
        batch.put(relmapFileKey(spcNode, dbNode), lsn, TOMBSTONE);
      }
    }
  }

  private async ingestVisibilityMapClears(record: DecodedRecord, info: number, batch: IngestBatch, lsn: Lsn) {
    const data = record.mainData;
    const op = info & 0x70;
    const clears: Array<{ heapBlock: number; bits: number }> = [];
    const block0 = record.blocks.find((b) => b.id === 0);
    const block1 = record.blocks.find((b) => b.id === 1);
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
    const rel = block0.rel;
    const vmSize = clears.length ? await this.relSize(rel, ForkNumber.VisibilityMap, lsn) : 0;
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
