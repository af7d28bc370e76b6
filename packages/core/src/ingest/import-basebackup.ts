// Initial import: the files of a base backup (from BASE_BACKUP of a running primary, or a data
// directory) become versioned values at the backup's start LSN: relation blocks as page images,
// SLRU pages, pg_filenode.map files, pg_control and its checkpoint, 2PC state files. WAL
// streaming then resumes at the start LSN, and the timeline is readable from the end LSN.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ, ForkNumber, type RelTag } from "../reltag.ts";
import {
  checkpointKey, controlFileKey, dbDirEntryKey, imageExtentKey, relDirEntryKey, relmapFileKey, relSizeKey, replicationOriginKey, SlruKind,
  slruBlockKey, slruSegSizeKey, tablespaceDirEntryKey, timelineHistoryKey, twoPhaseFileKey, storeKey,
} from "../storage/keys.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import type { TimelineHistoryFile } from "../replication/timeline-history.ts";
import { EXTENT_BLOCKS } from "../storage/image-extents.ts";
import { extentPagesValue, imageValue, u32Value, u64Value } from "../storage/values.ts";
import { decodeReplOriginCheckpoint, REPLORIGIN_CHECKPOINT_PATH } from "../basebackup/replorigin-checkpoint.ts";

export const DEFAULTTABLESPACE_OID = 1663;
export const GLOBALTABLESPACE_OID = 1664;
const RELSEG_BLOCKS = 131072; // 1 GB segments
const FORK_SUFFIXES: Record<string, ForkNumber> = { "": ForkNumber.Main, _fsm: ForkNumber.Fsm, _vm: ForkNumber.VisibilityMap, _init: ForkNumber.Init };
const SLRU_PREFIXES: Array<[string, SlruKind]> = [
  ["pg_xact/", SlruKind.Clog],
  ["pg_multixact/offsets/", SlruKind.MultiXactOffsets],
  ["pg_multixact/members/", SlruKind.MultiXactMembers],
  ["pg_commit_ts/", SlruKind.CommitTs],
];

export type BackupFile =
  | { kind: "relation"; rel: RelTag; fork: ForkNumber; segment: number }
  | { kind: "relmap"; spcNode: number; dbNode: number }
  | { kind: "dbdir"; spcNode: number; dbNode: number }
  | { kind: "slru"; slru: SlruKind; segno: number }
  | { kind: "control" }
  | { kind: "twophase"; xid: number }
  /** pg_logical/replorigin_checkpoint: replication origins' apply progress */
  | { kind: "replorigin" }
  /** pg_tblspc/<oid> itself: a symlink, or an in-place tablespace's directory */
  | { kind: "tablespace"; spcNode: number }
  | { kind: "ignored" };

/** What a path inside a PostgreSQL 15 data directory is, as far as the page server cares. */
export function classifyBackupPath(path: string): BackupFile {
  const p = path.replace(/^\.\//, "");
  if (p === "global/pg_control") return { kind: "control" };
  if (p === "global/pg_filenode.map") return { kind: "relmap", spcNode: GLOBALTABLESPACE_OID, dbNode: 0 };
  let m = /^base\/(\d+)\/pg_filenode\.map$/.exec(p);
  if (m) return { kind: "relmap", spcNode: DEFAULTTABLESPACE_OID, dbNode: Number(m[1]) };
  m = /^base\/(\d+)\/PG_VERSION$/.exec(p);
  if (m) return { kind: "dbdir", spcNode: DEFAULTTABLESPACE_OID, dbNode: Number(m[1]) };
  m = /^(?:base\/(\d+)|global)\/(\d+)(_fsm|_vm|_init)?(?:\.(\d+))?$/.exec(p);
  if (m) {
    const dbNode = m[1] === undefined ? 0 : Number(m[1]);
    return {
      kind: "relation",
      rel: { spcNode: m[1] === undefined ? GLOBALTABLESPACE_OID : DEFAULTTABLESPACE_OID, dbNode, relNode: Number(m[2]) },
      fork: FORK_SUFFIXES[m[3] ?? ""],
      segment: m[4] === undefined ? 0 : Number(m[4]),
    };
  }
  // a user tablespace's files, as a data directory reaches them: pg_tblspc/<oid>/PG_15_<catalog version>/<db>/…
  m = /^pg_tblspc\/(\d+)\/PG_15_\d+\/(\d+)\/(?:(pg_filenode\.map)|(PG_VERSION)|(\d+)(_fsm|_vm|_init)?(?:\.(\d+))?)$/.exec(p);
  if (m) {
    const spcNode = Number(m[1]);
    const dbNode = Number(m[2]);
    if (m[3]) return { kind: "relmap", spcNode, dbNode };
    if (m[4]) return { kind: "dbdir", spcNode, dbNode };
    return { kind: "relation", rel: { spcNode, dbNode, relNode: Number(m[5]) }, fork: FORK_SUFFIXES[m[6] ?? ""], segment: m[7] === undefined ? 0 : Number(m[7]) };
  }
  for (const [prefix, slru] of SLRU_PREFIXES) {
    if (p.startsWith(prefix) && /^[0-9A-F]{4,6}$/.test(p.slice(prefix.length))) return { kind: "slru", slru, segno: parseInt(p.slice(prefix.length), 16) };
  }
  if (p === REPLORIGIN_CHECKPOINT_PATH) return { kind: "replorigin" };
  m = /^pg_twophase\/([0-9A-F]{8})$/.exec(p);
  if (m) return { kind: "twophase", xid: parseInt(m[1], 16) };
  m = /^pg_tblspc\/(\d+)\/?$/.exec(p);
  if (m) return { kind: "tablespace", spcNode: Number(m[1]) };
  return { kind: "ignored" };
}

async function* pages(body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    let off = 0;
    while (pending.length - off >= 8192) {
      yield pending.subarray(off, off + 8192);
      off += 8192;
    }
    pending = pending.subarray(off);
  }
  if (pending.length) throw new Error(`file length is not a multiple of 8192 (${pending.length} trailing bytes)`);
}

