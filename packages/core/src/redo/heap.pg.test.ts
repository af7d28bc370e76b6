// Heap and Heap2 redo checked against a real PostgreSQL 15 primary running with
// wal_consistency_checking=all: every page image those records carry must equal Strata's replayed
// page under heap_mask, and the data directory after a clean shutdown must match as well.
import pg from "pg";
import { describe, expect, it } from "vitest";
import type { PgCluster } from "../testing/pgcluster.ts";
import { runConsistencyOracle } from "./oracle.ts";

async function connect(cluster: PgCluster): Promise<pg.Client> {
  const client = new pg.Client({ host: cluster.host, port: cluster.port, user: "postgres", database: "postgres" });
  await client.connect();
  return client;
}

/** Row locks from concurrent sessions: multixacts, and locks that follow an update chain. */
async function concurrentLocks(cluster: PgCluster): Promise<void> {
  const a = await connect(cluster);
  const b = await connect(cluster);
  try {
    // two FOR SHARE lockers on the same rows -> xmax becomes a multixact
    await a.query("BEGIN");
    await b.query("BEGIN");
    await a.query("SELECT * FROM h WHERE id BETWEEN 10 AND 20 FOR SHARE");
    await b.query("SELECT * FROM h WHERE id BETWEEN 10 AND 20 FOR SHARE");
    await a.query("COMMIT");
    await b.query("COMMIT");
    // a non-key update in progress, then a key-share lock: the locker must follow the chain
    // (Heap2/LOCK_UPDATED) and combines with the updater into a multixact
    await a.query("BEGIN");
    await a.query("UPDATE h SET v = v + 1 WHERE id BETWEEN 30 AND 35");
    await b.query("BEGIN");
    await b.query("SELECT * FROM h WHERE id BETWEEN 30 AND 35 FOR KEY SHARE");
    await a.query("COMMIT");
    await b.query("COMMIT");
    // FOR UPDATE and FOR NO KEY UPDATE, then updates of the locked rows in the same transaction
    await a.query("BEGIN");
    await a.query("SELECT * FROM h WHERE id BETWEEN 40 AND 45 FOR UPDATE");
    await a.query("SELECT * FROM h WHERE id BETWEEN 46 AND 50 FOR NO KEY UPDATE");
    await a.query("UPDATE h SET v = -v WHERE id BETWEEN 40 AND 50");
    await a.query("COMMIT");
    // a savepoint rolled back after locking: the lock xid is a subtransaction
    await a.query("BEGIN; SAVEPOINT s; SELECT * FROM h WHERE id BETWEEN 60 AND 62 FOR UPDATE; ROLLBACK TO s; UPDATE h SET v = 0 WHERE id = 61; COMMIT");
  } finally {
    await a.end();
    await b.end();
  }
}

