// The consistency oracle (for tests): PostgreSQL itself, running with wal_consistency_checking=all,
// attaches the after-image of every page each record touches. We import the primary, ingest its
// WAL, rebuild each such page at the record's end LSN with Strata's redo, and compare both under
// the rmgr's mask, exactly as PostgreSQL's verifyBackupPageConsistency does during its own replay.
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { importFromPrimary } from "../ingest/import-primary.ts";
import { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";
import { FORK_NAMES } from "../reltag.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { PgCluster, type PgClusterOptions } from "../testing/pgcluster.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { restoreBlockImage } from "../wal/image.ts";
import { readWalSegments, walFileName } from "../wal/reader.ts";
import { XLR_CHECK_CONSISTENCY } from "../wal/record.ts";
import { recordTypeName, rmgrName } from "../wal/rmgrs.ts";
import { RMGRS } from "./rmgrs.ts";
import { UnsupportedRecordError } from "./types.ts";

const SEGMENT = 16 * 1024 * 1024;

export interface OracleMismatch {
  lsn: string;
  type: string;
  block: string;
  firstDifference: number;
  detail: string;
}

export interface OracleReport {
  /** pages compared, per "Rmgr/TYPE" of the record that carried the image */
  checked: Record<string, number>;
  mismatches: OracleMismatch[];
  /** pages that could not be rebuilt because a record type has no redo, per "Rmgr/TYPE" of that record */
  unsupported: Record<string, number>;
  /** other failures while rebuilding, per record type */
  errors: Record<string, string>;
  records: number;
  startLsn: string;
  endLsn: string;
}

export interface OracleOptions extends PgClusterOptions {
  /** runs before the base backup is taken (e.g. CREATE EXTENSION) */
  prepare?: (cluster: PgCluster) => Promise<void>;
  workload: (cluster: PgCluster) => Promise<void>;
  /** only compare images carried by records of these rmgr names (default: all) */
  rmgrs?: string[];
  /** stop collecting mismatch details after this many (default 20) */
  maxMismatches?: number;
}

function readWal(walDir: string, timeline: number, from: Lsn, to: Lsn): Buffer {
  const out = Buffer.alloc(Number(to - from));
  let pos = from;
  while (pos < to) {
    const segStart = pos - (pos % BigInt(SEGMENT));
    const n = Math.min(Number(to - pos), Number(segStart + BigInt(SEGMENT) - pos));
    const fd = openSync(path.join(walDir, walFileName(timeline, pos)), "r");
    try {
      readSync(fd, out, Number(pos - from), n, Number(pos - segStart));
    } finally {
      closeSync(fd);
    }
    pos += BigInt(n);
  }
  return out;
}

async function waitFlushed(cluster: PgCluster): Promise<Lsn> {
  const [{ lsn }] = await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
  for (let i = 0; i < 400; i++) {
    const [{ done }] = await cluster.sql<{ done: boolean }>("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS done", [lsn]);
    if (done) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return parseLsn(lsn);
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
    const end = await waitFlushed(cluster);
    const ingestor = await TimelineIngestor.open(store);
    for (let pos = imported.startLsn; pos < end; ) {
      const next = pos + BigInt(Math.min(SEGMENT, Number(end - pos)));
      await ingestor.ingestWal(readWal(cluster.walDir, 1, pos, next), pos);
      pos = next;
    }
    const reader = new PageReader(store);
    const report: OracleReport = { checked: {}, mismatches: [], unsupported: {}, errors: {}, records: 0, startLsn: formatLsn(imported.endLsn), endLsn: formatLsn(end) };
    const maxMismatches = options.maxMismatches ?? 20;
    for (const record of readWalSegments(cluster.walDir, imported.startLsn, end)) {
      if (record.lsn < imported.endLsn || !(record.info & XLR_CHECK_CONSISTENCY)) continue;
      const rmgr = RMGRS[record.rmid];
      const typeName = `${rmgrName(record.rmid)}/${recordTypeName(record.rmid, record.info)}`;
      if (options.rmgrs && !options.rmgrs.includes(rmgrName(record.rmid))) continue;
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
    return report;
  } finally {
    await store.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
