import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStrataClient, errorCode } from "@strata/api/client";
import { parseLsn } from "@strata/core";
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import { makePostgresTempDir, PgCluster } from "@strata/core/testing";
import { makeDataDir, query, removeDataDir, runCli, startDaemon, type Daemon } from "./test-daemon.ts";

describe("endpoints: stock PostgreSQL 15 running on a branch", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let env: Record<string, string>;
  let tenantId: string;
  /** where the endpoint's user tablespace is created */
  const tablespaceLocation = makePostgresTempDir("strata-endpoint-tablespace-");

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    await primary.sql("CREATE TABLE items (id int PRIMARY KEY, note text); INSERT INTO items SELECT g, 'primary ' || g FROM generate_series(1, 1000) g");
    dataDir = makeDataDir();
    daemon = await startDaemon(dataDir);
    env = { STRATA_API: daemon.apiUrl };
    const tenant = await createStrataClient(daemon.apiUrl).tenants.create.mutate({ fromPrimary: primary.connectionString() });
    tenantId = tenant.id;
    const branch = await runCli(["branch", "create", "--tenant", tenantId, "--name", "dev", "--json"], env);
    expect(branch.code, branch.stderr).toBe(0);
  });

  afterAll(async () => {
    await runCli(["endpoint", "stop", "--tenant", tenantId, "--branch", "dev"], env).catch(() => {});
    await runCli(["endpoint", "stop", "--tenant", tenantId, "--branch", "sibling"], env).catch(() => {});
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
    rmSync(tablespaceLocation, { recursive: true, force: true });
  });

  it("starts postgres on a branch with the parent's data, and a restart keeps every committed row", async () => {
    const started = await runCli(["endpoint", "start", "--tenant", tenantId, "--branch", "dev", "--json"], env);
    expect(started.code, started.stderr).toBe(0);
    const endpoint = JSON.parse(started.stdout);
    expect(endpoint.state).toBe("running");
    const url = endpoint.connectionString;
    expect((await query<{ n: string }>(url, "SELECT count(*)::text AS n FROM items"))[0].n).toBe("1000");
    await query(url, "INSERT INTO items SELECT g, 'branch ' || g FROM generate_series(1001, 3000) g; UPDATE items SET note = 'changed' WHERE id <= 10; DELETE FROM items WHERE id BETWEEN 500 AND 599");
    await query(url, "CREATE TABLE branch_only AS SELECT g AS x FROM generate_series(1, 500) g; CREATE INDEX ON branch_only (x)");
    // a user tablespace outside the endpoint's data directory
    await query(url, `CREATE TABLESPACE elsewhere LOCATION '${tablespaceLocation}'`);
    await query(url, "CREATE TABLE spaced TABLESPACE elsewhere AS SELECT g AS x FROM generate_series(1, 300) g");
    const expected = await query<{ n: string; s: string }>(url, "SELECT count(*)::text AS n, md5(string_agg(id || note, ',' ORDER BY id)) AS s FROM items");
    const second = await runCli(["endpoint", "start", "--tenant", tenantId, "--branch", "dev"], env);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/CONFLICT: branch dev already has a running endpoint/);
    // its postgres log through the CLI
    const logs = await runCli(["endpoint", "logs", "--tenant", tenantId, "--branch", "dev", "--lines", "500"], env);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/database system is ready to accept connections/);
    const one = JSON.parse((await runCli(["endpoint", "logs", "--tenant", tenantId, "--branch", "dev", "--lines", "1", "--json"], env)).stdout);
    expect([one.endpointId, one.lines.length]).toEqual([endpoint.id, 1]);
    expect((await runCli(["endpoint", "logs", "--tenant", tenantId, "--branch", "dev", "--lines", "0"], env)).code).toBe(2);

    const stopped = await runCli(["endpoint", "stop", "--tenant", tenantId, "--branch", "dev", "--json"], env);
    expect(stopped.code, stopped.stderr).toBe(0);
    const info = await createStrataClient(daemon.apiUrl).timelines.get.query({ tenantId, timelineId: endpoint.timelineId });
    expect(parseLsn(info.lastRecordLsn)).toBeGreaterThanOrEqual(parseLsn(JSON.parse(stopped.stdout).stopLsn));

    const restarted = JSON.parse((await runCli(["endpoint", "start", "--tenant", tenantId, "--branch", "dev", "--json"], env)).stdout);
    // on the port it had: the same connection string
    expect(restarted.connectionString).toBe(url);
    const again = await query<{ n: string; s: string }>(restarted.connectionString, "SELECT count(*)::text AS n, md5(string_agg(id || note, ',' ORDER BY id)) AS s FROM items");
    expect(again).toEqual(expected);
    expect((await query<{ n: string }>(restarted.connectionString, "SELECT count(*)::text AS n FROM branch_only WHERE x > 250"))[0].n).toBe("250");
    // the tablespace's data came back, now inside the new data directory (in place)
    expect(await query(restarted.connectionString, "SELECT count(*)::int AS n, sum(x)::int AS s FROM spaced")).toEqual([{ n: 300, s: 45150 }]);
    expect(await query(restarted.connectionString, "SELECT pg_tablespace_location(oid) LIKE 'pg_tblspc/%' AS in_place FROM pg_tablespace WHERE spcname = 'elsewhere'")).toEqual([{ in_place: true }]);
    await query(restarted.connectionString, "INSERT INTO spaced SELECT generate_series(301, 310)");
    // writes on the branch never show on the parent
    expect((await primary.sql<{ n: string }>("SELECT count(*)::text AS n FROM items"))[0].n).toBe("1000");
  });

  it("keeps sibling branches apart and lists endpoints", async () => {
    const client = createStrataClient(daemon.apiUrl);
    await client.branches.create.mutate({ tenantId, name: "sibling" });
    const sibling = await client.endpoints.start.mutate({ tenantId, branch: "sibling" });
    expect((await query<{ n: string }>(sibling.connectionString!, "SELECT count(*)::text AS n FROM items"))[0].n).toBe("1000");
    const list = await client.endpoints.list.query({ tenantId });
    expect(list.filter((e) => e.state === "running").map((e) => e.branch).sort()).toEqual(["dev", "sibling"]);
    await expect(client.endpoints.start.mutate({ tenantId, branch: "main" })).rejects.toSatisfy((e) => errorCode(e) === "CONFLICT");
    await expect(client.endpoints.start.mutate({ tenantId, branch: "nope" })).rejects.toSatisfy((e) => errorCode(e) === "NOT_FOUND");
  });

  it("deletes a branch only when nothing depends on it, with its storage, and frees its name", async () => {
    const client = createStrataClient(daemon.apiUrl);
    const timelineDir = (id: string) => path.join(dataDir, "tenants", tenantId, "timelines", id);
    const byName = async (name: string) => (await client.branches.list.query({ tenantId })).find((b) => b.name === name);
    const sibling = (await byName("sibling"))!;
    // its endpoint runs (previous test)
    const busy = await runCli(["branch", "delete", "--tenant", tenantId, "--name", "sibling"], env);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/CONFLICT: branch sibling has a running endpoint .*stop it first/);
    await client.branches.create.mutate({ tenantId, name: "nephew", parentBranch: "sibling" });
    await client.endpoints.stop.mutate({ tenantId, branch: "sibling" });
    await expect(client.branches.delete.mutate({ tenantId, branch: "sibling" })).rejects.toThrow(/has branches of its own \(nephew\)/);
    await expect(client.branches.delete.mutate({ tenantId, branch: "main" })).rejects.toSatisfy((e) => errorCode(e) === "BAD_REQUEST");
    await expect(client.branches.delete.mutate({ tenantId, branch: "nope" })).rejects.toSatisfy((e) => errorCode(e) === "NOT_FOUND");

    const nephew = (await byName("nephew"))!;
    expect(existsSync(timelineDir(nephew.id))).toBe(true);
    const deleted = await runCli(["branch", "delete", "--tenant", tenantId, "--name", "nephew", "--json"], env);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ id: nephew.id, name: "nephew", deleted: true });
    expect(existsSync(timelineDir(nephew.id))).toBe(false);
    await client.branches.delete.mutate({ tenantId, branch: sibling.id });
    expect(existsSync(timelineDir(sibling.id))).toBe(false);
    expect((await client.branches.list.query({ tenantId })).map((b) => b.name).sort()).toEqual(["dev", "main"]);
    expect((await client.endpoints.list.query({ tenantId })).map((e) => e.branch)).not.toContain("sibling");

    // the name is free again, and the new branch has nothing of the old one's writes
    await client.branches.create.mutate({ tenantId, name: "sibling" });
    const again = await client.endpoints.start.mutate({ tenantId, branch: "sibling" });
    expect((await query<{ n: string }>(again.connectionString!, "SELECT count(*)::text AS n FROM items"))[0].n).toBe("1000");
    await client.endpoints.stop.mutate({ tenantId, branch: "sibling" });

    // a delete racing an endpoint start or a branch of it: never both, and nothing half done
    for (let round = 0; round < 3; round++) {
      const name = `racer${round}`;
      await client.branches.create.mutate({ tenantId, name });
      const [del, start, child] = await Promise.allSettled([
        client.branches.delete.mutate({ tenantId, branch: name }),
        client.endpoints.start.mutate({ tenantId, branch: name }),
        client.branches.create.mutate({ tenantId, name: `${name}_child`, parentBranch: name }),
      ]);
      if (del.status === "fulfilled") {
        expect(start.status).toBe("rejected");
        expect(child.status).toBe("rejected");
        expect(await byName(name)).toBeUndefined();
      } else {
        if (start.status === "fulfilled") await client.endpoints.stop.mutate({ tenantId, branch: name });
        if (child.status === "fulfilled") await client.branches.delete.mutate({ tenantId, branch: `${name}_child` });
        await client.branches.delete.mutate({ tenantId, branch: name });
      }
      expect(await byName(name)).toBeUndefined();
      expect((await client.endpoints.list.query({ tenantId })).filter((e) => e.state === "running").map((e) => e.branch)).toEqual(["dev"]);
    }
  });

  it("bootstraps a tenant without a primary (initdb) and runs postgres on its main branch", async () => {
    const tenant = JSON.parse((await runCli(["tenant", "create", "--json"], env)).stdout);
    const started = await createStrataClient(daemon.apiUrl).endpoints.start.mutate({ tenantId: tenant.id, branch: "main" });
    await query(started.connectionString!, "CREATE TABLE fresh (x int); INSERT INTO fresh SELECT generate_series(1, 42)");
    await createStrataClient(daemon.apiUrl).endpoints.stop.mutate({ tenantId: tenant.id, branch: "main" });
    const again = await createStrataClient(daemon.apiUrl).endpoints.start.mutate({ tenantId: tenant.id, branch: "main" });
    expect((await query<{ n: string }>(again.connectionString!, "SELECT count(*)::text AS n FROM fresh"))[0].n).toBe("42");
    await createStrataClient(daemon.apiUrl).endpoints.stop.mutate({ tenantId: tenant.id, branch: "main" });
  });
});
