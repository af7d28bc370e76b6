import { describe, expect, it } from "vitest";
import { runConsistencyOracle } from "./oracle.ts";

describe("GIN redo against PostgreSQL's own page images", () => {
  it("rebuilds entry trees, posting trees and the pending list through inserts, flushes, deletes and vacuum", async () => {
    const report = await runConsistencyOracle({
      rmgrs: ["Gin"],
      workload: async (cluster) => {
        // rows arrive through COPY (one heap record per page, not per row); GIN still indexes each row
        const copy = (from: number, to: number, row: string) =>
          cluster.sql(`COPY g FROM PROGRAM $$awk 'BEGIN { for (i = ${from}; i <= ${to}; i++) print ${row} }'$$`);
        await cluster.sql("CREATE TABLE g (id int, a int[], t tsvector, j jsonb)");
        // bulk-built index (logged as page images): posting trees of several leaf pages for keys 1 and 10..13
        await copy(1, 30000, `i "\\t{1," 10 + i % 4 "}\\tw" i % 50 " common\\t{\\"k\\": " i % 7 "}"`);
        await cluster.sql("CREATE INDEX g_a ON g USING gin (a) WITH (fastupdate = off)");
        // maintained row by row: a fast-update pending list flushed at its (smallest) limit, and direct inserts
        await cluster.sql("CREATE INDEX g_t ON g USING gin (t) WITH (fastupdate = on, gin_pending_list_limit = 64)");
        await cluster.sql("CREATE INDEX g_j ON g USING gin (j jsonb_path_ops) WITH (fastupdate = off)");
        // appends to the posting trees (leaf recompression, leaf splits, downlinks added to internal
        // pages), key 500 growing from an entry posting list into a posting tree, every third row's
        // unique key splitting entry pages, pending list pages and their flushes
        await copy(30001, 34000, `i "\\t{1,500" (i % 3 == 0 ? "," i : "") "}\\tn" i " common w" i % 50 "\\t{\\"k\\": " i % 7 "}"`);
        // empty the middle of the big posting trees (page deletion) and thin the rest (leaf vacuum)
        await cluster.sql("DELETE FROM g WHERE id BETWEEN 5000 AND 22000 OR id % 7 = 0");
        await cluster.sql("VACUUM g");
        await copy(50001, 50600, `i "\\t{1,500," i % 300 "}\\tz" i % 300 " common\\t{\\"k\\": " i % 11 "}"`);
        await cluster.sql("SELECT gin_clean_pending_list('g_t')");
        await cluster.sql("DELETE FROM g WHERE id > 30000 AND id % 3 = 0");
        await cluster.sql("VACUUM g");
      },
    });
    console.log("Gin oracle", JSON.stringify({ checked: report.checked, unsupported: report.unsupported, errors: report.errors, records: report.records }));
    expect(report.mismatches).toEqual([]);
    expect(report.errors).toEqual({});
    expect(Object.keys(report.unsupported).filter((k) => k.startsWith("Gin/"))).toEqual([]);
    // SPLIT and VACUUM_PAGE pages arrive as forced full-page images, so the oracle has nothing to
    // compare for them (a SPLIT's child block 3 only appears when an internal page splits)
    const floors: Record<string, number> = {
      "Gin/INSERT": 12000,
      "Gin/CREATE_PTREE": 1,
      "Gin/INSERT_LISTPAGE": 20,
      "Gin/UPDATE_META_PAGE": 5000,
      "Gin/DELETE_LISTPAGE": 20,
      "Gin/VACUUM_DATA_LEAF_PAGE": 15,
      "Gin/DELETE_PAGE": 3,
    };
    for (const [type, floor] of Object.entries(floors)) expect(report.checked[type] ?? 0, type).toBeGreaterThanOrEqual(floor);
  });
});
