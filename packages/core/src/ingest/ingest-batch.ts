// The writes of one ingest step, committed atomically with the timeline's markers
// (docs/key-layout.md):
//   - the WAL record log: records appended to pieces of about PIECE_TARGET_BYTES, one entry each;
//   - page versions (relation blocks, SLRU pages): the versions one step writes to one page form
//     a run, one entry keyed by its first version (a hot heap page or the current CLOG page is
//     one entry, not one per record); a base (image, will-init value) is an entry of its own;
//   - everything else as plain entries.
// Small records make ingest a per-record cost: records and run members are written straight into
// their piece's and run's buffers (no intermediate value, key or object per version).
import type { Lsn } from "../lsn.ts";
import type { ForkNumber, RelTag } from "../reltag.ts";
import { ENTITY_KEY_LENGTH, KeySpace, type SlruKind, storeKey, storeKeyOf, writeLsnBE } from "../storage/keys.ts";
import { PIECE_RECORD_HEADER, PIECE_TARGET_BYTES, RECORD_LOG_PIECE, writePieceRecordHeader } from "../storage/record-log.ts";
import type { StoreEntry } from "../storage/timeline-store.ts";
import { isBaseValue, placeRecordsInLog, RUN_MAX_BYTES, RUN_MAX_VERSIONS, RUN_MEMBER_HEADER, ValueKind, walRecordInLogValue } from "../storage/values.ts";

/** A run's buffer: [Run][count u16] then members [lsn u64][length u32][value]. */
const RUN_HEADER = 3;
/** Bytes a WalRecord value adds to its raw record: [kind][willInit][record LSN u64]. */
const RECORD_VALUE_HEADER = 10;
/** Room a piece's buffer has past its target, so the record that closes it rarely needs a bigger one. */
const PIECE_SLACK = 16 * 1024;
/** Bytes counted per entry besides its value (key and LevelDB overhead), for batch sizing. */
const ENTRY_OVERHEAD = 27;

/** Versions of one page written by this step, oldest first. */
interface Run {
  /** store key of the first version */
  key: Buffer;
  buf: Buffer;
  used: number;
  count: number;
  /** sum of the members' value lengths (the cap is on those) */
  valueBytes: number;
  lastLsn: Lsn;
  /** where the newest member starts (a rewrite of the same version replaces it) */
  lastAt: number;
}

/** Open runs of one relation fork, by block number. */
interface ForkRuns {
  readonly spcNode: number;
  readonly dbNode: number;
  readonly fork: number;
  readonly blocks: Map<number, Run>;
}

export class IngestBatch {
  readonly entries: StoreEntry[] = [];
  /**
   * @param onBlockPut called with the store key of each relation block version written with
   *   put/putKey (not a record's own version: putBlock, putBlockRecord), e.g. to drop hot pages
   */
  constructor(private readonly onBlockPut?: (key: Buffer) => void) {}

  /** approximate bytes this step will write (records, values and keys) */
  bytes = 0;

  /** the open WAL record log piece: [RECORD_LOG_PIECE] then records */
  private piece: Buffer | undefined;
  private pieceUsed = 0;
  private pieceFirst: Lsn = 0n;
  /** WalRecordInLog values of the open piece's records, placed when the commit stores the piece */
  private pieceRefs: Buffer[] = [];
  /** where the last logged record's raw bytes are: its piece's references, offset in the piece */
  private lastLogged: { start: Lsn; refs: Buffer[]; offsetInPiece: number; length: number } | undefined;

  /** open runs of relation blocks by relNode (then the other fields), and of SLRU pages */
  private readonly relRuns = new Map<number, ForkRuns[]>();
  private readonly slruRuns = new Map<number, Run>();

  /** Adds a record to the WAL record log: pieces of about PIECE_TARGET_BYTES, not one entry each. */
  logRecord(start: Lsn, end: Lsn, raw: Buffer, imagesOmitted = false) {
    const size = PIECE_RECORD_HEADER + raw.length;
    let piece = this.piece;
    if (piece === undefined) {
      piece = this.piece = Buffer.allocUnsafe(Math.max(1 + PIECE_TARGET_BYTES + PIECE_SLACK, 1 + size));
      piece[0] = RECORD_LOG_PIECE;
      this.pieceUsed = 1;
      this.pieceFirst = start;
    } else if (this.pieceUsed + size > piece.length) {
      const bigger = Buffer.allocUnsafe(this.pieceUsed + size);
      piece.copy(bigger, 0, 0, this.pieceUsed);
      piece = this.piece = bigger;
    }
    const at = this.pieceUsed;
    writePieceRecordHeader(piece, at, start, end, raw.length, imagesOmitted);
    piece.set(raw, at + PIECE_RECORD_HEADER);
    this.pieceUsed = at + size;
    this.bytes += size;
    const offsetInPiece = at + PIECE_RECORD_HEADER;
    const lastLogged = this.lastLogged;
    if (lastLogged) {
      // (one object per batch, rewritten: ingest logs every record)
      lastLogged.start = start;
      lastLogged.refs = this.pieceRefs;
      lastLogged.offsetInPiece = offsetInPiece;
      lastLogged.length = raw.length;
    } else this.lastLogged = { start, refs: this.pieceRefs, offsetInPiece, length: raw.length };
    if (this.pieceUsed - 1 >= PIECE_TARGET_BYTES) this.closePiece();
  }

