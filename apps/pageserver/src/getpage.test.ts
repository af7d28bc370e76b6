import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createStrataClient } from "@strata/api/client";
import { formatLsn, parseLsn } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { makeDataDir, removeDataDir, runCli, startDaemon, type Daemon } from "./test-daemon.ts";

describe("strata getpage (GetPage@LSN through the API and CLI)", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let env: Record<string, string>;
  let tenantId: string;
  let timelineId: string;
  let rel: string;
  let dbOid: number;
  let filenode: number;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    // a table written and checkpointed before the import, then never touched again
    await primary.sql("CREATE TABLE still (id int, t text); INSERT INTO still SELECT g, repeat('s', 100) FROM generate_series(1, 2000) g");
    await primary.sql("SELECT count(*) FROM still"); // set hint bits now, so the file stops changing
    await primary.sql("CHECKPOINT");
    const [row] = await primary.sql<{ db: number; filenode: number }>(
      "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()) AS db, pg_relation_filenode('still') AS filenode",
    );
    dbOid = row.db;
    filenode = row.filenode;
    rel = `1663/${dbOid}/${filenode}`;
    dataDir = makeDataDir();
    daemon = await startDaemon(dataDir);
    env = { STRATA_API: daemon.apiUrl };
    const tenant = await createStrataClient(daemon.apiUrl).tenants.create.mutate({ fromPrimary: primary.connectionString() });
    tenantId = tenant.id;
    timelineId = tenant.timelines[0].id;
  });

  afterAll(async () => {
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
  });

  it("returns the same 8192 bytes as the relation file for pages unchanged since the import", async () => {
    await primary.sql("CHECKPOINT");
    const file = readFileSync(path.join(primary.dataDir, "base", String(dbOid), String(filenode)));
    const out = path.join(os.tmpdir(), `strata-page-${process.pid}`);
    try {
      for (const block of [0, 5, Math.floor(file.length / 8192) - 1]) {
        const result = await runCli(["getpage", "--tenant", tenantId, "--timeline", timelineId, "--rel", rel, "--block", String(block), "--out", out], env);
        expect(result.code, result.stderr).toBe(0);
        const page = readFileSync(out);
        expect(page.length).toBe(8192);
        expect(page.equals(file.subarray(block * 8192, (block + 1) * 8192))).toBe(true);
      }
    } finally {
      rmSync(out, { force: true });
    }
  });

  it("rejects reads past the relation end, of unknown relations, below the timeline start, and times out on future LSNs", async () => {
    const client = createStrataClient(daemon.apiUrl);
    const info = await client.timelines.get.query({ tenantId, timelineId });
    const beyond = await runCli(["getpage", "--tenant", tenantId, "--timeline", timelineId, "--rel", rel, "--block", "99999", "--out", "-"], env);
    expect(beyond.code).toBe(1);
    expect(beyond.stderr).toMatch(/NOT_FOUND: block 99999 is beyond the end of relation .* \(\d+ blocks\)/);
    const unknown = await runCli(["getpage", "--tenant", tenantId, "--timeline", timelineId, "--rel", `1663/${dbOid}/999999`, "--block", "0", "--out", "-"], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/NOT_FOUND: relation .*999999.* does not exist/);
    const below = await runCli(["getpage", "--tenant", tenantId, "--timeline", timelineId, "--rel", rel, "--block", "0", "--lsn", "0/10", "--out", "-"], env);
    expect(below.code).toBe(1);
    expect(below.stderr).toMatch(/BAD_REQUEST: LSN 0\/10 is below the first readable LSN/);
    const future = formatLsn(parseLsn(info.lastRecordLsn) + 0x10000000n);
    const waited = await runCli(["getpage", "--tenant", tenantId, "--timeline", timelineId, "--rel", rel, "--block", "0", "--lsn", future, "--wait", "1", "--out", "-"], env);
    expect(waited.code).toBe(1);
    expect(waited.stderr).toMatch(/TIMEOUT: timed out after 1000 ms waiting for LSN/);
    const usage = await runCli(["getpage", "--tenant", tenantId, "--timeline", timelineId, "--rel", "nope", "--block", "0", "--out", "-"], env);
    expect(usage.code).toBe(2);
  });
});
