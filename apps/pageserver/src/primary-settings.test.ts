import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { createStrataClient } from "@strata/api/client";
import { formatLsn } from "@strata/core";
import { appendFileSync } from "node:fs";
import path from "node:path";
import { PgCluster, writePostgresFile } from "@strata/core/testing";
import { makeDataDir, removeDataDir, runCli, startDaemon, type Daemon } from "./test-daemon.ts";

async function query<T extends Record<string, unknown>>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

const CHECKSUM = "SELECT count(*)::text AS n, sum(abalance)::text AS s FROM pgbench_accounts";

// initdb --wal-segsize: long page headers (and the segment size they carry) start every 1 MB
describe("a primary with 1 MB WAL segments", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let tenantId: string;
  let mainId: string;

  beforeAll(async () => {
    primary = await PgCluster.start({ initdbArgs: ["--wal-segsize=1"], settings: { autovacuum: "off" } });
    dataDir = makeDataDir();
    daemon = await startDaemon(dataDir);
    const tenant = await createStrataClient(daemon.apiUrl).tenants.create.mutate({ fromPrimary: primary.connectionString() });
    tenantId = tenant.id;
    mainId = tenant.timelines[0].id;
  });

  afterAll(async () => {
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
  });

  it("is followed across its segment boundaries, and an endpoint on a branch of it starts with its data", async () => {
    // ~15 MB of WAL after the import: fifteen segment boundaries
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    await primary.pgbench(["-t", "200", "-c", "2"]);
    const [expected] = await query<{ n: string; s: string }>(primary.connectionString(), CHECKSUM);
    const end = await primary.flushedWalEnd();
    const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", mainId, "--lsn", formatLsn(end), "--timeout", "120"], { STRATA_API: daemon.apiUrl });
    expect(waited.code, waited.stderr).toBe(0);

    const client = createStrataClient(daemon.apiUrl);
    await client.branches.create.mutate({ tenantId, name: "copy" });
    const endpoint = await client.endpoints.start.mutate({ tenantId, branch: "copy" });
    try {
      expect(await query(endpoint.connectionString!, CHECKSUM)).toEqual([expected]);
      const [{ size }] = await query<{ size: string }>(endpoint.connectionString!, "SELECT setting AS size FROM pg_settings WHERE name = 'wal_segment_size'");
      expect(size).toBe("1048576");
      // the endpoint's own WAL (several segments) streams back into the branch
      await query(endpoint.connectionString!, "CREATE TABLE wide AS SELECT g AS id, repeat(md5(g::text), 16) AS pad FROM generate_series(1, 6000) g");
    } finally {
      await client.endpoints.stop.mutate({ tenantId, branch: "copy" });
    }
    const restarted = await client.endpoints.start.mutate({ tenantId, branch: "copy" });
    try {
      expect(await query(restarted.connectionString!, "SELECT count(*)::int AS n, sum(length(pad))::int AS bytes FROM wide")).toEqual([{ n: 6000, bytes: 6000 * 512 }]);
    } finally {
      await client.endpoints.stop.mutate({ tenantId, branch: "copy" });
    }
  }, 180_000);
});

