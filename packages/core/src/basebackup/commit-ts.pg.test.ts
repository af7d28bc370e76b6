// Commit timestamps (track_commit_timestamp) survive into a full backup: a PostgreSQL started on it
// reports the primary's timestamp and replication origin for every transaction, whether its
// pg_commit_ts page came with the import or was rebuilt from commit records, and the backup
// follows the primary turning the setting off and on again (XLOG_PARAMETER_CHANGE), as it follows
// the other settings pg_control records.
import { execFile } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configureEndpoint, prepareDataDirectory, startPostgres, stopPostgres } from "../compute/endpoint.ts";
import { importFromPrimary } from "../ingest/import-primary.ts";
import { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import type { Lsn } from "../lsn.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { freePort, makePostgresTempDir, PgCluster } from "../testing/pgcluster.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { readWalRange } from "../wal/reader.ts";

const execFileAsync = promisify(execFile);

async function sqlAt(url: string, text: string): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query(text);
    return (Array.isArray(result) ? result[result.length - 1] : result).rows;
  } finally {
    await client.end();
  }
}

/** Every xid below `nextXid`: its commit timestamp and origin as PostgreSQL reports them, digested. */
async function commitTimestamps(url: string, nextXid: number) {
  const [row] = await sqlAt(
    url,
    `SELECT md5(string_agg(x || ':' || coalesce(t.timestamp::text, '-') || ':' || coalesce(t.roident::text, '-'), ',' ORDER BY x)) AS digest,
            count(t.timestamp)::int AS known
       FROM generate_series(3, ${nextXid - 1}) x, LATERAL pg_xact_commit_timestamp_origin(x::text::xid) t`,
  );
  return row as { digest: string; known: number };
}

