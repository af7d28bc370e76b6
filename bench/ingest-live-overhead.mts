// Benchmark: what following a primary costs the primary, and how far behind the pageserver falls.
// pgbench TPS on a primary with no pageserver attached (baseline) vs. with the pageserver streaming
// from it (same primary, scale and clients), alternating BENCH_ROUNDS times and averaging; prints
// the ratio (target >= 0.85x). After each attached run it times how long until the timeline's lag
// is below 16 MB (target <= 5 s). For context, each round also runs pgbench with pg_receivewal
// streaming from the primary (no decoding, no storage): what any physical replication client
// costs the primary on this machine, the floor for the attached ratio. Before each attached run the
// pageserver catches up on what the primary wrote meanwhile and is left until it is idle: the work
// a catch-up leaves behind (materializing, a compaction pass, LevelDB compactions) is not what
// following a primary costs, and a pageserver attached all along never has it.
//
//   npx tsx bench/ingest-live-overhead.mts                 # 15 s per run, 2 rounds
//   BENCH_SECONDS=60 BENCH_ROUNDS=3 npx tsx bench/ingest-live-overhead.mts
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { formatLsn, parseLsn } from "@strata/core";
import { PgCluster, pgBinary } from "@strata/core/testing";
import { createStrataClient } from "@strata/api/client";
import { makeDataDir, removeDataDir, startDaemon, type Daemon } from "../apps/pageserver/src/test-daemon.ts";
import { envNumber, fmtMB, MB, progress, progressDone, readCpuSeconds, readThreadCpuSeconds, sampleMemory, sleep, waitUntilIdle } from "./lib.mts";

// BENCH_DAEMON_NODE_OPTIONS="--require /abs/path/bench/cpu-profile-preload.cjs" profiles the daemon
const DAEMON_ENV: Record<string, string> = process.env.BENCH_DAEMON_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_DAEMON_NODE_OPTIONS } : {};
const PROFILING = (process.env.BENCH_DAEMON_NODE_OPTIONS ?? "").includes("cpu-profile-preload");
const SECONDS = envNumber("BENCH_SECONDS", 15);
const ROUNDS = envNumber("BENCH_ROUNDS", 2);
const SCALE = envNumber("BENCH_SCALE", 10);
const CLIENTS = envNumber("BENCH_CLIENTS", 4);
const LAG_LIMIT = 16 * MB;
/** longest wait for the pageserver to go idle after catching up, before the attached run */
const SETTLE_TIMEOUT_S = envNumber("BENCH_SETTLE_TIMEOUT_S", 120);

async function flushLsn(cluster: PgCluster): Promise<bigint> {
  const [row] = await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn");
  return parseLsn(row.lsn);
}

async function runPgbench(cluster: PgCluster, label: string, during?: () => Promise<string>): Promise<number> {
  const t0 = Date.now();
  let running = true;
  const ticker = (async () => {
    while (running) {
      await sleep(1000);
      if (!running) break;
      const extra = during ? await during().catch(() => "") : "";
      progress(`${label}: ${((Date.now() - t0) / 1000).toFixed(0)} / ${SECONDS} s${extra}`);
    }
  })();
  try {
    const { stdout } = await cluster.pgbench(["-n", "-c", String(CLIENTS), "-j", "2", "-T", String(SECONDS)]);
    const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout) ?? /tps = ([\d.]+)/.exec(stdout);
    if (!tps) throw new Error(`cannot parse pgbench output:\n${stdout}`);
    return Number(tps[1]);
  } finally {
    running = false;
    await ticker;
    progressDone();
  }
}

