// Benchmark: WAL redo throughput. One pgbench WAL chain (pgbench -i -s BENCH_SCALE, then
// pgbench -T BENCH_SECONDS) starting at a checkpoint, replayed by both systems:
//   - baseline: PostgreSQL crash recovery. The primary is imported (BASE_BACKUP, whose checkpoint is
//     the last one: checkpoint_timeout=1h, max_wal_size=4GB), the workload runs, the primary is
//     stopped with SIGQUIT (pg_ctl stop -m immediate) and started again on the same data directory, so
//     it must replay [redo start, end of WAL). Replay time is the "elapsed" of its "redo done at …
//     system usage: …" log line; records/s = records in that range (readWalSegments) / replay time.
//   - Strata (in-process): import + ingest the same WAL into a TimelineStore, then rebuild every page
//     touched in the range at the end LSN (BENCH_CONCURRENCY pages in flight, default 4) with a
//     PageReader whose maxReplay is so high that nothing is materialized, BENCH_PASSES times (default
//     2: the first pass is the redo code's first run in this process, later ones show a warmed-up
//     pageserver). Replay = calls of the rmgrs' redo (RMGRS entries wrapped); records/s = distinct
//     WAL records replayed / rebuild time.
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
  formatLsn, importFromPrimary, parseLsn, PageCache, PageReader, readWalSegments, RMGRS, TimelineIngestor, TimelineStore, walFileName, type Lsn, readWalRange } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { envNumber, fmtMB, MB, progress, progressDone } from "./lib.mts";

const SCALE = envNumber("BENCH_SCALE", 2);
const SECONDS = envNumber("BENCH_SECONDS", 15);
const CLIENTS = envNumber("BENCH_CLIENTS", 4);
const CONCURRENCY = envNumber("BENCH_CONCURRENCY", 4);
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

  let redoCalls = 0;
  // record LSNs are deduplicated after the timed rebuild (a Set of bigints inside it costs as much as redo)
  const replayedLsns: bigint[] = [];
  for (const rmgr of RMGRS) {
    if (!rmgr) continue;
    const redo = rmgr.redo;
    (rmgr as { redo: typeof redo }).redo = (page, record, block) => {
      redoCalls++;
      replayedLsns.push(record.lsn);
      return redo(page, record, block);
    };
  }
  // Every pass rebuilds every page with a fresh reader and no page cache. The first pass runs
  // the redo code for the first time in this process (PostgreSQL's recovery is a fresh process
  // too); later passes show the rate of a pageserver that has been running for a while.
  const passes: Array<{ seconds: number; redoCalls: number; records: number }> = [];
  for (let pass = 0; pass < PASSES; pass++) {
    redoCalls = 0;
    replayedLsns.length = 0;
    const reader = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0) });
    progress(`strata: rebuilding ${touched.size} pages at ${formatLsn(end)} (pass ${pass + 1} of ${PASSES})`);
    let errors = 0;
    let firstError = "";
    // BENCH_PROFILE=file.cpuprofile records a CPU profile of the first pass's rebuild alone
    const profiler = pass === 0 && process.env.BENCH_PROFILE ? await startProfile() : undefined;
    t = performance.now();
    // a few pages in flight, so LevelDB reads overlap replay (PostgreSQL 15 prefetches during recovery too)
    const pages = [...touched.values()];
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
    const seconds = (performance.now() - t) / 1000;
    if (profiler) writeFileSync(process.env.BENCH_PROFILE!, JSON.stringify(await profiler()));
    if (errors) throw new Error(`${errors} pages failed to rebuild (first: ${firstError})`);
    passes.push({ seconds, redoCalls, records: new Set(replayedLsns).size });
  }
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
  passes.forEach((p, i) =>
    console.log(
      `strata rebuild of ${touched.size} pages at the end LSN, pass ${i + 1}${i === 0 ? " (first run of the redo code in this process)" : ""}: ${p.seconds.toFixed(2)} s, ` +
        `${p.records} distinct records replayed (${p.redoCalls} block redo calls) = ${Math.round(p.records / p.seconds)} records/s, ` +
        `${Math.round(p.redoCalls / p.seconds)} block redos/s, ${Math.round(touched.size / p.seconds)} pages/s`,
    ),
  );
  const first = passes[0];
  const best = passes.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const ratio = (p: { seconds: number; records: number }) => (p.records / p.seconds / pgRate).toFixed(3);
  console.log(
    `ratio strata / postgres replay records/s: first pass ${ratio(first)}x` + (passes.length > 1 ? `, best later pass ${ratio(best === first ? passes[1] : best)}x` : "") + " (target >= 0.5x)",
  );
  console.log(
    `equal-work ratio (postgres replay time / strata rebuild time, same WAL range): first pass ${(pgReplaySeconds / first.seconds).toFixed(3)}x; ` +
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
