// The consistency oracle (for tests): PostgreSQL itself, running with wal_consistency_checking=all,
// attaches the after-image of every page each record touches. We import the primary, ingest its
// WAL, rebuild each such page at the record's end LSN with Strata's redo, and compare both under
// the rmgr's mask, exactly as PostgreSQL's verifyBackupPageConsistency does during its own replay.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { importFromPrimary } from "../ingest/import-primary.ts";
import { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";
import { FORK_NAMES } from "../reltag.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { PgCluster, type PgClusterOptions } from "../testing/pgcluster.ts";
import { blocksWithHistory, cutHistory, type HistoryCutResult } from "../timeline/history-cut.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { restoreBlockImage } from "../wal/image.ts";
import { readWalRange, readWalSegments } from "../wal/reader.ts";
import { XLR_CHECK_CONSISTENCY } from "../wal/record.ts";
import { recordTypeName, rmgrName } from "../wal/rmgrs.ts";
import { getPageLsn, isNewPage } from "./page.ts";
import { RMGRS } from "./rmgrs.ts";
import { UnsupportedRecordError } from "./types.ts";

const SEGMENT = 16 * 1024 * 1024;

export interface OracleMismatch {
  lsn: string;
  type: string;
  block: string;
  firstDifference: number;
  detail: string;
  /**
   * On-disk visibility-map pages only: every bit set on our page is set on theirs too, theirs only
   * has more (as when PostgreSQL logged the page with its bitmap in the image's hole).
   */
  theirBitsOnly?: boolean;
}

export interface OracleReport {
  /** pages compared, per "Rmgr/TYPE" of the record that carried the image */
  checked: Record<string, number>;
  mismatches: OracleMismatch[];
  onDisk?: OnDiskReport;
  /** pages that could not be rebuilt because a record type has no redo, per "Rmgr/TYPE" of that record */
  unsupported: Record<string, number>;
  /** other failures while rebuilding, per record type */
  errors: Record<string, string>;
  records: number;
  startLsn: string;
  endLsn: string;
  /** the history cuts made before the comparisons (option `cuts`), in LSN order */
  cuts?: Array<{ lsn: string } & HistoryCutResult>;
}

export interface OnDiskReport {
  /** blocks compared, per relation kind ("heap", "btree", "vm", …) */
  compared: Record<string, number>;
  mismatches: OracleMismatch[];
  /** the shutdown checkpoint's end LSN the pages were read at */
  lsn: string;
  /** blocks that could not be rebuilt, per unsupported record type (or error) */
  unsupported: Record<string, number>;
  /** initialized blocks whose page LSN differs from the primary's, per relation kind (masks hide the LSN) */
  lsnDifferences: Record<string, number>;
  /** the first few of those: "base/5/16384 blk 3 ours 0/1A2B theirs 0/1A40" */
  lsnDifferenceExamples: string[];
}

export interface OracleOptions extends PgClusterOptions {
  /**
   * After the workload: CHECKPOINT, stop the primary, and compare every block of every relation
   * fork in its data directory with Strata's page at the shutdown checkpoint (masked by the
   * relation's access method). Exempt: the free space map (PostgreSQL does not WAL-log it) and
   * sequences (nextval changes the page without WAL and logs values ahead instead).
   */
  compareOnDisk?: boolean;
  /** runs before the base backup is taken (e.g. CREATE EXTENSION) */
  prepare?: (cluster: PgCluster) => Promise<void>;
  workload: (cluster: PgCluster) => Promise<void>;
  /** only compare images carried by records of these rmgr names (default: all) */
  rmgrs?: string[];
  /** stop collecting mismatch details after this many (default 20) */
  maxMismatches?: number;
  /**
   * Compare every image of the first `first` records of each type, then one record in `every`
   * (default: all). Replay still applies every record: a wrong redo shows in any later comparison
   * of the page, so a sample bounds the time of a huge workload without losing what it exercises.
   */
  sample?: { first: number; every: number };
  /** progress lines (records read, images compared) every 200,000 records */
  onProgress?: (line: string) => void;
  /**
   * After ingest, cut the history of every block with history at this many record boundaries
   * spread evenly over the workload, oldest first (timeline/history-cut.ts): each comparison
   * below a cut then reads the history key space. Default 0.
   */
  cuts?: number;
}

const waitFlushed = (cluster: PgCluster): Promise<Lsn> => cluster.flushedWalEnd();

const KIND_TO_RMGR: Record<string, number> = { heap: 10, sequence: 15, btree: 11, hash: 12, gin: 13, gist: 14, spgist: 16, brin: 17, bloom: 20 };

/**
 * The SP-GiST metapage's cache of last-used pages (SpGistMetaPageData.lastUsedPages: 8 × {blkno,
 * freeSpace} after the 4-byte magic number) is written back by VACUUM and index builds without WAL
 * (SpGistUpdateMetaPage), so a primary's metapage differs there from any replica's. Only the
 * on-disk comparison needs this: WAL images of the metapage carry the cache as it was logged.
 */
const SPGIST_LAST_USED_PAGES = { start: 24 + 4, end: 24 + 4 + 8 * 8 };
function maskSpgistLastUsedPages(page: Buffer): void {
  page.fill(0, SPGIST_LAST_USED_PAGES.start, SPGIST_LAST_USED_PAGES.end);
}

/**
 * A visibility-map page with no bit set means what a page never written means: PostgreSQL extends
 * the fork with initialized pages without WAL (visibilitymap_pin on a heap insert or update) and a
 * replica reads the missing page as zeros, so such pages compare as zeros.
 */
function vmPageIsEmpty(page: Buffer): boolean {
  for (let i = VM_BITMAP_START; i < page.length; i++) if (page[i] !== 0) return false;
  return true;
}
/** the bitmap follows the page header (MAXALIGN(SizeOfPageHeaderData)) */
const VM_BITMAP_START = 24;

/** relfilenode path ("base/5/16384", "global/1262") -> access method kind, for masking. */
export async function relationKinds(cluster: Pick<PgCluster, "sql">): Promise<Map<string, string>> {
  const kinds = new Map<string, string>();
  const dbs = await cluster.sql<{ datname: string; oid: number }>("SELECT datname, oid FROM pg_database WHERE datallowconn");
  for (const db of dbs) {
    const rows = await cluster.sql<{ filenode: number; shared: boolean; kind: string }>(
      `SELECT pg_relation_filenode(c.oid) AS filenode, c.relisshared AS shared,
              CASE WHEN c.relkind = 'S' THEN 'sequence' WHEN c.relkind IN ('r','t','m') THEN 'heap' ELSE coalesce(am.amname, 'other') END AS kind
         FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam WHERE pg_relation_filenode(c.oid) IS NOT NULL`,
      [],
      db.datname,
    );
    for (const r of rows) kinds.set(r.shared ? `global/${r.filenode}` : `base/${db.oid}/${r.filenode}`, r.kind);
  }
  return kinds;
}

export async function compareDataDirectory(dataDir: string, kinds: Map<string, string>, reader: PageReader, lsn: Lsn, maxMismatches: number): Promise<OnDiskReport> {
  const report: OnDiskReport = { compared: {}, mismatches: [], lsn: formatLsn(lsn), unsupported: {}, lsnDifferences: {}, lsnDifferenceExamples: [] };
  const dirs = ["global", ...readdirSync(path.join(dataDir, "base")).map((d) => `base/${d}`)];
  for (const dir of dirs) {
    for (const name of readdirSync(path.join(dataDir, dir))) {
      const m = /^(\d+)(_fsm|_vm|_init)?(?:\.(\d+))?$/.exec(name);
      if (!m || m[2] === "_fsm") continue;
      // an unlogged relation's other forks are not WAL-logged: PostgreSQL resets them from the init fork
      if (m[2] !== "_init" && existsSync(path.join(dataDir, dir, `${m[1]}_init`))) continue;
      const fork = m[2] === "_vm" ? 2 : m[2] === "_init" ? 3 : 0;
      const rel = { spcNode: dir === "global" ? 1664 : 1663, dbNode: dir === "global" ? 0 : Number(dir.split("/")[1]), relNode: Number(m[1]) };
      // databases that refuse connections (template0) share their catalogs' filenodes with template1
      const relKind = kinds.get(`${dir}/${m[1]}`) ?? [...kinds].find(([key]) => key.endsWith(`/${m[1]}`))?.[1] ?? "other";
      // a sequence's page is deliberately ahead of its WAL (nextval logs 32 values at a time)
      if (relKind === "sequence") continue;
      const kind = fork === 2 ? "vm" : relKind;
      const mask = fork === 2 ? undefined : RMGRS[KIND_TO_RMGR[relKind] ?? -1]?.mask;
      const file = readFileSync(path.join(dataDir, dir, name));
      const firstBlock = Number(m[3] ?? 0) * 131072;
      for (let i = 0; i * 8192 < file.length; i++) {
        const theirs = Buffer.from(file.subarray(i * 8192, (i + 1) * 8192));
        let ours: Buffer;
        try {
          ours = Buffer.from(await reader.getPage(rel, fork, firstBlock + i, lsn));
        } catch (err) {
          const key = err instanceof UnsupportedRecordError ? `${rmgrName(err.record.rmid)}/${recordTypeName(err.record.rmid, err.record.info)}` : (err as Error).message;
          report.unsupported[key] = (report.unsupported[key] ?? 0) + 1;
          continue;
        }
        if (!isNewPage(theirs) && getPageLsn(ours) !== getPageLsn(theirs)) {
          report.lsnDifferences[kind] = (report.lsnDifferences[kind] ?? 0) + 1;
          if (report.lsnDifferenceExamples.length < 5) {
            report.lsnDifferenceExamples.push(`${dir}/${name} blk ${firstBlock + i} (${kind}) ours ${formatLsn(getPageLsn(ours))} theirs ${formatLsn(getPageLsn(theirs))}`);
          }
        }
        for (const page of [ours, theirs]) {
          if (mask) mask(page, firstBlock + i);
          else if (fork === 2 && vmPageIsEmpty(page)) page.fill(0);
          else page.fill(0, 0, 10); // LSN and checksum
          if (relKind === "spgist" && fork === 0 && firstBlock + i === 0) maskSpgistLastUsedPages(page);
        }
        report.compared[kind] = (report.compared[kind] ?? 0) + 1;
        if (!ours.equals(theirs) && report.mismatches.length < maxMismatches) {
          let first = 0;
          while (ours[first] === theirs[first]) first++;
          report.mismatches.push({
            lsn: formatLsn(lsn),
            type: kind,
            block: `${dir}/${name} blk ${firstBlock + i}`,
            firstDifference: first,
            detail: `ours ${ours.subarray(first, first + 16).toString("hex")} theirs ${theirs.subarray(first, first + 16).toString("hex")}`,
            ...(fork === 2 ? { theirBitsOnly: bitsContained(ours, theirs) } : {}),
          });
        }
      }
    }
  }
  return report;
}

/** Whether every bit set in `ours` is set in `theirs` too (pages of equal length). */
export function bitsContained(ours: Buffer, theirs: Buffer): boolean {
  for (let k = 0; k < ours.length; k++) if ((ours[k] & ~theirs[k]) !== 0) return false;
  return true;
}

export async function runConsistencyOracle(options: OracleOptions): Promise<OracleReport> {
  const cluster = await PgCluster.start({
    ...options,
    settings: { wal_consistency_checking: "all", wal_keep_size: "8GB", max_wal_size: "8GB", max_prepared_transactions: 5, autovacuum: "off", ...options.settings },
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), "strata-oracle-"));
  const store = await TimelineStore.open(path.join(dir, "store"));
  try {
    await options.prepare?.(cluster);
    const imported = await importFromPrimary(store, cluster.connectionString(), "strata_oracle");
    await options.workload(cluster);
    let relations: Map<string, string> | undefined;
    let end: Lsn;
    let shutdownLsn: Lsn | undefined;
    if (options.compareOnDisk) {
      await cluster.sql("CHECKPOINT");
      relations = await relationKinds(cluster);
      await cluster.stopServer();
      const { stdout } = await cluster.run("pg_controldata", ["-D", cluster.dataDir]);
      const checkpoint = parseLsn(/Latest checkpoint location:\s+(\S+)/.exec(stdout)![1]);
      // the WAL ends with the shutdown checkpoint record; read at its end
      let last: Lsn = checkpoint;
      for (const r of readWalSegments(cluster.walDir, checkpoint)) last = r.endLsn;
      shutdownLsn = last;
      end = last;
    } else {
      end = await waitFlushed(cluster);
    }
    const ingestor = await TimelineIngestor.open(store);
    for (let pos = imported.startLsn; pos < end; ) {
      const next = pos + BigInt(Math.min(SEGMENT, Number(end - pos)));
      await ingestor.ingestWal(readWalRange(cluster.walDir, pos, next), pos);
      pos = next;
      if ((pos - imported.startLsn) % (BigInt(SEGMENT) * 64n) === 0n) options.onProgress?.(`ingested to ${formatLsn(pos)} of ${formatLsn(end)}`);
    }
    const reader = new PageReader(store);
    const report: OracleReport = { checked: {}, mismatches: [], unsupported: {}, errors: {}, records: 0, startLsn: formatLsn(imported.endLsn), endLsn: formatLsn(end) };
    for (let i = 1; i <= (options.cuts ?? 0); i++) {
      const at = await reader.roundToRecordBoundary(imported.endLsn + ((end - imported.endLsn) * BigInt(i)) / BigInt((options.cuts ?? 0) + 1));
      const cut = await cutHistory(reader, await blocksWithHistory(store, at), at);
      (report.cuts ??= []).push({ lsn: formatLsn(at), ...cut });
    }
    const maxMismatches = options.maxMismatches ?? 20;
    const seenPerType = new Map<string, number>();
    let read = 0;
    for (const record of readWalSegments(cluster.walDir, imported.startLsn, end)) {
      if (++read % 200_000 === 0) options.onProgress?.(`${read} records read, at ${formatLsn(record.lsn)} of ${formatLsn(end)}, ${Object.values(report.checked).reduce((a, b) => a + b, 0)} images compared, ${report.mismatches.length} mismatches`);
      if (record.lsn < imported.endLsn || !(record.info & XLR_CHECK_CONSISTENCY)) continue;
      const rmgr = RMGRS[record.rmid];
      const typeName = `${rmgrName(record.rmid)}/${recordTypeName(record.rmid, record.info)}`;
      if (options.rmgrs && !options.rmgrs.includes(rmgrName(record.rmid))) continue;
      if (options.sample) {
        const seen = (seenPerType.get(typeName) ?? 0) + 1;
        seenPerType.set(typeName, seen);
        if (seen > options.sample.first && seen % options.sample.every !== 0) continue;
      }
      report.records++;
      for (const block of record.blocks) {
        if (!block.hasImage || block.applyImage) continue;
        let ours: Buffer;
        try {
          ours = Buffer.from(await reader.getPage(block.rel, block.forkNum, block.blockNumber, record.endLsn));
        } catch (err) {
          if (err instanceof UnsupportedRecordError) {
            const key = `${rmgrName(err.record.rmid)}/${recordTypeName(err.record.rmid, err.record.info)}`;
            report.unsupported[key] = (report.unsupported[key] ?? 0) + 1;
          } else {
            report.errors[typeName] ??= (err as Error).message;
          }
          continue;
        }
        if (ours.readUInt32LE(0) * 2 ** 32 + ours.readUInt32LE(4) > Number(record.endLsn)) continue;
        const theirs = Buffer.from(restoreBlockImage(block, record.lsn));
        rmgr?.mask?.(ours, block.blockNumber);
        rmgr?.mask?.(theirs, block.blockNumber);
        report.checked[typeName] = (report.checked[typeName] ?? 0) + 1;
        if (!ours.equals(theirs)) {
          let first = 0;
          while (first < ours.length && ours[first] === theirs[first]) first++;
          if (report.mismatches.length < maxMismatches) {
            report.mismatches.push({
              lsn: formatLsn(record.lsn),
              type: typeName,
              block: `${block.rel.spcNode}/${block.rel.dbNode}/${block.rel.relNode} ${FORK_NAMES[block.forkNum]} blk ${block.blockNumber}`,
              firstDifference: first,
              detail: `ours ${ours.subarray(first, first + 16).toString("hex")} theirs ${theirs.subarray(first, first + 16).toString("hex")}`,
            });
          } else report.mismatches.push({ lsn: formatLsn(record.lsn), type: typeName, block: "", firstDifference: first, detail: "" });
        }
      }
    }
    if (relations && shutdownLsn !== undefined) report.onDisk = await compareDataDirectory(cluster.dataDir, relations, reader, shutdownLsn, maxMismatches);
    return report;
  } finally {
    await store.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
