// Full backup: a tar of a complete PostgreSQL 15 data directory as of an LSN, rebuilt from the
// timeline (PageReader) — every relation fork, SLRU segments, relmaps, 2PC state files, the
// directories and config files PostgreSQL needs, plus a synthesized shutdown checkpoint (pg_wal
// segment + pg_control, control.ts) so stock `postgres` starts from it without recovery. Like
// Neon's fullbackup, but startable by unmodified PostgreSQL. Streams page by page; pg_control
// comes last so a truncated archive can never start.
import type { Writable } from "node:stream";
import { CheckPointField, CLOG_XACTS_PER_PAGE, MULTIXACT_MEMBERS_PER_PAGE, MULTIXACT_OFFSETS_PER_PAGE } from "../ingest/records.ts";
import { DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID } from "../ingest/import-basebackup.ts";
import { formatLsn, type Lsn } from "../lsn.ts";
import { BLCKSZ, ForkNumber, formatRelTag, type RelTag } from "../reltag.ts";
import { SLRU_DIRS, SLRU_PAGES_PER_SEGMENT, SlruKind } from "../storage/keys.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { PendingPage, RelationScanner, type StoredImage } from "../timeline/relation-scan.ts";
import { crc32c } from "../wal/crc32c.ts";
import { planCommitTs, type CommitTsPlan } from "./commit-ts.ts";
import { buildControlFile, ControlField, checkpointRecord, checkpointRecordLsn, checkpointWal, readControlFile, shutdownCheckpoint, WAL_LEVEL_NAMES, type ControlSettings } from "./control.ts";
import { setPageChecksum } from "./page-checksum.ts";
import { encodeReplOriginCheckpoint, REPLORIGIN_CHECKPOINT_PATH } from "./replorigin-checkpoint.ts";
import { TAR_TRAILER_SIZE, tarEntrySize, TarWriter, toTarSink, type TarSink } from "./tar.ts";

export class FullBackupError extends Error {
  override readonly name = "FullBackupError";
}

export interface FullBackupOptions {
  /** called as the archive grows: bytes written so far and the archive's exact final size */
  onProgress?: (bytes: number, total: number) => void;
  /**
   * xl_prev of the synthesized checkpoint record. Default: the start of the last stored WAL
   * record before the LSN, or 0 when unknown (as pg_resetwal writes; startup accepts any
   * earlier LSN).
   */
  prevLsn?: Lsn;
  /**
   * page reads kept in flight while streaming a relation (default 16); only for readers that are
   * not a PageReader (a PageReader's relations are all read with one forward scan, relation-scan.ts)
   */
  readAhead?: number;
  /** timestamp of the checkpoint (default: now) */
  time?: Date;
}

export interface FullBackupResult {
  /** the backup LSN asked for */
  lsn: Lsn;
  /** where the shutdown checkpoint record was placed (pg_control.checkPoint) */
  checkpointLsn: Lsn;
  /** end of that record: where the started server writes its first WAL */
  walEndLsn: Lsn;
  /** archive size in bytes */
  bytes: number;
  files: number;
  relationPages: number;
}

/** Directories initdb creates (reference §7), parents first. */
const PGDATA_DIRS = [
  "global", "base", "pg_wal", "pg_wal/archive_status", "pg_commit_ts", "pg_dynshmem", "pg_notify", "pg_serial",
  "pg_snapshots", "pg_subtrans", "pg_twophase", "pg_multixact", "pg_multixact/members", "pg_multixact/offsets",
  "pg_replslot", "pg_tblspc", "pg_stat", "pg_stat_tmp", "pg_xact", "pg_logical", "pg_logical/snapshots", "pg_logical/mappings",
];

const PG_VERSION = Buffer.from("15\n");
/**
 * Relation pages per sink write (120 KiB). Measured with bench/fullbackup.mts on 2 cores, best of
 * 4 rounds through the page service: 32 pages per write took 0.74-0.85 s (first rounds 1.2-1.8 s),
 * 15 pages 0.51-0.70 s (first rounds 1.0-1.5 s). Why is not pinned down: smaller writes hand
 * the receiving end work sooner, and stay under glibc's 128 KiB mmap threshold.
 */
const WRITE_PAGES = 15;
/**
 * Chunk buffers a backup cycles through: a buffer is refilled once the sink is done with it, so a
 * backup allocates no memory per chunk, and this many chunks can be on their way at once. (32
 * made backups after a compaction pass about a sixth slower than 4: 0.13 s against 0.11 s.)
 */
