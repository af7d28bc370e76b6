import { describe, expect, it } from "vitest";
import { runConsistencyOracle } from "./oracle.ts";

describe("BRIN redo against PostgreSQL's own page images", () => {
  it("rebuilds metapage, revmap and summary pages through build, summarize, widen and desummarize", async () => {
    const report = await runConsistencyOracle({
      rmgrs: ["BRIN"],
      workload: async (cluster) => {
        await cluster.sql("CREATE TABLE t (id int, v int, b box, tag text) WITH (fillfactor = 90)");
        await cluster.sql("INSERT INTO t SELECT g, g % 1000, box(point(g, g), point(g + 1, g + 1)), 'tag' || (g % 97) FROM generate_series(1, 20000) g");
        // pages_per_range 1: one revmap entry per heap page, so the revmap spans several pages
        await cluster.sql("CREATE INDEX t_minmax ON t USING brin (id, v, tag) WITH (pages_per_range = 1)");
        await cluster.sql("CREATE INDEX t_incl ON t USING brin (b) WITH (pages_per_range = 2)");
        await cluster.sql("CREATE INDEX t_multi ON t USING brin (id int4_minmax_multi_ops, v int4_bloom_ops) WITH (pages_per_range = 4)");
        // new ranges past the summarized ones, then summarized explicitly
        await cluster.sql("INSERT INTO t SELECT g, g % 1000, box(point(g, g), point(g + 1, g + 1)), 'tag' || (g % 97) FROM generate_series(20001, 115000) g");
        await cluster.sql("SELECT brin_summarize_new_values('t_minmax'), brin_summarize_new_values('t_incl'), brin_summarize_new_values('t_multi')");
        // free space in summarized pages, then values that widen those ranges (same-page and cross-page updates)
        await cluster.sql("DELETE FROM t WHERE id % 5 = 0 AND id < 30000");
        await cluster.sql("VACUUM t");
        await cluster.sql("INSERT INTO t SELECT -g, 100000 + g, box(point(-g, -g), point(g * 3, g * 3)), repeat('w', 40) || g FROM generate_series(1, 1500) g");
        await cluster.sql("UPDATE t SET v = v + 500000, tag = tag || 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' WHERE id % 7 = 0 AND id < 12000");
        // desummarize a spread of ranges and summarize some back
        await cluster.sql("SELECT brin_desummarize_range('t_minmax', n) FROM generate_series(0, 1500, 3) n");
        await cluster.sql("SELECT brin_desummarize_range('t_incl', n) FROM generate_series(0, 1500, 10) n");
        await cluster.sql("SELECT brin_desummarize_range('t_multi', n) FROM generate_series(0, 1500, 8) n");
        await cluster.sql("SELECT brin_summarize_range('t_minmax', n) FROM generate_series(0, 600, 6) n");
        await cluster.sql("SELECT brin_summarize_new_values('t_incl')");
      },
    });
    console.log("BRIN oracle", JSON.stringify({ checked: report.checked, unsupported: report.unsupported, errors: report.errors, records: report.records }));
    expect(report.mismatches.slice(0, 5)).toEqual([]);
    expect(report.mismatches.length).toBe(0);
    expect(report.errors).toEqual({});
    expect(Object.keys(report.unsupported).filter((k) => k.startsWith("BRIN/"))).toEqual([]);
    expect(report.checked["BRIN/CREATE_INDEX"]).toBeGreaterThanOrEqual(3);
    expect(report.checked["BRIN/INSERT"]).toBeGreaterThan(1000);
    expect(report.checked["BRIN/INSERT+INIT"]).toBeGreaterThan(5);
    expect(report.checked["BRIN/UPDATE"]).toBeGreaterThan(20);
    expect(report.checked["BRIN/UPDATE+INIT"]).toBeGreaterThan(5);
    expect(report.checked["BRIN/SAMEPAGE_UPDATE"]).toBeGreaterThan(100);
    expect(report.checked["BRIN/REVMAP_EXTEND"]).toBeGreaterThanOrEqual(4);
    expect(report.checked["BRIN/DESUMMARIZE"]).toBeGreaterThan(100);
  });
});
