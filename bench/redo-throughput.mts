// Benchmark: WAL redo throughput. One pgbench WAL chain (pgbench -i -s BENCH_SCALE, then
// pgbench -T BENCH_SECONDS) starting at a checkpoint, replayed by both systems:
//   - baseline: PostgreSQL crash recovery. The primary is imported (BASE_BACKUP, whose checkpoint is
//     the last one: checkpoint_timeout=1h, max_wal_size=4GB), the workload runs, the primary is
//     stopped with SIGQUIT (pg_ctl stop -m immediate) and started again on the same data directory, so
//     it must replay [redo start, end of WAL). Replay time is the "elapsed" of its "redo done at …
//     system usage: …" log line; records/s = records in that range (readWalSegments) / replay time.
//     It runs once after each timed Strata pass, each time from a copy of the crashed data directory,
//     and its best run is the baseline (as Strata's best later pass is its figure).
//   - Strata (in-process): import + ingest the same WAL into a TimelineStore, then rebuild every page
//     touched in the range at the end LSN (BENCH_CONCURRENCY pages in flight, default 16) with a
//     PageReader whose maxReplay is so high that nothing is materialized: once on the main thread
//     alone, with the rmgrs' redo (RMGRS entries) wrapped to count distinct WAL records replayed,
//     then BENCH_PASSES times (default 3) with long chains on BENCH_WORKERS redo worker threads
//     (walredo/pool.ts; the first of these passes is the workers' first run of the redo code),
//     then BENCH_PASSES times in key order through one RelationScanner with parallelReplay (as a
//     full backup reads: long chains on the workers while the scan reads on).
//     records/s = distinct WAL records replayed / rebuild time.
// Prints both rates and the ratio (issue target: Strata >= 0.5x PostgreSQL's replay records/s), and
// the equal-work ratio (PostgreSQL replay time / Strata rebuild time for the same WAL range).
//
//   npx tsx bench/redo-throughput.mts
//   BENCH_SCALE=10 BENCH_SECONDS=30 npx tsx bench/redo-throughput.mts
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import os from "node:os";
import path from "node:path";
import {
  formatLsn, importFromPrimary, parseLsn, PageCache, PageReader, PendingPage, READ_AHEAD_PAST_PENDING_PAGES, readWalSegments, RedoPool, RelationScanner, RMGRS, sharedRedoPool, TimelineIngestor, TimelineStore, walFileName, type Lsn, readWalRange } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { envNumber, fmtMB, MB, progress, progressDone, readThreadCpuSeconds } from "./lib.mts";

/** CPU seconds of this process: the main thread's and all threads' */
function cpuSeconds(): { main: number; total: number } {
  const threads = readThreadCpuSeconds(process.pid);
  let total = 0;
  for (const seconds of threads.values()) total += seconds;
  return { main: threads.get("main") ?? 0, total };
}

const SCALE = envNumber("BENCH_SCALE", 2);
const SECONDS = envNumber("BENCH_SECONDS", 15);
const CLIENTS = envNumber("BENCH_CLIENTS", 4);
const CONCURRENCY = envNumber("BENCH_CONCURRENCY", 16);
/** redo worker threads for the timed passes (default: the pageserver's, STRATA_REDO_WORKERS or one per core up to 4) */
const WORKERS = envNumber("BENCH_WORKERS", sharedRedoPool.size);
const PASSES = Math.max(1, envNumber("BENCH_PASSES", 3));
/** pages a relation-scan pass reads ahead of the oldest page redo workers are still rebuilding: as far as a full backup does */
const SCAN_AHEAD = READ_AHEAD_PAST_PENDING_PAGES;

/** Key order of relation blocks (tablespace, database, relation, fork, block), as a scan reads them. */
function compareBlocks(a: { rel: { spcNode: number; dbNode: number; relNode: number }; fork: number; block: number }, b: typeof a): number {
  return a.rel.spcNode - b.rel.spcNode || a.rel.dbNode - b.rel.dbNode || a.rel.relNode - b.rel.relNode || a.fork - b.fork || a.block - b.block;
}
const SEGMENT = 16 * 1024 * 1024;