describe("commit timestamps and pg_control settings in a full backup", () => {
  let primary: PgCluster | undefined;
  let store: TimelineStore | undefined;
  let ingestor: TimelineIngestor | undefined;
  const work = mkdtempSync(path.join(os.tmpdir(), "strata-commit-ts-"));
  const copies: Array<{ base: string; pid: number }> = [];
  let walFrom: Lsn = 0n;

  /** Ingests the primary's WAL up to its flushed end; returns the LSN reached. */
  async function ingestAll(): Promise<Lsn> {
    const end = await primary!.flushedWalEnd();
    let lsn = walFrom;
    for (let pos = walFrom; pos < end; ) {
      const next = pos + BigInt(Math.min(16 * 1024 * 1024, Number(end - pos)));
      lsn = await ingestor!.ingestWal(readWalRange(primary!.walDir, pos, next), pos);
      pos = next;
    }
    walFrom = end;
    return lsn;
  }

  /** Starts stock PostgreSQL on a full backup at `lsn`; returns its URL and the backup's pg_commit_ts files. */
  async function startCopy(lsn: Lsn) {
    const base = makePostgresTempDir("strata-commit-ts-copy-");
    const copy = { base, pid: 0 };
    copies.push(copy);
    const dataDir = path.join(base, "data");
    await prepareDataDirectory(new PageReader(store!), lsn, dataDir);
    const { stdout } = await execFileAsync("find", [path.join(dataDir, "pg_commit_ts"), "-type", "f"]);
    const port = await freePort();
    configureEndpoint(dataDir, { port, socketDir: base });
    copy.pid = await startPostgres(dataDir, path.join(base, "server.log"));
    return { url: `postgresql://postgres@127.0.0.1:${port}/postgres`, commitTsFiles: stdout.trim().split("\n").filter(Boolean), copy };
  }

  async function stopCopy(copy: { pid: number }) {
    await stopPostgres(copy.pid);
    copy.pid = 0;
  }

  async function restartPrimary(settings: Record<string, string>) {
    await primary!.stopServer();
    appendFileSync(path.join(primary!.dataDir, "postgresql.conf"), Object.entries(settings).map(([name, value]) => `\n${name} = ${value}`).join("") + "\n");
    await primary!.startServer();
  }

  const nextXidOf = async () => Number((await primary!.sql<{ x: string }>("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x"))[0].x);

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { track_commit_timestamp: "on", wal_level: "logical", max_prepared_transactions: 5, autovacuum: "off", wal_keep_size: "1GB" } });
    // commits before the import: their pg_commit_ts page comes with the base backup
    await primary.script("CREATE TABLE early (x int); INSERT INTO early VALUES (1); INSERT INTO early VALUES (2);");
    store = await TimelineStore.open(path.join(work, "store"));
    const imported = await importFromPrimary(store, primary.connectionString(), "strata_commit_ts");
    walFrom = imported.startLsn;
    ingestor = await TimelineIngestor.open(store);
  });

  afterAll(async () => {
    for (const copy of copies) if (copy.pid) await stopPostgres(copy.pid).catch(() => {});
    await store?.close();
    await primary?.stop();
    for (const copy of copies) rmSync(copy.base, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it("carries every transaction's commit timestamp and origin: imported, ingested, subtransactions, two-phase, replication origins", async () => {
    const url = primary!.connectionString();
    // ~1500 transactions: pg_commit_ts pages hold 819 each
    await primary!.pgbench(["-i", "-s", "1", "-q"]);
    await primary!.pgbench(["-n", "-t", "500", "-c", "3"]);
    // one transaction with 1200 subtransactions: one commit record whose xids span pages
    await primary!.script(`CREATE TABLE sub (x int);
      DO $$ BEGIN FOR i IN 1..1200 LOOP BEGIN INSERT INTO sub VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END $$;`);
    // a transaction replayed from elsewhere keeps its origin's commit time and id
    await primary!.sql("SELECT pg_replication_origin_create('elsewhere')");
    await primary!.sql(
      "SELECT pg_replication_origin_session_setup('elsewhere'); BEGIN; SELECT pg_replication_origin_xact_setup('0/1234', '2001-02-03 04:05:06+00'); CREATE TABLE replayed (x int); COMMIT",
    );
    await primary!.sql("BEGIN; CREATE TABLE prepared_ok (x int); PREPARE TRANSACTION 'ok'");
    await primary!.sql("COMMIT PREPARED 'ok'");
    await primary!.sql("BEGIN; CREATE TABLE prepared_no (x int); PREPARE TRANSACTION 'no'");
    await primary!.sql("ROLLBACK PREPARED 'no'");
    await primary!.sql("BEGIN; CREATE TABLE rolled_back (x int); ROLLBACK");
    const nextXid = await nextXidOf();
    const expected = await commitTimestamps(url, nextXid);
    expect(expected.known).toBeGreaterThan(1500 + 1200);

    const lsn = await ingestAll();
    const { url: copyUrl, commitTsFiles, copy } = await startCopy(lsn);
    try {
      expect(commitTsFiles.length).toBeGreaterThan(0);
      expect(await commitTimestamps(copyUrl, nextXid)).toEqual(expected);
      const [origin] = await sqlAt(copyUrl, "SELECT t.timestamp = '2001-02-03 04:05:06+00' AS kept, t.roident > 0 AS has_origin FROM pg_class c, LATERAL pg_xact_commit_timestamp_origin(c.xmin) t WHERE relname = 'replayed'");
      expect(origin).toEqual({ kept: true, has_origin: true });
      const [early] = await sqlAt(copyUrl, "SELECT count(pg_xact_commit_timestamp(xmin))::int AS known FROM early");
      expect(early).toEqual({ known: 2 });
      // and the copy goes on recording its own
      await sqlAt(copyUrl, "INSERT INTO early VALUES (3)");
      const [own] = await sqlAt(copyUrl, "SELECT pg_xact_commit_timestamp(xmin) > now() - interval '1 minute' AS recent FROM early WHERE x = 3");
      expect(own).toEqual({ recent: true });
    } finally {
      await stopCopy(copy);
    }
  }, 240_000);

  it("follows the primary turning track_commit_timestamp off and on again", async () => {
    await restartPrimary({ track_commit_timestamp: "off" });
    await primary!.script("CREATE TABLE while_off (x int); INSERT INTO while_off VALUES (1);");
    const offLsn = await ingestAll();
    const off = await startCopy(offLsn);
    try {
      expect(off.commitTsFiles).toEqual([]);
      expect(await sqlAt(off.url, "SELECT setting FROM pg_settings WHERE name = 'track_commit_timestamp'")).toEqual([{ setting: "off" }]);
    } finally {
      await stopCopy(off.copy);
    }

    await restartPrimary({ track_commit_timestamp: "on" });
    await primary!.pgbench(["-n", "-t", "300", "-c", "3"]);
    const url = primary!.connectionString();
    const nextXid = await nextXidOf();
    const expected = await commitTimestamps(url, nextXid);
    expect(expected.known).toBeGreaterThan(800);
    const onLsn = await ingestAll();
    const on = await startCopy(onLsn);
    try {
      expect(await sqlAt(on.url, "SELECT setting FROM pg_settings WHERE name = 'track_commit_timestamp'")).toEqual([{ setting: "on" }]);
      // the same timestamps, and none from before the primary turned tracking on again
      expect(await commitTimestamps(on.url, nextXid)).toEqual(expected);
    } finally {
      await stopCopy(on.copy);
    }
  }, 240_000);

  it("has the settings the primary restarted with: more prepared transactions pending than it first allowed", async () => {
    await restartPrimary({ max_prepared_transactions: "10", max_connections: "120", max_locks_per_transaction: "128" });
    for (let i = 0; i < 7; i++) await primary!.sql(`BEGIN; CREATE TABLE pending_${i} (x int); INSERT INTO pending_${i} VALUES (${i}); PREPARE TRANSACTION 'pending_${i}'`);
    const lsn = await ingestAll();
    // a compute allowing 5 prepared transactions (the import's setting) refuses to start with 7
    const { url, copy } = await startCopy(lsn);
    try {
      const settings = await sqlAt(url, "SELECT name, setting FROM pg_settings WHERE name IN ('max_prepared_transactions', 'max_connections', 'max_locks_per_transaction') ORDER BY name");
      expect(settings).toEqual([
        { name: "max_connections", setting: "120" },
        { name: "max_locks_per_transaction", setting: "128" },
        { name: "max_prepared_transactions", setting: "10" },
      ]);
      expect(await sqlAt(url, "SELECT count(*)::int AS n FROM pg_prepared_xacts")).toEqual([{ n: 7 }]);
      await sqlAt(url, "COMMIT PREPARED 'pending_3'");
      expect(await sqlAt(url, "SELECT x FROM pending_3")).toEqual([{ x: 3 }]);
    } finally {
      await stopCopy(copy);
    }
    for (let i = 0; i < 7; i++) await primary!.sql(`ROLLBACK PREPARED 'pending_${i}'`);
  }, 240_000);
});
