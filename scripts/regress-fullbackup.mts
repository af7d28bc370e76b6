// PostgreSQL's regression suite, then a full backup that stock PostgreSQL boots from (not part of
// npm test). A primary is imported into a store, pg_regress runs against it, Strata ingests its WAL
// and writes a full backup at the end; stock postgres starts on it and must hold the same database:
// pg_dumpall of both compared, and pg_amcheck (heapallindexed, parent-check) of every database.
//
//   npx tsx scripts/regress-fullbackup.mts --source DIR [--suite regress|isolation|contrib] [--schedule NAME|FILE] [--checksums]
//
// Allowed differences, as after PostgreSQL's own crash recovery: unlogged tables come back empty and
// unlogged sequences at their start; a sequence may be ahead (nextval WAL-logs 32 values at a time).
// Exit code 1 on any other difference or an amcheck failure.
import { execFileSync } from "node:child_process";
import { chmodSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { formatLsn, fullBackup, importFromPrimary, PageReader, parseLsn, TimelineIngestor, TimelineStore, readWalRange } from "@strata/core";
import { freePort, makePostgresTempDir, PgCluster, runAsPostgres, signalAndWait } from "@strata/core/testing";
import { amcheckAll, compareDumps, dumpAll } from "./dump-compare.mts";
import { SUITE_OPTIONS, suiteFromOptions } from "./pg-regress.mts";

const { values } = parseArgs({ options: { ...SUITE_OPTIONS, checksums: { type: "boolean", default: false } } });
const suite = suiteFromOptions("regress-fullbackup", values);

const started = Date.now();
const step = (what: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${what}`);
const primary = await PgCluster.start({
  initdbArgs: values.checksums ? ["--data-checksums"] : [],
  settings: { max_prepared_transactions: 5, wal_keep_size: "20GB", max_wal_size: "4GB", max_connections: 100 },
});
const work = makePostgresTempDir("strata-regress-fullbackup-");
let copyPid = 0;
let failures = 0;
try {
  const store = await TimelineStore.open(path.join(work, "store"));
  const imported = await importFromPrimary(store, primary.connectionString(), "strata_regress");
  step(`imported at ${formatLsn(imported.endLsn)}; pg_regress --schedule=${suite.schedule}`);
  const result = suite.run(primary.port);
  step(result.passed ? "pg_regress: all tests passed" : `pg_regress: ${result.failed.length} test(s) failed\n${result.failed.slice(0, 20).join("\n")}`);
  const [{ lsn: end }] = await primary.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
  // nothing writes after this: the backup at `end` must hold exactly this
  const primaryDump = dumpAll(primary.port);
  await primary.stopServer();
  const ingestor = await TimelineIngestor.open(store);
  const target = parseLsn(end);
  for (let pos = imported.startLsn; pos < target; ) {
    const next = pos + BigInt(Math.min(16 << 20, Number(target - pos)));
    await ingestor.ingestWal(readWalRange(primary.walDir, pos, next), pos, { flush: false });
    pos = next;
  }
  const lsn = await ingestor.flush();
  step(`ingested to ${formatLsn(lsn)}`);
  const tarPath = path.join(work, "backup.tar");
  const stream = createWriteStream(tarPath);
  const backup = await fullBackup(new PageReader(store), lsn, stream);
  await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
  await store.close();
  step(`full backup at ${formatLsn(lsn)}: ${(backup.bytes / 1048576).toFixed(0)} MB, ${backup.files} files, ${backup.relationPages} relation pages`);

  const dataDir = path.join(work, "copy");
  mkdirSync(dataDir, { mode: 0o700 });
  execFileSync("tar", ["-xf", tarPath, "-C", dataDir]);
  execFileSync("chown", ["-R", "postgres:postgres", dataDir]);
  chmodSync(dataDir, 0o700);
  const port = await freePort();
  try {
    await runAsPostgres("pg_ctl", ["-D", dataDir, "-l", path.join(work, "copy.log"), "-o", `-p ${port} -k ${work} -c listen_addresses=127.0.0.1`, "-w", "-t", "120", "start"]);
  } finally {
    const pidFile = path.join(dataDir, "postmaster.pid");
    if (existsSync(pidFile)) copyPid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  }
  step("stock postgres started on the backup");
  const copyDump = dumpAll(port, primaryDump.unlogged);
  failures += compareDumps(primaryDump, copyDump, { original: "the primary's dump", restored: "the backup's dump" });
  if (!amcheckAll(port)) failures++;
  step("done");
} finally {
  if (copyPid && !(await signalAndWait(copyPid, "SIGINT", 60_000))) process.kill(copyPid, "SIGQUIT");
  await primary.stop();
  rmSync(work, { recursive: true, force: true });
  suite.remove();
}
process.exitCode = failures ? 1 : 0;
