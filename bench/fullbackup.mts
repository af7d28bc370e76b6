// Benchmark: full backups and endpoint start. A pageserver follows a pgbench primary
// (pgbench -i -s BENCH_SCALE, imported, then pgbench -T BENCH_PGBENCH_SECONDS streamed in; with
// BENCH_LOAD=stream the pgbench -i is streamed in too); then:
//   (1) MB/s of `fullbackup` through the page service (PageServiceClient.fullbackup, the tar is
//       discarded like `> /dev/null`) vs `pg_basebackup -D - -Ft -X none -c fast > /dev/null` of
//       the same database from the primary (target >= 0.8x pg_basebackup). For reference, also
//       `pg_basebackup -D dir -Ft -X none --no-sync` (the tar written to a file, as usually run);
//   (2) endpoint start on a branch at the latest LSN (API round trip of endpoints.start, then until
//       a query answers) vs `pg_basebackup -Fp -X stream -c fast --no-sync` + `pg_ctl start -w` of
//       the same database (then until a query answers). Ratio = baseline time / Strata time.
// Each measurement runs BENCH_ROUNDS times alternating baseline/Strata; the best round is printed,
// the median of the later rounds, and the first round's ratio (the pageserver's first backup also
// warms up its JIT).
//
//   npx tsx bench/fullbackup.mts
//   BENCH_SCALE=60 npx tsx bench/fullbackup.mts      # ~1 GB
import { spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { PageServiceClient } from "@strata/core";
import { PgCluster, freePort, makePostgresTempDir, pgBinary, runAsPostgres } from "@strata/core/testing";
import { createStrataClient } from "@strata/api/client";
import { makeDataDir, removeDataDir, startDaemon, type Daemon } from "../apps/pageserver/src/test-daemon.ts";
import { envNumber, fmtMB, MB, progress, progressDone, readCpuSeconds } from "./lib.mts";

const SCALE = envNumber("BENCH_SCALE", 10);
const PGBENCH_SECONDS = envNumber("BENCH_PGBENCH_SECONDS", 5);
const ROUNDS = envNumber("BENCH_ROUNDS", 5);
/** full backups measured again once the pageserver's compaction pass of the timeline is done */
const SETTLED_ROUNDS = process.env.BENCH_SETTLED_ROUNDS === "0" ? 0 : envNumber("BENCH_SETTLED_ROUNDS", 3);
/** BENCH_LOAD=stream: the tenant follows the primary before `pgbench -i`, which it receives as WAL (default: imported after it) */
const LOAD = process.env.BENCH_LOAD ?? "import";
if (LOAD !== "import" && LOAD !== "stream") throw new Error(`BENCH_LOAD is import or stream, not ${LOAD}`);
const STREAMED_LOAD = LOAD === "stream";
// BENCH_ENDPOINTS=0 skips part (2)
const ENDPOINTS = process.env.BENCH_ENDPOINTS !== "0";

function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}