const CHUNKS_IN_FLIGHT = 4;
/**
 * Chunk buffers while a chunk waits for pages redo workers are still rebuilding (3.75 MiB): how far
 * the scan reads on past such a page (480 pages). The redo bench rebuilt its pages in key order
 * about a tenth faster with 512 pages in flight than with 32: a hot page's long chain replays
 * while the scan reads the blocks after it.
 */
const MAX_CHUNKS_IN_FLIGHT = 32;
/** How far a backup reads on past a page redo workers are still rebuilding (the redo bench does the same). */
export const READ_AHEAD_PAST_PENDING_PAGES = MAX_CHUNKS_IN_FLIGHT * WRITE_PAGES;
const FORK_SUFFIX = ["", "_fsm", "_vm", "_init"];

const PG_HBA = `# pg_hba.conf written by Strata's full backup: trust on the local socket and loopback.
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
`;

const PG_IDENT = `# pg_ident.conf written by Strata's full backup (no user name maps).
# MAPNAME       SYSTEM-USERNAME         PG-USERNAME
`;

const AUTO_CONF = `# Do not edit this file manually!
# It will be overwritten by the ALTER SYSTEM command.
`;

/** PostgreSQL's default max_replication_slots, which also bounds how many replication origins it keeps */
export const DEFAULT_MAX_REPLICATION_SLOTS = 10;

/** postgresql.conf carrying the source cluster's pg_control parameters; defaults for the rest. */
function postgresqlConf(s: ControlSettings, inPlaceTablespaces: boolean, replicationOrigins: number): string {
  return [
    "# postgresql.conf written by Strata's full backup. The settings below are the source",
    "# cluster's (as recorded in its pg_control); PostgreSQL's defaults apply to the rest.",
    // the backup's user tablespaces are directories under pg_tblspc, not symlinks: without this
    // a standby made from this data directory PANICs when it reaches consistency
    ...(inPlaceTablespaces ? ["allow_in_place_tablespaces = on"] : []),
    `wal_level = ${WAL_LEVEL_NAMES[s.walLevel] ?? "replica"}`,
    `wal_log_hints = ${s.walLogHints ? "on" : "off"}`,
    `max_connections = ${s.maxConnections}`,
    `max_worker_processes = ${s.maxWorkerProcesses}`,
    `max_wal_senders = ${s.maxWalSenders}`,
    `max_prepared_transactions = ${s.maxPreparedXacts}`,
    `max_locks_per_transaction = ${s.maxLocksPerXact}`,
    `track_commit_timestamp = ${s.trackCommitTimestamp ? "on" : "off"}`,
    // startup refuses more replication origins (pg_logical/replorigin_checkpoint) than this allows
    ...(replicationOrigins > DEFAULT_MAX_REPLICATION_SLOTS ? [`max_replication_slots = ${replicationOrigins}`] : []),
    "",
  ].join("\n");
}

/**
 * The chunk buffers of one backup, each lent to the sink until its write is done. It holds
 * CHUNKS_IN_FLIGHT buffers, and more (up to MAX_CHUNKS_IN_FLIGHT) only while a chunk waits for
 * pages redo workers are still rebuilding: the scan then reads on instead of waiting for it.
 */
class ChunkRing {
  /** lent buffers, oldest first */
  private readonly lent: Array<{ buffer: Buffer; done: Promise<void>; waitsForPages: boolean; settled: boolean }> = [];
  private allocated = 0;
  private current: Buffer | undefined;

  constructor(
    private readonly chunkBytes: number,
    private readonly count: number,
    private readonly maxCount: number,
  ) {}

  /** The next buffer, once the sink is done with what it last held (its write error, if any, throws here). */
  async take(): Promise<Buffer> {
    // (a buffer taken and never lent, a chunk that got no pages, is taken again)
    this.current ??= await this.reclaim();
    return this.current;
  }

  private async reclaim(): Promise<Buffer> {
    const limit = this.lent.some((l) => l.waitsForPages && !l.settled) ? this.maxCount : this.count;
    // buffers beyond the usual count are let go once their writes are done (few buffers cycled
    // through stay in the CPU's caches: a ring of 32 made every backup slower)
    while (this.allocated > limit && this.lent.length > 0 && this.lent[0].settled) {
      this.allocated--;
      await this.lent.shift()!.done;
    }
    const oldest = this.lent[0];
    if (!oldest || (!oldest.settled && this.allocated < limit)) {
      this.allocated++;
      return Buffer.allocUnsafe(this.chunkBytes);
    }
    this.lent.shift();
    await oldest.done;
    return oldest.buffer;
  }

