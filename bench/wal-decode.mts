// Benchmark: the WAL decoder alone, against PostgreSQL's. One pgbench WAL range is decoded by
//   - Strata's reader (readWalSegments: segment files read, page headers stripped, every record's
//     CRC-32C verified and its header, block references and data parsed), records counted;
//   - baseline: `pg_waldump --stats=record` over the same range (PostgreSQL's own xlogreader,
//     which also verifies each CRC and decodes each record, then only counts them).
// Both read the segment files from the page cache. This is the floor under what ingest can do on
// one thread: ingest decodes every record this way before it stores anything (ingest-catchup).
// Workload: `pgbench -i -s BENCH_SCALE` (not measured), CHECKPOINT, then `pgbench -c 4 -j 2 -T
// BENCH_SECONDS` (TPC-B: small heap updates and commits); with BENCH_LOAD=init the measured range
// is `pgbench -i -s BENCH_SCALE` itself instead (a bulk load: multi-inserts, index builds).
// BENCH_ROUNDS alternating runs of each; the best of each is compared.
//
//   npx tsx bench/wal-decode.mts
//   BENCH_LOAD=init BENCH_SCALE=10 npx tsx bench/wal-decode.mts
import { execFileSync } from "node:child_process";
import { formatLsn, parseLsn, readWalSegments, type Lsn } from "@strata/core";
import { PgCluster, pgBinary } from "@strata/core/testing";
import { envNumber, MB, progress, progressDone } from "./lib.mts";

const SCALE = envNumber("BENCH_SCALE", 1);
const SECONDS = envNumber("BENCH_SECONDS", 20);
const ROUNDS = envNumber("BENCH_ROUNDS", 3);
const LOAD = process.env.BENCH_LOAD ?? "tpcb";
if (LOAD !== "tpcb" && LOAD !== "init") throw new Error(`BENCH_LOAD is tpcb or init, not ${LOAD}`);

const cluster = await PgCluster.start({ settings: { wal_keep_size: "'4GB'", max_wal_size: "'4GB'", checkpoint_timeout: "'1h'" } });
try {
  const insertLsn = async (): Promise<Lsn> => parseLsn((await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn"))[0].lsn);
  let start: Lsn;
  if (LOAD === "init") {
    start = await insertLsn();
    progress(`workload: pgbench -i -s ${SCALE}`);
    await cluster.pgbench(["-i", "-s", String(SCALE), "-q"]);
  } else {
    progress(`workload: pgbench -i -s ${SCALE}, then pgbench -T ${SECONDS}`);
    await cluster.pgbench(["-i", "-s", String(SCALE), "-q"]);
    await cluster.sql("CHECKPOINT");
    start = await insertLsn();
    await cluster.pgbench(["-n", "-c", "4", "-j", "2", "-T", String(SECONDS)]);
  }
  const end = await insertLsn();
  // (the last segment complete and on disk: pg_waldump reads up to `end` without waiting)
  await cluster.sql("SELECT pg_switch_wal()");
  await cluster.sql("CHECKPOINT");
  const megabytes = Number(end - start) / MB;

  const strataSeconds: number[] = [];
  const waldumpSeconds: number[] = [];
  let records = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`round ${round} of ${ROUNDS}: strata`);
    let t = performance.now();
    let n = 0;
    for (const record of readWalSegments(cluster.walDir, start, end)) if (record.lsn < end) n++;
    strataSeconds.push((performance.now() - t) / 1000);
    records = n;
    progress(`round ${round} of ${ROUNDS}: pg_waldump`);
    t = performance.now();
    execFileSync(pgBinary("pg_waldump"), ["--stats=record", "-p", cluster.walDir, "-s", formatLsn(start), "-e", formatLsn(end)], { stdio: ["ignore", "ignore", "inherit"] });
    waldumpSeconds.push((performance.now() - t) / 1000);
  }
  progressDone();
  const strataBest = Math.min(...strataSeconds);
  const waldumpBest = Math.min(...waldumpSeconds);
  const rates = (seconds: number) => `${(megabytes / seconds).toFixed(1)} MB/s, ${((records / seconds) / 1e6).toFixed(2)}M records/s`;
  const all = (list: number[]) => list.map((s) => s.toFixed(2)).join(", ");
  console.log(`${LOAD === "init" ? `pgbench -i -s ${SCALE}` : `pgbench -T ${SECONDS} (scale ${SCALE})`}: ${megabytes.toFixed(1)} MB of WAL, ${records} records (${formatLsn(start)} .. ${formatLsn(end)})`);
  console.log(`baseline pg_waldump --stats=record: ${waldumpBest.toFixed(2)} s = ${rates(waldumpBest)} (all rounds: ${all(waldumpSeconds)} s)`);
  console.log(`strata decoder (readWalSegments):   ${strataBest.toFixed(2)} s = ${rates(strataBest)} (all rounds: ${all(strataSeconds)} s)`);
  console.log(`ratio strata / pg_waldump: ${(waldumpBest / strataBest).toFixed(3)}x`);
} finally {
  await cluster.stop();
}
