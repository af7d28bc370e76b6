// Heap and Heap2 redo against a primary with data checksums and wal_level=logical: VISIBLE then
// registers the heap page with images, hint bits cause XLOG/FPI_FOR_HINT images, and heap records
// carry logical-decoding extras (old keys, KEEP_DATA block data next to full-page images).
import { describe, expect, it } from "vitest";
import { runConsistencyOracle } from "./oracle.ts";

describe("heap redo with checksums and logical WAL", () => {
  it("rebuilds heap pages with data checksums and wal_level=logical (hint-bit images, logged old keys)", async () => {
    const report = await runConsistencyOracle({
      rmgrs: ["Heap", "Heap2"],
      initdbArgs: ["--data-checksums"],
      settings: { wal_level: "logical" },
      compareOnDisk: true,
      workload: async (cluster) => {
        await cluster.script(`
          CREATE TABLE k (id int PRIMARY KEY, v int, s text);
          ALTER TABLE k REPLICA IDENTITY FULL;
          INSERT INTO k SELECT g, g, repeat('s', g % 300) FROM generate_series(1, 2500) g;
          SELECT count(*) FROM k WHERE v > 0;
          CHECKPOINT;
          UPDATE k SET v = v + 1 WHERE id % 3 = 0;
          UPDATE k SET id = -id WHERE id % 50 = 0;
          DELETE FROM k WHERE id % 5 = 1;
          SELECT count(*) FROM k WHERE v > 0;
          VACUUM k;
          CHECKPOINT;
          SELECT * FROM k WHERE id < 20 FOR UPDATE;
          UPDATE k SET s = 'short' WHERE id % 7 = 0;
          VACUUM FREEZE k;
          COPY k (id) FROM PROGRAM 'seq 10001 12000';
          TRUNCATE k;
          -- pages changed since the checkpoint: VACUUM's VISIBLE records carry no heap image
          CREATE TABLE vis (id int, v int);
          INSERT INTO vis SELECT g, g FROM generate_series(1, 5000) g;
          CHECKPOINT;
          UPDATE vis SET v = v + 1 WHERE id % 10 = 0;
          VACUUM vis;
        `);
      },
    });
    const heapTypes = Object.keys(report.checked).filter((t) => t.startsWith("Heap"));
    console.log("checked (checksums, logical)", Object.fromEntries(heapTypes.map((t) => [t, report.checked[t]])));
    expect(report.mismatches).toEqual([]);
    expect(report.errors).toEqual({});
    expect(Object.keys(report.unsupported).filter((t) => t.startsWith("Heap"))).toEqual([]);
    expect(report.onDisk?.mismatches.filter((m) => m.type === "heap" || m.type === "vm")).toEqual([]);
    // with checksums VISIBLE stamps the heap page LSN too (the masks hide LSNs, so compare them apart)
    console.log("page LSN differences on disk", report.onDisk?.lsnDifferences);
    expect(report.onDisk?.lsnDifferences.heap ?? 0).toBe(0);
    expect(report.onDisk?.compared.heap).toBeGreaterThan(50);
    for (const type of ["Heap/INSERT", "Heap/UPDATE", "Heap/HOT_UPDATE", "Heap/DELETE", "Heap/LOCK", "Heap2/PRUNE", "Heap2/VISIBLE", "Heap2/MULTI_INSERT"]) {
      expect(report.checked[type] ?? 0, type).toBeGreaterThan(0);
    }
  });
});