  /** Lends the buffer last taken to a write (`waitsForPages`: one that waits for pages being rebuilt). */
  lend(done: Promise<void>, waitsForPages = false): void {
    const entry = { buffer: this.current!, done, waitsForPages, settled: false };
    this.current = undefined;
    // awaited by take() or settle(); not an unhandled rejection meanwhile
    done.then(
      () => (entry.settled = true),
      () => (entry.settled = true),
    );
    this.lent.push(entry);
  }

  /** Waits for every write still holding a buffer. */
  async settle(): Promise<void> {
    while (this.lent.length) await this.lent.shift()!.done;
  }
}

interface RelationFile {
  path: string;
  rel: RelTag;
  /** fork the pages are read from (an unlogged relation's main fork is written from its init fork) */
  sourceFork: ForkNumber;
  firstBlock: number;
  blocks: number;
}

interface SlruFile {
  path: string;
  kind: SlruKind;
  segno: number;
  pages: number;
}

type Entry =
  | { type: "dir"; path: string }
  | { type: "bytes"; path: string; content: Buffer }
  | { type: "relation"; file: RelationFile }
  | { type: "slru"; file: SlruFile }
  | { type: "wal"; path: string; size: number; chunks: () => Generator<Buffer> };

function entrySize(entry: Entry): number {
  switch (entry.type) {
    case "dir":
      return tarEntrySize(0);
    case "bytes":
      return tarEntrySize(entry.content.length);
    case "relation":
      return tarEntrySize(entry.file.blocks * BLCKSZ);
    case "slru":
      return tarEntrySize(entry.file.pages * BLCKSZ);
    case "wal":
      return tarEntrySize(entry.size);
  }
}

/**
 * A user tablespace's directory: pg_tblspc/<oid>/PG_15_<catalog version>. The backup writes
 * pg_tblspc/<oid> as a directory (an in-place tablespace), not as a symlink to the location the
 * tablespace had where it was created: the compute's data directory holds all of its data.
 */
function tablespaceVersionDir(spcNode: number, catalogVersion: number): string {
  return `pg_tblspc/${spcNode}/PG_15_${catalogVersion}`;
}

/** Where a database's files of one tablespace live. */
function databaseDir(spcNode: number, dbNode: number, catalogVersion: number): string {
  if (spcNode === DEFAULTTABLESPACE_OID) return `base/${dbNode}`;
  return `${tablespaceVersionDir(spcNode, catalogVersion)}/${dbNode}`;
}

function relationDir(rel: RelTag, catalogVersion: number): string {
  if (rel.spcNode === GLOBALTABLESPACE_OID) return "global";
  return databaseDir(rel.spcNode, rel.dbNode, catalogVersion);
}

/**
 * Relation fork files, split into 1 GB segments (`relsegSize` blocks), in key order (tablespace,
 * database, relation, fork read, segment): the order one forward scan of the store reads them in.
 */
async function planRelations(reader: PageReader, lsn: Lsn, relsegSize: number, catalogVersion: number): Promise<RelationFile[]> {
  // listRelations lists them in key order already; sorted here so the scan does not depend on it
  const forks = (await reader.listRelations(lsn)).sort(
    (a, b) => a.rel.spcNode - b.rel.spcNode || a.rel.dbNode - b.rel.dbNode || a.rel.relNode - b.rel.relNode || a.fork - b.fork,
  );
  // unlogged relations: only the init fork is WAL-logged; the main fork is written as a copy of
  // it (what PostgreSQL's reset after a crash does), and their other forks are left out
  const unlogged = new Set(forks.filter((f) => f.fork === ForkNumber.Init).map((f) => formatRelTag(f.rel)));
  const included = forks.filter(({ rel, fork }) => fork === ForkNumber.Init || !unlogged.has(formatRelTag(rel)));
  const sizes = await reader.relationSizes(included, lsn);
  const files: RelationFile[] = [];
  for (let i = 0; i < included.length; i++) {
    const { rel, fork } = included[i];
    const isUnlogged = unlogged.has(formatRelTag(rel));
    const blocks = sizes[i] ?? 0;
    const dir = relationDir(rel, catalogVersion);
    for (const target of isUnlogged ? [ForkNumber.Init, ForkNumber.Main] : [fork]) {
      const base = `${dir}/${rel.relNode}${FORK_SUFFIX[target]}`;
      const segments = Math.max(1, Math.ceil(blocks / relsegSize));
      for (let s = 0; s < segments; s++) {
        const firstBlock = s * relsegSize;
        files.push({ path: s === 0 ? base : `${base}.${s}`, rel, sourceFork: fork, firstBlock, blocks: Math.min(relsegSize, blocks - firstBlock) });
      }
    }
  }
  return files;
}

