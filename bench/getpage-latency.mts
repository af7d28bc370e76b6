// Benchmark (in-process): GetPage@LSN latency by replay depth. A one-row table gets a full-page
// image after a CHECKPOINT and then BENCH_UPDATES single-row updates (each a WAL record on the same
// heap page). After importing the primary and ingesting its WAL into a TimelineStore, a PageReader
// with a huge maxReplay (nothing is materialized) reads that page at the LSN of the image (0
// records to replay), and 10 and 100 records above it; p50/p99 over BENCH_READS reads each. The
// baseline, in the same run, is a single LevelDB get of the stored image (TimelineStore.getVersion).
//
//   npx tsx bench/getpage-latency.mts
//   BENCH_READS=5000 BENCH_DEPTHS=0,1,10,100,1000 BENCH_UPDATES=1100 npx tsx bench/getpage-latency.mts
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  formatLsn, importFromPrimary, PageCache, PageReader, parseLsn, readWalSegments, relBlockKey, RMGRS, TimelineIngestor, TimelineStore, walFileName, type Lsn, readWalRange } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { envNumber, fmtMs, percentile, progress, progressDone } from "./lib.mts";

const READS = envNumber("BENCH_READS", 2000);
const DEPTHS = (process.env.BENCH_DEPTHS ?? "0,10,100").split(",").map(Number);
const UPDATES = envNumber("BENCH_UPDATES", Math.max(...DEPTHS) + 20);
const SEGMENT = 16 * 1024 * 1024;

