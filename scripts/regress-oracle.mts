// PostgreSQL's own regression suite as a consistency-oracle workload (not part of npm test: it
// writes ~10 GB of WAL and takes ~10 minutes on 2 cores). The primary runs with
// wal_consistency_checking=all; pg_regress runs the suite against it; Strata ingests the WAL and
// every image PostgreSQL attached is compared with Strata's page at that record (sampled per
// record type, see --sample), then every block on disk after a CHECKPOINT.
//
//   npx tsx scripts/regress-oracle.mts --source DIR [--schedule parallel_schedule|serial_schedule|FILE]
//        [--checksums] [--wal-compression pglz|lz4|zstd] [--sample FIRST/EVERY | --sample all]
//
// DIR is a PostgreSQL 15 source tree (`apt-get source postgresql-15`, which needs deb-src entries
// in the apt sources); its src/test/regress holds the tests. The suite's C functions (regress.so)
// are built from that tree against the installed server headers (package postgresql-server-dev-15).
// Exit code 1 on any mismatch, unsupported record or error.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { makePostgresTempDir, PG_BIN, runConsistencyOracle } from "@strata/core/testing";

const { values } = parseArgs({
  options: {
    source: { type: "string" },
    schedule: { type: "string", default: "parallel_schedule" },
    checksums: { type: "boolean", default: false },
    "wal-compression": { type: "string" },
    sample: { type: "string", default: "2000/40" },
  },
});
const fail = (message: string): never => {
  console.error(`regress-oracle: ${message}`);
  process.exit(2);
};
if (!values.source) fail("--source DIR (a PostgreSQL 15 source tree) is required");
const regressDir = path.resolve(values.source!, "src/test/regress");
if (!existsSync(path.join(regressDir, "parallel_schedule"))) fail(`${regressDir} has no parallel_schedule: not a PostgreSQL source tree`);
const schedule = existsSync(values.schedule!) ? path.resolve(values.schedule!) : path.join(regressDir, values.schedule!);
if (!existsSync(schedule)) fail(`schedule ${schedule} not found`);
const pgRegress = path.join(PG_BIN, "..", "lib", "pgxs", "src", "test", "regress", "pg_regress");
if (!existsSync(pgRegress)) fail(`${pgRegress} not found`);
const includeDir = execFileSync(path.join(PG_BIN, "pg_config"), ["--includedir-server"]).toString().trim();
if (!existsSync(path.join(includeDir, "postgres.h"))) fail(`no server headers in ${includeDir}: install postgresql-server-dev-15`);
let sample: { first: number; every: number } | undefined;
if (values.sample !== "all") {
  const m = /^(\d+)\/(\d+)$/.exec(values.sample!);
  if (!m || Number(m[2]) < 1) fail(`--sample takes FIRST/EVERY (e.g. 2000/40) or all, not ${values.sample}`);
  else sample = { first: Number(m[1]), every: Number(m[2]) };
}

// pg_regress runs as the postgres user: its output directory (and the tablespace test's directory
// in it) must be the server's to write
const work = makePostgresTempDir("strata-regress-");
const libDir = path.join(work, "lib");
mkdirSync(libDir);
execFileSync("gcc", ["-O1", "-fPIC", "-shared", `-I${includeDir}`, "-o", path.join(libDir, "regress.so"), path.join(regressDir, "regress.c")]);
// the suite loads contrib's autoinc and refint from the same directory
for (const lib of ["autoinc.so", "refint.so"]) symlinkSync(path.join(PG_BIN, "..", "lib", lib), path.join(libDir, lib));
chmodSync(work, 0o755);
execFileSync("chown", ["-R", "postgres:postgres", work]);

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
try {
  const report = await runConsistencyOracle({
    compareOnDisk: true,
    maxMismatches: 200,
    sample,
    initdbArgs: values.checksums ? ["--data-checksums"] : [],
    settings: { max_connections: 100, ...(values["wal-compression"] ? { wal_compression: values["wal-compression"] } : {}) },
    onProgress: (line) => console.error(`[${elapsed()}] ${line}`),
    workload: async (cluster) => {
      console.error(`[${elapsed()}] pg_regress --schedule=${path.basename(schedule)}`);
      try {
        execFileSync("runuser", ["-u", "postgres", "--", pgRegress, `--inputdir=${regressDir}`, `--outputdir=${work}`, `--bindir=${PG_BIN}`, `--dlpath=${libDir}`,
          `--schedule=${schedule}`, "--host=127.0.0.1", `--port=${cluster.port}`, "--user=postgres", "--max-connections=8"], { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 26 });
        console.error(`[${elapsed()}] pg_regress: all tests passed`);
      } catch (err) {
        // failing tests (a different locale, say) still wrote their WAL: the oracle goes on
        const failed = String((err as { stdout?: Buffer }).stdout ?? "").split("\n").filter((line) => /FAILED/.test(line));
        console.error(`[${elapsed()}] pg_regress: ${failed.length} test(s) failed, see ${work}/regression.diffs\n${failed.slice(0, 20).join("\n")}`);
      }
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
  // PostgreSQL standby's included, has those bits; Strata's page is then an empty map page
  const holeLogged = onDisk.mismatches.filter((m) => m.type === "vm" && /^ours 0+ /.test(m.detail));
  const onDiskMismatches = onDisk.mismatches.filter((m) => !holeLogged.includes(m));
  console.log(`on disk at ${onDisk.lsn}: ${JSON.stringify(onDisk.compared)}, ${onDiskMismatches.length} mismatches, page LSN differences ${JSON.stringify(onDisk.lsnDifferences)}`);
  if (holeLogged.length) console.log(`  (not counted: ${holeLogged.length} visibility-map pages with bits only the primary has, logged in an image's hole: ${holeLogged.map((m) => m.block).join(", ")})`);
  for (const m of onDiskMismatches.slice(0, 40)) console.log(`  ${m.block} (${m.type}) @${m.firstDifference} ${m.detail}`);
  if (Object.keys(onDisk.unsupported).length) console.log("on disk, not rebuilt:", onDisk.unsupported);
  console.error(`[${elapsed()}] done`);
  const bad = report.mismatches.length + onDiskMismatches.length + Object.keys(report.unsupported).length + Object.keys(report.errors).length + Object.keys(onDisk.unsupported).length;
  process.exitCode = bad ? 1 : 0;
} finally {
  rmSync(work, { recursive: true, force: true });
}