const slruSegmentPath = (kind: SlruKind, segno: number) => `${SLRU_DIRS[kind]}/${segno.toString(16).toUpperCase().padStart(4, "0")}`;

/**
 * SLRU segment files (pg_commit_ts as commit-ts.ts plans it). Startup (TrimCLOG, TrimMultiXact) reads the page holding nextXid, nextMulti
 * and nextMultiOffset unless it starts exactly at that page; ingest keeps nextXid ahead of every
 * xid seen, so that page may not exist yet: it is added as a zero page (= no status recorded).
 */
async function planSlru(reader: PageReader, lsn: Lsn, checkpoint: Buffer, commitTs: CommitTsPlan): Promise<SlruFile[]> {
  const nextXid = Number(checkpoint.readBigUInt64LE(CheckPointField.nextXid) & 0xffffffffn);
  const nextMulti = checkpoint.readUInt32LE(CheckPointField.nextMulti);
  const nextOffset = checkpoint.readUInt32LE(CheckPointField.nextMultiOffset);
  const needed: Array<[SlruKind, number, number]> = [
    [SlruKind.Clog, nextXid, CLOG_XACTS_PER_PAGE],
    [SlruKind.MultiXactOffsets, nextMulti, MULTIXACT_OFFSETS_PER_PAGE],
    [SlruKind.MultiXactMembers, nextOffset, MULTIXACT_MEMBERS_PER_PAGE],
  ];
  const files: SlruFile[] = [];
  for (const [kind, next, perPage] of needed) {
    const segments = new Map<number, number>();
    for (const { segno, pages } of await reader.listSlruSegments(kind, lsn)) segments.set(segno, pages);
    if (next % perPage !== 0) {
      const page = Math.floor(next / perPage);
      const segno = Math.floor(page / SLRU_PAGES_PER_SEGMENT);
      segments.set(segno, Math.max(segments.get(segno) ?? 0, (page % SLRU_PAGES_PER_SEGMENT) + 1));
    }
    for (const [segno, pages] of [...segments].sort((a, b) => a[0] - b[0])) {
      files.push({ path: slruSegmentPath(kind, segno), kind, segno, pages });
    }
  }
  for (const { segno, pages } of commitTs.segments) files.push({ path: slruSegmentPath(SlruKind.CommitTs, segno), kind: SlruKind.CommitTs, segno, pages });
  return files;
}

/**
 * The pages of blocks [from, to) of a relation fork in order, for readers other than a
 * PageReader (test doubles): page by page with `readAhead` reads in flight. A PageReader's
 * relations are read by one RelationScanner for the whole backup (relation-scan.ts: one forward
 * pass over the store, as the files come in key order).
 */
async function* readRelation(reader: Pick<PageReader, "getPage">, rel: RelTag, fork: ForkNumber, from: number, to: number, lsn: Lsn, readAhead: number): AsyncGenerator<{ blockNumber: number; page: Buffer }> {
  const inFlight: Array<Promise<Buffer>> = [];
  let next = from;
  for (let block = from; block < to; block++) {
    while (next < to && next < block + readAhead) {
      const pending = reader.getPage(rel, fork, next++, lsn);
      pending.catch(() => {}); // awaited below; read-ahead left behind by an error must not go unhandled
      inFlight.push(pending);
    }
    yield { blockNumber: block, page: await inFlight.shift()! };
  }
}

/**
 * Writes a full backup of the timeline at `lsn` as a tar archive to `out` (not ended: the caller
 * owns it). `lsn` must be a record boundary — the end of a WAL record, such as the ingestor's
 * last_record_lsn; an LSN that is not 8-byte aligned, or that falls inside a stored record, is
 * rejected. It must also be at or after the point where the timeline became consistent (the
 * imported base backup's end LSN): earlier pages are fuzzy, and nothing here can tell. Memory
 * stays bounded: the relations are read with one streaming forward scan, in key order, and
 * written in chunks of at most WRITE_PAGES pages.
 */