const cluster = await PgCluster.start({ settings: { max_wal_size: "'4GB'", checkpoint_timeout: "'1h'", autovacuum: "off" } });
const dir = mkdtempSync(path.join(os.tmpdir(), "strata-getpage-bench-"));
const store = await TimelineStore.open(path.join(dir, "store"));
try {
  await cluster.sql("CREATE TABLE hot (id int, v int) WITH (fillfactor = 100); INSERT INTO hot VALUES (1, 0)");
  progress("importing the primary");
  const imported = await importFromPrimary(store, cluster.connectionString(), "strata_bench");
  const [rel] = await cluster.sql<{ db: number; node: number }>(
    "SELECT (SELECT oid FROM pg_database WHERE datname = current_database())::int AS db, pg_relation_filenode('hot')::int AS node",
  );
  const relTag = { spcNode: 1663, dbNode: rel.db, relNode: rel.node };
  await cluster.sql("CHECKPOINT");
  progress(`${UPDATES} single-row updates`);
  const client = new (await import("pg")).default.Client({ host: cluster.host, port: cluster.port, user: "postgres", database: "postgres" });
  await client.connect();
  // the first update after the checkpoint carries the page image; keep the page from pruning by
  // keeping every version visible to an open snapshot in another session
  const holder = new (await import("pg")).default.Client({ host: cluster.host, port: cluster.port, user: "postgres", database: "postgres" });
  await holder.connect();
  await holder.query("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM hot");
  for (let i = 0; i < UPDATES; i++) await client.query("UPDATE hot SET v = v + 1");
  await holder.query("COMMIT");
  await holder.end();
  await client.end();
  const [{ lsn }] = await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
  await cluster.sql("SELECT pg_switch_wal()"); // flushes everything up to `lsn`
  const end = parseLsn(lsn);

  // the page's history: the image, then records
  const history: Array<{ endLsn: Lsn; image: boolean }> = [];
  let wholePage = 0;
  for (const r of readWalSegments(cluster.walDir, imported.startLsn, end)) {
    if (r.lsn < imported.endLsn) continue;
    for (const b of r.blocks) {
      if (b.rel.relNode !== relTag.relNode || b.rel.dbNode !== relTag.dbNode || b.forkNum !== 0 || b.blockNumber !== 0) continue;
      if ((b.hasImage && b.applyImage) || b.willInit) {
        history.length = 0;
        wholePage++;
      }
      history.push({ endLsn: r.endLsn, image: b.hasImage && b.applyImage });
    }
  }
  if (!history.length || !history[0].image) throw new Error("the page's last base is not a full-page image (did the update after CHECKPOINT log one?)");

  progress("ingesting the WAL");
  const ingestor = await TimelineIngestor.open(store);
  for (let pos = imported.startLsn; pos < end; ) {
    const next = pos + BigInt(Math.min(SEGMENT, Number(end - pos)));
    await ingestor.ingestWal(readWalRange(cluster.walDir, pos, next), pos, { flush: false });
    pos = next;
  }
  await ingestor.flush();
  progressDone();

  let redoCalls = 0;
  for (const rmgr of RMGRS) {
    if (!rmgr) continue;
    const redo = rmgr.redo;
    (rmgr as { redo: typeof redo }).redo = (page, record, block) => {
      redoCalls++;
      return redo(page, record, block);
    };
  }
  // replay cost: no page cache (a cached read is measured separately below)
  const reader = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0) });
  const cachedReader = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(1024) });
  const key = relBlockKey(relTag, 0, 0);
  const results: string[] = [];
  // baseline: one store lookup of the image version
  {
    const at = history[0].endLsn;
    for (let i = 0; i < 200; i++) await store.getVersion(key, at);
    const lat: number[] = [];
    for (let i = 0; i < READS; i++) {
      const t0 = performance.now();
      await store.getVersion(key, at);
      lat.push(performance.now() - t0);
    }
    results.push(`baseline TimelineStore.getVersion of the image: p50 ${fmtMs(percentile(lat, 50))}, p99 ${fmtMs(percentile(lat, 99))} (${READS} reads)`);
  }
  const p50s: Record<number, number> = {};
  for (const depth of DEPTHS) {
    if (depth >= history.length) {
      results.push(`${depth} records: the page has only ${history.length - 1} records after its image (raise BENCH_UPDATES)`);
      continue;
    }
    const at = history[depth].endLsn;
    progress(`reading at ${formatLsn(at)} (${depth} records above the image)`);
    for (let i = 0; i < Math.min(200, READS); i++) await reader.getPage(relTag, 0, 0, at);
    redoCalls = 0;
    const lat: number[] = [];
    for (let i = 0; i < READS; i++) {
      const t0 = performance.now();
      await reader.getPage(relTag, 0, 0, at);
      lat.push(performance.now() - t0);
    }
    const perRead = redoCalls / READS;
    p50s[depth] = percentile(lat, 50);
    results.push(
      `${depth.toString().padStart(4)} records to replay (${perRead.toFixed(0)} redo calls per read): p50 ${fmtMs(percentile(lat, 50))}, p99 ${fmtMs(percentile(lat, 99))}, ` +
        `mean ${fmtMs(lat.reduce((a, b) => a + b, 0) / lat.length)}` +
        (depth > 0 && p50s[0] !== undefined ? `; ~${fmtMs((p50s[depth] - p50s[0]) / depth)} per record above the 0-record read` : ""),
    );
  }
  {
    // the same page served again from the page cache (what repeated reads cost)
    const at = history[Math.min(100, history.length - 1)].endLsn;
    for (let i = 0; i < 200; i++) await cachedReader.getPage(relTag, 0, 0, at);
    const lat: number[] = [];
    for (let i = 0; i < READS; i++) {
      const t0 = performance.now();
      await cachedReader.getPage(relTag, 0, 0, at);
      lat.push(performance.now() - t0);
    }
    results.push(`page cache hit (any depth): p50 ${fmtMs(percentile(lat, 50))}, p99 ${fmtMs(percentile(lat, 99))}`);
  }
  progressDone();
  console.log(`GetPage@LSN in-process (PageReader, maxReplay unlimited) of one heap page after ${UPDATES} updates (${wholePage} full-page image(s) in the range), ${READS} reads per depth`);
  for (const line of results) console.log(line);
} finally {
  progressDone();
  await store.close().catch(() => {});
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
