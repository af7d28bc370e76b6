import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStrataClient } from "@strata/api/client";
import { diffWaldumpEntries, formatLsn, parseLsn, parsePgWaldumpOutput, walFileName } from "@strata/core";
import { freePort, makePostgresTempDir, PgCluster, runAsPostgres, signalAndWait } from "@strata/core/testing";
import { makeDataDir, query, removeDataDir, runCli, runCliClosingStdout, startDaemon, type Daemon } from "./test-daemon.ts";

async function flushLsn(cluster: PgCluster): Promise<string> {
  const [{ lsn }] = await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn");
  return lsn;
}

describe("following a real PostgreSQL 15 primary", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let env: Record<string, string>;
  let tenantId: string;
  let timelineId: string;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { wal_keep_size: "2GB", max_prepared_transactions: 5 } });
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    dataDir = makeDataDir();
    daemon = await startDaemon(dataDir);
    env = { STRATA_API: daemon.apiUrl };
  });

  afterAll(async () => {
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
  });

  /** strata waldump over everything stored equals pg_waldump over the same range, record by record. */
  async function expectWaldumpMatches(upTo: string) {
    const ours = await runCli(["waldump", "--tenant", tenantId, "--timeline", timelineId, "--to", upTo], env);
    expect(ours.code, ours.stderr).toBe(0);
    const oursEntries = parsePgWaldumpOutput(ours.stdout);
    expect(oursEntries.length).toBeGreaterThan(100);
    const first = oursEntries[0].lsn;
    // the segments named: pg_waldump otherwise takes the segment size from whichever file it lists
    // first, and a segment PostgreSQL preallocated (zeros) has none
    const theirs = await primary.run("pg_waldump", ["-p", primary.walDir, "-s", first, "-e", upTo, walFileName(1, parseLsn(first)), walFileName(1, parseLsn(upTo) - 1n)]);
    const theirEntries = parsePgWaldumpOutput(theirs.stdout);
    expect(diffWaldumpEntries(oursEntries, theirEntries)).toEqual([]);
    expect(oursEntries.length).toBe(theirEntries.length);

    // a window from and to LSNs inside records (so inside stored pieces of the record log):
    // exactly the records that start in it, and --limit cuts it after the first ones
    const from = parseLsn(oursEntries[Math.floor(oursEntries.length / 3)].lsn) + 8n;
    const to = parseLsn(oursEntries[Math.floor((2 * oursEntries.length) / 3)].lsn) + 8n;
    const inWindow = oursEntries.filter((e) => parseLsn(e.lsn) >= from && parseLsn(e.lsn) < to);
    const window = await runCli(["waldump", "--tenant", tenantId, "--timeline", timelineId, "--from", formatLsn(from), "--to", formatLsn(to)], env);
    expect(window.code, window.stderr).toBe(0);
    expect(parsePgWaldumpOutput(window.stdout)).toEqual(inWindow);
    const limited = await runCli(["waldump", "--tenant", tenantId, "--timeline", timelineId, "--from", formatLsn(from), "--to", formatLsn(to), "--limit", "5"], env);
    expect(parsePgWaldumpOutput(limited.stdout)).toEqual(inWindow.slice(0, 5));

    // a reader that stops early (`| head`): the command ends quietly, as SIGPIPE ends pg_waldump
    // (the dump is larger than a pipe's buffer, so the closed pipe is written to)
    expect(ours.stdout.length).toBeGreaterThan(256 * 1024);
    const cut = await runCliClosingStdout(["waldump", "--tenant", tenantId, "--timeline", timelineId, "--to", upTo], env);
    expect(cut.received).toBeGreaterThan(0);
    expect(cut).toMatchObject({ code: 141, stderr: "" });
    expect(limited.stderr).toMatch(/truncated at 5 records/);
  }

  it("imports a running primary with `tenant create --from-primary` and follows pgbench live", async () => {
    const created = await runCli(["tenant", "create", "--from-primary", primary.connectionString(), "--json"], env);
    expect(created.code, created.stderr).toBe(0);
    const tenant = JSON.parse(created.stdout);
    tenantId = tenant.id;
    timelineId = tenant.timelines[0].id;
    await primary.pgbench(["-T", "3", "-c", "2"]);
    const target = await flushLsn(primary);
    const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", timelineId, "--lsn", target, "--timeout", "60"], env);
    expect(waited.code, waited.stderr).toBe(0);
    const info = JSON.parse((await runCli(["timeline", "get", "--tenant", tenantId, "--timeline", timelineId, "--json"], env)).stdout);
    expect(parseLsn(info.lastRecordLsn)).toBeGreaterThanOrEqual(parseLsn(target));
    expect(info.diskConsistentLsn).toBe(info.lastRecordLsn);
    expect(info.walreceiver.state).toBe("streaming");
    expect(info.primary).toMatch(/^postgresql:\/\//);
    await expectWaldumpMatches(target);
    const metrics = await (await fetch(`${daemon.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`strata_wal_ingested_records_total\\{tenant="${tenantId}",timeline="${timelineId}"\\} [1-9]`));
    // the slot on the primary is held back only to what is durably stored (read the slot first:
    // both only move forward)
    const [slot] = await primary.sql<{ restart_lsn: string; active: boolean }>("SELECT restart_lsn::text, active FROM pg_replication_slots");
    const after = await createStrataClient(daemon.apiUrl).timelines.get.query({ tenantId, timelineId });
    expect(slot.active).toBe(true);
    expect(parseLsn(slot.restart_lsn)).toBeLessThanOrEqual(parseLsn(after.diskConsistentLsn));
  });

  it("reports the timeline's data size from the relation sizes PostgreSQL has, and what it stores on disk", async () => {
    const api = createStrataClient(daemon.apiUrl);
    const sizesAt = async (lsn: string) => {
      const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", timelineId, "--lsn", lsn, "--timeout", "60"], env);
      expect(waited.code, waited.stderr).toBe(0);
      // (figures are kept for a second)
      await new Promise((r) => setTimeout(r, 1100));
      return api.timelines.get.query({ tenantId, timelineId });
    };
    const before = await sizesAt(await flushLsn(primary));
    await primary.sql("CREATE TABLE sized (id int, pad text)");
    await primary.sql("INSERT INTO sized SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 6000) g");
    await primary.sql("CREATE INDEX sized_id ON sized (id)");
    const after = await sizesAt(await flushLsn(primary));
    const [added] = await primary.sql<{ bytes: string }>("SELECT (pg_relation_size('sized') + pg_relation_size('sized_id'))::text AS bytes");
    expect(Number(added.bytes)).toBeGreaterThan(2 * 1048576);
    // the new table and index, and at most a few pages of catalogs (their free space maps are
    // not WAL-logged: PostgreSQL counts them, the timeline cannot)
    const grown = after.logicalSizeBytes! - before.logicalSizeBytes!;
    expect(grown).toBeGreaterThanOrEqual(Number(added.bytes));
    expect(grown).toBeLessThanOrEqual(Number(added.bytes) + 256 * 1024);
    // in all: at least every main fork of this database, at most what every database directory and
    // the shared catalogs hold
    const [bounds] = await primary.sql<{ low: string; high: string }>(
      `SELECT (SELECT sum(pg_relation_size(oid)) FROM pg_class WHERE NOT relisshared)::text AS low,
              ((SELECT sum(pg_database_size(oid)) FROM pg_database) + (SELECT sum(pg_total_relation_size(oid)) FROM pg_class WHERE relisshared AND relkind IN ('r', 'm', 't')))::text AS high`,
    );
    expect(after.logicalSizeBytes!).toBeGreaterThanOrEqual(Number(bounds.low));
    expect(after.logicalSizeBytes!).toBeLessThanOrEqual(Number(bounds.high));
    // on disk: what du counts for the timeline's directory (give or take what LevelDB did since)
    const du = Number(execFileSync("du", ["-s", "-B1", path.join(dataDir, "tenants", tenantId, "timelines", timelineId)], { encoding: "utf8" }).split("\t")[0]);
    expect(after.physicalSizeBytes).toBeGreaterThan(du * 0.7);
    expect(after.physicalSizeBytes).toBeLessThan(du * 1.3);
    const tenant = await api.tenants.get.query({ id: tenantId });
    expect(tenant.physicalSizeBytes).toBeGreaterThanOrEqual(after.physicalSizeBytes * 0.7);
    // the CLI's table and the metrics show them
    const listed = await runCli(["timeline", "list", "--tenant", tenantId], env);
    expect(listed.stdout).toMatch(/LAST_RECORD_LSN +DISK_CONSISTENT_LSN +PRIMARY_FLUSH_LSN +LAG_BYTES +DATA_SIZE +STORAGE/);
    // the main timeline has no parent and no branch point
    expect(listed.stdout).toMatch(new RegExp(`${timelineId} +main +- +- +\\d`));
    expect(listed.stdout).toMatch(/\d+\.\d MiB/);
    const metrics = await (await fetch(`${daemon.apiUrl}/metrics`)).text();
    const logical = new RegExp(`strata_timeline_logical_size_bytes\\{tenant="${tenantId}",timeline="${timelineId}"\\} (\\d+)`).exec(metrics);
    expect(Number(logical?.[1])).toBeGreaterThanOrEqual(after.logicalSizeBytes!);
    expect(metrics).toMatch(new RegExp(`strata_timeline_physical_size_bytes\\{tenant="${tenantId}",timeline="${timelineId}"\\} [1-9]`));
  });

  it("resumes after kill -9 of the pageserver with no gap and no duplicate", async () => {
    const bench = primary.spawnClient("pgbench", ["-T", "4", "-c", "2", "postgres"]);
    await new Promise((r) => setTimeout(r, 1500));
    await daemon.kill9();
    await new Promise((r) => bench.once("exit", r));
    daemon = await startDaemon(dataDir);
    env = { STRATA_API: daemon.apiUrl };
    const target = await flushLsn(primary);
    const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", timelineId, "--lsn", target, "--timeout", "60"], env);
    expect(waited.code, waited.stderr).toBe(0);
    await expectWaldumpMatches(target);
  });

  it("reconnects and continues when the primary restarts", async () => {
    await primary.stopServer();
    await primary.startServer();
    await primary.pgbench(["-t", "200", "-c", "2"]);
    const target = await flushLsn(primary);
    const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", timelineId, "--lsn", target, "--timeout", "90"], env);
    expect(waited.code, waited.stderr).toBe(0);
    const info = await createStrataClient(daemon.apiUrl).timelines.get.query({ tenantId, timelineId });
    expect(info.walreceiver?.reconnects).toBeGreaterThan(0);
    await expectWaldumpMatches(target);
  });

  it("gives clear errors for bad primaries and slot clashes, and keeps serving", async () => {
    const unreachable = await runCli(["tenant", "create", "--from-primary", "postgresql://postgres@127.0.0.1:1/postgres"], env);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/cannot import from primary: .*(refused|connect)/i);
    const badUser = await runCli(["tenant", "create", "--from-primary", primary.connectionString("postgres", "nobody")], env);
    expect(badUser.code).toBe(1);
    expect(badUser.stderr).toMatch(/nobody/);
    const info = await createStrataClient(daemon.apiUrl).timelines.get.query({ tenantId, timelineId });
    const sameSlot = await runCli(["tenant", "create", "--from-primary", primary.connectionString(), "--slot", String(info.name === "main" ? (await primary.sql<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots"))[0].slot_name : "")], env);
    expect(sameSlot.code).toBe(1);
    expect(sameSlot.stderr).toMatch(/CONFLICT: replication slot .* already used by tenant/);
    await primary.sql("SELECT pg_create_physical_replication_slot('someone_elses')");
    const foreignSlot = await runCli(["tenant", "create", "--from-primary", primary.connectionString(), "--slot", "someone_elses"], env);
    expect(foreignSlot.code).toBe(1);
    expect(foreignSlot.stderr).toMatch(/slot "someone_elses" already exists on the primary/);
    const notUrl = await runCli(["tenant", "create", "--from-primary", "localhost:5432"], env);
    expect(notUrl.code).toBe(2);
    const tls = await runCli(["tenant", "create", "--from-primary", `${primary.connectionString()}?sslmode=require`], env);
    expect(tls.code).toBe(1);
    expect(tls.stderr).toMatch(/does not support TLS, and sslmode=require requires it/);
    // nothing half-created, and the followed tenant is still there
    const tenants = await createStrataClient(daemon.apiUrl).tenants.list.query();
    expect(tenants.map((t) => t.id)).toEqual([tenantId]);
  });

  it("refuses a primary without wal_level=replica with a clear message", async () => {
    const minimal = await PgCluster.start({ settings: { wal_level: "minimal", max_wal_senders: 0 } });
    try {
      const result = await runCli(["tenant", "create", "--from-primary", minimal.connectionString()], env);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/cannot import from primary: .*(replication|wal_level|max_wal_senders)/i);
    } finally {
      await minimal.stop();
    }
  });

  it("drops a deleted tenant's replication slot on its primary, and warns about a slot it cannot reach", async () => {
    const slots = async () => (await primary.sql<{ slot_name: string }>("SELECT slot_name FROM pg_replication_slots ORDER BY slot_name")).map((r) => r.slot_name);
    const before = await slots();
    const created = await runCli(["tenant", "create", "--from-primary", primary.connectionString(), "--json"], env);
    expect(created.code, created.stderr).toBe(0);
    const second = JSON.parse(created.stdout) as { id: string; timelines: Array<{ id: string }> };
    const slot = (await slots()).find((name) => !before.includes(name))!;
    expect(slot).toMatch(new RegExp(`^strata_${second.id}_`));
    // streaming, so the slot is in use when the delete starts
    const target = await flushLsn(primary);
    const waited = await runCli(["wait-lsn", "--tenant", second.id, "--timeline", second.timelines[0].id, "--lsn", target, "--timeout", "60"], env);
    expect(waited.code, waited.stderr).toBe(0);
    const deleted = await runCli(["tenant", "delete", second.id], env);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stderr).not.toMatch(/warning/);
    // the followed tenant keeps its own slot (and `someone_elses` stays)
    expect(await slots()).toEqual(before);

    // a primary that is gone: the tenant goes anyway, with the slot it left named
    const gone = await PgCluster.start();
    const third = await runCli(["tenant", "create", "--from-primary", gone.connectionString(), "--json"], env);
    expect(third.code, third.stderr).toBe(0);
    const thirdId = (JSON.parse(third.stdout) as { id: string }).id;
    await gone.stop();
    const orphaned = await runCli(["tenant", "delete", thirdId], env);
    expect(orphaned.code, orphaned.stderr).toBe(0);
    expect(orphaned.stderr).toMatch(new RegExp(`warning: replication slot "strata_${thirdId}_\\w+" was not dropped on the primary .*pg_drop_replication_slot`));
    expect((await createStrataClient(daemon.apiUrl).tenants.list.query()).map((t) => t.id)).toEqual([tenantId]);
  });
});

describe("a primary that no longer has the WAL the timeline needs", () => {
  it("stops the walreceiver with a clear error in the API and CLI and keeps serving", async () => {
    const primary = await PgCluster.start({ settings: { max_slot_wal_keep_size: "1MB", wal_keep_size: 0, max_wal_size: "64MB", min_wal_size: "32MB" } });
    const dataDir = makeDataDir();
    let daemon = await startDaemon(dataDir);
    try {
      const client = createStrataClient(daemon.apiUrl);
      const tenant = await client.tenants.create.mutate({ fromPrimary: primary.connectionString() });
      const timelineId = tenant.timelines[0].id;
      await daemon.stop();
      // while the pageserver is away, the primary writes and recycles far past what the slot may hold
      await primary.sql("CREATE TABLE filler (x text)");
      for (let i = 0; i < 4; i++) {
        await primary.sql("INSERT INTO filler VALUES ('x')");
        await primary.sql("SELECT pg_switch_wal()");
        await primary.sql("CHECKPOINT");
      }
      const [slot] = await primary.sql<{ wal_status: string }>("SELECT wal_status FROM pg_replication_slots");
      expect(slot.wal_status).toBe("lost");
      daemon = await startDaemon(dataDir);
      const env = { STRATA_API: daemon.apiUrl };
      let info = await createStrataClient(daemon.apiUrl).timelines.get.query({ tenantId: tenant.id, timelineId });
      for (let i = 0; i < 100 && info.walreceiver?.state !== "failed"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        info = await createStrataClient(daemon.apiUrl).timelines.get.query({ tenantId: tenant.id, timelineId });
      }
      expect(info.walreceiver?.state).toBe("failed");
      expect(info.walreceiver?.lastError).toMatch(/removed|invalidated|can no longer/i);
      const cli = await runCli(["timeline", "get", "--tenant", tenant.id, "--timeline", timelineId], env);
      expect(cli.stdout).toMatch(/walreceiver: .*"state":"failed"/);
      const [{ lsn }] = await primary.sql<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn");
      const waited = await runCli(["wait-lsn", "--tenant", tenant.id, "--timeline", timelineId, "--lsn", lsn, "--timeout", "5"], env);
      expect(waited.code).toBe(1);
      expect(waited.stderr).toMatch(/has stopped/);
      expect((await runCli(["status"], env)).code).toBe(0);
    } finally {
      await daemon.stop();
      await primary.stop();
      removeDataDir(dataDir);
    }
  }, 240_000);
});

describe("a standby that is promoted while the pageserver follows it", () => {
  /** a streaming standby of `primary` on its own port, started from pg_basebackup -R */
  async function startStandby(primary: PgCluster, base: string, port: number): Promise<number> {
    const dir = path.join(base, "data");
    await runAsPostgres("pg_basebackup", ["-D", dir, "-R", "-X", "stream", "-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres", "-c", "fast"]);
    await runAsPostgres("pg_ctl", ["-D", dir, "-l", path.join(base, "server.log"), "-w", "-o", `-p ${port} -k ${base} -c listen_addresses=127.0.0.1`, "start"]);
    return Number(readFileSync(path.join(dir, "postmaster.pid"), "utf8").split("\n")[0]);
  }
  async function waitReplayed(url: string, lsn: bigint) {
    for (let i = 0; i < 600; i++) {
      const [{ done }] = await query<{ done: boolean }>(url, `SELECT pg_last_wal_replay_lsn() >= '${formatLsn(lsn)}' AS done`);
      if (done) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`standby did not replay to ${formatLsn(lsn)}`);
  }
  /** the timeline a server writes on (its WAL file names start with it) */
  async function writingTimeline(url: string): Promise<number> {
    const [{ tli }] = await query<{ tli: number }>(url, "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS tli");
    return tli;
  }
  /**
   * A primary, a streaming standby of it on its own port, and a pageserver; everything stopped and
   * removed afterwards (the standby by the pid the body leaves in `standbyPid`).
   */
  interface Failover {
    primary: PgCluster;
    standbyBase: string;
    standbyPort: number;
    standbyUrl: string;
    standbyPid: number;
    dataDir: string;
    daemon: Daemon;
  }
  async function withStandby(body: (f: Failover) => Promise<void>): Promise<void> {
    const primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    const standbyBase = makePostgresTempDir("strata-standby-");
    const dataDir = makeDataDir();
    const standbyPort = await freePort();
    const f: Failover = { primary, standbyBase, standbyPort, standbyUrl: `postgresql://postgres@127.0.0.1:${standbyPort}/postgres`, standbyPid: 0, dataDir, daemon: undefined as unknown as Daemon };
    try {
      f.daemon = await startDaemon(dataDir);
      f.standbyPid = await startStandby(primary, standbyBase, standbyPort);
      await body(f);
    } finally {
      await f.daemon?.stop();
      if (f.standbyPid) await signalAndWait(f.standbyPid, "SIGQUIT", 30_000);
      await primary.stop();
      removeDataDir(dataDir);
      rmSync(standbyBase, { recursive: true, force: true });
    }
  }
  const SUMS = "SELECT (SELECT count(*) FROM pgbench_history)::text AS h, (SELECT sum(abalance) FROM pgbench_accounts)::text AS s, (SELECT count(*) FROM after_promotion)::text AS n";

  it("follows it onto its new timeline, also from WAL segments behind the switch point: writes on both sides reach a branch", () =>
    withStandby(async (f) => {
      const { primary, standbyUrl, standbyPort: port } = f;
      const tenant = await createStrataClient(f.daemon.apiUrl).tenants.create.mutate({ fromPrimary: standbyUrl });
      const timelineId = tenant.timelines[0].id;
      // the pageserver is down while the old primary writes several segments and the standby is
      // promoted: it comes back behind the switch point, where the WAL is still timeline 1's
      await f.daemon.stop();
      await primary.pgbench(["-i", "-s", "3", "-q"]);
      await primary.pgbench(["-t", "100", "-c", "2"]);
      const beforeSwitch = await primary.flushedWalEnd();
      await waitReplayed(standbyUrl, beforeSwitch);
      await primary.stopServer();
      await runAsPostgres("pg_ctl", ["-D", path.join(f.standbyBase, "data"), "-w", "promote"]);
      expect(await writingTimeline(standbyUrl)).toBe(2);
      await runAsPostgres("pgbench", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-n", "-t", "100", "-c", "2", "postgres"]);
      await query(standbyUrl, "CREATE TABLE after_promotion AS SELECT generate_series(1, 1000) AS id");
      const [expected] = await query<{ n: string; s: string; h: string }>(standbyUrl, SUMS);
      const [{ lsn: end }] = await query<{ lsn: string }>(standbyUrl, "SELECT pg_current_wal_flush_lsn()::text AS lsn");
      expect(parseLsn(end)).toBeGreaterThan(beforeSwitch);

      f.daemon = await startDaemon(f.dataDir);
      const client = createStrataClient(f.daemon.apiUrl);
      const waited = await runCli(["wait-lsn", "--tenant", tenant.id, "--timeline", timelineId, "--lsn", end, "--timeout", "60"], { STRATA_API: f.daemon.apiUrl });
      expect(waited.code, waited.stderr).toBe(0);
      expect((await client.timelines.get.query({ tenantId: tenant.id, timelineId })).walreceiver?.state).toBe("streaming");

      const branch = await client.branches.create.mutate({ tenantId: tenant.id, name: "after-switch", lsn: end });
      const endpoint = await client.endpoints.start.mutate({ tenantId: tenant.id, branch: "after-switch" });
      try {
        const [got] = await query<{ n: string; s: string; h: string }>(endpoint.connectionString!, SUMS);
        expect(got).toEqual(expected);
        expect(Number(got.h)).toBe(400);
        // the endpoint runs on the promoted timeline (a server with no history file for it): its
        // own writes stream into the branch and survive a restart
        expect(await writingTimeline(endpoint.connectionString!)).toBe(2);
        // a base backup of the endpoint (as for a standby of it): PostgreSQL asks the server for
        // its timeline's history file, which the full backup gave the endpoint
        const copy = makePostgresTempDir("strata-endpoint-backup-");
        try {
          await runAsPostgres("pg_basebackup", ["-D", path.join(copy, "data"), "-X", "stream", "-c", "fast", "--no-sync", "-d", endpoint.connectionString!]);
          expect(readFileSync(path.join(copy, "data/pg_wal/00000002.history"), "utf8")).toBe(readFileSync(path.join(f.standbyBase, "data/pg_wal/00000002.history"), "utf8"));
        } finally {
          rmSync(copy, { recursive: true, force: true });
        }
        await query(endpoint.connectionString!, "CREATE TABLE on_branch AS SELECT generate_series(1, 500) AS id");
        const [{ lsn: written }] = await query<{ lsn: string }>(endpoint.connectionString!, "SELECT pg_current_wal_flush_lsn()::text AS lsn");
        const streamed = await runCli(["wait-lsn", "--tenant", tenant.id, "--timeline", branch.id, "--lsn", written, "--timeout", "30"], { STRATA_API: f.daemon.apiUrl });
        expect(streamed.code, streamed.stderr).toBe(0);
      } finally {
        await client.endpoints.stop.mutate({ tenantId: tenant.id, branch: "after-switch" });
      }
      const restarted = await client.endpoints.start.mutate({ tenantId: tenant.id, branch: "after-switch" });
      try {
        expect(await query(restarted.connectionString!, "SELECT count(*)::int AS n FROM on_branch")).toEqual([{ n: 500 }]);
      } finally {
        await client.endpoints.stop.mutate({ tenantId: tenant.id, branch: "after-switch" });
      }
    }), 240_000);

  it("set-primary moves it to the promoted standby at its own address, from its durable LSN; another system or a branch is refused and changes nothing", () =>
    withStandby(async (f) => {
      const { primary, standbyUrl, standbyPort: port } = f;
      const client = createStrataClient(f.daemon.apiUrl);
      const env = { STRATA_API: f.daemon.apiUrl };
      const tenant = await client.tenants.create.mutate({ fromPrimary: primary.connectionString() });
      const timelineId = tenant.timelines[0].id;
      const before = await client.timelines.get.query({ tenantId: tenant.id, timelineId });
      await primary.pgbench(["-i", "-s", "2", "-q"]);
      await primary.pgbench(["-t", "100", "-c", "2"]);
      const written = await primary.flushedWalEnd();
      expect((await runCli(["wait-lsn", "--tenant", tenant.id, "--timeline", timelineId, "--lsn", formatLsn(written), "--timeout", "60"], env)).code).toBe(0);

      // refused before anything changes: another database system, a branch, a bad URL
      const other = await PgCluster.start();
      try {
        const refused = await runCli(["timeline", "set-primary", "--tenant", tenant.id, "--timeline", timelineId, "--primary", other.connectionString()], env);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toMatch(/cannot follow .*another database system/);
        expect(await other.sql("SELECT slot_name FROM pg_replication_slots")).toEqual([]);
      } finally {
        await other.stop();
      }
      await client.branches.create.mutate({ tenantId: tenant.id, name: "a-branch" });
      const onBranch = await runCli(["timeline", "set-primary", "--tenant", tenant.id, "--timeline", "a-branch", "--primary", standbyUrl], env);
      expect(onBranch.code).toBe(1);
      expect(onBranch.stderr).toMatch(/does not follow an external primary/);
      expect((await runCli(["timeline", "set-primary", "--tenant", tenant.id, "--timeline", timelineId, "--primary", "mysql://x"], env)).code).toBe(2);
      const unchanged = await client.timelines.get.query({ tenantId: tenant.id, timelineId });
      expect(unchanged.primary).toBe(before.primary);
      expect(unchanged.walreceiver?.state).toBe("streaming");

      // the failover: the primary shuts down (its standby gets all of its WAL), the standby is
      // promoted and written to; the pageserver would retry the old address for ever
      await primary.stopServer();
      await waitReplayed(standbyUrl, written);
      await runAsPostgres("pg_ctl", ["-D", path.join(f.standbyBase, "data"), "-w", "promote"]);
      expect(await writingTimeline(standbyUrl)).toBe(2);
      await runAsPostgres("pgbench", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-n", "-t", "100", "-c", "2", "postgres"]);
      await query(standbyUrl, "CREATE TABLE after_promotion AS SELECT generate_series(1, 1000) AS id");

      const moved = await runCli(["timeline", "set-primary", "--tenant", tenant.id, "--timeline", timelineId, "--primary", standbyUrl, "--json"], env);
      expect(moved.code, moved.stderr).toBe(0);
      const result = JSON.parse(moved.stdout);
      expect(result).toMatchObject({ timelineId, primary: standbyUrl, slotCreated: true });
      expect(parseLsn(result.resumeLsn)).toBeGreaterThanOrEqual(written);
      expect(moved.stderr).toMatch(/warning: if .* comes back as another server, drop replication slot/);
      const [{ lsn: end }] = await query<{ lsn: string }>(standbyUrl, "SELECT pg_current_wal_flush_lsn()::text AS lsn");
      const caughtUp = await runCli(["wait-lsn", "--tenant", tenant.id, "--timeline", timelineId, "--lsn", end, "--timeout", "60"], env);
      expect(caughtUp.code, caughtUp.stderr).toBe(0);
      const after = await client.timelines.get.query({ tenantId: tenant.id, timelineId });
      expect(after.primary).toBe(standbyUrl);
      expect(after.walreceiver?.state).toBe("streaming");
      // the slot on the new server follows what the timeline stored
      const [slot] = await query<{ slot_name: string; active: boolean }>(standbyUrl, "SELECT slot_name, active FROM pg_replication_slots");
      expect(slot).toEqual({ slot_name: result.slot, active: true });
      // a tenant imported from the promoted server (on timeline 2) has its history for backups
      const imported = await client.tenants.create.mutate({ fromPrimary: standbyUrl, slot: "strata_second" });
      const tar = path.join(f.dataDir, "second.tar");
      expect((await runCli(["fullbackup", "--tenant", imported.id, "--timeline", "main", "--out", tar], env)).code).toBe(0);
      expect(execFileSync("tar", ["-xOf", tar, "pg_wal/00000002.history"], { encoding: "utf8" })).toBe(readFileSync(path.join(f.standbyBase, "data/pg_wal/00000002.history"), "utf8"));
      await client.tenants.delete.mutate({ id: imported.id });

      // kept across a restart; a branch at the end has everything written on both servers
      await f.daemon.stop();
      await query(standbyUrl, "INSERT INTO after_promotion SELECT generate_series(1001, 1500)");
      const [expected] = await query<{ n: string; s: string; h: string }>(standbyUrl, SUMS);
      const [{ lsn: last }] = await query<{ lsn: string }>(standbyUrl, "SELECT pg_current_wal_flush_lsn()::text AS lsn");
      f.daemon = await startDaemon(f.dataDir);
      const restarted = createStrataClient(f.daemon.apiUrl);
      expect((await runCli(["wait-lsn", "--tenant", tenant.id, "--timeline", timelineId, "--lsn", last, "--timeout", "60"], { STRATA_API: f.daemon.apiUrl })).code).toBe(0);
      await restarted.branches.create.mutate({ tenantId: tenant.id, name: "after-failover", lsn: last });
      const endpoint = await restarted.endpoints.start.mutate({ tenantId: tenant.id, branch: "after-failover" });
      try {
        const [got] = await query<{ n: string; s: string; h: string }>(endpoint.connectionString!, SUMS);
        expect(got).toEqual(expected);
        expect(got).toMatchObject({ n: "1500", h: "400" });
      } finally {
        await restarted.endpoints.stop.mutate({ tenantId: tenant.id, branch: "after-failover" });
      }
    }), 240_000);

  it("stops with a clear error when the promoted server's history forked before WAL it already stored", () =>
    withStandby(async (f) => {
      const { primary, standbyBase, standbyUrl } = f;
      // the pageserver follows the primary itself; the standby is stopped, then the primary writes
      // WAL only the pageserver gets
      const client = createStrataClient(f.daemon.apiUrl);
      const tenant = await client.tenants.create.mutate({ fromPrimary: primary.connectionString(), slot: "strata_failover" });
      const timelineId = tenant.timelines[0].id;
      await signalAndWait(f.standbyPid, "SIGINT", 30_000);
      f.standbyPid = 0;
      await primary.pgbench(["-i", "-s", "1", "-q"]);
      const lost = await primary.flushedWalEnd();
      const waited = await runCli(["wait-lsn", "--tenant", tenant.id, "--timeline", timelineId, "--lsn", formatLsn(lost), "--timeout", "60"], { STRATA_API: f.daemon.apiUrl });
      expect(waited.code, waited.stderr).toBe(0);
      // the primary goes away; the standby, which never got that WAL, is promoted, gets a slot of
      // the pageserver's name and takes over the primary's address, while the pageserver restarts
      // (it knows its WAL's timeline from what it stored)
      await f.daemon.stop();
      await primary.stopServer();
      const dir = path.join(standbyBase, "data");
      const standbyOptions = (port: number) => ["-D", dir, "-l", path.join(standbyBase, "server.log"), "-w", "-o", `-p ${port} -k ${standbyBase} -c listen_addresses=127.0.0.1`];
      await runAsPostgres("pg_ctl", [...standbyOptions(f.standbyPort), "start"]);
      await runAsPostgres("pg_ctl", ["-D", dir, "-w", "promote"]);
      await query(standbyUrl, "SELECT pg_create_physical_replication_slot('strata_failover', true)");
      await query(standbyUrl, "CREATE TABLE elsewhere AS SELECT generate_series(1, 100) AS id");
      await runAsPostgres("pg_ctl", ["-D", dir, "-w", "-m", "fast", "stop"]);
      await runAsPostgres("pg_ctl", [...standbyOptions(primary.port), "start"]);
      f.standbyPid = Number(readFileSync(path.join(dir, "postmaster.pid"), "utf8").split("\n")[0]);
      expect(await writingTimeline(primary.connectionString())).toBe(2);
      f.daemon = await startDaemon(f.dataDir);
      const restartedClient = createStrataClient(f.daemon.apiUrl);

      let info = await restartedClient.timelines.get.query({ tenantId: tenant.id, timelineId });
      for (let i = 0; i < 300 && info.walreceiver?.state !== "failed"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        info = await restartedClient.timelines.get.query({ tenantId: tenant.id, timelineId });
      }
      expect(info.walreceiver?.state).toBe("failed");
      expect(info.walreceiver?.lastError).toMatch(/left timeline 1 at .* already holds WAL of timeline 1 up to .*diverged/);
      // nothing of the other history was stored, and the pageserver keeps serving
      expect(parseLsn(info.lastRecordLsn)).toBeGreaterThanOrEqual(lost);
      expect((await runCli(["status"], { STRATA_API: f.daemon.apiUrl })).code).toBe(0);
    }), 240_000);
});