export async function fullBackup(reader: PageReader, lsn: Lsn, out: Writable | TarSink, options: FullBackupOptions = {}): Promise<FullBackupResult> {
  if (lsn % 8n !== 0n) throw new RangeError(`backup LSN ${formatLsn(lsn)} is not 8-byte aligned: it must be the end of a WAL record`);
  const time = options.time ?? new Date();
  const importedControl = await reader.getControlFile(lsn);
  if (!importedControl) throw new FullBackupError(`timeline has no pg_control at ${formatLsn(lsn)}: was a base backup imported?`);
  const settings = readControlFile(importedControl);
  const tracked = await reader.getCheckpoint(lsn);
  if (!tracked) throw new FullBackupError(`timeline has no checkpoint at ${formatLsn(lsn)}`);

  let prev = options.prevLsn;
  if (prev === undefined) {
    const before = await reader.recordBefore(lsn);
    if (before && before.end > lsn) {
      throw new FullBackupError(`backup LSN ${formatLsn(lsn)} is inside the WAL record at ${formatLsn(before.start)} (ends at ${formatLsn(before.end)}): use a record boundary`);
    }
    prev = before?.start ?? 0n;
  }

  const checkpointLsn = checkpointRecordLsn(lsn, settings.segmentSize);
  const commitTs = planCommitTs(tracked, await reader.listSlruSegments(SlruKind.CommitTs, lsn));
  const checkpoint = shutdownCheckpoint(tracked, checkpointLsn, time, commitTs.bounds);
  const wal = checkpointWal(checkpointRecord(checkpoint, prev), checkpointLsn, {
    systemId: settings.systemId,
    timeline: checkpoint.readUInt32LE(CheckPointField.thisTimeLineID),
    segmentSize: settings.segmentSize,
  });
  const control = buildControlFile(importedControl, checkpoint, checkpointLsn, time);

  // plan every entry first, so progress can report the exact archive size
  const catalogVersion = importedControl.readUInt32LE(ControlField.catalogVersionNo);
  const relations = await planRelations(reader, lsn, settings.relsegSize, catalogVersion);
  const databases = await reader.listDatabases(lsn);
  // every user tablespace gets its directory, also one nothing is in yet (its catalog row exists)
  const userTablespaces = new Set<number>(await reader.listTablespaces(lsn));
  for (const { spcNode } of [...databases, ...relations.map((f) => f.rel)]) {
    if (spcNode !== GLOBALTABLESPACE_OID && spcNode !== DEFAULTTABLESPACE_OID) userTablespaces.add(spcNode);
  }
  const origins = await reader.listReplicationOrigins(lsn);
  const entries: Entry[] = PGDATA_DIRS.map((path) => ({ type: "dir", path }));
  entries.push(
    { type: "bytes", path: "PG_VERSION", content: PG_VERSION },
    { type: "bytes", path: "postgresql.conf", content: Buffer.from(postgresqlConf(settings, userTablespaces.size > 0, origins.length)) },
    { type: "bytes", path: "postgresql.auto.conf", content: Buffer.from(AUTO_CONF) },
    { type: "bytes", path: "pg_hba.conf", content: Buffer.from(PG_HBA) },
    { type: "bytes", path: "pg_ident.conf", content: Buffer.from(PG_IDENT) },
  );
  for (const file of await planSlru(reader, lsn, checkpoint, commitTs)) entries.push({ type: "slru", file });

  for (const spcNode of [...userTablespaces].sort((a, b) => a - b)) {
    entries.push({ type: "dir", path: `pg_tblspc/${spcNode}` }, { type: "dir", path: tablespaceVersionDir(spcNode, catalogVersion) });
  }
  const dbDirs = new Set<string>();
  let globalMap = false;
  for (const db of databases) {
    if (db.spcNode === GLOBALTABLESPACE_OID) {
      const map = await reader.getRelmap(db.spcNode, 0, lsn);
      if (map) entries.push({ type: "bytes", path: "global/pg_filenode.map", content: map });
      globalMap ||= map !== undefined;
      continue;
    }
    // a database's directory in its default tablespace (a CREATE DATABASE record's)
    const dir = databaseDir(db.spcNode, db.dbNode, catalogVersion);
    dbDirs.add(dir);
    const map = await reader.getRelmap(db.spcNode, db.dbNode, lsn);
    entries.push({ type: "dir", path: dir }, { type: "bytes", path: `${dir}/PG_VERSION`, content: PG_VERSION });
    if (map) entries.push({ type: "bytes", path: `${dir}/pg_filenode.map`, content: map });
  }
  if (!globalMap) throw new FullBackupError(`timeline has no global/pg_filenode.map at ${formatLsn(lsn)}`);
  for (const file of relations) {
    if (file.rel.spcNode !== GLOBALTABLESPACE_OID) {
      const dir = databaseDir(file.rel.spcNode, file.rel.dbNode, catalogVersion);
      if (!dbDirs.has(dir)) {
        // A database's directory in another tablespace (PostgreSQL creates it with the first
        // relation there), or a relation whose database has no directory entry: given one
        // rather than lost. Only a database's own directory has a PG_VERSION.
        dbDirs.add(dir);
        entries.push({ type: "dir", path: dir });
        if (file.rel.spcNode === DEFAULTTABLESPACE_OID) entries.push({ type: "bytes", path: `${dir}/PG_VERSION`, content: PG_VERSION });
      }
    }
    entries.push({ type: "relation", file });
  }
  for (const { xid, state } of await reader.listTwoPhase(lsn)) {
    const crc = Buffer.alloc(4);
    crc.writeUInt32LE(crc32c(state), 0);
    entries.push({ type: "bytes", path: `pg_twophase/${xid.toString(16).toUpperCase().padStart(8, "0")}`, content: Buffer.concat([state, crc]) });
  }
  // where each replication origin's apply has got to (a subscriber's progress), as a checkpoint writes it
  if (origins.length > 0) entries.push({ type: "bytes", path: REPLORIGIN_CHECKPOINT_PATH, content: encodeReplOriginCheckpoint(origins) });
  // as pg_basebackup brings them: the server serves them to its standbys and base backups
  for (const { timeline, content } of await reader.listTimelineHistories(lsn)) {
    entries.push({ type: "bytes", path: `pg_wal/${timeline.toString(16).toUpperCase().padStart(8, "0")}.history`, content });
  }
  for (const segment of wal.segments) entries.push({ type: "wal", path: `pg_wal/${segment.name}`, size: segment.size, chunks: () => segment.chunks() });
  entries.push({ type: "bytes", path: "global/pg_control", content: control });

  const total = entries.reduce((sum, e) => sum + entrySize(e), TAR_TRAILER_SIZE);
  const tar = new TarWriter(toTarSink(out));
  let reported = 0;
  const progress = (force = false) => {
    if (!options.onProgress || (!force && tar.written - reported < 4 * 1024 * 1024)) return;
    reported = tar.written;
    options.onProgress(tar.written, total);
  };
  const backup: BackupWrite = {
    reader,
    lsn,
    tar,
    // one scan for every relation, ending after the last block read (no read-ahead past it)
    // long chains (a backup right after a backlog) rebuild on the redo workers while the scan reads on
    scanner: reader instanceof PageReader ? new RelationScanner(reader, lsn, { end: scanEnd(relations), parallelReplay: true }) : undefined,
    chunks: new ChunkRing(WRITE_PAGES * BLCKSZ, CHUNKS_IN_FLIGHT, MAX_CHUNKS_IN_FLIGHT),
    checksums: settings.dataChecksumVersion !== 0,
    readAhead: Math.max(1, options.readAhead ?? 16),
    progress,
    relationPages: 0,
  };
  let files: number;
  try {
    files = await writeEntries(backup, entries);
    await backup.chunks.settle();
  } finally {
    // closes the scan's iterators also when the archive write failed
    await backup.scanner?.close();
  }
  await tar.finish();
  progress(true);
  if (tar.written !== total) throw new FullBackupError(`archive is ${tar.written} bytes, planned ${total}`);
  return { lsn, checkpointLsn, walEndLsn: wal.endLsn, bytes: tar.written, files, relationPages: backup.relationPages };
}