describe("heap redo against PostgreSQL's own page images", () => {
  it("rebuilds every heap page a pgbench run and a mixed SQL workload touch", async () => {
    const report = await runConsistencyOracle({
      rmgrs: ["Heap", "Heap2"],
      compareOnDisk: true,
      workload: async (cluster) => {
        await cluster.pgbench(["-i", "-s", "1", "-q"]);
        await cluster.pgbench(["-t", "300", "-c", "2", "-n"]);

        await cluster.script(`
          CREATE TABLE h (id int PRIMARY KEY, v int, pad text, note text) WITH (fillfactor = 60);
          INSERT INTO h SELECT g, g, repeat('p', 200), 'n' || g FROM generate_series(1, 3000) g;
          -- HOT updates (v is not indexed), with prefix/suffix compression of the new tuple
          UPDATE h SET v = v + 1 WHERE id % 5 = 0;
          UPDATE h SET v = v + 1 WHERE id % 5 = 0;
          -- non-HOT updates: key change, and growth that moves the tuple to another page
          UPDATE h SET id = id + 100000 WHERE id % 40 = 1;
          UPDATE h SET pad = repeat('q', 1500) WHERE id % 97 = 3;
          DELETE FROM h WHERE id % 7 = 0;
        `);
        await concurrentLocks(cluster);
        await cluster.script(`
          -- speculative insertion: confirmed inserts, and ON CONFLICT DO UPDATE (lock + update)
          INSERT INTO h SELECT g, g, 'spec', NULL FROM generate_series(2990, 3100) g ON CONFLICT DO NOTHING;
          INSERT INTO h SELECT g, 1, 'upsert', NULL FROM generate_series(3050, 3150) g ON CONFLICT (id) DO UPDATE SET v = h.v + excluded.v;
          -- TOAST: out-of-line values, updated and deleted
          CREATE TABLE big (id int, doc text);
          ALTER TABLE big ALTER COLUMN doc SET STORAGE EXTERNAL;
          INSERT INTO big SELECT g, string_agg(md5(g::text || i::text), '') FROM generate_series(1, 40) g, generate_series(1, 150) i GROUP BY g;
          UPDATE big SET doc = doc || 'x' WHERE id % 3 = 0;
          DELETE FROM big WHERE id % 4 = 0;
          -- COPY: multi-inserts, on fresh pages and into pages with room
          CREATE TABLE c (n int, s text);
          COPY c (n) FROM PROGRAM 'seq 1 5000';
          DELETE FROM c WHERE n % 3 = 0;
          VACUUM c;
          COPY c (n) FROM PROGRAM 'seq 1 2000';
          -- cross-partition update: the old row is deleted with a moved-partitions ctid
          CREATE TABLE p (k int, v int) PARTITION BY RANGE (k);
          CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
          CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (200);
          INSERT INTO p SELECT g, g FROM generate_series(0, 99) g;
          UPDATE p SET k = k + 100 WHERE k % 10 = 0;
        `);
        // COPY FREEZE sets all-visible on the pages it fills
        await cluster.sql("BEGIN; TRUNCATE c; COPY c (n) FROM PROGRAM 'seq 1 3000' WITH (FREEZE); COMMIT");
        await cluster.script(`
          -- prune, vacuum, visibility map, freezing
          VACUUM h;
          UPDATE h SET v = v + 1 WHERE id % 11 = 0;
          VACUUM FREEZE h;
          VACUUM big;
          VACUUM (FREEZE) pgbench_accounts;
          -- table rewrites
          CLUSTER h USING h_pkey;
          VACUUM FULL big;
          ALTER TABLE c ALTER COLUMN n TYPE bigint;
          INSERT INTO h SELECT g, g, 'after', NULL FROM generate_series(200000, 200500) g;
          UPDATE h SET v = 7 WHERE id BETWEEN 200000 AND 200100;
        `);
      },
    });

    const heapTypes = Object.keys(report.checked).filter((t) => t.startsWith("Heap"));
    console.log("checked", Object.fromEntries(heapTypes.map((t) => [t, report.checked[t]])), "records", report.records);
    console.log("on disk", report.onDisk?.compared, "unsupported", report.unsupported, report.onDisk?.unsupported);
    expect(report.mismatches).toEqual([]);
    expect(report.errors).toEqual({});
    expect(Object.keys(report.unsupported).filter((t) => t.startsWith("Heap"))).toEqual([]);
    // other access methods' pages are other rmgrs' business; heap and VM pages are ours
    expect(report.onDisk?.mismatches.filter((m) => m.type === "heap" || m.type === "vm")).toEqual([]);
    expect(report.onDisk?.compared.heap ?? 0).toBeGreaterThan(1000);
    // without checksums or wal_log_hints VISIBLE leaves the heap page LSN alone, as PostgreSQL does
    expect(report.onDisk?.lsnDifferences.heap ?? 0).toBe(0);
    for (const type of [
      "Heap/INSERT",
      "Heap/INSERT+INIT",
      "Heap/UPDATE",
      "Heap/HOT_UPDATE",
      "Heap/DELETE",
      "Heap/LOCK",
      "Heap/CONFIRM",
      "Heap/INPLACE",
      "Heap2/PRUNE",
      "Heap2/VACUUM",
      "Heap2/FREEZE_PAGE",
      "Heap2/VISIBLE",
      "Heap2/MULTI_INSERT",
      "Heap2/MULTI_INSERT+INIT",
      "Heap2/LOCK_UPDATED",
    ]) {
      expect(report.checked[type] ?? 0, type).toBeGreaterThan(0);
    }
    expect(report.checked["Heap/HOT_UPDATE"]).toBeGreaterThan(300);
  });
});