/** pgbench while pg_receivewal streams the primary's WAL into a temp directory (stopped by pid after). */
async function runPgbenchWithReceivewal(cluster: PgCluster, label: string): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "strata-bench-receivewal-"));
  const child = spawn(pgBinary("pg_receivewal"), ["-D", dir, "-h", cluster.host, "-p", String(cluster.port), "-U", "postgres", "--no-loop", "--no-password"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    await sleep(500);
    if (child.exitCode !== null) throw new Error(`pg_receivewal exited with ${child.exitCode}: ${stderr}`);
    return await runPgbench(cluster, label);
  } finally {
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

const cluster = await PgCluster.start({
  settings: { max_wal_size: "'4GB'", min_wal_size: "'1GB'", checkpoint_timeout: "'1h'", shared_buffers: "'256MB'" },
});
const dataDir = makeDataDir();
let daemon: Daemon | undefined;
try {
  daemon = await startDaemon(dataDir, DAEMON_ENV);
  let api = createStrataClient(daemon.apiUrl, "bench");
  const tenant = await api.tenants.create.mutate({ fromPrimary: cluster.connectionString() });
  const ids = { tenantId: tenant.id, timelineId: tenant.timelines[0].id };
  await daemon.stop();
  daemon = undefined;
  progress(`pgbench -i -s ${SCALE}`);
  await cluster.pgbench(["-i", "-s", String(SCALE), "-q"]);
  progressDone();

  const unattached: number[] = [];
  const receivewal: number[] = [];
  const attached: number[] = [];
  const drains: Array<{ catchupSeconds: number; settle: { seconds: number; cpuSeconds: number; idle: boolean }; cpuSeconds: number; threadSeconds: ReadonlyArray<readonly [string, number]>; walBytes: number; apiSeconds: number; trueSeconds: number; lagAtStop: number; trueLagAtStop: number; maxLagDuring: number; peakRss: number }> = [];
  for (let round = 1; round <= ROUNDS; round++) {
    // baseline: nothing follows the primary (the pageserver is stopped; its slot just keeps WAL)
    unattached.push(await runPgbench(cluster, `round ${round}/${ROUNDS} unattached`));
    await cluster.sql("CHECKPOINT");
    receivewal.push(await runPgbenchWithReceivewal(cluster, `round ${round}/${ROUNDS} pg_receivewal attached`));
    await cluster.sql("CHECKPOINT");

    // attached: the pageserver streams from the primary, caught up before pgbench starts
    daemon = await startDaemon(dataDir, DAEMON_ENV);
    api = createStrataClient(daemon.apiUrl, "bench");
    const memory = sampleMemory(daemon.process.pid!, 200);
    const catchupTarget = await flushLsn(cluster);
    progress(`round ${round}/${ROUNDS}: pageserver catching up to ${formatLsn(catchupTarget)}`);
    const c0 = performance.now();
    await api.timelines.waitLsn.mutate({ ...ids, lsn: formatLsn(catchupTarget), timeoutSeconds: 1800 });
    const catchupSeconds = (performance.now() - c0) / 1000;
    progress(`round ${round}/${ROUNDS}: caught up in ${catchupSeconds.toFixed(1)} s; waiting for the pageserver to go idle`);
    // The catch-up leaves work behind (pages whose chains grew long are materialized only now and
    // then while a backlog streams in; a compaction pass once WAL is quiet). A pageserver that
    // follows its primary all along has no such debt: the attached run starts once it is done.
    const settle = await waitUntilIdle(daemon.process.pid!, { share: PROFILING ? 0.3 : 0.1, quietMs: 5000, timeoutMs: SETTLE_TIMEOUT_S * 1000 });
    progressDone();
    let maxLagDuring = 0;
    const sampleLag = async () => {
      const [info, primary] = await Promise.all([api.timelines.get.query(ids), flushLsn(cluster)]);
      const trueLag = Number(primary - parseLsn(info.lastRecordLsn));
      maxLagDuring = Math.max(maxLagDuring, trueLag);
      return `, lag ${fmtMB(trueLag)} (API lagBytes ${fmtMB(info.lagBytes ?? 0)}), RSS ${fmtMB(memory.current)}`;
    };
    const runStartLsn = await flushLsn(cluster);
    const cpuBefore = readCpuSeconds(daemon.process.pid!) ?? 0;
    const threadsBefore = readThreadCpuSeconds(daemon.process.pid!);
    // with the profiling preload: the attached run gets a profile of its own (strata-<pid>-2)
    if (PROFILING) daemon.process.kill("SIGUSR2");
    attached.push(await runPgbench(cluster, `round ${round}/${ROUNDS} attached`, sampleLag));
    if (PROFILING) daemon.process.kill("SIGUSR2");
    const cpuSeconds = (readCpuSeconds(daemon.process.pid!) ?? 0) - cpuBefore;
    const threadSeconds = [...readThreadCpuSeconds(daemon.process.pid!)].map(([name, seconds]) => [name, seconds - (threadsBefore.get(name) ?? 0)] as const).filter(([, s]) => s >= 0.05);

    // lag after the load stops: (1) the API's lagBytes, (2) primary flush LSN at stop - stored LSN
    const stopLsn = await flushLsn(cluster);
    const walBytes = Number(stopLsn - runStartLsn);
    const d0 = performance.now();
    let apiSeconds = -1;
    let trueSeconds = -1;
    let lagAtStop = -1;
    let trueLagAtStop = -1;
    while (apiSeconds < 0 || trueSeconds < 0) {
      const info = await api.timelines.get.query(ids);
      const elapsed = (performance.now() - d0) / 1000;
      const trueLag = Number(stopLsn > parseLsn(info.lastRecordLsn) ? stopLsn - parseLsn(info.lastRecordLsn) : 0n);
      if (lagAtStop < 0) {
        lagAtStop = info.lagBytes ?? -1;
        trueLagAtStop = trueLag;
      }
      if (apiSeconds < 0 && info.lagBytes !== null && info.lagBytes < LAG_LIMIT) apiSeconds = elapsed;
      if (trueSeconds < 0 && trueLag < LAG_LIMIT) trueSeconds = elapsed;
      progress(`round ${round}/${ROUNDS}: draining, lag ${fmtMB(trueLag)} (API lagBytes ${fmtMB(info.lagBytes ?? 0)}) after ${elapsed.toFixed(1)} s`);
      if (elapsed > 1800) throw new Error("lag did not drop below 16 MB within 30 minutes");
      await sleep(100);
    }
    progressDone();
    const mem = memory.stop();
    drains.push({ catchupSeconds, settle, cpuSeconds, threadSeconds, walBytes, apiSeconds, trueSeconds, lagAtStop, trueLagAtStop, maxLagDuring, peakRss: mem.peakRss });
    await daemon.stop();
    daemon = undefined;
    await cluster.sql("CHECKPOINT");
  }

  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`pgbench -c ${CLIENTS} -j 2 -T ${SECONDS}, scale ${SCALE}, ${ROUNDS} round(s) alternating unattached/attached`);
  for (let i = 0; i < ROUNDS; i++) {
    const d = drains[i];
    console.log(
      `round ${i + 1}: unattached ${unattached[i].toFixed(1)} tps, pg_receivewal attached ${receivewal[i].toFixed(1)} tps (${(receivewal[i] / unattached[i]).toFixed(3)}x), ` +
        `pageserver attached ${attached[i].toFixed(1)} tps (${(attached[i] / unattached[i]).toFixed(3)}x); ` +
        `before it: catch-up ${d.catchupSeconds.toFixed(1)} s, then ${d.settle.seconds.toFixed(1)} s and ${d.settle.cpuSeconds.toFixed(1)} s of CPU until idle${d.settle.idle ? "" : " (still busy: timed out)"}; ` +
        `lag at stop ${fmtMB(d.trueLagAtStop)} (API lagBytes ${fmtMB(d.lagAtStop)}), max lag during run ${fmtMB(d.maxLagDuring)}; ` +
        `lag < 16 MB after ${d.trueSeconds.toFixed(2)} s (API lagBytes: ${d.apiSeconds.toFixed(2)} s); pageserver peak RSS ${fmtMB(d.peakRss)}; ` +
        `pageserver CPU during the run ${d.cpuSeconds.toFixed(1)} s for ${fmtMB(d.walBytes)} of WAL (${((d.cpuSeconds / SECONDS) * 100).toFixed(0)}% of a core, ${((d.cpuSeconds * 1000) / (d.walBytes / MB)).toFixed(1)} ms per MB; by thread: ${d.threadSeconds.map(([name, s]) => `${name} ${s.toFixed(1)} s`).join(", ")})`,
    );
  }
  console.log(`baseline (no pageserver): ${avg(unattached).toFixed(1)} tps`);
  console.log(`with pageserver attached: ${avg(attached).toFixed(1)} tps`);
  console.log(`ratio attached/baseline:  ${(avg(attached) / avg(unattached)).toFixed(3)}x (target >= 0.85x)`);
  console.log(`context: pg_receivewal attached/baseline ${(avg(receivewal) / avg(unattached)).toFixed(3)}x (streaming alone, ${avg(receivewal).toFixed(1)} tps)`);
  const cpu = drains.reduce((a, d) => a + d.cpuSeconds, 0);
  const wal = drains.reduce((a, d) => a + d.walBytes, 0);
  console.log(`pageserver CPU while attached: ${((cpu / (SECONDS * ROUNDS)) * 100).toFixed(0)}% of one core, ${((cpu * 1000) / (wal / MB)).toFixed(1)} ms per MB of WAL`);
  console.log(
    `time to lag < 16 MB after pgbench stops: ${avg(drains.map((d) => d.trueSeconds)).toFixed(2)} s average, ${Math.max(...drains.map((d) => d.trueSeconds)).toFixed(2)} s worst ` +
      `(by API lagBytes: ${avg(drains.map((d) => d.apiSeconds)).toFixed(2)} s average) (target <= 5 s)`,
  );
} finally {
  progressDone();
  if (daemon) await daemon.stop().catch(() => {});
  removeDataDir(dataDir);
  await cluster.stop();
}