/** Where the one relation scan of a backup ends: after the last block of the last non-empty file. */
function scanEnd(relations: RelationFile[]): { rel: RelTag; fork: ForkNumber; block: number } | undefined {
  let end: { rel: RelTag; fork: ForkNumber; block: number } | undefined;
  for (const file of relations) if (file.blocks > 0) end = { rel: file.rel, fork: file.sourceFork, block: file.firstBlock + file.blocks };
  return end;
}

/**
 * What the writers of a backup's files share. The per-file writers are functions of their own
 * rather than one loop in fullBackup: V8 optimizes a hot loop with its function, and one function
 * holding every entry kind kept losing its optimized code (it met a new shape with each backup's
 * last entries) and spent 100-180 ms recompiling per backup.
 */
interface BackupWrite {
  reader: PageReader;
  lsn: Lsn;
  tar: TarWriter;
  /** the relation scan (a PageReader's); other readers (test doubles) are read page by page */
  scanner: RelationScanner | undefined;
  chunks: ChunkRing;
  checksums: boolean;
  readAhead: number;
  progress: () => void;
  relationPages: number;
}

/** Writes the archive's entries in order; the number of files (directories not counted). */
async function writeEntries(backup: BackupWrite, entries: Entry[]): Promise<number> {
  const { tar } = backup;
  let files = 0;
  for (const entry of entries) {
    switch (entry.type) {
      case "dir":
        await tar.directory(entry.path);
        continue;
      case "bytes":
        await tar.file(entry.path, entry.content);
        break;
      case "slru":
        await writeSlruFile(backup, entry.file);
        break;
      case "relation":
        await writeRelationFile(backup, entry.file);
        break;
      case "wal":
        await tar.beginFile(entry.path, entry.size);
        for (const chunk of entry.chunks()) {
          await tar.write(chunk);
          backup.progress();
        }
        await tar.endFile();
        break;
    }
    files++;
    backup.progress();
  }
  return files;
}