  /**
   * A version value that refers to the last logged record's raw bytes in its piece
   * (WalRecordInLog) instead of holding a copy; the record must have been logged whole.
   */
  lastRecordInLog(willInit: boolean): Buffer {
    const logged = this.lastLogged;
    if (!logged) throw new Error("no record logged yet");
    const value = walRecordInLogValue(logged.start, willInit, logged.offsetInPiece, logged.length);
    // (its piece may have closed already: the piece's entry places what is added here too)
    logged.refs.push(value);
    return value;
  }

  private closePiece() {
    const piece = this.piece;
    if (piece === undefined) return;
    const refs = this.pieceRefs;
    this.entries.push({
      key: storeKeyOf(KeySpace.WalRecordLog, 0, 0, 0, 0, 0, this.pieceFirst),
      value: piece.subarray(0, this.pieceUsed),
      stored: (where) => placeRecordsInLog(refs, where),
    });
    this.bytes += 28;
    this.piece = undefined;
    this.pieceUsed = 0;
    this.pieceRefs = [];
  }

  /** The entries to commit, the open piece and runs closed into them: nothing spans two commits. */
  finish(): StoreEntry[] {
    this.closePiece();
    for (const forks of this.relRuns.values()) for (const fork of forks) for (const run of fork.blocks.values()) this.pushRun(run);
    this.relRuns.clear();
    for (const run of this.slruRuns.values()) this.pushRun(run);
    this.slruRuns.clear();
    return this.entries;
  }

  /** A version of an entity at `lsn` (see putKey). */
  put(entityKey: Buffer, lsn: Lsn, value: Buffer) {
    this.putKey(storeKey(entityKey, lsn), value);
  }

  /**
   * A version under a complete store key. Page versions join their page's run (a base closes the
   * run and is an entry of its own); anything else is an entry.
   */
  putKey(key: Buffer, value: Buffer) {
    const space = key[0];
    if (space === KeySpace.RelBlock) {
      this.onBlockPut?.(key);
      const runs = this.forkRuns(key.readUInt32BE(1), key.readUInt32BE(5), key.readUInt32BE(9), key[13]);
      this.putVersion(runs, key.readUInt32BE(14), key.readBigUInt64BE(ENTITY_KEY_LENGTH), value, key);
    } else if (space === KeySpace.SlruBlock) {
      this.putVersion(this.slruRuns, slruRunId(key.readUInt32BE(1), key.readUInt32BE(5), key.readUInt32BE(14)), key.readBigUInt64BE(ENTITY_KEY_LENGTH), value, key);
    } else {
      this.bytes += value.length + ENTRY_OVERHEAD;
      this.entries.push({ key, value });
    }
  }

  /** A version of a relation block at `lsn`. */
  putBlock(rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn, value: Buffer) {
    const runs = this.forkRuns(rel.spcNode, rel.dbNode, rel.relNode, fork);
    // a key only where the version starts an entry or a run, not for each member of a run
    const key = runs.has(block) && !startsOwnEntry(value) ? undefined : storeKeyOf(KeySpace.RelBlock, rel.spcNode, rel.dbNode, rel.relNode, fork, block, lsn);
    this.putVersion(runs, block, lsn, value, key);
  }

  /** A version of an SLRU page at `lsn`. */
  putSlruBlock(kind: SlruKind, segno: number, block: number, lsn: Lsn, value: Buffer) {
    const id = slruRunId(kind, segno, block);
    const key = this.slruRuns.has(id) && !startsOwnEntry(value) ? undefined : storeKeyOf(KeySpace.SlruBlock, kind, segno, 0, 0, block, lsn);
    this.putVersion(this.slruRuns, id, lsn, value, key);
  }

  /**
   * A relation block's version that is the WAL record `raw` (starting at `recordLsn`, not
   * will-init), written straight into the block's run: the common case of ingest.
   */
  putBlockRecord(rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn, recordLsn: Lsn, raw: Buffer) {
    const runs = this.forkRuns(rel.spcNode, rel.dbNode, rel.relNode, fork);
    const valueLength = RECORD_VALUE_HEADER + raw.length;
    let run = runs.get(block);
    if (run === undefined) {
      run = newRun(storeKeyOf(KeySpace.RelBlock, rel.spcNode, rel.dbNode, rel.relNode, fork, block, lsn), valueLength);
      runs.set(block, run);
    }
    const at = this.appendMember(run, lsn, valueLength);
    const buf = run.buf;
    buf[at] = ValueKind.WalRecord;
    buf[at + 1] = 0;
    writeLsnBE(buf, at + 2, recordLsn);
    buf.set(raw, at + RECORD_VALUE_HEADER);
    this.closeRunIfFull(runs, block, run);
  }

