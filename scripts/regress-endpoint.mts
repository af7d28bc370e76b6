// PostgreSQL's regression suite run on an endpoint: stock PostgreSQL started on a Strata branch
// from its full backup, its WAL streamed back into the branch while the suite runs (not part of
// npm test). Then:
//   1. the endpoint is stopped (which returns once the branch holds its shutdown checkpoint) and
//      every relation block in its data directory is compared with Strata's page at the stop LSN,
//      masked per access method as in the redo oracle;
//   2. a new endpoint starts on the branch and must hold the same database: pg_dumpall before the
//      stop and after the restart compared, and pg_amcheck (heapallindexed, parent-check).
//
//   npx tsx scripts/regress-endpoint.mts --source DIR [--suite regress|isolation|contrib] [--schedule NAME|FILE] [--wal-compression pglz|lz4|zstd]
//
// Allowed differences after the restart, as for regress-fullbackup.mts: unlogged tables come back
// empty, a sequence may be ahead. Exit code 1 on any other difference, mismatch or amcheck failure.
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { parseLsn } from "@strata/core";
import { compareDataDirectory, PgCluster, relationKinds } from "@strata/core/testing";
import { servicesFollowing } from "../packages/api/src/service/testutil.ts";
import { amcheckAll, compareDumps, dumpAll } from "./dump-compare.mts";
import { SUITE_OPTIONS, suiteFromOptions } from "./pg-regress.mts";

const { values } = parseArgs({ options: { ...SUITE_OPTIONS, "wal-compression": { type: "string" } } });
const suite = suiteFromOptions("regress-endpoint", values);

const started = Date.now();
const step = (what: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${what}`);
// the suite's prepared transactions and parallel groups need these on the endpoint
const settings: Record<string, string> = { max_prepared_transactions: "5", max_connections: "100", ...(values["wal-compression"] ? { wal_compression: values["wal-compression"] } : {}) };

const primary = await PgCluster.start({ settings: { max_connections: 100 } });
const services = await servicesFollowing(primary.connectionString(), { keepEndpointData: true, stopTimeoutMs: 600_000 });
const { tenantId, branches, endpoints, manager } = services;
let failures = 0;
let keep = false;
try {
  const branch = await branches.create({ tenantId, name: "regress" });
  step(`branch regress at ${branch.ancestorLsn}`);
  const endpoint = await endpoints.start({ tenantId, branch: "regress", settings });
  step(`endpoint on port ${endpoint.port}; pg_regress --schedule=${suite.schedule}`);
  const result = suite.run(endpoint.port!);
  step(result.passed ? "pg_regress: all tests passed" : `pg_regress: ${result.failed.length} test(s) failed, see ${suite.workDir}/regression.diffs (kept)\n${result.failed.slice(0, 20).join("\n")}`);
  keep = !result.passed;

  const url = endpoint.connectionString!;
  const sql = async (query: string, params: unknown[] = [], database = "postgres") => {
    const client = new pg.Client({ connectionString: url.replace(/\/postgres$/, `/${database}`) });
    await client.connect();
    try {
      return (await client.query(query, params)).rows;
    } finally {
      await client.end();
    }
  };
  const kinds = await relationKinds({ sql } as never);
  const before = dumpAll(endpoint.port!);
  step("stopping the endpoint");
  const stopped = await endpoints.stop({ tenantId, branch: "regress" });
  step(`stopped at ${stopped.stopLsn}; comparing its data directory with the branch's pages there`);
  const reader = manager.get(tenantId, stopped.timelineId)!.reader;
  const onDisk = await compareDataDirectory(path.join(stopped.dataDir!, "pgdata"), kinds, reader, parseLsn(stopped.stopLsn!), 100_000);
  // CREATE DATABASE … STRATEGY wal_log (pg_regress creates its database so) logs the visibility-map
  // pages it copies as standard pages, with their bitmap in the image's hole (see regress-oracle.mts)
  const holeLogged = onDisk.mismatches.filter((m) => m.theirBitsOnly);
  const mismatches = onDisk.mismatches.filter((m) => !holeLogged.includes(m));
  console.log(`on disk at ${onDisk.lsn}: ${JSON.stringify(onDisk.compared)}, ${mismatches.length} mismatches, page LSN differences ${JSON.stringify(onDisk.lsnDifferences)}`);
  for (const example of onDisk.lsnDifferenceExamples) console.log(`  page LSN differs (masked): ${example}`);
  if (holeLogged.length) console.log(`  (not counted: ${holeLogged.length} visibility-map pages with bits logged in an image's hole)`);
  for (const m of mismatches.slice(0, 40)) console.log(`  ${m.block} (${m.type}) @${m.firstDifference} ${m.detail}`);
  if (Object.keys(onDisk.unsupported).length) console.log("on disk, not rebuilt:", onDisk.unsupported);
  failures += mismatches.length + Object.keys(onDisk.unsupported).length;

  const again = await endpoints.start({ tenantId, branch: "regress", settings });
  step(`a new endpoint on the branch, port ${again.port}`);
  failures += compareDumps(before, dumpAll(again.port!, before.unlogged), { original: "the dump before the stop", restored: "the restarted endpoint's dump" });
  if (!amcheckAll(again.port!)) failures++;
  await endpoints.stop({ tenantId, branch: "regress" });
  step("done");
} finally {
  await services.close();
  await primary.stop();
  if (!keep) suite.remove();
}
process.exitCode = failures ? 1 : 0;
