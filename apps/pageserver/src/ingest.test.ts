import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStrataClient } from "@strata/api/client";
import { diffWaldumpEntries, formatLsn, parseLsn, parsePgWaldumpOutput, walFileName } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { makeDataDir, removeDataDir, runCli, startDaemon, type Daemon } from "./test-daemon.ts";

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
