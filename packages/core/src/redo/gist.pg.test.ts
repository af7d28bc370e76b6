import { describe, expect, it } from "vitest";
import { runConsistencyOracle } from "./oracle.ts";

describe("GiST redo against PostgreSQL's own page images", () => {
  it("rebuilds GiST pages through inserts, leaf and root splits, kill-bit pruning, vacuum and page deletion", async () => {
    let rootFlags: string[] = [];
    const report = await runConsistencyOracle({
      rmgrs: ["Gist"],
      prepare: async (cluster) => {
        await cluster.sql("CREATE EXTENSION pageinspect");
        await cluster.sql("CREATE EXTENSION btree_gist");
      },
      workload: async (cluster) => {
        // indexes created empty so every page is built by WAL-logged inserts and splits
        await cluster.sql("CREATE TABLE pts (id int, p point, b box, r int4range)");
        await cluster.sql("CREATE INDEX pts_p ON pts USING gist (p)");
        await cluster.sql("CREATE INDEX pts_b ON pts USING gist (b)");
        await cluster.sql("CREATE INDEX pts_r ON pts USING gist (r)");
        // wide keys (a few internal entries per page): internal pages split too, completing child splits
        await cluster.sql("CREATE TABLE wide (id int, s text); CREATE INDEX wide_s ON wide USING gist (s)");
        await cluster.sql("INSERT INTO wide SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 7) FROM generate_series(1, 1500) g ORDER BY md5(g::text)");
        await cluster.sql(
          `INSERT INTO pts SELECT g, point(g % 300, g / 300), box(point(g % 200, g / 200), point(g % 200 + 3, g / 200 + 2)),
                  int4range(g, g + (g % 50) + 1) FROM generate_series(1, 5000) g`,
        );
        await cluster.sql("DELETE FROM pts WHERE id % 3 = 0 OR (id > 2000 AND id < 3500)");
        // index scans over dead rows set LP_DEAD; later inserts into those leaves prune them (DELETE records)
        await cluster.sql("SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM pts WHERE p <@ box(point(0, 0), point(300, 20)); SELECT count(*) FROM pts WHERE r && int4range(0, 5000)");
        await cluster.sql(
          `INSERT INTO pts SELECT g, point(g % 300, (g % 1500) / 300 + 6), box(point(g % 200, g / 200), point(g % 200 + 3, g / 200 + 2)),
                  int4range(g % 1500 + 2000, g % 1500 + 2005) FROM generate_series(5001, 6500) g`,
        );
        await cluster.sql("VACUUM pts");
        // the root (block 0) has been split: it is an internal page now
        const roots = await cluster.sql<{ flags: string[] }>("SELECT flags FROM gist_page_opaque_info(get_raw_page('pts_p', 0))");
        rootFlags = roots[0].flags;
        // emptied leaves are deleted by vacuum (PAGE_DELETE); the next vacuum makes them reusable
        await cluster.sql("DELETE FROM pts WHERE id > 3000");
        await cluster.sql("VACUUM pts");
        await cluster.sql("VACUUM pts");
        await cluster.sql("INSERT INTO pts SELECT g, point(g % 50, g % 70), box(point(g % 50, g % 70), point(g % 50 + 1, g % 70 + 1)), int4range(g, g + 2) FROM generate_series(1, 1000) g");
      },
    });
    console.log("GiST oracle", JSON.stringify({ checked: report.checked, unsupported: report.unsupported, errors: report.errors, records: report.records }));
    expect(rootFlags).not.toContain("leaf");
    expect(report.mismatches.slice(0, 5)).toEqual([]);
    expect(report.mismatches.length).toBe(0);
    expect(report.errors).toEqual({});
    expect(Object.keys(report.unsupported).filter((k) => k.startsWith("Gist/"))).toEqual([]);
    expect(report.checked["Gist/PAGE_UPDATE"]).toBeGreaterThan(1000);
    expect(report.checked["Gist/PAGE_SPLIT"]).toBeGreaterThan(100);
    expect(report.checked["Gist/DELETE"] ?? 0).toBeGreaterThan(0);
    expect(report.checked["Gist/PAGE_DELETE"]).toBeGreaterThan(5);
  });
});
