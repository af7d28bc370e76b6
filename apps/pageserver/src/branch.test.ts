import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { createStrataClient, errorCode } from "@strata/api/client";
import { formatLsn, parseLsn, parsePgWaldumpOutput } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { makeDataDir, removeDataDir, runCli, startDaemon, type Daemon } from "./test-daemon.ts";

async function insertLsn(cluster: PgCluster): Promise<string> {
  const [{ lsn }] = await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
  return lsn;
}

const NO_AUTO_COMPACTION = { STRATA_COMPACTION_MIN_RECORDS: "0" };

describe("branches at any LSN", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let env: Record<string, string>;
  let tenantId: string;
  let mainId: string;
  let accounts: string;
  let branchesRel: string;
  let accountBlocks: number;
  const points: Array<{ lsn: string }> = [];
  let timeBetween = 0;
  let lsnBeforeTime = "";
  let lsnAtTime = "";

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    dataDir = makeDataDir();
    // no automatic compaction: one test compacts on request and checks what it did
    daemon = await startDaemon(dataDir, NO_AUTO_COMPACTION);
    env = { STRATA_API: daemon.apiUrl };
    const tenant = await createStrataClient(daemon.apiUrl).tenants.create.mutate({ fromPrimary: primary.connectionString() });
    tenantId = tenant.id;
    mainId = tenant.timelines[0].id;
    const [row] = await primary.sql<{ db: number; filenode: number; blocks: string }>(
      "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()) AS db, pg_relation_filenode('pgbench_accounts') AS filenode, (pg_relation_size('pgbench_accounts') / 8192)::text AS blocks",
    );
    accounts = `1663/${row.db}/${row.filenode}`;
    const [branches] = await primary.sql<{ filenode: number }>("SELECT pg_relation_filenode('pgbench_branches') AS filenode");
    branchesRel = `1663/${row.db}/${branches.filenode}`;
    accountBlocks = Number(row.blocks);
    for (let i = 0; i < 2; i++) {
      await primary.pgbench(["-t", "150", "-c", "2"]);
      points.push({ lsn: await insertLsn(primary) });
    }
    lsnBeforeTime = await insertLsn(primary);
    await new Promise((r) => setTimeout(r, 1100));
    timeBetween = Date.now();
    lsnAtTime = await insertLsn(primary);
    await new Promise((r) => setTimeout(r, 1100));
    await primary.pgbench(["-t", "150", "-c", "2"]);
    const end = await insertLsn(primary);
    const waited = await runCli(["wait-lsn", "--tenant", tenantId, "--timeline", mainId, "--lsn", end, "--timeout", "120"], env);
    expect(waited.code, waited.stderr).toBe(0);
  });

  afterAll(async () => {
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
  });

  async function page(timelineId: string, block: number, lsn = "latest", rel = accounts): Promise<Buffer> {
    const result = await createStrataClient(daemon.apiUrl).timelines.getPage.query({ tenantId, timelineId, rel, block, lsn });
    return Buffer.from(result.page, "base64");
  }

  it("creates branches at past LSNs that read exactly the parent's pages as of the branch point, without copying data", async () => {
    const blocks = [0, 1, Math.floor(accountBlocks / 2), accountBlocks - 1];
    for (const [i, point] of points.entries()) {
      const created = await runCli(["branch", "create", "--tenant", tenantId, "--name", `p${i}`, "--lsn", point.lsn, "--json"], env);
      expect(created.code, created.stderr).toBe(0);
      const branch = JSON.parse(created.stdout);
      expect(branch.parentTimelineId).toBe(mainId);
      expect(parseLsn(branch.ancestorLsn)).toBeLessThanOrEqual(parseLsn(point.lsn));
      for (const block of blocks) expect((await page(branch.id, block)).equals(await page(mainId, block, branch.ancestorLsn))).toBe(true);
      // the parent has moved on since (every pgbench transaction updates pgbench_branches' only page)
      expect((await page(mainId, 0, "latest", branchesRel)).equals(await page(branch.id, 0, "latest", branchesRel))).toBe(false);
      expect((await page(branch.id, 0, "latest", branchesRel)).equals(await page(mainId, 0, branch.ancestorLsn, branchesRel))).toBe(true);
      const size = Number(execFileSync("du", ["-sk", path.join(dataDir, "tenants", tenantId, "timelines", branch.id)]).toString().split("\t")[0]);
      expect(size).toBeLessThan(1024);
    }
  });

  it("branches a branch, and lists the tree with branch points", async () => {
    const list = await createStrataClient(daemon.apiUrl).branches.list.query({ tenantId });
    const p1 = list.find((t) => t.name === "p1")!;
    const child = await createStrataClient(daemon.apiUrl).branches.create.mutate({ tenantId, name: "p1-child", parentTimelineId: p1.id });
    expect(child.ancestorLsn).toBe(p1.ancestorLsn);
    expect((await page(child.id, 0)).equals(await page(p1.id, 0))).toBe(true);
    const tree = await runCli(["branch", "list", "--tenant", tenantId], env);
    expect(tree.code).toBe(0);
    expect(tree.stdout).toMatch(new RegExp(`^main ${mainId}`, "m"));
    expect(tree.stdout).toMatch(new RegExp(`^  └─ p1 ${p1.id} @ ${p1.ancestorLsn}`, "m"));
    expect(tree.stdout).toMatch(/^    └─ p1-child /m);
    // the parent by branch name, from the CLI: a grandchild of p1
    const byName = await runCli(["branch", "create", "--tenant", tenantId, "--name", "p1-grandchild", "--parent", "p1-child", "--json"], env);
    expect(byName.code, byName.stderr).toBe(0);
    expect(JSON.parse(byName.stdout)).toMatchObject({ parentTimelineId: child.id, ancestorLsn: child.ancestorLsn });
    // --timeline takes a branch name as well
    const got = await runCli(["timeline", "get", "--tenant", tenantId, "--timeline", "p1-grandchild", "--json"], env);
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ name: "p1-grandchild", parentTimelineId: child.id });
    const missing = await runCli(["timeline", "get", "--tenant", tenantId, "--timeline", "no-such-branch"], env);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/no branch named "no-such-branch"/);
    const unknown = await runCli(["branch", "create", "--tenant", tenantId, "--name", "orphan", "--parent", "no-such-branch"], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/NOT_FOUND: parent branch "no-such-branch" not found/);
    await expect(createStrataClient(daemon.apiUrl).branches.create.mutate({ tenantId, name: "both", parentBranch: "p1", parentTimelineId: p1.id })).rejects.toSatisfy(
      (e) => errorCode(e) === "BAD_REQUEST" && /not both/.test((e as Error).message),
    );
  });

  it("rounds an LSN inside a record down to the end of the record before it", async () => {
    const dump = await runCli(["waldump", "--tenant", tenantId, "--timeline", mainId, "--from", points[0].lsn, "--limit", "200"], env);
    const records = parsePgWaldumpOutput(dump.stdout);
    const index = records.findIndex((r, i) => i > 0 && r.totLen > 40 && parseLsn(r.lsn) % 8192n > 64n);
    const target = records[index];
    const inside = formatLsn(parseLsn(target.lsn) + 16n);
    const created = await createStrataClient(daemon.apiUrl).branches.create.mutate({ tenantId, name: "inside", lsn: inside });
    expect(created.requestedLsn).toBe(inside);
    expect(created.ancestorLsn).toBe(target.lsn);
  });

  it("maps a wall-clock time to the last commit before it", async () => {
    const created = await runCli(["branch", "create", "--tenant", tenantId, "--name", "by-time", "--at", new Date(timeBetween).toISOString(), "--json"], env);
    expect(created.code, created.stderr).toBe(0);
    const branch = JSON.parse(created.stdout);
    expect(parseLsn(branch.ancestorLsn)).toBeLessThanOrEqual(parseLsn(lsnAtTime));
    expect(parseLsn(branch.ancestorLsn)).toBeGreaterThan(parseLsn(points[1].lsn) - 1n);
    expect(parseLsn(branch.ancestorLsn)).toBeLessThanOrEqual(parseLsn(lsnBeforeTime));
  });

  it("rejects bad branch points, duplicate names and unknown parents with clear errors", async () => {
    const client = createStrataClient(daemon.apiUrl);
    await expect(client.branches.create.mutate({ tenantId, name: "low", lsn: "0/10" })).rejects.toSatisfy(
      (e) => errorCode(e) === "BAD_REQUEST" && /below the first readable LSN/.test((e as Error).message),
    );
    const far = formatLsn(parseLsn(await insertLsn(primary)) + 0x40000000n);
    await expect(client.branches.create.mutate({ tenantId, name: "far", lsn: far })).rejects.toSatisfy(
      (e) => errorCode(e) === "BAD_REQUEST" && /beyond what timeline .* has ingested/.test((e as Error).message),
    );
    await expect(client.branches.create.mutate({ tenantId, name: "p0" })).rejects.toSatisfy((e) => errorCode(e) === "CONFLICT");
    await expect(client.branches.create.mutate({ tenantId, name: "x", parentTimelineId: "ab".repeat(16) })).rejects.toSatisfy((e) => errorCode(e) === "NOT_FOUND");
    await expect(client.branches.create.mutate({ tenantId, name: "bad name!" })).rejects.toSatisfy((e) => errorCode(e) === "BAD_REQUEST");
    const concurrent = await Promise.allSettled(Array.from({ length: 5 }, () => client.branches.create.mutate({ tenantId, name: "racy" })));
    expect(concurrent.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(concurrent.filter((r) => r.status === "rejected" && errorCode(r.reason) === "CONFLICT")).toHaveLength(4);
  });

  it("compacts a timeline on request, and every LSN and branch reads the same pages after it", async () => {
    const blocks = [0, 1, Math.floor(accountBlocks / 2), accountBlocks - 1];
    const branches = (await createStrataClient(daemon.apiUrl).branches.list.query({ tenantId })).filter((t) => t.parentTimelineId === mainId);
    const read = async () => {
      const out: string[] = [];
      for (const lsn of [...points.map((p) => p.lsn), lsnAtTime, "latest"]) for (const block of blocks) out.push((await page(mainId, block, lsn)).toString("hex"));
      for (const branch of branches) for (const block of blocks) out.push((await page(branch.id, block)).toString("hex"));
      out.push((await page(mainId, 0, "latest", branchesRel)).toString("hex"));
      return out;
    };
    const before = await read();
    const compacted = await runCli(["timeline", "compact", "--tenant", tenantId, "--timeline", mainId, "--json"], env);
    expect(compacted.code, compacted.stderr).toBe(0);
    const result = JSON.parse(compacted.stdout);
    // pgbench rewrote every pgbench_branches/tellers page and many accounts pages since the import
    expect(result.images).toBeGreaterThan(10);
    expect(result.movedVersions).toBeGreaterThan(result.images);
    expect(result.failed).toBe(0);
    expect(await read()).toEqual(before);
    const text = await runCli(["timeline", "compact", "--tenant", tenantId, "--timeline", mainId], env);
    expect(text.stdout).toMatch(/^compacted at [0-9A-F]+\/[0-9A-F]+: \d+ block images stored/);
    const metrics = await (await fetch(`${daemon.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`strata_compaction_images_total\\{tenant="${tenantId}",timeline="${mainId}"\\} [1-9]`));
  });

  it("keeps every branch readable after a pageserver restart", async () => {
    const before = await createStrataClient(daemon.apiUrl).branches.list.query({ tenantId });
    const p0 = before.find((t) => t.name === "p0")!;
    const expected = await page(p0.id, 0);
    await daemon.stop();
    daemon = await startDaemon(dataDir, NO_AUTO_COMPACTION);
    env = { STRATA_API: daemon.apiUrl };
    const after = await createStrataClient(daemon.apiUrl).branches.list.query({ tenantId });
    expect(after.map((t) => t.id).sort()).toEqual(before.map((t) => t.id).sort());
    expect((await page(p0.id, 0)).equals(expected)).toBe(true);
  });

  /**
   * Creates a table of tens of MB on the primary (the pageserver takes a while to ingest its WAL
   * after the commit returns) and returns once the walreceiver has heard the primary's flush
   * position past it: it comes with the WAL streamed, ahead of ingest. Returns that position.
   */
  async function commitHeardBeforeIngested(table: string): Promise<string> {
    const client = createStrataClient(daemon.apiUrl);
    await primary.sql(`CREATE TABLE ${table} AS SELECT g, repeat(md5(g::text), 4) AS filler FROM generate_series(1, 300000) g`);
    const [{ lsn: flushed }] = await primary.sql<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn");
    for (;;) {
      const main = await client.timelines.get.query({ tenantId, timelineId: mainId });
      if (main.primaryFlushLsn !== null && parseLsn(main.primaryFlushLsn) >= parseLsn(flushed)) return flushed;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it("branches at latest after every commit its primary has flushed, even while ingest is still behind it", async () => {
    const client = createStrataClient(daemon.apiUrl);
    const flushed = await commitHeardBeforeIngested("after_commit");
    const branch = await client.branches.create.mutate({ tenantId, name: "after-commit" });
    expect(parseLsn(branch.ancestorLsn!)).toBeGreaterThanOrEqual(parseLsn(flushed));
    // the table is there on the branch, whole: its last page as on the primary's branch point
    const [{ filenode, bytes }] = await primary.sql<{ filenode: number; bytes: string }>("SELECT pg_relation_filenode('after_commit') AS filenode, pg_relation_size('after_commit')::text AS bytes");
    const rel = `${accounts.split("/").slice(0, 2).join("/")}/${filenode}`;
    const lastBlock = Number(bytes) / 8192 - 1;
    expect((await page(branch.id, lastBlock, "latest", rel)).equals(await page(mainId, lastBlock, branch.ancestorLsn!, rel))).toBe(true);
  });

  it("reads pages and takes full backups at latest after every commit its primary has flushed", async () => {
    const client = createStrataClient(daemon.apiUrl);
    const flushed = await commitHeardBeforeIngested("read_after_commit");
    const [{ filenode, bytes }] = await primary.sql<{ filenode: number; bytes: string }>("SELECT pg_relation_filenode('read_after_commit') AS filenode, pg_relation_size('read_after_commit')::text AS bytes");
    const rel = `${accounts.split("/").slice(0, 2).join("/")}/${filenode}`;
    const lastBlock = Number(bytes) / 8192 - 1;
    // the table's last page at latest, while ingest may still be behind the commit: waited for, not "no such relation"
    const read = await client.timelines.getPage.query({ tenantId, timelineId: mainId, rel, block: lastBlock, lsn: "latest" });
    expect(parseLsn(read.lsn)).toBeGreaterThanOrEqual(parseLsn(flushed));
    expect(Buffer.from(read.page, "base64").equals(await page(mainId, lastBlock, read.lsn, rel))).toBe(true);
    const { lsn: latest } = await client.timelines.latestLsn.query({ tenantId, timelineId: mainId });
    expect(parseLsn(latest)).toBeGreaterThanOrEqual(parseLsn(flushed));
    // the CLI's full backup without --lsn is taken there: the table's file is in it, whole
    const out = path.join(dataDir, "after-commit.tar");
    const backup = await runCli(["fullbackup", "--tenant", tenantId, "--timeline", "main", "--out", out], env);
    expect(backup.code, backup.stderr).toBe(0);
    const at = /\(at ([0-9A-F]+\/[0-9A-F]+)\)/.exec(backup.stderr)?.[1];
    expect(at, backup.stderr).toBeDefined();
    expect(parseLsn(at!)).toBeGreaterThanOrEqual(parseLsn(flushed));
    const listing = execFileSync("tar", ["-tvf", out], { encoding: "utf8" });
    const member = listing.split("\n").find((line) => line.endsWith(`base/${rel.split("/")[1]}/${filenode}`));
    expect(member, "the table's file in the archive").toBeDefined();
    expect(member!.split(/\s+/)[2]).toBe(bytes);
  });
});