const cluster = await PgCluster.start({
  settings: { max_wal_size: "'4GB'", min_wal_size: "'1GB'", checkpoint_timeout: "'1h'", shared_buffers: "'256MB'", autovacuum: "off" },
});
const dir = mkdtempSync(path.join(os.tmpdir(), "strata-redo-bench-"));
const store = await TimelineStore.open(path.join(dir, "store"));
try {
  progress("importing the primary (BASE_BACKUP: its checkpoint is where PostgreSQL's recovery will start)");
  const imported = await importFromPrimary(store, cluster.connectionString(), "strata_bench");
  progress(`pgbench -i -s ${SCALE}`);
  await cluster.pgbench(["-i", "-s", String(SCALE), "-q"]);
  progress(`pgbench -c ${CLIENTS} -T ${SECONDS}`);
  await cluster.pgbench(["-n", "-c", String(CLIENTS), "-j", "2", "-T", String(SECONDS)]);
  await cluster.stopServer("SIGQUIT"); // immediate: the next start is crash recovery
  const { stdout: control } = await cluster.run("pg_controldata", ["-D", cluster.dataDir]);
  const redoStart = /Latest checkpoint's REDO location:\s+(\S+)/.exec(control)![1];

  // the WAL range and its records
  let records = 0;
  let end: Lsn = imported.startLsn;
  let fpis = 0;
  const touched = new Map<string, { rel: { spcNode: number; dbNode: number; relNode: number }; fork: number; block: number }>();
  for (const r of readWalSegments(cluster.walDir, imported.startLsn)) {
    records++;
    end = r.endLsn;
    if (r.lsn < imported.endLsn) continue;
    for (const b of r.blocks) {
      if (b.hasImage) fpis++;
      touched.set(`${b.rel.spcNode}/${b.rel.dbNode}/${b.rel.relNode}/${b.forkNum}/${b.blockNumber}`, { rel: b.rel, fork: b.forkNum, block: b.blockNumber });
    }
  }
  const walBytes = Number(end - imported.startLsn);
  progressDone();
  console.error(`WAL ${formatLsn(imported.startLsn)}..${formatLsn(end)} (${fmtMB(walBytes)}), ${records} records, ${touched.size} pages touched; checkpoint redo at ${redoStart}`);

  // Strata: ingest, then rebuild every touched page at the end LSN
  progress("strata: ingesting the WAL");
  const ingestor = await TimelineIngestor.open(store);
  const t = performance.now();
  for (let pos = imported.startLsn; pos < end; ) {
    const next = pos + BigInt(Math.min(SEGMENT, Number(end - pos)));
    await ingestor.ingestWal(readWalRange(cluster.walDir, pos, next), pos, { flush: false });
    pos = next;
  }
  await ingestor.flush();
  const ingestSeconds = (performance.now() - t) / 1000;

  const pages = [...touched.values()];
  /** Rebuilds every touched page at the end LSN, CONCURRENCY pages in flight (so LevelDB reads overlap replay, as PostgreSQL 15 prefetches during recovery). */
  const rebuildAll = async (reader: PageReader, profile: boolean) => {
    let errors = 0;
    let firstError = "";
    // BENCH_PROFILE=file.cpuprofile records a CPU profile of the first pass's rebuild alone
    const profiler = profile && process.env.BENCH_PROFILE ? await startProfile() : undefined;
    const cpu0 = cpuSeconds();
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < pages.length) {
        const p = pages[next++];
        try {
          await reader.getPage(p.rel, p.fork as 0, p.block, end);
        } catch (err) {
          errors++;
          firstError ||= (err as Error).message;
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = cpuSeconds();
    if (profiler) writeFileSync(process.env.BENCH_PROFILE!, JSON.stringify(await profiler()));
    if (errors) throw new Error(`${errors} pages failed to rebuild (first: ${firstError})`);
    return { seconds, mainCpu: cpu1.main - cpu0.main, totalCpu: cpu1.total - cpu0.total };
  };

  // Counting pass, on this thread: the rmgrs' redo (RMGRS entries) wrapped to count block redo
  // calls and distinct records. It runs the redo code for the first time in this process
  // (PostgreSQL's recovery is a fresh process too). Record LSNs are deduplicated after the timed
  // rebuild (a Set of bigints inside it costs as much as redo).
  let redoCalls = 0;
  const replayedLsns: bigint[] = [];
  const unwrapped = RMGRS.map((rmgr) => rmgr?.redo);
  for (const rmgr of RMGRS) {
    if (!rmgr) continue;
    const redo = rmgr.redo;
    (rmgr as { redo: typeof redo }).redo = (page, record, block) => {
      redoCalls++;
      replayedLsns.push(record.lsn);
      return redo(page, record, block);
    };
  }
  progress(`strata: rebuilding ${touched.size} pages at ${formatLsn(end)} on this thread (counting records)`);
  const here = await rebuildAll(new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: null }), false);
  const replayedRecords = new Set(replayedLsns).size;
  RMGRS.forEach((rmgr, i) => rmgr && ((rmgr as { redo: unknown }).redo = unwrapped[i]));

  // Timed passes as a pageserver rebuilds pages: long chains on the redo workers (walredo/pool.ts;
  // fresh threads, so the first pass is their redo code's first run too), each pass with a new
  // reader and no page cache. Each pass is followed by one PostgreSQL crash recovery of the same
  // data directory over the same WAL (restored from a copy taken after the crash, so every run
  // replays the same range): a busy or quiet spell of the machine then lands on both sides.
  const pristine = path.join(dir, "crashed-data");
  execFileSync("cp", ["-a", cluster.dataDir, pristine]); // (-a: the copy stays the postgres user's)
  const pool = new RedoPool(WORKERS);
  // (started before timing, as a pageserver starts its workers with itself)
  await pool.start();
  const passes: Array<{ seconds: number; mainCpu: number; totalCpu: number }> = [];
  const pgRuns: Array<{ seconds: number; user: number; system: number; startSeconds: number }> = [];
  let pgRange: { starts: string; done: string } | undefined;
  for (let pass = 0; pass < PASSES; pass++) {
    progress(`strata: rebuilding ${touched.size} pages at ${formatLsn(end)} with ${WORKERS} redo workers (pass ${pass + 1} of ${PASSES})`);
    passes.push(await rebuildAll(new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: pool }), pass === 0));

    progress(`postgres: crash recovery (run ${pass + 1} of ${PASSES})`);
    if (pass > 0) {
      // back to the crashed state: the last run ended recovery with a checkpoint
      await cluster.stopServer();
      rmSync(cluster.dataDir, { recursive: true, force: true });
      execFileSync("cp", ["-a", pristine, cluster.dataDir]);
    }
    const logBefore = readFileSync(cluster.logFile, "utf8").length;
    const t0 = performance.now();
    await cluster.startServer();
    const startSeconds = (performance.now() - t0) / 1000;
    const log = readFileSync(cluster.logFile, "utf8").slice(logBefore);
    const starts = /redo starts at (\S+)/.exec(log);
    const done = /redo done at (\S+) system usage: CPU: user: ([\d.]+) s, system: ([\d.]+) s, elapsed: ([\d.]+) s/.exec(log);
    if (!starts || !done) throw new Error(`no "redo starts/done" lines in the server log:\n${log}`);
    if (pgRange && (pgRange.starts !== starts[1] || pgRange.done !== done[1])) throw new Error(`recovery runs replayed different ranges: ${pgRange.starts}..${pgRange.done}, then ${starts[1]}..${done[1]}`);
    pgRange = { starts: starts[1], done: done[1] };
    pgRuns.push({ seconds: Number(done[4]), user: Number(done[2]), system: Number(done[3]), startSeconds });
  }
  // The same rebuild in key order through a relation scan, as full backups and the compaction
  // pass read many pages: one forward pass over the store, long chains replayed on the workers
  // (parallelReplay) while the scan reads on, up to SCAN_AHEAD of them in flight.
  const sorted = [...pages].sort((a, b) => compareBlocks(a, b));
  const scanPasses: Array<{ seconds: number; mainCpu: number; totalCpu: number }> = [];
  for (let pass = 0; pass < PASSES; pass++) {
    progress(`strata: rebuilding ${touched.size} pages at ${formatLsn(end)} in key order with a relation scan and ${WORKERS} redo workers (pass ${pass + 1} of ${PASSES})`);
    const reader = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: pool });
    const cpu0 = cpuSeconds();
    const t0 = performance.now();
    const scanner = new RelationScanner(reader, end, { parallelReplay: true });
    // pages on the workers, with their place in the scan: it waits for the oldest one once it
    // has read SCAN_AHEAD pages past it
    const inFlight: Array<{ index: number; page: Promise<Buffer> }> = [];
    try {
      for (let index = 0; index < sorted.length; index++) {
        const p = sorted[index];
        while (inFlight.length > 0 && index - inFlight[0].index >= SCAN_AHEAD) await inFlight.shift()!.page;
        const found = await scanner.pageOrImage(p.rel, p.fork as 0, p.block);
        if (found instanceof PendingPage) inFlight.push({ index, page: found.page });
      }
      await Promise.all(inFlight.map((pending) => pending.page));
    } finally {
      await scanner.close();
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = cpuSeconds();
    scanPasses.push({ seconds, mainCpu: cpu1.main - cpu0.main, totalCpu: cpu1.total - cpu0.total });
  }
  const poolStats = { ...pool.stats };
  await pool.close();
  progressDone();

  let pgRecords = 0;
  // the range PostgreSQL replayed: [redo start, end of the record at "redo done at")
  for (const r of readWalSegments(cluster.walDir, parseLsn(pgRange!.starts), end)) {
    pgRecords++;
    if (formatLsn(r.lsn) === pgRange!.done) break;
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];
  const pgBest = pgRuns.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  // the best run is the baseline (as the best later pass is Strata's figure); 10 ms resolution
  const pgReplaySeconds = Math.max(pgBest.seconds, 0.01);
  const pgRate = pgRecords / pgReplaySeconds;
  console.log(`pgbench -i -s ${SCALE} + pgbench -c ${CLIENTS} -T ${SECONDS}: WAL ${fmtMB(walBytes)}, ${records} records from ${formatLsn(imported.startLsn)} to ${formatLsn(end)}, ${touched.size} pages touched, ${fpis} full-page images`);
  console.log(
    `baseline postgres crash recovery (best of ${pgRuns.length}, each after a Strata pass): redo ${pgRange!.starts} .. ${pgRange!.done}, ${pgRecords} records in ${pgReplaySeconds.toFixed(2)} s ` +
      `(CPU user ${pgBest.user.toFixed(2)} s, system ${pgBest.system.toFixed(2)} s) = ${Math.round(pgRate)} records/s, ${(walBytes / MB / pgReplaySeconds).toFixed(1)} MB/s; ` +
      `start until accepting connections ${pgBest.startSeconds.toFixed(2)} s; all runs: ${pgRuns.map((r) => r.seconds.toFixed(2)).join(", ")} s`,
  );
  console.log(`strata ingest (decode + store, not replay): ${ingestSeconds.toFixed(2)} s = ${Math.round(records / ingestSeconds)} records/s, ${(walBytes / MB / ingestSeconds).toFixed(1)} MB/s`);
  const rate = (p: { seconds: number }) => replayedRecords / p.seconds;
  const cpu = (p: { mainCpu: number; totalCpu: number }) => `CPU ${p.totalCpu.toFixed(2)} s (main thread ${p.mainCpu.toFixed(2)} s)`;
  console.log(
    `strata rebuild of ${touched.size} pages at the end LSN on one thread (first run of the redo code in this process): ${here.seconds.toFixed(2)} s, ` +
      `${replayedRecords} distinct records replayed (${redoCalls} block redo calls) = ${Math.round(rate(here))} records/s, ${Math.round(touched.size / here.seconds)} pages/s; ${cpu(here)}`,
  );
  passes.forEach((p, i) =>
    console.log(
      `strata rebuild with ${WORKERS} redo workers, pass ${i + 1}${i === 0 ? " (the workers' first run)" : ""}: ${p.seconds.toFixed(2)} s = ${Math.round(rate(p))} records/s, ` +
        `${Math.round(touched.size / p.seconds)} pages/s; ${cpu(p)}`,
    ),
  );
  scanPasses.forEach((p, i) =>
    console.log(
      `strata rebuild in key order (relation scan, long chains on ${WORKERS} redo workers), pass ${i + 1}: ${p.seconds.toFixed(2)} s = ${Math.round(rate(p))} records/s, ` +
        `${Math.round(touched.size / p.seconds)} pages/s; ${cpu(p)}`,
    ),
  );
  console.log(`redo workers rebuilt ${poolStats.jobs} pages (${poolStats.versions} versions) in all passes, ${poolStats.failed} failed over to the main thread`);
  const first = passes[0];
  const best = passes.length > 1 ? passes.slice(1).reduce((a, b) => (b.seconds < a.seconds ? b : a)) : undefined;
  const bestScan = scanPasses.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const ratio = (p: { seconds: number }) => (rate(p) / pgRate).toFixed(3);
  console.log(
    `ratio strata / postgres replay records/s: one thread ${ratio(here)}x; with redo workers: first pass ${ratio(first)}x` +
      (best ? `, best later pass ${ratio(best)}x` : "") +
      `; in key order (relation scan): best pass ${ratio(bestScan)}x, median ${ratio({ seconds: median(scanPasses.map((p) => p.seconds)) })}x (target >= 0.5x)`,
  );
  // the same, pairing each pass with the recovery run right after it (the machine's state shared)
  const pairRatio = (p: { seconds: number }, pgSeconds: number) => rate(p) / (pgRecords / Math.max(pgSeconds, 0.01));
  console.log(
    `records/s ratio per pair (pass k against the recovery run right after it): ${passes.map((p, i) => `${pairRatio(p, pgRuns[i].seconds).toFixed(3)}x`).join(", ")}` +
      (passes.length > 1 ? `; median of the later passes against the median recovery run: ${pairRatio({ seconds: median(passes.slice(1).map((p) => p.seconds)) }, median(pgRuns.map((r) => r.seconds))).toFixed(3)}x` : ""),
  );
  console.log(
    `equal-work ratio (postgres replay time / strata rebuild time, same WAL range): first pass with workers ${(pgReplaySeconds / first.seconds).toFixed(3)}x; ` +
      `including strata ingest: ${(pgReplaySeconds / (first.seconds + ingestSeconds)).toFixed(3)}x`,
  );
} finally {
  progressDone();
  await store.close().catch(() => {});
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}

async function startProfile(): Promise<() => Promise<unknown>> {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 200 });
  await session.post("Profiler.start");
  return async () => (await session.post("Profiler.stop")).profile;
}
