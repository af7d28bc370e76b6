// Test helpers for the WAL decoder: capture the WAL range a workload writes on a real PG15
// cluster, and compare our decoding of it with pg_waldump's, record by record.
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";
import type { PgCluster } from "../testing/pgcluster.ts";
import type { DecodedRecord } from "./record.ts";
import { readWalSegments, walFileName, type ReadWalSegmentsOptions } from "./reader.ts";
import { diffWaldumpEntries, parsePgWaldumpOutput, toWaldumpEntry, type WaldumpEntry } from "./waldump.ts";

export async function insertLsn(cluster: PgCluster): Promise<Lsn> {
  const [{ lsn }] = await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
  return parseLsn(lsn);
}

/** Runs `work` and returns the WAL range [start, end) it produced, once that WAL is flushed to pg_wal. */
export async function captureWal(cluster: PgCluster, work: () => Promise<unknown>): Promise<{ start: Lsn; end: Lsn }> {
  const start = await insertLsn(cluster);
  await work();
  return { start, end: await cluster.flushedWalEnd() };
}

export async function pgWaldump(cluster: PgCluster, start: Lsn, end: Lsn): Promise<WaldumpEntry[]> {
  // the segments named: pg_waldump otherwise takes the segment size from whichever file it lists
  // first, and a segment PostgreSQL preallocated (zeros) has none
  const { stdout } = await cluster.run("pg_waldump", ["-b", "-p", cluster.walDir, "-s", formatLsn(start), "-e", formatLsn(end), walFileName(1, start), walFileName(1, end - 1n)]);
  return parsePgWaldumpOutput(stdout);
}

export function decodeRange(cluster: PgCluster, start: Lsn, end: Lsn, opts?: ReadWalSegmentsOptions): DecodedRecord[] {
  return [...readWalSegments(cluster.walDir, start, end, opts)];
}

/** Decodes [start, end) ourselves and with pg_waldump -b; returns our records and the differences. */
export async function compareWithPgWaldump(cluster: PgCluster, start: Lsn, end: Lsn) {
  const records = decodeRange(cluster, start, end);
  const theirs = await pgWaldump(cluster, start, end);
  const ours = records.map((r) => toWaldumpEntry(r));
  return { records, ours, theirs, diffs: diffWaldumpEntries(ours, theirs) };
}