async function writeSlruFile(backup: BackupWrite, file: SlruFile): Promise<void> {
  const { path, kind, segno, pages } = file;
  const { tar, reader, lsn } = backup;
  await tar.beginFile(path, pages * BLCKSZ);
  for (let block = 0; block < pages; block++) {
    const page = await reader.getSlruPage(kind, segno, block, lsn);
    await tar.write(page.length === BLCKSZ ? page : Buffer.from(page.subarray(0, BLCKSZ)));
  }
  await tar.endFile();
}

/**
 * Pages of one relation file gathered into chunks of up to WRITE_PAGES: one sink call (one page
 * service message, one file write) per chunk instead of per page, into buffers of the ring that
 * the sink is done with. Pages that are one stored image are read straight into the chunk, images
 * stored one after another (an import's) with one pread.
 */
class RelationChunks {
  private chunk: Buffer = Buffer.alloc(0);
  private chunkFirstBlock: number;
  private filled = 0;
  /** stored images to read into the chunk with one pread, from `at` on */
  private run: { first: StoredImage; length: number; at: number } | undefined;
  /** pages of the chunk redo workers are rebuilding, each copied into its place when it comes */
  private pending: Array<Promise<void>> = [];

  constructor(
    private readonly backup: BackupWrite,
    private readonly path: string,
    firstBlock: number,
    private readonly end: number,
  ) {
    this.chunkFirstBlock = firstBlock;
  }

  /** Where the page of `block` goes in the chunk; a promise only when a new chunk is begun. */
  place(block: number): Buffer | Promise<Buffer> {
    if (this.filled < this.chunk.length) return this.chunk.subarray(this.filled, this.filled + BLCKSZ);
    return this.nextChunk(block);
  }

  private async nextChunk(block: number): Promise<Buffer> {
    await this.flush();
    this.chunk = (await this.backup.chunks.take()).subarray(0, Math.min(this.end - block, WRITE_PAGES) * BLCKSZ);
    this.chunkFirstBlock = block;
    return this.chunk.subarray(0, BLCKSZ);
  }

  /**
   * Takes the page of the block last placed: `place` itself (rebuilt there), another buffer, a
   * stored image, or a page a redo worker is rebuilding (copied into its place when it comes; the
   * chunk is handed on once all of them have).
   */
  add(block: number, found: Buffer | StoredImage | PendingPage, place: Buffer): void {
    if (found instanceof PendingPage) {
      this.readRun();
      const at = this.filled;
      const chunk = this.chunk;
      const copied = found.page.then(
        (page) => {
          if (page.length !== BLCKSZ) throw new FullBackupError(`${this.path} block ${block}: page is ${page.length} bytes`);
          if (page !== place) page.copy(chunk, at);
        },
        (err: Error) => {
          throw new FullBackupError(`reading ${this.path} block ${block} at ${formatLsn(this.backup.lsn)}: ${(err as Error).message}`, { cause: err });
        },
      );
      // (reported by flush; not unhandled when a later block's error ends the backup first)
      copied.catch(() => {});
      this.pending.push(copied);
    } else if (found instanceof Buffer) {
      if (found.length !== BLCKSZ) throw new FullBackupError(`${this.path} block ${block}: page is ${found.length} bytes`);
      this.readRun(); // a run continues only over consecutive places in the chunk
      if (found !== place) found.copy(this.chunk, this.filled);
    } else {
      const image = found as StoredImage;
      const run = this.run;
      // a run continues over images stored right after each other in the same files
      if (run && run.first.images === image.images && run.first.file === image.file && run.first.offset + run.length === image.offset) run.length += image.length;
      else {
        this.readRun();
        this.run = { first: image, length: image.length, at: this.filled };
      }
    }
    this.filled += BLCKSZ;
  }

