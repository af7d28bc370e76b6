// Benchmark: catching up on a WAL backlog. A primary accumulates BENCH_WAL_MB of pgbench WAL while
// the pageserver is stopped (its slot keeps the WAL); then we time
//   (a) baseline: pg_receivewal streaming the same backlog from a slot reserved at the same point,
//   (b) Strata: restart the pageserver and wait (timelines.waitLsn) until it has stored the backlog,
// and print MB/s of both, the ratio (target >= 0.5x) and the pageserver's peak RSS (target < 512 MB).
//
//   npx tsx bench/ingest-catchup.mts            # BENCH_WAL_MB=1024 by default
//   BENCH_WAL_MB=256 npx tsx bench/ingest-catchup.mts
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { formatLsn, parseLsn } from "@strata/core";
import { PgCluster, pgBinary } from "@strata/core/testing";
import { createStrataClient } from "@strata/api/client";
import { makeDataDir, removeDataDir, startDaemon, type Daemon } from "../apps/pageserver/src/test-daemon.ts";
import { envNumber, fmtMB, MB, progress, progressDone, readCpuSeconds, readMemory, readThreadCpuSeconds, sampleMemory, sleep, waitUntilIdle } from "./lib.mts";

const WAL_MB = envNumber("BENCH_WAL_MB", 1024);
const SCALE = envNumber("BENCH_SCALE", 10);
const CLIENTS = envNumber("BENCH_CLIENTS", 4);
const SEGMENT = 16n * 1024n * 1024n;
const BASELINE_SLOT = "bench_backlog";
// BENCH_DAEMON_NODE_OPTIONS="--require /abs/path/bench/cpu-profile-preload.cjs" profiles the
// catch-up daemon: strata-<pid>-1.cpuprofile is the catch-up, strata-<pid>.cpuprofile what follows
const CATCHUP_ENV: Record<string, string> = process.env.BENCH_DAEMON_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_DAEMON_NODE_OPTIONS } : {};
const PROFILING = (process.env.BENCH_DAEMON_NODE_OPTIONS ?? "").includes("cpu-profile-preload");

async function currentLsn(cluster: PgCluster, fn = "pg_current_wal_lsn"): Promise<bigint> {
  const [row] = await cluster.sql<{ lsn: string }>(`SELECT ${fn}()::text AS lsn`);
  return parseLsn(row.lsn);
}

// pg_receivewal stops only once it has received WAL strictly beyond --endpos (stop_streaming() tests
// endpos < xlogpos), so with nothing written after the target it would wait for the next WAL
// (bgwriter's running_xacts, ~15 s later). Passing target - 1 makes it stop when the target arrives.
function runPgReceivewal(cluster: PgCluster, dir: string, target: bigint): Promise<{ code: number | null; stderr: string }> {
  const endpos = target - 1n;
  const child = spawn(
    pgBinary("pg_receivewal"),
    ["-D", dir, "-h", cluster.host, "-p", String(cluster.port), "-U", "postgres", `--slot=${BASELINE_SLOT}`, `--endpos=${formatLsn(endpos)}`, "--no-loop", "--no-password"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stderr })));
}

