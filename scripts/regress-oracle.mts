// PostgreSQL's own regression suite as a consistency-oracle workload (not part of npm test: it
// writes ~10 GB of WAL and takes ~10 minutes on 2 cores). The primary runs with
// wal_consistency_checking=all; pg_regress runs the suite against it; Strata ingests the WAL and
// every image PostgreSQL attached is compared with Strata's page at that record (sampled per
// record type, see --sample), then every block on disk after a CHECKPOINT.
//
//   npx tsx scripts/regress-oracle.mts --source DIR [--suite regress|isolation|contrib] [--schedule NAME|FILE]
//        [--checksums] [--wal-compression pglz|lz4|zstd] [--sample FIRST/EVERY | --sample all]
//
// DIR is a PostgreSQL 15 source tree (see pg-regress.mts for what the suite needs).
// Exit code 1 on any mismatch, unsupported record or error.
import { parseArgs } from "node:util";
import { runConsistencyOracle } from "@strata/core/testing";
import { exitWithUsageError, SUITE_OPTIONS, suiteFromOptions } from "./pg-regress.mts";

const { values } = parseArgs({
  options: {
    ...SUITE_OPTIONS,
    checksums: { type: "boolean", default: false },
    "wal-compression": { type: "string" },
    sample: { type: "string", default: "2000/40" },
  },
});
let sample: { first: number; every: number } | undefined;
if (values.sample !== "all") {
  const m = /^(\d+)\/(\d+)$/.exec(values.sample!);
  if (!m || Number(m[2]) < 1) exitWithUsageError("regress-oracle", `--sample takes FIRST/EVERY (e.g. 2000/40) or all, not ${values.sample}`);
  else sample = { first: Number(m[1]), every: Number(m[2]) };
}
const suite = suiteFromOptions("regress-oracle", values);

let keep = false;
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
try {
  const report = await runConsistencyOracle({
    compareOnDisk: true,
    // all recorded: the hole-logged visibility-map pages below are set aside one by one
    maxMismatches: 100_000,
    sample,
    initdbArgs: values.checksums ? ["--data-checksums"] : [],
    settings: { max_connections: 100, ...(values["wal-compression"] ? { wal_compression: values["wal-compression"] } : {}) },
    onProgress: (line) => console.error(`[${elapsed()}] ${line}`),
    workload: async (cluster) => {
      console.error(`[${elapsed()}] pg_regress --schedule=${suite.schedule}`);
      const result = suite.run(cluster.port);
      if (result.passed) console.error(`[${elapsed()}] pg_regress: all tests passed`);
      else console.error(`[${elapsed()}] pg_regress: ${result.failed.length} test(s) failed, see ${suite.workDir}/regression.diffs (kept)\n${result.failed.slice(0, 20).join("\n")}`);
      keep = !result.passed;
    },
  });
  const compared = Object.values(report.checked).reduce((a, b) => a + b, 0);
  console.log(`records ${report.startLsn}..${report.endLsn}: ${compared} page images compared over ${report.records} records of ${Object.keys(report.checked).length} types${sample ? ` (sampled: the first ${sample.first} of each type, then 1 in ${sample.every})` : ""}`);
  console.log(JSON.stringify(report.checked));
  console.log(`mismatches: ${report.mismatches.length}`);
  for (const m of report.mismatches.slice(0, 40)) console.log(`  ${m.lsn} ${m.type} ${m.block} @${m.firstDifference} ${m.detail}`);
  if (Object.keys(report.unsupported).length) console.log("unsupported:", report.unsupported);
  if (Object.keys(report.errors).length) console.log("errors:", report.errors);
  const onDisk = report.onDisk!;
  // CREATE DATABASE … STRATEGY wal_log (pg_regress creates its database so) logs the visibility-map
  // pages it copies as standard pages: their bitmap lies in the image's hole, so no replay, a
  // PostgreSQL standby's included, has those bits; Strata's page then has only the bits set since
  const holeLogged = onDisk.mismatches.filter((m) => m.theirBitsOnly);
  const onDiskMismatches = onDisk.mismatches.filter((m) => !holeLogged.includes(m));
  console.log(`on disk at ${onDisk.lsn}: ${JSON.stringify(onDisk.compared)}, ${onDiskMismatches.length} mismatches, page LSN differences ${JSON.stringify(onDisk.lsnDifferences)}`);
  if (holeLogged.length) console.log(`  (not counted: ${holeLogged.length} visibility-map pages with bits only the primary has, logged in an image's hole: ${holeLogged.slice(0, 10).map((m) => m.block).join(", ")}${holeLogged.length > 10 ? ", …" : ""})`);
  for (const m of onDiskMismatches.slice(0, 40)) console.log(`  ${m.block} (${m.type}) @${m.firstDifference} ${m.detail}`);
  if (Object.keys(onDisk.unsupported).length) console.log("on disk, not rebuilt:", onDisk.unsupported);
  console.error(`[${elapsed()}] done`);
  const bad = report.mismatches.length + onDiskMismatches.length + Object.keys(report.unsupported).length + Object.keys(report.errors).length + Object.keys(onDisk.unsupported).length;
  process.exitCode = bad ? 1 : 0;
} finally {
  if (!keep) suite.remove();
}
