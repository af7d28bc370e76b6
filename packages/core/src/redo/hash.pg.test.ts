import { describe, expect, it } from "vitest";
import { runConsistencyOracle } from "./oracle.ts";

describe("hash index redo against PostgreSQL's own page images", () => {
  it("rebuilds meta, bucket, overflow and bitmap pages through splits, squeezes, vacuum and dead-tuple cleanup", async () => {
    const report = await runConsistencyOracle({
      rmgrs: ["Hash"],
      workload: async (cluster) => {
        // rows arrive through COPY (one heap record per page, not per row); the index gets each row
        const copy = (from: number, to: number, row: string) =>
          cluster.sql(`COPY h FROM PROGRAM $$awk 'BEGIN { for (i = ${from}; i <= ${to}; i++) print ${row} }'$$`);
        await cluster.sql("CREATE TABLE h (k int, v text)");
        // a small initial index, so inserts split buckets many times
        await cluster.sql("CREATE INDEX hi ON h USING hash (k) WITH (fillfactor = 10)");
        await copy(1, 4000, `i "\\tx"`);
        // long chains of equal keys: overflow pages, and more bitmap bits
        await copy(1, 4000, `i % 5 "\\tdup" i`);
        // VACUUM: bucket deletes, split cleanup, squeezing chains, freed overflow pages, metapage update
        await cluster.sql("DELETE FROM h WHERE k % 3 = 0 OR (v LIKE 'dup%' AND k IN (1, 2)) OR (v LIKE 'dup%' AND right(v, 1) IN ('0', '3', '4', '7', '9'))");
        await cluster.sql("VACUUM h");
        // freed overflow pages are reused by new chains
        await copy(1, 1500, `100 + i % 3 "\\tagain" i`);
        // dead tuples seen by index scans get LP_DEAD; inserts into full pages then remove them first
        await cluster.sql("DELETE FROM h WHERE v LIKE 'again%' AND right(v, 1) IN ('0', '1', '2', '5', '6', '8')");
        await cluster.sql(
          "SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM h WHERE k = 100; SELECT count(*) FROM h WHERE k = 101; SELECT count(*) FROM h WHERE k = 102",
        );
        await copy(1, 1500, `100 + i % 3 "\\tmore"`);
        await copy(4001, 7000, `i "\\ttail"`);
        await cluster.sql("DELETE FROM h WHERE k % 2 = 0");
        await cluster.sql("VACUUM h");
      },
    });
    console.log("Hash oracle", JSON.stringify({ checked: report.checked, unsupported: report.unsupported, errors: report.errors, records: report.records }));
    expect(report.mismatches).toEqual([]);
    expect(report.errors).toEqual({});
    expect(Object.keys(report.unsupported).filter((k) => k.startsWith("Hash/"))).toEqual([]);
    const floors: Record<string, number> = {
      "Hash/INIT_META_PAGE": 1,
      "Hash/INIT_BITMAP_PAGE": 2,
      "Hash/INSERT": 20000,
      "Hash/SPLIT_ALLOCATE_PAGE": 300,
      "Hash/SPLIT_COMPLETE": 200,
      "Hash/SPLIT_CLEANUP": 100,
      "Hash/ADD_OVFL_PAGE": 30,
      "Hash/DELETE": 300,
      "Hash/SQUEEZE_PAGE": 20,
      "Hash/MOVE_PAGE_CONTENTS": 2,
      "Hash/UPDATE_META_PAGE": 2,
      "Hash/VACUUM_ONE_PAGE": 2,
    };
    for (const [type, floor] of Object.entries(floors)) expect(report.checked[type] ?? 0, type).toBeGreaterThanOrEqual(floor);
  });
});