async function readAll(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

export class BaseBackupImporter {
  private entries: Array<{ key: Buffer; value: Buffer }> = [];
  private bytes = 0;
  private readonly relSizes = new Map<string, { rel: RelTag; fork: ForkNumber; blocks: number }>();
  private control: Buffer | undefined;
  files = 0;
  importedBytes = 0;

  constructor(private readonly store: TimelineStore, readonly startLsn: Lsn) {}

  private async put(entityKey: Buffer, value: Buffer) {
    this.entries.push({ key: storeKey(entityKey, this.startLsn), value });
    this.bytes += value.length + 27;
    if (this.bytes >= 8 * 1024 * 1024) await this.flush();
  }

  private async flush() {
    if (!this.entries.length) return;
    // markers stay at 0 until finish(): a crash mid-import leaves a timeline that is not ready
    await this.store.commit(this.entries, { lastRecordLsn: 0n, diskConsistentLsn: 0n, startLsn: 0n });
    this.entries = [];
    this.bytes = 0;
  }

  /** Imports one file of the backup; `path` is relative to the data directory. */
  async addFile(path: string, body: AsyncIterable<Buffer>): Promise<void> {
    const file = classifyBackupPath(path);
    this.files++;
    switch (file.kind) {
      case "relation": {
        const id = `${file.rel.spcNode}/${file.rel.dbNode}/${file.rel.relNode}/${file.fork}`;
        const entry = this.relSizes.get(id) ?? { rel: file.rel, fork: file.fork, blocks: 0 };
        this.relSizes.set(id, entry);
        let block = file.segment * RELSEG_BLOCKS;
        // extents of up to EXTENT_BLOCKS consecutive pages, one entry each (storage/image-extents.ts)
        // (the value is a copy: this buffer is reused for the next extent)
        const extent = Buffer.allocUnsafe(EXTENT_BLOCKS * BLCKSZ);
        let extentFirst = block;
        const putExtent = async () => {
          if (block === extentFirst) return;
          await this.put(imageExtentKey(file.rel, file.fork, extentFirst), extentPagesValue(extent.subarray(0, (block - extentFirst) * BLCKSZ)));
          extentFirst = block;
        };
        for await (const page of pages(body)) {
          page.copy(extent, (block - extentFirst) * BLCKSZ);
          this.importedBytes += 8192;
          block++;
          if (block - extentFirst === EXTENT_BLOCKS) await putExtent();
        }
        await putExtent();
        entry.blocks = Math.max(entry.blocks, block);
        if (file.rel.dbNode !== 0) await this.put(dbDirEntryKey(file.rel.spcNode, file.rel.dbNode), imageValue(Buffer.from("d")));
        break;
      }
      case "slru": {
        let block = 0;
        for await (const page of pages(body)) {
          await this.put(slruBlockKey(file.slru, file.segno, block), imageValue(page));
          block++;
        }
        await this.put(slruSegSizeKey(file.slru, file.segno), u32Value(block));
        break;
      }
      case "relmap":
        await this.put(relmapFileKey(file.spcNode, file.dbNode), imageValue(await readAll(body)));
        await this.put(dbDirEntryKey(file.spcNode, file.dbNode), imageValue(Buffer.from("m")));
        break;
      case "dbdir":
        await readAll(body);
        await this.put(dbDirEntryKey(file.spcNode, file.dbNode), imageValue(Buffer.from("d")));
        break;
      case "control":
        this.control = await readAll(body);
        await this.put(controlFileKey(), imageValue(this.control));
        // CheckPoint copy at offset 40 of ControlFileData
        await this.put(checkpointKey(), imageValue(this.control.subarray(40, 128)));
        break;
      case "twophase": {
        const content = await readAll(body);
        await this.put(twoPhaseFileKey(file.xid), imageValue(content.subarray(0, content.length - 4)));
        break;
      }
      case "replorigin":
        for (const origin of decodeReplOriginCheckpoint(await readAll(body))) await this.put(replicationOriginKey(origin.id), u64Value(origin.remoteLsn));
        break;
      case "tablespace":
        // recorded whether or not anything is in it; the entry itself (symlink or directory) has no data
        await this.put(tablespaceDirEntryKey(file.spcNode), imageValue(Buffer.from("t")));
        for await (const _ of body) {
          // drain
        }
        break;
      case "ignored":
        for await (const _ of body) {
          // drain
        }
        break;
    }
  }

  /** Writes relation sizes and directories, then makes the timeline resume at startLsn. */
  /** The history files of the source's timeline and its ancestors, each at the LSN where that timeline begins. */
  addTimelineHistory(files: readonly TimelineHistoryFile[]): void {
    for (const file of files) this.entries.push({ key: storeKey(timelineHistoryKey(file.timeline), file.startLsn), value: imageValue(Buffer.from(file.content)) });
  }

  async finish(endLsn: Lsn): Promise<void> {
    if (!this.control) throw new Error("base backup had no global/pg_control");
    for (const { rel, fork, blocks } of this.relSizes.values()) {
      await this.put(relSizeKey(rel, fork), u32Value(blocks));
      await this.put(relDirEntryKey(rel, fork), imageValue(Buffer.from("r")));
    }
    await this.flush();
    await this.store.commit([], { lastRecordLsn: this.startLsn, diskConsistentLsn: this.startLsn, startLsn: endLsn });
  }
}
