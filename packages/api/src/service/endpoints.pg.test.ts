import { afterAll, beforeAll, describe, expect, it } from "vitest";
import path from "node:path";
import pg from "pg";
import { compareDataDirectory, killPostgresTree, relationKinds } from "@strata/core/testing";
import { formatLsn, mayHaveSubscriptions, parseLsn, type TenantManager } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import type { BranchService } from "./branches.ts";
import type { EndpointService } from "./endpoints.ts";
import { servicesFollowing, type ServicesFixture } from "./testutil.ts";

describe("an endpoint's own data directory against a full backup at its shutdown LSN", () => {
  let primary: PgCluster;
  let services: ServicesFixture;
  let manager: TenantManager;
  let endpoints: EndpointService;
  let branches: BranchService;
  let tenantId: string;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    services = await servicesFollowing(primary.connectionString(), { keepEndpointData: true });
    ({ manager, endpoints, branches, tenantId } = services);
  });

  afterAll(async () => {
    await services?.close();
    await primary?.stop();
  });

  it("matches every relation block (masked per access method) after the endpoint ran pgbench and DDL", async () => {
    const dev = await branches.create({ tenantId, name: "dev" });
    // a cluster that never had a subscription: the first start takes no detour for them
    expect(await mayHaveSubscriptions(manager.get(tenantId, dev.id)!.reader, parseLsn(dev.ancestorLsn!))).toBe(false);
    const endpoint = await endpoints.start({ tenantId, branch: "dev" });
    const url = endpoint.connectionString!;
    const run = async (sql: string, database = "postgres") => {
      const client = new pg.Client({ connectionString: url.replace(/\/postgres$/, `/${database}`) });
      await client.connect();
      try {
        return (await client.query(sql)).rows;
      } finally {
        await client.end();
      }
    };
    await run("CREATE TABLE extra (id serial PRIMARY KEY, v text, tags int[]); CREATE INDEX ON extra USING gin (tags); CREATE INDEX ON extra USING brin (id)");
    await run("INSERT INTO extra (v, tags) SELECT md5(g::text), ARRAY[g % 7, g % 11] FROM generate_series(1, 5000) g; UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 13 = 0; DELETE FROM extra WHERE id % 5 = 0");
    await run("VACUUM extra");
    const kinds = await relationKinds({ sql: ((query: string, _params: unknown[] = [], database = "postgres") => run(query, database)) as never });
    const stopped = await endpoints.stop({ tenantId, branch: "dev" });
    const handle = manager.get(tenantId, stopped.timelineId)!;
    const report = await compareDataDirectory(path.join(stopped.dataDir!, "pgdata"), kinds, handle.reader, parseLsn(stopped.stopLsn!), 20);
    expect(report.mismatches).toEqual([]);
    expect(report.unsupported).toEqual({});
    expect(report.compared.heap).toBeGreaterThan(1000);
    expect(report.compared.btree).toBeGreaterThan(100);
    expect(report.compared.gin).toBeGreaterThan(0);
  });

  it("keeps every record an endpoint wrote while its walreceiver was not streaming", async () => {
    await branches.create({ tenantId, name: "offline" });
    const first = await endpoints.start({ tenantId, branch: "offline" });
    // as if the receiver had not connected yet, or lost its connection, when postgres stops
    await manager.stopReceiver(tenantId, first.timelineId);
    const client = new pg.Client({ connectionString: first.connectionString! });
    await client.connect();
    await client.query("CREATE TABLE unseen (id int PRIMARY KEY, v text); INSERT INTO unseen SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g");
    await client.end();
    const stopped = await endpoints.stop({ tenantId, branch: "offline" });
    const markers = await manager.markers(tenantId, stopped.timelineId);
    expect(markers!.lastRecordLsn).toBe(parseLsn(stopped.stopLsn!));
    const second = await endpoints.start({ tenantId, branch: "offline" });
    const again = new pg.Client({ connectionString: second.connectionString! });
    await again.connect();
    const rows = (await again.query("SELECT count(*)::int AS n, sum(length(v))::int AS len FROM unseen")).rows;
    await again.end();
    await endpoints.stop({ tenantId, branch: "offline" });
    expect(rows).toEqual([{ n: 20000, len: 20000 * 200 }]);
  });

  it("runs an endpoint with the postgresql.conf settings given at start and shows its log; refuses reserved names and values postgres does not take, leaving nothing behind", async () => {
    await branches.create({ tenantId, name: "tuned" });
    await expect(endpoints.logs({ tenantId, branch: "tuned", lines: 10 })).rejects.toThrow(/branch tuned has no endpoint/);
    // refused before anything is built
    await expect(endpoints.start({ tenantId, branch: "tuned", settings: { port: "5999" } })).rejects.toThrow(/port is set by Strata for every endpoint/);
    await expect(endpoints.start({ tenantId, branch: "tuned", settings: { "work mem": "1MB" } })).rejects.toThrow(/invalid setting name "work mem"/);
    await expect(endpoints.start({ tenantId, branch: "tuned", settings: { work_mem: "1MB\nport = 1" } })).rejects.toThrow(/control character/);
    await expect(endpoints.start({ tenantId, branch: "tuned", settings: { work_mem: "1MB", WORK_MEM: "2MB" } })).rejects.toThrow(/given twice/);
    // postgres refuses the value: an error that names it, and the branch keeps no trace of the try
    await expect(endpoints.start({ tenantId, branch: "tuned", settings: { work_mem: "lots" } })).rejects.toThrow(/postgres refused a setting: .*"work_mem"/);
    expect((await endpoints.list(tenantId)).filter((e) => e.branch === "tuned")).toEqual([]);

    const settings = { work_mem: "12MB", application_name: "it's a \\ test", "strata_test.marker": "on" };
    const started = await endpoints.start({ tenantId, branch: "tuned", settings });
    expect(started.settings).toEqual(settings);
    expect((await endpoints.list(tenantId)).find((e) => e.id === started.id)?.settings).toEqual(settings);
    const show = async (connectionString: string) => {
      const client = new pg.Client({ connectionString });
      await client.connect();
      try {
        return (await client.query("SELECT current_setting('work_mem') AS work_mem, current_setting('application_name') AS app, current_setting('strata_test.marker', true) AS marker")).rows[0];
      } finally {
        await client.end();
      }
    };
    expect(await show(started.connectionString!)).toEqual({ work_mem: "12MB", app: "it's a \\ test", marker: "on" });
    // its postgres log, from the end
    const logs = await endpoints.logs({ tenantId, branch: "tuned", lines: 1000 });
    expect(logs.endpointId).toBe(started.id);
    expect(logs.lines.join("\n")).toMatch(/database system is ready to accept connections/);
    const last = await endpoints.logs({ tenantId, branch: "tuned", lines: 2 });
    expect(last.lines).toEqual(logs.lines.slice(-2));
    await endpoints.stop({ tenantId, branch: "tuned" });
    // a later start without settings runs with PostgreSQL's defaults
    const plain = await endpoints.start({ tenantId, branch: "tuned" });
    expect(plain.settings).toEqual({});
    expect(await show(plain.connectionString!)).toEqual({ work_mem: "4MB", app: "", marker: null });
    await endpoints.stop({ tenantId, branch: "tuned" });
  });

  /** An endpoint that committed `rows` rows its branch's walreceiver never got; returns the endpoint's flushed WAL end. */
  async function endpointWithUnstreamedCommits(branch: string, rows: number) {
    await branches.create({ tenantId, name: branch });
    const endpoint = await endpoints.start({ tenantId, branch });
    // a receiver that lags (or lost its connection): the commits below exist only in the endpoint's pg_wal
    await manager.stopReceiver(tenantId, endpoint.timelineId);
    const client = new pg.Client({ connectionString: endpoint.connectionString! });
    await client.connect();
    await client.query(`CREATE TABLE acknowledged (id int PRIMARY KEY, v text); INSERT INTO acknowledged SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g`);
    await client.query("UPDATE acknowledged SET v = 'updated' WHERE id % 10 = 0");
    const flushed = parseLsn((await client.query("SELECT pg_current_wal_flush_lsn()::text AS l")).rows[0].l);
    await client.end();
    return { endpoint, flushed };
  }

  async function countOnNewEndpoint(branch: string) {
    const endpoint = await endpoints.start({ tenantId, branch });
    const client = new pg.Client({ connectionString: endpoint.connectionString! });
    await client.connect();
    const rows = (await client.query("SELECT count(*)::int AS n, count(*) FILTER (WHERE v = 'updated')::int AS updated FROM acknowledged")).rows;
    await client.end();
    await endpoints.stop({ tenantId, branch });
    return rows[0];
  }

  it("gives the branch every commit of an endpoint killed before its WAL was streamed, when it is stopped", async () => {
    const { endpoint, flushed } = await endpointWithUnstreamedCommits("killed", 5000);
    await killPostgresTree(endpoint.pid!);
    await expect(endpoints.start({ tenantId, branch: "killed" })).rejects.toThrow(/already has a running endpoint .* its postgres \(pid \d+\) is gone: `endpoint stop` gives the branch the WAL it left/);
    const stopped = await endpoints.stop({ tenantId, branch: "killed" });
    expect(stopped.state).toBe("stopped");
    // everything valid in its pg_wal, as its own crash recovery would have replayed
    expect(parseLsn(stopped.stopLsn!)).toBeGreaterThanOrEqual(flushed);
    expect(formatLsn((await manager.markers(tenantId, stopped.timelineId))!.lastRecordLsn)).toBe(stopped.stopLsn);
    expect(await countOnNewEndpoint("killed")).toEqual({ n: 5000, updated: 500 });
  });

  it("gives the branch every commit of an endpoint that died while the pageserver was down, at the next start", async () => {
    const { endpoint, flushed } = await endpointWithUnstreamedCommits("died", 3000);
    await killPostgresTree(endpoint.pid!);
    expect(await endpoints.timelinesOfDeadEndpoints()).toContain(endpoint.timelineId);
    const recovered = await endpoints.recover();
    expect(recovered).toEqual([{ endpointId: endpoint.id, tenantId, timelineId: endpoint.timelineId, lsn: expect.any(String) }]);
    expect(parseLsn(recovered[0].lsn!)).toBeGreaterThanOrEqual(flushed);
    expect((await endpoints.list(tenantId)).find((e) => e.id === endpoint.id)?.state).toBe("failed");
    expect(await countOnNewEndpoint("died")).toEqual({ n: 3000, updated: 300 });
  });

  it("ends an endpoint whose postgres died while the pageserver runs: its WAL into the branch, marked failed", async () => {
    const { endpoint, flushed } = await endpointWithUnstreamedCommits("reaped", 2000);
    const alive = await endpoints.start({ tenantId, branch: "dev" });
    await killPostgresTree(endpoint.pid!);
    const ended = await endpoints.reapDead();
    // the endpoint whose postgres runs is left alone
    expect(ended).toEqual([{ endpointId: endpoint.id, tenantId, timelineId: endpoint.timelineId, lsn: expect.any(String) }]);
    expect(parseLsn(ended[0].lsn!)).toBeGreaterThanOrEqual(flushed);
    const listed = await endpoints.list(tenantId);
    expect(listed.find((e) => e.id === endpoint.id)?.state).toBe("failed");
    expect(listed.find((e) => e.id === alive.id)?.state).toBe("running");
    expect(await endpoints.reapDead()).toEqual([]);
    await endpoints.stop({ tenantId, branch: "dev" });
    expect(await countOnNewEndpoint("reaped")).toEqual({ n: 2000, updated: 200 });
  });
});