async function untilQueryAnswers(port: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
    try {
      await client.connect();
      await client.query("SELECT 1");
      await client.end();
      return;
    } catch (err) {
      await client.end().catch(() => {});
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** `pg_basebackup -D - -Ft -X none > /dev/null` of the primary. */
async function basebackupToDevNull(): Promise<void> {
  const devNull = openSync("/dev/null", "w");
  try {
    const child = spawn(pgBinary("pg_basebackup"), ["-D", "-", "-Ft", "-X", "none", "-c", "fast", "-h", cluster.host, "-p", String(cluster.port), "-U", "postgres"], {
      stdio: ["ignore", devNull, "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk));
    await new Promise<void>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code) => (code === 0 ? resolve() : reject(new Error(`pg_basebackup -D - exited with ${code}: ${stderr}`))));
    });
  } finally {
    closeSync(devNull);
  }
}

const cluster = await PgCluster.start({ settings: { max_wal_size: "'4GB'", checkpoint_timeout: "'1h'", shared_buffers: "'256MB'" } });
const dataDir = makeDataDir();
let daemon: Daemon | undefined;
const tempDirs: string[] = [];
let basePid = 0;
let endpointUp: (() => Promise<unknown>) | undefined;
try {
  if (!STREAMED_LOAD) {
    progress(`pgbench -i -s ${SCALE}`);
    await cluster.pgbench(["-i", "-s", String(SCALE), "-q"]);
  }
  // BENCH_DAEMON_NODE_OPTIONS="--require ./bench/cpu-profile-preload.cjs" profiles the daemon
  daemon = await startDaemon(dataDir, process.env.BENCH_DAEMON_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_DAEMON_NODE_OPTIONS } : {});
  const api = createStrataClient(daemon.apiUrl, "bench");
  progress("creating the tenant from the primary");
  const tenant = await api.tenants.create.mutate({ fromPrimary: cluster.connectionString() });
  const ids = { tenantId: tenant.id, timelineId: tenant.timelines[0].id };
  if (STREAMED_LOAD) {
    // the bulk load reaches the pageserver as WAL (multi-insert records, index builds' pages,
    // VACUUM's freezing), as it does for a tenant whose data was loaded through an endpoint
    progress(`pgbench -i -s ${SCALE} while the pageserver follows`);
    await cluster.pgbench(["-i", "-s", String(SCALE), "-q"]);
  }
  progress(`pgbench -T ${PGBENCH_SECONDS} while the pageserver follows`);
  await cluster.pgbench(["-n", "-c", "4", "-j", "2", "-T", String(PGBENCH_SECONDS)]);
  const [{ lsn, size }] = await cluster.sql<{ lsn: string; size: string }>(
    "SELECT pg_current_wal_flush_lsn()::text AS lsn, (SELECT sum(pg_database_size(oid)) FROM pg_database)::text AS size",
  );
  await api.timelines.waitLsn.mutate({ ...ids, lsn, timeoutSeconds: 600 });
  // rounds and the pageserver's compaction pass are timed from here
  const loadDone = Date.now();
  progressDone();
  console.error(`databases: ${fmtMB(Number(size))}; timeline at ${lsn}`);

  const base: Array<{ s: number; bytes: number }> = [];
  const baseToDisk: Array<{ s: number; bytes: number }> = [];
  const strata: Array<{ s: number; bytes: number; daemonCpu: number; clientCpu: number; at: number }> = [];
  const strataBackup = async () => {
    const ps = await PageServiceClient.connect("127.0.0.1", daemon!.pgPort);
    let bytes = 0;
    // CPU of both ends: on 2 cores the daemon and this client compete with each other
    const daemonCpu0 = readCpuSeconds(daemon!.process.pid!) ?? 0;
    const clientCpu0 = process.cpuUsage();
    const at = (Date.now() - loadDone) / 1000;
    const t = performance.now();
    await ps.fullbackup(ids.tenantId, ids.timelineId, undefined, (chunk) => {
      bytes += chunk.length;
    });
    const clientCpu = process.cpuUsage(clientCpu0);
    ps.close();
    return { s: (performance.now() - t) / 1000, bytes, daemonCpu: (readCpuSeconds(daemon!.process.pid!) ?? 0) - daemonCpu0, clientCpu: (clientCpu.user + clientCpu.system) / 1e6, at };
  };
  for (let round = 1; round <= ROUNDS; round++) {
    const dir = makePostgresTempDir("strata-bench-basebackup-");
    tempDirs.push(dir);
    progress(`round ${round}/${ROUNDS}: pg_basebackup -D dir -Ft -X none (tar to a file)`);
    let t = performance.now();
    await cluster.run("pg_basebackup", ["-D", path.join(dir, "tar"), "-Ft", "-X", "none", "-c", "fast", "--no-sync", "-h", cluster.host, "-p", String(cluster.port), "-U", "postgres"]);
    const tarBytes = dirBytes(path.join(dir, "tar"));
    baseToDisk.push({ s: (performance.now() - t) / 1000, bytes: tarBytes });
    rmSync(dir, { recursive: true, force: true });

    progress(`round ${round}/${ROUNDS}: pg_basebackup -D - -Ft -X none > /dev/null`);
    t = performance.now();
    await basebackupToDevNull();
    // the same archive as the one just written to a file (same database, nothing writes to it)
    base.push({ s: (performance.now() - t) / 1000, bytes: tarBytes });

    progress(`round ${round}/${ROUNDS}: strata fullbackup through the page service`);
    strata.push(await strataBackup());
  }

  // the same once the pageserver's compaction pass of the timeline (after the load went quiet) is done
  const passDone = () => daemon!.output().split("\n").some((line) => line.includes('"compaction pass"') && line.includes(ids.timelineId));
  const settledBase: Array<{ s: number; bytes: number }> = [];
  const settled: Array<Awaited<ReturnType<typeof strataBackup>>> = [];
  if (SETTLED_ROUNDS > 0) {
    progress("waiting for the pageserver's compaction pass");
    const deadline = Date.now() + 120_000;
    while (!passDone() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    for (let round = 1; passDone() && round <= SETTLED_ROUNDS; round++) {
      progress(`after compaction, round ${round}/${SETTLED_ROUNDS}: pg_basebackup > /dev/null, strata fullbackup`);
      const t = performance.now();
      await basebackupToDevNull();
      settledBase.push({ s: (performance.now() - t) / 1000, bytes: base[0].bytes });
      settled.push(await strataBackup());
    }
  }

  // endpoint start vs pg_basebackup + postgres start
  await api.branches.create.mutate({ tenantId: ids.tenantId, name: "bench" });
  const baseStart: Array<{ backup: number; start: number; total: number }> = [];
  const epStart: Array<{ api: number; total: number }> = [];
  for (let round = 1; ENDPOINTS && round <= ROUNDS; round++) {
    const dir = makePostgresTempDir("strata-bench-basebackup-");
    tempDirs.push(dir);
    const pgdata = path.join(dir, "data");
    const port = await freePort();
    progress(`round ${round}/${ROUNDS}: pg_basebackup -Fp -X stream + pg_ctl start`);
    let t = performance.now();
    await runAsPostgres("pg_basebackup", ["-D", pgdata, "-Fp", "-X", "stream", "-c", "fast", "--no-sync", "-h", cluster.host, "-p", String(cluster.port), "-U", "postgres"], { timeoutMs: 600_000 });
    const backup = (performance.now() - t) / 1000;
    await runAsPostgres("pg_ctl", ["-D", pgdata, "-l", path.join(dir, "log"), "-o", `-p ${port} -k ${dir}`, "-w", "-t", "120", "start"]);
    basePid = Number(readFileSync(path.join(pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
    await untilQueryAnswers(port);
    const total = (performance.now() - t) / 1000;
    baseStart.push({ backup, start: total - backup, total });
    process.kill(basePid, "SIGQUIT");
    while (basePid) {
      try {
        process.kill(basePid, 0);
        await new Promise((r) => setTimeout(r, 50));
      } catch {
        basePid = 0;
      }
    }
    rmSync(dir, { recursive: true, force: true });

    progress(`round ${round}/${ROUNDS}: strata endpoint start`);
    t = performance.now();
    const ep = await api.endpoints.start.mutate({ tenantId: ids.tenantId, branch: "bench" });
    endpointUp = () => api.endpoints.stop.mutate({ tenantId: ids.tenantId, branch: "bench" });
    const apiSeconds = (performance.now() - t) / 1000;
    await untilQueryAnswers(ep.port!);
    epStart.push({ api: apiSeconds, total: (performance.now() - t) / 1000 });
    progress(`round ${round}/${ROUNDS}: strata endpoint stop`);
    await endpointUp();
    endpointUp = undefined;
  }
  progressDone();

  const best = <T,>(xs: T[], key: (x: T) => number) => xs.reduce((a, b) => (key(b) < key(a) ? b : a));
  const b = best(base, (x) => x.s);
  const bd = best(baseToDisk, (x) => x.s);
  const s = best(strata, (x) => x.s);
  const bRate = b.bytes / MB / b.s;
  const sRate = s.bytes / MB / s.s;
  console.log(`pgbench scale ${SCALE} (${STREAMED_LOAD ? "pgbench -i streamed in as WAL" : "imported"}, + ${PGBENCH_SECONDS} s of pgbench), databases ${fmtMB(Number(size))}; best of ${ROUNDS} round(s)`);
  console.log(`baseline pg_basebackup -D - -Ft -X none > /dev/null: ${fmtMB(b.bytes)} in ${b.s.toFixed(2)} s = ${bRate.toFixed(1)} MB/s (all rounds: ${base.map((x) => x.s.toFixed(2)).join(", ")} s)`);
  console.log(`reference pg_basebackup -D dir -Ft -X none (to a file): ${fmtMB(bd.bytes)} in ${bd.s.toFixed(2)} s = ${(bd.bytes / MB / bd.s).toFixed(1)} MB/s (all rounds: ${baseToDisk.map((x) => x.s.toFixed(2)).join(", ")} s)`);
  console.log(`strata fullbackup (page service):   ${fmtMB(s.bytes)} in ${s.s.toFixed(2)} s = ${sRate.toFixed(1)} MB/s (all rounds: ${strata.map((x) => x.s.toFixed(2)).join(", ")} s)`);
  console.log(`ratio strata / pg_basebackup MB/s: ${(sRate / bRate).toFixed(3)}x (target >= 0.8x); by time for the same database: ${(b.s / s.s).toFixed(3)}x; against pg_basebackup to a file: ${(sRate / (bd.bytes / MB / bd.s)).toFixed(3)}x`);
  // the median of the rounds after the first: a best round of either side can be an outlier
  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  };
  if (ROUNDS > 1) {
    const sMedian = median(strata.slice(1).map((x) => x.s));
    const bMedian = median(base.slice(1).map((x) => x.s));
    console.log(`median of rounds 2-${ROUNDS}: strata ${sMedian.toFixed(2)} s vs pg_basebackup ${bMedian.toFixed(2)} s, ratio MB/s ${((s.bytes / sMedian) / (b.bytes / bMedian)).toFixed(3)}x`);
  }
  console.log(`first round: strata ${strata[0].s.toFixed(2)} s vs pg_basebackup ${base[0].s.toFixed(2)} s, ratio MB/s ${(strata[0].bytes / strata[0].s / (base[0].bytes / base[0].s)).toFixed(3)}x`);
  console.log(`CPU in the best strata round: pageserver ${s.daemonCpu.toFixed(2)} s, client ${s.clientCpu.toFixed(2)} s (all rounds: ${strata.map((x) => `${x.daemonCpu.toFixed(2)}/${x.clientCpu.toFixed(2)}`).join(", ")} s)`);
  if (settled.length) {
    const sb = best(settled, (x) => x.s);
    const bb = best(settledBase, (x) => x.s);
    const ratio = (sx: { s: number; bytes: number }, bx: { s: number; bytes: number }) => (sx.bytes / sx.s / (bx.bytes / bx.s)).toFixed(3);
    const sMed = median(settled.map((x) => x.s));
    const bMed = median(settledBase.map((x) => x.s));
    console.log(
      `after the compaction pass (${settled.length} rounds from +${settled[0].at.toFixed(1)} s): strata ${settled.map((x) => x.s.toFixed(2)).join(", ")} s vs pg_basebackup ${settledBase.map((x) => x.s.toFixed(2)).join(", ")} s; ratio MB/s best ${ratio(sb, bb)}x, median ${ratio({ s: sMed, bytes: sb.bytes }, { s: bMed, bytes: bb.bytes })}x`,
    );
  } else if (SETTLED_ROUNDS > 0) console.log("after the compaction pass: no pass of the timeline within 120 s (none measured)");
  if (ENDPOINTS) {
    const bs = best(baseStart, (x) => x.total);
    const es = best(epStart, (x) => x.total);
    console.log(`baseline pg_basebackup -Fp -X stream + postgres start: ${bs.total.toFixed(2)} s (backup ${bs.backup.toFixed(2)} s, start until a query answers ${bs.start.toFixed(2)} s; all rounds: ${baseStart.map((x) => x.total.toFixed(2)).join(", ")} s)`);
    console.log(`strata endpoint start on a branch: ${es.total.toFixed(2)} s until a query answers (endpoints.start round trip ${es.api.toFixed(2)} s; all rounds: ${epStart.map((x) => x.total.toFixed(2)).join(", ")} s)`);
    console.log(`ratio baseline time / strata time: ${(bs.total / es.total).toFixed(3)}x`);
  }
  // the pageserver's compaction passes during the run, for context
  for (const line of daemon.output().split("\n")) {
    if (!line.includes('"compaction pass')) continue;
    const pass = JSON.parse(line);
    const which = pass.timelineId === ids.timelineId ? "the timeline" : "the endpoints' branch";
    console.log(`compaction pass of ${which} done ${((pass.time - loadDone) / 1000).toFixed(1)} s after the load: ${pass.images} images, ${pass.moved} versions moved (strata rounds started at ${strata.map((x) => `+${x.at.toFixed(1)}`).join(", ")} s)`);
  }
} finally {
  progressDone();
  if (endpointUp) await endpointUp().catch(() => {});
  if (basePid) {
    try {
      process.kill(basePid, "SIGQUIT");
    } catch {}
  }
  if (daemon) {
    await daemon.stop().catch(() => {});
  }
  removeDataDir(dataDir);
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  await cluster.stop();
}