  private forkRuns(spcNode: number, dbNode: number, relNode: number, fork: number): Map<number, Run> {
    let list = this.relRuns.get(relNode);
    if (list === undefined) this.relRuns.set(relNode, (list = []));
    for (let i = 0; i < list.length; i++) {
      const f = list[i];
      if (f.fork === fork && f.dbNode === dbNode && f.spcNode === spcNode) return f.blocks;
    }
    const blocks = new Map<number, Run>();
    list.push({ spcNode, dbNode, fork, blocks });
    return blocks;
  }

  /**
   * `value` as the version at `lsn` of the page `id` of `runs`. `key` (the version's store key)
   * must be given when the version starts an entry of its own or a new run.
   */
  private putVersion(runs: Map<number, Run>, id: number, lsn: Lsn, value: Buffer, key: Buffer | undefined) {
    if (startsOwnEntry(value)) {
      const run = runs.get(id);
      if (run !== undefined) {
        runs.delete(id);
        this.pushRun(run);
      }
      this.bytes += value.length + ENTRY_OVERHEAD;
      this.entries.push({ key: key!, value });
      return;
    }
    let run = runs.get(id);
    if (run === undefined) runs.set(id, (run = newRun(key!, value.length)));
    const at = this.appendMember(run, lsn, value.length);
    run.buf.set(value, at);
    this.closeRunIfFull(runs, id, run);
  }

  /** A run at its cap becomes an entry; the page's next version starts a new one. */
  private closeRunIfFull(runs: Map<number, Run>, id: number, run: Run) {
    if (run.count < RUN_MAX_VERSIONS && run.valueBytes < RUN_MAX_BYTES) return;
    runs.delete(id);
    this.pushRun(run);
  }

  /** Makes room for a member of `valueLength` bytes at `lsn` (replacing a member at the same LSN); returns where its value goes. */
  private appendMember(run: Run, lsn: Lsn, valueLength: number): number {
    if (run.count > 0 && run.lastLsn === lsn) {
      // a second write of the same version replaces it, as it would in the store
      run.valueBytes -= run.used - run.lastAt - RUN_MEMBER_HEADER;
      this.bytes -= run.used - run.lastAt - RUN_MEMBER_HEADER + ENTRY_OVERHEAD;
      run.used = run.lastAt;
      run.count--;
    }
    const at = run.used;
    const end = at + RUN_MEMBER_HEADER + valueLength;
    if (end > run.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(end, run.buf.length * 4));
      run.buf.copy(bigger, 0, 0, at);
      run.buf = bigger;
    }
    const buf = run.buf;
    writeLsnBE(buf, at, lsn);
    buf.writeUInt32BE(valueLength, at + 8);
    run.used = end;
    run.count++;
    run.valueBytes += valueLength;
    run.lastLsn = lsn;
    run.lastAt = at;
    this.bytes += valueLength + ENTRY_OVERHEAD;
    return at + RUN_MEMBER_HEADER;
  }

  private pushRun(run: Run) {
    if (run.count === 0) return;
    let value: Buffer;
    if (run.count === 1) value = run.buf.subarray(RUN_HEADER + RUN_MEMBER_HEADER, run.used);
    else {
      run.buf[0] = ValueKind.Run;
      run.buf.writeUInt16BE(run.count, 1);
      value = run.buf.subarray(0, run.used);
    }
    this.entries.push({ key: run.key, value });
  }
}

function newRun(key: Buffer, firstValueLength: number): Run {
  // sized for one version (most pages get one per step); a second one makes it grow
  const buf = Buffer.allocUnsafe(RUN_HEADER + RUN_MEMBER_HEADER + firstValueLength);
  return { key, buf, used: RUN_HEADER, count: 0, valueBytes: 0, lastLsn: 0n, lastAt: RUN_HEADER };
}

/** SLRU pages by one number: block < SLRU_PAGES_PER_SEGMENT (32), kind < 4. */
function slruRunId(kind: number, segno: number, block: number): number {
  return (segno * 4 + kind) * 32 + block;
}

/**
 * Whether a version is an entry of its own rather than a run member: a base (image, will-init
 * value), or a reference into the log, which the commit completes in place (it must stay this
 * very Buffer).
 */
function startsOwnEntry(value: Buffer): boolean {
  return isBaseValue(value) || value[0] === ValueKind.WalRecordInLog;
}
