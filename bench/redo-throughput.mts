// Benchmark: WAL redo throughput. One pgbench WAL chain (pgbench -i -s BENCH_SCALE, then
// pgbench -T BENCH_SECONDS) starting at a checkpoint, replayed by both systems:
//   - baseline: PostgreSQL crash recovery. The primary is imported (BASE_BACKUP, whose checkpoint is
//     the last one: checkpoint_timeout=1h, max_wal_size=4GB), the workload runs, the primary is
//     stopped with SIGQUIT (pg_ctl stop -m immediate) and started again on the same data directory, so
//     it must replay [redo start, end of WAL). Replay time is the "elapsed" of its "redo done at …
//     system usage: …" log line; records/s = records in that range (readWalSegments) / replay time.
//   - Strata (in-process): import + ingest the same WAL into a TimelineStore, then rebuild every page
//     touched in the range at the end LSN (BENCH_CONCURRENCY pages in flight, default 16) with a
//     PageReader whose maxReplay is so high that nothing is materialized: once on the main thread
//     alone, with the rmgrs' redo (RMGRS entries) wrapped to count distinct WAL records replayed,
//     then BENCH_PASSES times (default 2) with long chains on BENCH_WORKERS redo worker threads
//     (walredo/pool.ts; the first of these passes is the workers' first run of the redo code).
//     records/s = distinct WAL records replayed / rebuild time.
// Prints both rates and the ratio (issue target: Strata >= 0.5x PostgreSQL's replay records/s), and
// the equal-work ratio (PostgreSQL replay time / Strata rebuild time for the same WAL range).
//
//   npx tsx bench/redo-throughput.mts
//   BENCH_SCALE=10 BENCH_SECONDS=30 npx tsx bench/redo-throughput.mts
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import os from "node:os";
import path from "node:path";
import {
  formatLsn, importFromPrimary, parseLsn, PageCache, PageReader, readWalSegments, RedoPool, RMGRS, sharedRedoPool, TimelineIngestor, TimelineStore, walFileName, type Lsn, readWalRange } from "@strata/core";
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
const PASSES = Math.max(1, envNumber("BENCH_PASSES", 2));
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
  let t = performance.now();
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
  // reader and no page cache
  const pool = new RedoPool(WORKERS);
  // (started before timing, as a pageserver starts its workers with itself)
  await pool.start();
  const passes: Array<{ seconds: number; mainCpu: number; totalCpu: number }> = [];
  for (let pass = 0; pass < PASSES; pass++) {
    progress(`strata: rebuilding ${touched.size} pages at ${formatLsn(end)} with ${WORKERS} redo workers (pass ${pass + 1} of ${PASSES})`);
    passes.push(await rebuildAll(new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: pool }), pass === 0));
  }
  const poolStats = { ...pool.stats };
  await pool.close();
  progressDone();

  // PostgreSQL: crash recovery of the same data directory over the same WAL
  progress("postgres: crash recovery");
  const logBefore = readFileSync(cluster.logFile, "utf8").length;
  t = performance.now();
  await cluster.startServer();
  const startSeconds = (performance.now() - t) / 1000;
  progressDone();
  const log = readFileSync(cluster.logFile, "utf8").slice(logBefore);
  const starts = /redo starts at (\S+)/.exec(log);
  const done = /redo done at (\S+) system usage: CPU: user: ([\d.]+) s, system: ([\d.]+) s, elapsed: ([\d.]+) s/.exec(log);
  if (!starts || !done) throw new Error(`no "redo starts/done" lines in the server log:\n${log}`);
  const pgReplaySeconds = Number(done[4]);
  let pgRecords = 0;
  // the range PostgreSQL replayed: [redo start, end of the record at "redo done at")
  for (const r of readWalSegments(cluster.walDir, parseLsn(starts[1]), end)) {
    pgRecords++;
    if (formatLsn(r.lsn) === done[1]) break;
  }

  const pgRate = pgRecords / pgReplaySeconds;
  console.log(`pgbench -i -s ${SCALE} + pgbench -c ${CLIENTS} -T ${SECONDS}: WAL ${fmtMB(walBytes)}, ${records} records from ${formatLsn(imported.startLsn)} to ${formatLsn(end)}, ${touched.size} pages touched, ${fpis} full-page images`);
  console.log(
    `baseline postgres crash recovery: redo ${starts[1]} .. ${done[1]}, ${pgRecords} records in ${pgReplaySeconds.toFixed(2)} s ` +
      `(CPU user ${done[2]} s, system ${done[3]} s) = ${Math.round(pgRate)} records/s, ${(walBytes / MB / pgReplaySeconds).toFixed(1)} MB/s; start until accepting connections ${startSeconds.toFixed(2)} s`,
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
  console.log(`redo workers rebuilt ${poolStats.jobs} pages (${poolStats.versions} versions) in all passes, ${poolStats.failed} failed over to the main thread`);
  const first = passes[0];
  const best = passes.length > 1 ? passes.slice(1).reduce((a, b) => (b.seconds < a.seconds ? b : a)) : undefined;
  const ratio = (p: { seconds: number }) => (rate(p) / pgRate).toFixed(3);
  console.log(`ratio strata / postgres replay records/s: one thread ${ratio(here)}x; with redo workers: first pass ${ratio(first)}x` + (best ? `, best later pass ${ratio(best)}x` : "") + " (target >= 0.5x)");
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
