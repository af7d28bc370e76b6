// In-process ingest throughput: decode + ingest + commit of a pgbench WAL range read from the
// primary's pg_wal, against reading the same bytes from disk (the I/O floor) in the same run.
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseLsn, TimelineIngestor, TimelineStore, walFileName, type Lsn } from "@strata/core";
import { PgCluster } from "@strata/core/testing";

const SEG = 16 * 1024 * 1024;
const scale = Number(process.env.BENCH_SCALE ?? 5);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const cluster = await PgCluster.start({ settings: { wal_keep_size: "4GB", max_wal_size: "4GB", checkpoint_timeout: "1h" } });
const dir = mkdtempSync(path.join(os.tmpdir(), "strata-ingest-bench-"));
try {
  const lsn = async () => parseLsn((await cluster.sql<{ l: string }>("SELECT pg_current_wal_insert_lsn()::text AS l"))[0].l);
  await cluster.sql("CHECKPOINT");
  const start = await lsn();
  await cluster.pgbench(["-i", "-s", String(scale), "-q"]);
  await cluster.pgbench(["-T", String(seconds), "-c", "4"]);
  const end = await lsn();
  await cluster.sql("CHECKPOINT"); // flushes everything up to `end`
  const read = (from: Lsn, to: Lsn) => {
    const buf = Buffer.alloc(Number(to - from));
    for (let pos = from; pos < to; ) {
      const segStart = pos - (pos % BigInt(SEG));
      const n = Math.min(Number(to - pos), Number(segStart + BigInt(SEG) - pos));
      const fd = openSync(path.join(cluster.walDir, walFileName(1, pos)), "r");
      readSync(fd, buf, Number(pos - from), n, Number(pos - segStart));
      closeSync(fd);
      pos += BigInt(n);
    }
    return buf;
  };
  const mb = Number(end - start) / 1048576;
  let t = performance.now();
  for (let pos = start; pos < end; pos += BigInt(SEG)) read(pos, pos + BigInt(Math.min(SEG, Number(end - pos))));
  const readSecs = (performance.now() - t) / 1000;
  const store = await TimelineStore.open(path.join(dir, "store"));
  await store.commit([], { lastRecordLsn: start, diskConsistentLsn: start, startLsn: start });
  const ingestor = await TimelineIngestor.open(store);
  let commitMs = 0;
  let lookupMs = 0;
  let entries = 0;
  const commit = store.commit.bind(store);
  store.commit = async (...args) => {
    const t0 = performance.now();
    entries += args[0].length;
    await commit(...args);
    commitMs += performance.now() - t0;
  };
  const getVersion = store.getVersion.bind(store);
  store.getVersion = async (...args) => {
    const t0 = performance.now();
    const r = await getVersion(...args);
    lookupMs += performance.now() - t0;
    return r;
  };
  t = performance.now();
  const chunk = 128 * 1024;
  for (let pos = start; pos < end; ) {
    const next = pos + BigInt(Math.min(chunk, Number(end - pos)));
    await ingestor.ingestWal(read(pos, next), pos, { flush: false });
    pos = next;
  }
  await ingestor.flush();
  const ingestSecs = (performance.now() - t) / 1000;
  await store.close();
  console.log(`WAL: ${mb.toFixed(1)} MB, ${ingestor.totalRecords} records`);
  console.log(`read from pg_wal: ${(mb / readSecs).toFixed(1)} MB/s`);
  console.log(`strata ingest:    ${(mb / ingestSecs).toFixed(1)} MB/s (${Math.round(ingestor.totalRecords / ingestSecs)} records/s)`);
  console.log(`store entries written: ${entries} (${(entries / ingestor.totalRecords).toFixed(2)} per record)`);
  console.log(`time in commits: ${(commitMs / 1000).toFixed(2)} s, in store lookups: ${(lookupMs / 1000).toFixed(2)} s, total ${ingestSecs.toFixed(2)} s`);
  console.log(`ratio: ${(readSecs / ingestSecs).toFixed(3)}x`);
} finally {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
