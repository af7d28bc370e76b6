// Compaction in the daemon: a pass cut short by a crash (kill -9 between two of its batches), a
// restart, the passes that follow, and postgres started on branches at points below, between and
// above the cuts has exactly the primary's data at each point.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStrataClient } from "@strata/api/client";
import { pgBinary } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { makeDataDir, PGBENCH_CHECKSUMS, query, removeDataDir, startDaemon, waitForCompactionPasses, type Daemon } from "./test-daemon.ts";

/** Passes whenever the WAL goes quiet, without waiting between them. */
const EAGER = { STRATA_COMPACTION_INTERVAL_S: "0" };

describe("compaction in the pageserver", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let tenantId: string;
  let mainId: string;
  const points: Array<{ lsn: string; sums: Record<string, unknown> }> = [];

  async function checkpoint() {
    const [sums] = await primary.sql(PGBENCH_CHECKSUMS);
    const [{ lsn }] = await primary.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
    points.push({ lsn, sums });
    await createStrataClient(daemon.apiUrl).timelines.waitLsn.mutate({ tenantId, timelineId: mainId, lsn, timeoutSeconds: 120 });
  }

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    dataDir = makeDataDir();
    // no compaction while the history is written
    daemon = await startDaemon(dataDir, { STRATA_COMPACTION_MIN_RECORDS: "0" });
    const tenant = await createStrataClient(daemon.apiUrl).tenants.create.mutate({ fromPrimary: primary.connectionString() });
    tenantId = tenant.id;
    mainId = tenant.timelines[0].id;
    for (let i = 0; i < 2; i++) {
      await primary.pgbench(["-t", "300", "-c", "2"]);
      await checkpoint();
    }
    await daemon.stop();
  });

  afterAll(async () => {
    await daemon?.stop();
    await primary?.stop();
    if (dataDir) removeDataDir(dataDir);
  });

  it("loses nothing when a pass dies halfway, and the pass after a restart cuts what was written before it", async () => {
    // the first pass after attach takes every block with history; the failpoint kills the daemon
    // after its first batch, as kill -9 would
    daemon = await startDaemon(dataDir, { ...EAGER, STRATA_FAILPOINTS: "compaction-after-batch=exit" });
    const exited = await Promise.race([new Promise<number | null>((resolve) => daemon.process.once("exit", resolve)), new Promise<"alive">((r) => setTimeout(() => r("alive"), 60_000))]);
    expect(exited, daemon.output()).not.toBe("alive");
    daemon = await startDaemon(dataDir, EAGER);
    await waitForCompactionPasses(daemon, mainId, (passes) => passes.some((p) => p.images > 0));
    // then blocks written while it follows the primary
    await primary.pgbench(["-t", "300", "-c", "2"]);
    await checkpoint();
    await waitForCompactionPasses(daemon, mainId, (passes) => passes.length >= 2);
    await primary.pgbench(["-t", "100", "-c", "2"]);
    await checkpoint();
  });

  it("gives branches below, between and above the cuts exactly the primary's data", async () => {
    const client = createStrataClient(daemon.apiUrl);
    for (const [i, point] of points.entries()) {
      await client.branches.create.mutate({ tenantId, name: `c${i}`, lsn: point.lsn });
      const endpoint = await client.endpoints.start.mutate({ tenantId, branch: `c${i}` });
      try {
        const [sums] = await query(endpoint.connectionString!, PGBENCH_CHECKSUMS);
        expect(sums, `branch at ${point.lsn}`).toEqual(point.sums);
        const amcheck = await promisify(execFile)(pgBinary("pg_amcheck"), ["-h", "127.0.0.1", "-p", String(endpoint.port), "-U", "postgres", "--install-missing", "--heapallindexed", "postgres"]).then(
          (r) => `${r.stdout}${r.stderr}`,
          (e) => `exit ${e.code}: ${e.stdout}${e.stderr}`,
        );
        expect(amcheck).toBe("");
      } finally {
        await client.endpoints.stop.mutate({ tenantId, branch: `c${i}` });
      }
    }
  });

  it("cuts a timeline whose primary is never quiet once the longest wait has passed, and its branches read the primary's data", async () => {
    // a second pageserver: its own tenant on the same primary, passes under load after 2 s
    const busyDir = makeDataDir();
    const busy = await startDaemon(busyDir, { STRATA_COMPACTION_MAX_WAIT_S: "2" });
    try {
      const client = createStrataClient(busy.apiUrl);
      const tenant = await client.tenants.create.mutate({ fromPrimary: primary.connectionString() });
      const timelineId = tenant.timelines[0].id;
      // (at a fixed rate: its WAL stays above the compactor's quiet threshold, and the pageserver
      // keeps up even on a machine busy with other tests; a pass waits while its timeline falls behind)
      const load = primary.pgbench(["-T", "15", "-c", "2", "-R", "1000"]);
      let loadDone = false;
      void load.finally(() => (loadDone = true));
      await waitForCompactionPasses(busy, timelineId, (passes) => passes.some((p) => p.underLoad && p.images > 0), 60);
      // the pass ran while the load did: no quiet spell let it in
      expect(loadDone).toBe(false);
      await load;
      const [sums] = await primary.sql(PGBENCH_CHECKSUMS);
      const [{ lsn }] = await primary.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
      await client.timelines.waitLsn.mutate({ tenantId: tenant.id, timelineId, lsn, timeoutSeconds: 120 });
      await client.branches.create.mutate({ tenantId: tenant.id, name: "after-load", lsn });
      const endpoint = await client.endpoints.start.mutate({ tenantId: tenant.id, branch: "after-load" });
      try {
        expect((await query(endpoint.connectionString!, PGBENCH_CHECKSUMS))[0]).toEqual(sums);
      } finally {
        await client.endpoints.stop.mutate({ tenantId: tenant.id, branch: "after-load" });
      }
      await client.tenants.delete.mutate({ id: tenant.id });
    } finally {
      await busy.stop();
      removeDataDir(busyDir);
    }
  });
});
