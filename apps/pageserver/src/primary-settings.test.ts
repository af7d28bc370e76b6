// Primaries set up unlike the test harness's default: each is followed as a tenant's main timeline,
// and an endpoint on a branch of it must start with its data.
import { appendFileSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStrataClient } from "@strata/api/client";
import { formatLsn, stopPostgres } from "@strata/core";
import { freePort, makePostgresTempDir, PgCluster, runAsPostgres, writePostgresFile } from "@strata/core/testing";
import { makeDataDir, query, removeDataDir, runCli, startDaemon, type Daemon } from "./test-daemon.ts";

const CHECKSUM = "SELECT count(*)::text AS n, sum(abalance)::text AS s FROM pgbench_accounts";
/** the commit timestamps of pgbench's history rows (never frozen), digested */
const HISTORY_COMMIT_TIMES =
  "SELECT count(*) FILTER (WHERE pg_xact_commit_timestamp(xmin) IS NULL)::int AS unknown, md5(string_agg(xmin::text || ':' || pg_xact_commit_timestamp(xmin)::text, ',' ORDER BY xmin::text::bigint, mtime)) AS digest FROM pgbench_history";

interface Followed {
  primary: PgCluster;
  daemon: Daemon;
  tenantId: string;
  mainId: string;
}

/** A pageserver following the primary `start` makes (through the URL `url` gives) for the describe block. */
function followPrimary(start: () => Promise<PgCluster>, url = (primary: PgCluster) => primary.connectionString()): Followed {
  const followed = {} as Followed;
  let dataDir: string | undefined;
  beforeAll(async () => {
    followed.primary = await start();
    dataDir = makeDataDir();
    followed.daemon = await startDaemon(dataDir);
    const tenant = await createStrataClient(followed.daemon.apiUrl).tenants.create.mutate({ fromPrimary: url(followed.primary) });
    followed.tenantId = tenant.id;
    followed.mainId = tenant.timelines[0].id;
  });
  afterAll(async () => {
    await followed.daemon?.stop();
    await followed.primary?.stop();
    if (dataDir) removeDataDir(dataDir);
  });
  return followed;
}

/** pgbench on the primary; returns the accounts' checksum once the main timeline has all of it. */
async function pgbenchIngested({ primary, daemon, tenantId, mainId }: Followed): Promise<{ n: string; s: string }> {
  await primary.pgbench(["-i", "-s", "1", "-q"]);
  await primary.pgbench(["-t", "200", "-c", "2"]);
  const [checksum] = await query<{ n: string; s: string }>(primary.connectionString(), CHECKSUM);
  const end = await primary.flushedWalEnd();
  const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", mainId, "--lsn", formatLsn(end), "--timeout", "120"], { STRATA_API: daemon.apiUrl });
  expect(waited.code, waited.stderr).toBe(0);
  return checksum;
}

/** Starts an endpoint on `branch`, runs `use` with its URL and stops it again. */
async function onEndpoint({ daemon, tenantId }: Followed, branch: string, use: (url: string) => Promise<void>): Promise<void> {
  const client = createStrataClient(daemon.apiUrl);
  const endpoint = await client.endpoints.start.mutate({ tenantId, branch });
  try {
    await use(endpoint.connectionString!);
  } finally {
    await client.endpoints.stop.mutate({ tenantId, branch });
  }
}