describe("a primary with non-default settings that pg_control records", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let tenantId: string;
  let mainId: string;

  beforeAll(async () => {
    primary = await PgCluster.start({
      settings: { autovacuum: "off", track_commit_timestamp: "on", full_page_writes: "off", wal_compression: "lz4", max_connections: 150, max_prepared_transactions: 5, wal_level: "logical" },
    });
    dataDir = makeDataDir();
    daemon = await startDaemon(dataDir);
    const tenant = await createStrataClient(daemon.apiUrl).tenants.create.mutate({ fromPrimary: primary.connectionString() });
    tenantId = tenant.id;
    mainId = tenant.timelines[0].id;
  });

  afterAll(async () => {
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
  });

  it("starts an endpoint on a branch with the primary's data and pg_control parameters", async () => {
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    await primary.pgbench(["-t", "200", "-c", "2"]);
    await primary.sql("BEGIN; CREATE TABLE pending (x int); INSERT INTO pending VALUES (1); PREPARE TRANSACTION 'p1'");
    const [expected] = await query<{ n: string; s: string }>(primary.connectionString(), CHECKSUM);
    const end = await primary.flushedWalEnd();
    const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", mainId, "--lsn", formatLsn(end), "--timeout", "120"], { STRATA_API: daemon.apiUrl });
    expect(waited.code, waited.stderr).toBe(0);

    const client = createStrataClient(daemon.apiUrl);
    await client.branches.create.mutate({ tenantId, name: "copy" });
    const endpoint = await client.endpoints.start.mutate({ tenantId, branch: "copy" });
    try {
      const url = endpoint.connectionString!;
      expect(await query(url, CHECKSUM)).toEqual([expected]);
      expect(await query(url, "SELECT gid FROM pg_prepared_xacts")).toEqual([{ gid: "p1" }]);
      const settings = await query<{ name: string; setting: string }>(url, "SELECT name, setting FROM pg_settings WHERE name IN ('track_commit_timestamp', 'max_connections', 'wal_level', 'max_prepared_transactions') ORDER BY name");
      expect(settings).toEqual([
        { name: "max_connections", setting: "150" },
        { name: "max_prepared_transactions", setting: "5" },
        { name: "track_commit_timestamp", setting: "on" },
        { name: "wal_level", setting: "logical" },
      ]);
      // new commits on the endpoint get their timestamps
      await query(url, "CREATE TABLE after_start (x int); INSERT INTO after_start VALUES (1)");
      const [{ known }] = await query<{ known: boolean }>(url, "SELECT pg_xact_commit_timestamp(xmin) IS NOT NULL AS known FROM after_start");
      expect(known).toBe(true);
      await query(url, "COMMIT PREPARED 'p1'");
      expect(await query(url, "SELECT x FROM pending")).toEqual([{ x: 1 }]);
    } finally {
      await client.endpoints.stop.mutate({ tenantId, branch: "copy" });
    }
  }, 180_000);
});

describe("a primary on timeline 2 (after a point-in-time recovery ended)", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let tenantId: string;
  let mainId: string;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    await primary.sql("CREATE TABLE before_switch AS SELECT g AS x FROM generate_series(1, 100) g");
    // archive recovery that runs out of WAL ends on a new timeline
    await primary.stopServer();
    writePostgresFile(path.join(primary.dataDir, "recovery.signal"), "");
    appendFileSync(path.join(primary.dataDir, "postgresql.conf"), "restore_command = 'false'\n"); // no archive: pg_wal only
    await primary.startServer();
    const [{ tli }] = await primary.sql<{ tli: number }>("SELECT timeline_id AS tli FROM pg_control_checkpoint()");
    expect(tli).toBe(2);
    dataDir = makeDataDir();
    daemon = await startDaemon(dataDir);
    // (through its Unix socket, a URL without a host as libpq takes it)
    const fromPrimary = `postgresql://postgres@/postgres?host=${encodeURIComponent(primary.baseDir)}&port=${primary.port}`;
    const tenant = await createStrataClient(daemon.apiUrl).tenants.create.mutate({ fromPrimary });
    tenantId = tenant.id;
    mainId = tenant.timelines[0].id;
  });

  afterAll(async () => {
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
  });

  it("is followed through its Unix socket, and an endpoint on a branch of it starts with its data", async () => {
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    await primary.pgbench(["-t", "200", "-c", "2"]);
    const [expected] = await query<{ n: string; s: string }>(primary.connectionString(), CHECKSUM);
    const end = await primary.flushedWalEnd();
    const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", mainId, "--lsn", formatLsn(end), "--timeout", "120"], { STRATA_API: daemon.apiUrl });
    expect(waited.code, waited.stderr).toBe(0);
    const client = createStrataClient(daemon.apiUrl);
    await client.branches.create.mutate({ tenantId, name: "copy" });
    const endpoint = await client.endpoints.start.mutate({ tenantId, branch: "copy" });
    try {
      expect(await query(endpoint.connectionString!, CHECKSUM)).toEqual([expected]);
      expect(await query(endpoint.connectionString!, "SELECT count(*)::int AS n FROM before_switch")).toEqual([{ n: 100 }]);
      await query(endpoint.connectionString!, "CREATE TABLE on_branch AS SELECT 1 AS x");
    } finally {
      await client.endpoints.stop.mutate({ tenantId, branch: "copy" });
    }
    const restarted = await client.endpoints.start.mutate({ tenantId, branch: "copy" });
    try {
      expect(await query(restarted.connectionString!, "SELECT x FROM on_branch")).toEqual([{ x: 1 }]);
    } finally {
      await client.endpoints.stop.mutate({ tenantId, branch: "copy" });
    }
  }, 180_000);
});