const cluster = await PgCluster.start({
  settings: {
    max_wal_size: "'4GB'",
    min_wal_size: "'1GB'",
    wal_keep_size: "'0'",
    max_slot_wal_keep_size: "-1",
    checkpoint_timeout: "'1h'",
    shared_buffers: "'256MB'",
    // the backlog is generated faster (the same records; commits only stop waiting for their flush)
    synchronous_commit: "off",
  },
});
const dataDir = makeDataDir();
const receiveDir = mkdtempSync(path.join(os.tmpdir(), "strata-bench-receivewal-"));
let daemon: Daemon | undefined;
try {
  // reserve WAL for the baseline from before the workload
  await cluster.sql(`SELECT pg_create_physical_replication_slot('${BASELINE_SLOT}', true)`);

  // the tenant follows the (still empty) primary, then its pageserver goes away
  daemon = await startDaemon(dataDir);
  const api = createStrataClient(daemon.apiUrl, "bench");
  const tenant = await api.tenants.create.mutate({ fromPrimary: cluster.connectionString() });
  const tenantId = tenant.id;
  const timelineId = tenant.timelines[0].id;
  const before = await api.timelines.get.query({ tenantId, timelineId });
  await daemon.stop();
  daemon = undefined;
  const strataStart = parseLsn(before.lastRecordLsn);
  const [slot] = await cluster.sql<{ restart_lsn: string }>(`SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = '${BASELINE_SLOT}'`);
  const baselineStart = (parseLsn(slot.restart_lsn) / SEGMENT) * SEGMENT; // pg_receivewal streams whole segments

  // the backlog: pgbench -i, then pgbench runs until WAL_MB of WAL were written
  const workloadStart = Date.now();
  progress(`workload: pgbench -i -s ${SCALE}`);
  await cluster.pgbench(["-i", "-s", String(SCALE), "-q"]);
  for (;;) {
    const written = Number((await currentLsn(cluster)) - strataStart);
    progress(`workload: ${fmtMB(written)} / ${WAL_MB} MB of WAL (${((Date.now() - workloadStart) / 1000).toFixed(0)} s)`);
    if (written >= WAL_MB * MB) break;
    await cluster.pgbench(["-n", "-c", String(CLIENTS), "-j", "2", "-T", "5"]);
  }
  progressDone();
  const target = await currentLsn(cluster, "pg_current_wal_flush_lsn");
  const workloadSeconds = (Date.now() - workloadStart) / 1000;
  console.log(`backlog: ${fmtMB(Number(target - strataStart))} of WAL (${formatLsn(strataStart)} .. ${formatLsn(target)}), generated in ${workloadSeconds.toFixed(1)} s`);

  // (a) baseline: pg_receivewal from the slot reserved before the workload
  progress(`baseline: pg_receivewal --endpos=${formatLsn(target)}`);
  const b0 = performance.now();
  const received = await runPgReceivewal(cluster, receiveDir, target);
  const baselineSeconds = (performance.now() - b0) / 1000;
  progressDone();
  if (received.code !== 0) throw new Error(`pg_receivewal exited with ${received.code}: ${received.stderr}`);
  const baselineBytes = Number(target - baselineStart);
  const baselineRate = baselineBytes / MB / baselineSeconds;
  rmSync(receiveDir, { recursive: true, force: true });

  // (b) Strata: restart the pageserver, time until the backlog is durably stored
  const s0 = performance.now();
  daemon = await startDaemon(dataDir, CATCHUP_ENV);
  const readySeconds = (performance.now() - s0) / 1000;
  const samplingSince = Date.now();
  const memory = sampleMemory(daemon.process.pid!, 200);
  const api2 = createStrataClient(daemon.apiUrl, "bench");
  let done = false;
  // the pageserver's V8 heap and Buffers, from its /metrics at each report: which part of RSS grows
  const gauge = (metrics: string, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(metrics)?.[1] ?? NaN);
  const jsPeak = { heap: 0, external: 0 };
  const reporter = (async () => {
    let prev = { t: performance.now(), lsn: strataStart };
    while (!done) {
      await sleep(2000);
      if (done) break;
      const info = await api2.timelines.get.query({ tenantId, timelineId }).catch(() => undefined);
      if (!info) continue;
      const metrics = await fetch(`${daemon!.apiUrl}/metrics`).then((r) => r.text()).catch(() => "");
      const heap = gauge(metrics, "strata_nodejs_heap_size_total_bytes");
      const external = gauge(metrics, "strata_nodejs_external_memory_bytes");
      if (heap > jsPeak.heap) jsPeak.heap = heap;
      if (external > jsPeak.external) jsPeak.external = external;
      const lsn = parseLsn(info.lastRecordLsn);
      const now = performance.now();
      const rate = Number(lsn - prev.lsn) / MB / ((now - prev.t) / 1000);
      prev = { t: now, lsn };
      progress(
        `strata: ${fmtMB(Number(lsn - strataStart))} / ${fmtMB(Number(target - strataStart))} ingested, ${rate.toFixed(1)} MB/s now, ` +
          `RSS ${fmtMB(memory.current)} (peak ${fmtMB(memory.peak)}; V8 heap ${fmtMB(heap)}, Buffers ${fmtMB(external)}), walreceiver ${info.walreceiver?.state}`,
      );
    }
  })();
  try {
    for (;;) {
      try {
        await api2.timelines.waitLsn.mutate({ tenantId, timelineId, lsn: formatLsn(target), timeoutSeconds: 600 });
        break;
      } catch (err) {
        const info = await api2.timelines.get.query({ tenantId, timelineId });
        if (info.walreceiver?.state === "failed") throw new Error(`walreceiver failed: ${info.walreceiver.lastError}`);
        if (performance.now() - s0 > 3 * 3600_000) throw err;
      }
    }
  } finally {
    done = true;
  }
  const strataSeconds = (performance.now() - s0) / 1000;
  const caughtUpMs = Date.now() - samplingSince;
  // where the CPU went (main = the JavaScript thread; V8's helpers, libuv's pool and LevelDB's
  // compaction thread keep node's name with their thread id)
  const daemonCpu = readCpuSeconds(daemon.process.pid!) ?? 0;
  const threadCpu = [...readThreadCpuSeconds(daemon.process.pid!)].filter(([, seconds]) => seconds >= 0.05);
  // where the memory is at the end of the catch-up (V8 heap vs Buffers vs the rest: LevelDB, malloc)
  const metrics = await (await fetch(`${daemon.apiUrl}/metrics`)).text();
  const memoryBreakdown =
    `heap used ${fmtMB(gauge(metrics, "strata_nodejs_heap_size_used_bytes"))} of ${fmtMB(gauge(metrics, "strata_nodejs_heap_size_total_bytes"))}, ` +
    `external ${fmtMB(gauge(metrics, "strata_nodejs_external_memory_bytes"))}, RSS ${fmtMB(gauge(metrics, "strata_process_resident_memory_bytes"))}; ` +
    `largest seen every 2 s: V8 heap ${fmtMB(jsPeak.heap)}, Buffers ${fmtMB(jsPeak.external)}`;
  await reporter;
  progressDone();
  // what the catch-up leaves behind once the backlog is durable (materializing pages whose chains
  // grew long, a compaction pass, LevelDB's compactions): not part of the rate, reported here
  const peakAtCaughtUp = memory.peak;
  if (PROFILING) daemon.process.kill("SIGUSR2");
  progress("strata: caught up; waiting for the pageserver to go idle");
  // (quiet for longer than the compactor's least interval between passes, 30 s: a pass that must
  // wait for it is still counted)
  // what holds the memory at the peak meanwhile: RSS split, and the V8 heap and Buffers from /metrics
  let settling = true;
  const settlePeak = { rss: 0, anon: 0, file: 0, heap: 0, external: 0 };
  const settleSampler = (async () => {
    while (settling) {
      const m = readMemory(daemon!.process.pid!);
      const metrics = await fetch(`${daemon!.apiUrl}/metrics`).then((r) => r.text()).catch(() => "");
      if (m && m.rss > settlePeak.rss) {
        Object.assign(settlePeak, { rss: m.rss, anon: m.anon, file: m.file, heap: gauge(metrics, "strata_nodejs_heap_size_total_bytes"), external: gauge(metrics, "strata_nodejs_external_memory_bytes") });
      }
      await sleep(500);
    }
  })();
  const settle = await waitUntilIdle(daemon.process.pid!, { share: PROFILING ? 0.3 : 0.1, quietMs: 35_000, timeoutMs: envNumber("BENCH_SETTLE_TIMEOUT_S", 300) * 1000 });
  settling = false;
  await settleSampler;
  const settleThreads = [...readThreadCpuSeconds(daemon.process.pid!)].map(([name, seconds]) => [name, seconds - (threadCpu.find(([n]) => n === name)?.[1] ?? 0)] as const).filter(([, seconds]) => seconds >= 0.05);
  progressDone();
  const peakAfter = memory.peak;
  const mem = memory.stop();
  const strataBytes = Number(target - strataStart);
  const strataRate = strataBytes / MB / strataSeconds;
  const streamRate = strataBytes / MB / (strataSeconds - readySeconds);
  const info = await api2.timelines.get.query({ tenantId, timelineId });

  console.log(`baseline pg_receivewal: ${fmtMB(baselineBytes)} in ${baselineSeconds.toFixed(2)} s = ${baselineRate.toFixed(1)} MB/s`);
  console.log(
    `strata catch-up:        ${fmtMB(strataBytes)} in ${strataSeconds.toFixed(2)} s = ${strataRate.toFixed(1)} MB/s ` +
      `(incl. ${readySeconds.toFixed(2)} s daemon start; ${streamRate.toFixed(1)} MB/s after ready; ${info.walreceiver?.records ?? "?"} records)`,
  );
  console.log(`ratio strata/baseline:  ${(strataRate / baselineRate).toFixed(3)}x (target >= 0.5x)`);
  console.log(
    `pageserver CPU from start to caught up: ${daemonCpu.toFixed(1)} s (${((daemonCpu / strataSeconds) * 100).toFixed(0)}% of one core; by thread: ` +
      `${threadCpu.map(([name, seconds]) => `${name} ${seconds.toFixed(1)} s`).join(", ")})`,
  );
  console.log(
    `after it: ${settle.seconds.toFixed(1)} s and ${settle.cpuSeconds.toFixed(1)} s of CPU until idle${settle.idle ? "" : " (still busy: timed out)"} ` +
      `(by thread: ${settleThreads.map(([name, seconds]) => `${name} ${seconds.toFixed(1)} s`).join(", ")}); peak RSS meanwhile ${fmtMB(peakAfter)} ` +
      `(sampled every 0.5 s: ${fmtMB(settlePeak.rss)} = anonymous ${fmtMB(settlePeak.anon)} + file ${fmtMB(settlePeak.file)}; V8 heap ${fmtMB(settlePeak.heap)}, Buffers ${fmtMB(settlePeak.external)})`,
  );
  console.log(`pageserver peak RSS:    ${fmtMB(peakAtCaughtUp)} during the catch-up, sampled every 200 ms, VmHWM at the end ${fmtMB(mem.hwm)} (target < 512 MB)`);
  console.log(`  of which file pages at the highest RSS sampled (catch-up or after) ${fmtMB(mem.fileAtPeak)} (LevelDB's mapped tables, node itself); peak anonymous ${fmtMB(mem.peakAnon)}`);
  console.log(`pageserver memory at the end: ${memoryBreakdown}`);
  // (the sampler ran on through the settle wait: the thirds are of the catch-up's samples only)
  const catchUpSamples = mem.samples.filter((sample) => sample.t <= caughtUpMs);
  const third = Math.floor(catchUpSamples.length / 3);
  if (third > 0) {
    const avg = (s: typeof mem.samples) => s.reduce((a, x) => a + x.rss, 0) / s.length;
    console.log(
      `pageserver RSS by third of catch-up: ${fmtMB(avg(catchUpSamples.slice(0, third)))}, ${fmtMB(avg(catchUpSamples.slice(third, 2 * third)))}, ${fmtMB(avg(catchUpSamples.slice(2 * third)))} (average)`,
    );
  }
} finally {
  progressDone();
  if (daemon) await daemon.stop().catch(() => {});
  removeDataDir(dataDir);
  rmSync(receiveDir, { recursive: true, force: true });
  await cluster.stop();
}
