// Benchmark: branch creation latency does not depend on the database size (O(1) branching).
// One pageserver, two tenants following two primaries: a fresh cluster (~10 MB per database,
// baseline) and one with pgbench -i -s BENCH_SCALE (default 12, ~200 MB; BENCH_SCALE=70 for ~1 GB),
// each followed by a short pgbench run so the timeline has WAL on top of the import. Then
// BENCH_BRANCHES branches per tenant through the API (branches.create round trip), alternating
// tenants, half at the latest LSN and half at an LSN from before the pgbench run; prints p50/mean/max
// in ms per size and the ratio large / small (target ~1).
//
//   npx tsx bench/branch-create.mts
//   BENCH_SCALE=70 npx tsx bench/branch-create.mts   # ~1 GB
import { PgCluster } from "@strata/core/testing";
import { createStrataClient } from "@strata/api/client";
import { makeDataDir, removeDataDir, startDaemon, type Daemon } from "../apps/pageserver/src/test-daemon.ts";
import { envNumber, fmtMB, percentile, progress, progressDone } from "./lib.mts";

const SCALE = envNumber("BENCH_SCALE", 12);
const BRANCHES = envNumber("BENCH_BRANCHES", 20);
const PGBENCH_SECONDS = envNumber("BENCH_PGBENCH_SECONDS", 5);
const SETTINGS = { max_wal_size: "'4GB'", checkpoint_timeout: "'1h'", shared_buffers: "'128MB'" };

const clusters: PgCluster[] = [];
const dataDir = makeDataDir();
let daemon: Daemon | undefined;
try {
  daemon = await startDaemon(dataDir);
  const api = createStrataClient(daemon.apiUrl, "bench");
  const sizes: Array<{ label: string; scale: number }> = [
    { label: "small", scale: 0 },
    { label: "large", scale: SCALE },
  ];
  const tenants: Array<{ label: string; tenantId: string; timelineId: string; bytes: number; oldLsn: string }> = [];
  for (const { label, scale } of sizes) {
    const cluster = await PgCluster.start({ settings: SETTINGS });
    clusters.push(cluster);
    if (scale) {
      progress(`${label}: pgbench -i -s ${scale}`);
      await cluster.pgbench(["-i", "-s", String(scale), "-q"]);
    } else {
      await cluster.pgbench(["-i", "-s", "1", "-I", "dt", "-q"]); // empty pgbench tables, for the workload
    }
    progress(`${label}: creating the tenant from the primary`);
    const tenant = await api.tenants.create.mutate({ fromPrimary: cluster.connectionString() });
    const ids = { tenantId: tenant.id, timelineId: tenant.timelines[0].id };
    const [{ lsn: oldLsn }] = await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn");
    await api.timelines.waitLsn.mutate({ ...ids, lsn: oldLsn, timeoutSeconds: 600 });
    if (scale) {
      progress(`${label}: pgbench -T ${PGBENCH_SECONDS}`);
      await cluster.pgbench(["-n", "-c", "2", "-T", String(PGBENCH_SECONDS)]);
    } else {
      await cluster.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    }
    const [{ lsn, bytes }] = await cluster.sql<{ lsn: string; bytes: string }>(
      "SELECT pg_current_wal_flush_lsn()::text AS lsn, pg_database_size('postgres')::text AS bytes",
    );
    await api.timelines.waitLsn.mutate({ ...ids, lsn, timeoutSeconds: 600 });
    tenants.push({ label, ...ids, bytes: Number(bytes), oldLsn });
  }
  // one warm-up branch each (first-call costs: JIT, prisma)
  for (const t of tenants) await api.branches.create.mutate({ tenantId: t.tenantId, name: "warmup" });

  const ms: Record<string, { latest: number[]; atLsn: number[] }> = {};
  for (let i = 0; i < BRANCHES; i++) {
    for (const t of tenants) {
      progress(`branch ${i + 1}/${BRANCHES} on ${t.label}`);
      const atLsn = i % 2 === 1;
      const t0 = performance.now();
      await api.branches.create.mutate({ tenantId: t.tenantId, name: `b${i}`, ...(atLsn ? { lsn: t.oldLsn } : {}) });
      const elapsed = performance.now() - t0;
      const m = (ms[t.label] ??= { latest: [], atLsn: [] });
      (atLsn ? m.atLsn : m.latest).push(elapsed);
    }
  }
  progressDone();

  const stats = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(1)} ms, mean ${(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
  for (const t of tenants) {
    const m = ms[t.label];
    console.log(`${t.label} (database 'postgres' ${fmtMB(t.bytes)}): at latest ${stats(m.latest)}; at an older LSN ${stats(m.atLsn)}; all ${stats([...m.latest, ...m.atLsn])}`);
  }
  const p50 = (label: string) => percentile([...ms[label].latest, ...ms[label].atLsn], 50);
  console.log(
    `ratio large / small p50: ${(p50("large") / p50("small")).toFixed(3)}x (target ~1); at latest ${(percentile(ms.large.latest, 50) / percentile(ms.small.latest, 50)).toFixed(3)}x, ` +
      `at an older LSN ${(percentile(ms.large.atLsn, 50) / percentile(ms.small.atLsn, 50)).toFixed(3)}x`,
  );
} finally {
  progressDone();
  if (daemon) await daemon.stop().catch(() => {});
  removeDataDir(dataDir);
  for (const c of clusters) await c.stop();
}