  /**
   * Hands what the chunk holds to the sink. A chunk with pages redo workers are still rebuilding
   * takes its place in the archive now and goes out once they are in: the scan goes on meanwhile
   * into the ring's next buffers (a hot page's long chain no longer stalls the reading of the
   * blocks after it), and the ring bounds how far it gets ahead.
   */
  async flush(): Promise<void> {
    this.readRun();
    const { chunk, filled, chunkFirstBlock } = this;
    const pending = this.pending;
    this.pending = [];
    this.filled = 0;
    if (!filled) return;
    const bytes = filled === chunk.length ? chunk : chunk.subarray(0, filled);
    // the checksum goes into the chunk's copy: the reader's pages stay as they were
    const withChecksums = () => {
      if (this.backup.checksums) for (let at = 0; at < filled; at += BLCKSZ) setPageChecksum(chunk.subarray(at, at + BLCKSZ), chunkFirstBlock + at / BLCKSZ);
      return bytes;
    };
    if (!pending.length) {
      this.backup.chunks.lend(this.backup.tar.write(withChecksums(), true));
      return;
    }
    // all settled before an error is thrown: no worker's page lands in a chunk handed on
    const ready = Promise.allSettled(pending).then((settled) => {
      const failed = settled.find((result) => result.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return withChecksums();
    });
    this.backup.chunks.lend(this.backup.tar.writeWhenReady(ready, filled, true), true);
  }

  private readRun(): void {
    const run = this.run;
    if (!run) return;
    this.run = undefined;
    try {
      // (stored images come from the scanner only)
      this.backup.scanner!.readImagesInto(run.first, run.length, this.chunk, run.at);
    } catch (err) {
      const fromBlock = this.chunkFirstBlock + run.at / BLCKSZ;
      throw new FullBackupError(`reading ${this.path} blocks ${fromBlock}..${fromBlock + run.length / BLCKSZ - 1} at ${formatLsn(this.backup.lsn)}: ${(err as Error).message}`, { cause: err });
    }
  }
}

async function writeRelationFile(backup: BackupWrite, file: RelationFile): Promise<void> {
  const { path, rel, sourceFork, firstBlock, blocks } = file;
  const { tar, scanner, lsn } = backup;
  await tar.beginFile(path, blocks * BLCKSZ);
  const end = firstBlock + blocks;
  const chunks = new RelationChunks(backup, path, firstBlock, end);
  if (scanner) {
    for (let block = firstBlock; block < end; block++) {
      // a page the scanner rebuilds is rebuilt in its place in the chunk (no copy). Both calls
      // usually answer without a promise: awaited only when they return one
      let place = chunks.place(block);
      if (place instanceof Promise) place = await place;
      let found = scanner.pageOrImage(rel, sourceFork, block, place);
      if (found instanceof Promise) {
        try {
          found = await found;
        } catch (err) {
          throw new FullBackupError(`reading ${path} block ${block} at ${formatLsn(lsn)}: ${(err as Error).message}`, { cause: err });
        }
      }
      chunks.add(block, found, place);
      backup.relationPages++;
      backup.progress();
    }
  } else {
    const pages = readRelation(backup.reader, rel, sourceFork, firstBlock, end, lsn, backup.readAhead);
    try {
      for (let block = firstBlock; block < end; block++) {
        const place = await chunks.place(block);
        let next: IteratorResult<{ blockNumber: number; page: Buffer }>;
        try {
          next = await pages.next();
        } catch (err) {
          throw new FullBackupError(`reading ${path} block ${block} at ${formatLsn(lsn)}: ${(err as Error).message}`, { cause: err });
        }
        if (next.done || next.value.blockNumber !== block) throw new FullBackupError(`${path}: block ${block} missing from the relation read`);
        chunks.add(block, next.value.page, place);
        backup.relationPages++;
        backup.progress();
      }
    } finally {
      await pages.return(undefined);
    }
  }
  await chunks.flush();
  await tar.endFile();
}
