import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStrataClient, errorCode } from "@strata/api/client";
import { pgBinary } from "@strata/core";
import { killPostgresTree, PgCluster } from "@strata/core/testing";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { makeDataDir, PGBENCH_CHECKSUMS, query, removeDataDir, startDaemon, waitForCompactionPasses, type Daemon } from "./test-daemon.ts";

describe("branching a pgbench history at several points and running postgres on each", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let tenantId: string;
  let mainId: string;
  const points: Array<{ lsn: string; sums: Record<string, unknown> }> = [];

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    dataDir = makeDataDir();
    // (a compaction pass whenever the WAL goes quiet: the first two branch points end up below a cut)
    daemon = await startDaemon(dataDir, { STRATA_COMPACTION_INTERVAL_S: "0" });
    const client = createStrataClient(daemon.apiUrl);
    const tenant = await client.tenants.create.mutate({ fromPrimary: primary.connectionString() });
    tenantId = tenant.id;
    mainId = tenant.timelines[0].id;
    for (let i = 0; i < 3; i++) {
      await primary.pgbench(["-t", "200", "-c", "2"]);
      // nothing writes between the checksums and the LSN: the branch point sees exactly these
      const [sums] = await primary.sql(PGBENCH_CHECKSUMS);
      const [{ lsn }] = await primary.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
      points.push({ lsn, sums });
      if (i === 1) {
        await client.timelines.waitLsn.mutate({ tenantId, timelineId: mainId, lsn, timeoutSeconds: 120 });
        await waitForCompactionPasses(daemon, mainId, (passes) => passes.some((p) => p.images > 0));
      }
    }
    await client.timelines.waitLsn.mutate({ tenantId, timelineId: mainId, lsn: points[2].lsn, timeoutSeconds: 120 });
  });

  afterAll(async () => {
    const client = createStrataClient(daemon.apiUrl);
    for (let i = 0; i < points.length; i++) await client.endpoints.stop.mutate({ tenantId, branch: `at${i}` }).catch(() => {});
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
  });

  it("gives each branch exactly the data the primary had at its LSN, and pg_amcheck finds nothing wrong", async () => {
    const client = createStrataClient(daemon.apiUrl);
    for (const [i, point] of points.entries()) {
      await client.branches.create.mutate({ tenantId, name: `at${i}`, lsn: point.lsn });
      const endpoint = await client.endpoints.start.mutate({ tenantId, branch: `at${i}` });
      const [sums] = await query(endpoint.connectionString!, PGBENCH_CHECKSUMS);
      expect(sums).toEqual(point.sums);
      const amcheck = await promisify(execFile)(pgBinary("pg_amcheck"), ["-h", "127.0.0.1", "-p", String(endpoint.port), "-U", "postgres", "--install-missing", "--heapallindexed", "postgres"]).then(
        (r) => ({ code: 0, out: `${r.stdout}${r.stderr}` }),
        (e) => ({ code: e.code as number, out: `${e.stdout}${e.stderr}` }),
      );
      expect(amcheck).toEqual({ code: 0, out: "" });
      // writes on this branch stay on it
      await query(endpoint.connectionString!, "UPDATE pgbench_branches SET bbalance = bbalance + 1000000");
      await client.endpoints.stop.mutate({ tenantId, branch: `at${i}` });
    }
    const [primarySums] = await primary.sql(PGBENCH_CHECKSUMS);
    expect(primarySums).toEqual(points[2].sums);
  });

  it("catches up an endpoint's WAL after kill -9 of the pageserver during pgbench", async () => {
    let client = createStrataClient(daemon.apiUrl);
    await client.branches.create.mutate({ tenantId, name: "busy" });
    const endpoint = await client.endpoints.start.mutate({ tenantId, branch: "busy" });
    const port = String(endpoint.port);
    const bench = execFile(pgBinary("pgbench"), ["-h", "127.0.0.1", "-p", port, "-U", "postgres", "-T", "6", "-c", "2", "postgres"]);
    const benchDone = new Promise((resolve) => bench.once("exit", resolve));
    await new Promise((r) => setTimeout(r, 2000));
    await daemon.kill9();
    daemon = await startDaemon(dataDir);
    client = createStrataClient(daemon.apiUrl);
    expect(await benchDone).toBe(0);
    const [sums] = await query(endpoint.connectionString!, PGBENCH_CHECKSUMS);
    const [{ lsn }] = await query<{ lsn: string }>(endpoint.connectionString!, "SELECT pg_current_wal_insert_lsn()::text AS lsn");
    await client.timelines.waitLsn.mutate({ tenantId, timelineId: endpoint.timelineId, lsn, timeoutSeconds: 120 });
    const after = await client.branches.create.mutate({ tenantId, name: "after-crash", parentTimelineId: endpoint.timelineId });
    const check = await client.endpoints.start.mutate({ tenantId, branch: after.id });
    try {
      expect((await query(check.connectionString!, PGBENCH_CHECKSUMS))[0]).toEqual(sums);
    } finally {
      await client.endpoints.stop.mutate({ tenantId, branch: after.id });
      await client.endpoints.stop.mutate({ tenantId, branch: "busy" });
    }
  });

  it("loses no acknowledged commit when the pageserver and the endpoint's postgres die together", async () => {
    let client = createStrataClient(daemon.apiUrl);
    await client.branches.create.mutate({ tenantId, name: "power-cut" });
    const endpoint = await client.endpoints.start.mutate({ tenantId, branch: "power-cut" });
    await query(endpoint.connectionString!, "CREATE TABLE acked (id int PRIMARY KEY)");
    const writer = new pg.Client({ connectionString: endpoint.connectionString! });
    writer.on("error", () => {});
    await writer.connect();
    let acked = 0;
    const writing = (async () => {
      for (let id = 1; ; id++) {
        await writer.query("INSERT INTO acked VALUES ($1)", [id]);
        acked = id;
      }
    })().catch(() => {});
    await new Promise((r) => setTimeout(r, 1500));
    // a power cut: the pageserver, the postmaster and its children at the same moment
    daemon.process.kill("SIGKILL");
    await killPostgresTree(endpoint.pid!);
    await writing;
    await writer.end().catch(() => {});
    while (daemon.process.exitCode === null && daemon.process.signalCode === null) await new Promise((r) => setTimeout(r, 20));
    expect(acked).toBeGreaterThan(10);
    daemon = await startDaemon(dataDir);
    client = createStrataClient(daemon.apiUrl);
    expect(daemon.output()).toContain("its WAL ingested into its branch");
    expect((await client.endpoints.list.query({ tenantId })).find((e) => e.id === endpoint.id)?.state).toBe("failed");
    const again = await client.endpoints.start.mutate({ tenantId, branch: "power-cut" });
    try {
      const [row] = await query<{ n: number; last: number }>(again.connectionString!, "SELECT count(*)::int AS n, coalesce(max(id), 0) AS last FROM acked");
      // every acknowledged insert, and no gap (at most the one in flight at the cut on top)
      expect(row.n).toBe(row.last);
      expect(row.last).toBeGreaterThanOrEqual(acked);
    } finally {
      await client.endpoints.stop.mutate({ tenantId, branch: "power-cut" });
    }
  });

  it("notices an endpoint whose postgres died while it runs, and a new one there has every acknowledged row", async () => {
    const client = createStrataClient(daemon.apiUrl);
    await client.branches.create.mutate({ tenantId, name: "crashed" });
    const endpoint = await client.endpoints.start.mutate({ tenantId, branch: "crashed" });
    await query(endpoint.connectionString!, "CREATE TABLE acked (id int PRIMARY KEY); INSERT INTO acked SELECT generate_series(1, 5000)");
    await killPostgresTree(endpoint.pid!);
    const deadline = Date.now() + 30_000;
    let state = "running";
    while (state === "running" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      state = (await client.endpoints.list.query({ tenantId })).find((e) => e.id === endpoint.id)!.state;
    }
    expect(state).toBe("failed");
    expect(daemon.output()).toContain("an endpoint's postgres died: marked failed, its WAL ingested into its branch");
    const metrics = await (await fetch(`${daemon.apiUrl}/metrics`)).text();
    expect(metrics).toContain(`strata_endpoints_died_total{tenant="${tenantId}",timeline="${endpoint.timelineId}"} 1`);
    const again = await client.endpoints.start.mutate({ tenantId, branch: "crashed" });
    try {
      expect(await query(again.connectionString!, "SELECT count(*)::int AS n FROM acked")).toEqual([{ n: 5000 }]);
    } finally {
      await client.endpoints.stop.mutate({ tenantId, branch: "crashed" });
    }
  });

  it("lets exactly one of two concurrent endpoint starts on a branch win", async () => {
    const client = createStrataClient(daemon.apiUrl);
    await client.branches.create.mutate({ tenantId, name: "contested" });
    const results = await Promise.allSettled([client.endpoints.start.mutate({ tenantId, branch: "contested" }), client.endpoints.start.mutate({ tenantId, branch: "contested" })]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const rejected = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(errorCode(rejected.reason)).toBe("CONFLICT");
    await client.endpoints.stop.mutate({ tenantId, branch: "contested" });
  });
});