// initdb --wal-segsize: long page headers (and the segment size they carry) start every 1 MB
describe("a primary with 1 MB WAL segments", () => {
  const followed = followPrimary(() => PgCluster.start({ initdbArgs: ["--wal-segsize=1"], settings: { autovacuum: "off" } }));

  it("is followed across its segment boundaries, and an endpoint on a branch of it starts with its data", async () => {
    // ~15 MB of WAL after the import: fifteen segment boundaries
    const expected = await pgbenchIngested(followed);
    await createStrataClient(followed.daemon.apiUrl).branches.create.mutate({ tenantId: followed.tenantId, name: "copy" });
    await onEndpoint(followed, "copy", async (url) => {
      expect(await query(url, CHECKSUM)).toEqual([expected]);
      expect(await query(url, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")).toEqual([{ setting: "1048576" }]);
      // the endpoint's own WAL (several segments) streams back into the branch
      await query(url, "CREATE TABLE wide AS SELECT g AS id, repeat(md5(g::text), 16) AS pad FROM generate_series(1, 6000) g");
    });
    await onEndpoint(followed, "copy", async (url) => {
      expect(await query(url, "SELECT count(*)::int AS n, sum(length(pad))::int AS bytes FROM wide")).toEqual([{ n: 6000, bytes: 6000 * 512 }]);
    });
  }, 180_000);
});

describe("a primary with non-default settings that pg_control records", () => {
  const followed = followPrimary(() =>
    PgCluster.start({
      settings: { autovacuum: "off", track_commit_timestamp: "on", full_page_writes: "off", wal_compression: "lz4", max_connections: 150, max_prepared_transactions: 5, wal_level: "logical" },
    }),
  );

  it("starts an endpoint on a branch with the primary's data, pg_control parameters and commit timestamps", async () => {
    let endpointCommit = "";
    await followed.primary.sql("BEGIN; CREATE TABLE pending (x int); INSERT INTO pending VALUES (1); PREPARE TRANSACTION 'p1'");
    const expected = await pgbenchIngested(followed);
    await createStrataClient(followed.daemon.apiUrl).branches.create.mutate({ tenantId: followed.tenantId, name: "copy" });
    await onEndpoint(followed, "copy", async (url) => {
      expect(await query(url, CHECKSUM)).toEqual([expected]);
      expect(await query(url, "SELECT gid FROM pg_prepared_xacts")).toEqual([{ gid: "p1" }]);
      const settings = await query(url, "SELECT name, setting FROM pg_settings WHERE name IN ('track_commit_timestamp', 'max_connections', 'wal_level', 'max_prepared_transactions') ORDER BY name");
      expect(settings).toEqual([
        { name: "max_connections", setting: "150" },
        { name: "max_prepared_transactions", setting: "5" },
        { name: "track_commit_timestamp", setting: "on" },
        { name: "wal_level", setting: "logical" },
      ]);
      // the primary's commits keep their timestamps on the branch, as they were on the primary
      const primaryTimes = await query(followed.primary.connectionString(), HISTORY_COMMIT_TIMES);
      expect(primaryTimes[0]).toMatchObject({ unknown: 0 });
      expect(await query(url, HISTORY_COMMIT_TIMES)).toEqual(primaryTimes);
      // new commits on the endpoint get their timestamps
      await query(url, "CREATE TABLE after_start (x int); INSERT INTO after_start VALUES (1)");
      expect(await query(url, "SELECT pg_xact_commit_timestamp(xmin) IS NOT NULL AS known FROM after_start")).toEqual([{ known: true }]);
      await query(url, "COMMIT PREPARED 'p1'");
      expect(await query(url, "SELECT x FROM pending")).toEqual([{ x: 1 }]);
      endpointCommit = (await query<{ t: string }>(url, "SELECT pg_xact_commit_timestamp(xmin)::text AS t FROM after_start"))[0].t;
    });
    // the endpoint's own commits came back into the branch with their timestamps
    await onEndpoint(followed, "copy", async (url) => {
      expect(await query(url, "SELECT pg_xact_commit_timestamp(xmin)::text AS t FROM after_start")).toEqual([{ t: endpointCommit }]);
    });
  }, 180_000);
});

describe("a primary on timeline 2 (after a point-in-time recovery ended), through its Unix socket", () => {
  const followed = followPrimary(
    async () => {
      const primary = await PgCluster.start({ settings: { autovacuum: "off" } });
      await primary.sql("CREATE TABLE before_switch AS SELECT g AS x FROM generate_series(1, 100) g");
      // archive recovery that runs out of WAL ends on a new timeline
      await primary.stopServer();
      writePostgresFile(path.join(primary.dataDir, "recovery.signal"), "");
      appendFileSync(path.join(primary.dataDir, "postgresql.conf"), "restore_command = 'false'\n"); // no archive: pg_wal only
      await primary.startServer();
      // (it accepts connections while still recovering: wait for the end of recovery)
      for (let i = 0; i < 600 && (await primary.sql<{ r: boolean }>("SELECT pg_is_in_recovery() AS r"))[0].r; i++) await new Promise((resolve) => setTimeout(resolve, 50));
      // (the checkpoint after the switch may still be running: the WAL file name says it at once)
      expect(await primary.sql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS tli")).toEqual([{ tli: "00000002" }]);
      return primary;
    },
    // a URL without a host before the path, as libpq takes it
    (primary) => `postgresql://postgres@/postgres?host=${encodeURIComponent(primary.baseDir)}&port=${primary.port}`,
  );

  it("is followed, and an endpoint on a branch of it starts with its data and keeps its own", async () => {
    const expected = await pgbenchIngested(followed);
    await createStrataClient(followed.daemon.apiUrl).branches.create.mutate({ tenantId: followed.tenantId, name: "copy" });
    await onEndpoint(followed, "copy", async (url) => {
      expect(await query(url, CHECKSUM)).toEqual([expected]);
      expect(await query(url, "SELECT count(*)::int AS n FROM before_switch")).toEqual([{ n: 100 }]);
      await query(url, "CREATE TABLE on_branch AS SELECT 1 AS x");
    });
    await onEndpoint(followed, "copy", async (url) => {
      expect(await query(url, "SELECT x FROM on_branch")).toEqual([{ x: 1 }]);
    });
  }, 180_000);
});

describe("a standby of the primary (cascading replication)", () => {
  let standby: { dir: string; port: number; pid: number } | undefined;
  // the primary takes the writes; the pageserver imports and follows its standby
  const followed = followPrimary(
    async () => {
      const primary = await PgCluster.start({ settings: { autovacuum: "off" } });
      const dir = makePostgresTempDir("strata-standby-");
      const port = await freePort();
      standby = { dir, port, pid: 0 };
      const pgdata = path.join(dir, "data");
      await runAsPostgres("pg_basebackup", ["-D", pgdata, "-R", "-X", "stream", "-c", "fast", "-h", primary.host, "-p", String(primary.port), "-U", "postgres"]);
      await runAsPostgres("pg_ctl", ["-D", pgdata, "-l", path.join(dir, "server.log"), "-w", "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, "start"]);
      standby.pid = Number(readFileSync(path.join(pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
      return primary;
    },
    () => `postgresql://postgres@127.0.0.1:${standby!.port}/postgres`,
  );
  afterAll(async () => {
    if (standby?.pid) await stopPostgres(standby.pid);
    if (standby) rmSync(standby.dir, { recursive: true, force: true });
  });

  it("is imported and followed from the standby, and an endpoint on a branch has the primary's data", async () => {
    expect(await query(`postgresql://postgres@127.0.0.1:${standby!.port}/postgres`, "SELECT pg_is_in_recovery() AS standby")).toEqual([{ standby: true }]);
    const expected = await pgbenchIngested(followed);
    await createStrataClient(followed.daemon.apiUrl).branches.create.mutate({ tenantId: followed.tenantId, name: "copy" });
    await onEndpoint(followed, "copy", async (url) => {
      expect(await query(url, CHECKSUM)).toEqual([expected]);
      expect(await query(url, "SELECT pg_is_in_recovery() AS standby")).toEqual([{ standby: false }]);
    });
  }, 180_000);
});
