import { describe, expect, it } from "vitest";
import { runConsistencyOracle } from "./oracle.ts";

describe("SP-GiST redo against PostgreSQL's own page images", () => {
  it("rebuilds quad-tree, k-d tree and radix-tree pages through splits, node additions, vacuum and redirect cleanup", async () => {
    const report = await runConsistencyOracle({
      rmgrs: ["SPGist"],
      // every block of every index afterwards too: VACUUM writes the metapage's page cache without WAL
      compareOnDisk: true,
      workload: async (cluster) => {
        // indexes created empty so every page is built by WAL-logged inserts
        await cluster.sql("CREATE TABLE sp (id int, p point, t text)");
        await cluster.sql("CREATE INDEX sp_quad ON sp USING spgist (p)");
        await cluster.sql("CREATE INDEX sp_kd ON sp USING spgist (p kd_point_ops)");
        await cluster.sql("CREATE INDEX sp_text ON sp USING spgist (t)");
        // a tiny index whose root stays a leaf page (VACUUM_ROOT)
        await cluster.sql("CREATE TABLE small (t text); CREATE INDEX small_t ON small USING spgist (t)");
        await cluster.sql("INSERT INTO small SELECT 'v' || g FROM generate_series(1, 40) g");
        await cluster.sql(
          `INSERT INTO sp SELECT g, point((g * 7919) % 1000, (g * 104729) % 1000),
                  'http://example.com/' || (g % 13) || '/item/' || md5(g::text) FROM generate_series(1, 2000) g`,
        );
        // long shared prefixes later broken up: split tuples and new nodes in the radix tree
        await cluster.sql("INSERT INTO sp SELECT g, point(g % 37, g % 41), 'http://example.com/' || chr(65 + g % 26) || g FROM generate_series(3001, 3600) g");
        await cluster.sql("INSERT INTO sp SELECT g, NULL, CASE WHEN g % 2 = 0 THEN NULL ELSE 'ftp://' || g END FROM generate_series(3601, 3800) g");
        await cluster.sql("INSERT INTO sp SELECT g, point(500 + g % 3, 500 + g % 5), 'a' || repeat('b', g % 50) || g FROM generate_series(3801, 4500) g");
        await cluster.sql("INSERT INTO sp SELECT g, point(g % 11, g % 13), 'common/prefix/path/' || repeat(chr(97 + g % 5), 1 + g % 9) || '/' || (g % 17) FROM generate_series(4501, 4900) g");
        // radix-tree inner tuples (long prefixes) that keep gaining nodes outgrow their page and move (ADD_NODE to another page)
        await cluster.sql("CREATE TABLE words (w text); CREATE INDEX words_w ON words USING spgist (w)");
        await cluster.sql("INSERT INTO words SELECT 'k' || lpad(p::text, 3, '0') || repeat('x', 300) || chr(c) || 'tail' FROM generate_series(33, 126) c, generate_series(1, 24) p ORDER BY c, p");
        // enough NULLs to split the nulls tree's root
        await cluster.sql("INSERT INTO words SELECT NULL FROM generate_series(1, 700)");
        // whole chains deleted (a region of the plane) leave DEAD tuples, later replaced by new leaves
        await cluster.sql("DELETE FROM sp WHERE id % 4 = 0 OR id BETWEEN 1000 AND 1600 OR p <@ box(point(0, 0), point(250, 250))");
        await cluster.sql("DELETE FROM small WHERE t LIKE 'v1%'");
        await cluster.sql("VACUUM sp");
        await cluster.sql("VACUUM small");
        await cluster.sql("VACUUM words");
        // redirects left by the inserts above are old now: a later vacuum turns them into placeholders
        await cluster.sql("INSERT INTO sp SELECT g, point((g * 31) % 1000, (g * 17) % 1000), 'http://example.com/' || (g % 7) || '/x/' || g FROM generate_series(5000, 5500) g");
        await cluster.sql("INSERT INTO sp SELECT g, point((g * 13) % 250, (g * 7) % 250), 'r' || g FROM generate_series(6000, 6400) g");
        await cluster.sql("DELETE FROM words WHERE w LIKE 'k01%'");
        await cluster.sql("VACUUM sp");
        await cluster.sql("VACUUM words");
      },
    });
    console.log("SP-GiST oracle", JSON.stringify({ checked: report.checked, unsupported: report.unsupported, errors: report.errors, records: report.records }));
    expect(report.mismatches.slice(0, 5)).toEqual([]);
    expect(report.mismatches.length).toBe(0);
    expect(report.errors).toEqual({});
    expect(report.onDisk!.mismatches).toEqual([]);
    expect(report.onDisk!.compared.spgist).toBeGreaterThan(50);
    expect(Object.keys(report.unsupported).filter((k) => k.startsWith("SPGist/"))).toEqual([]);
    expect(report.checked["SPGist/ADD_LEAF"]).toBeGreaterThan(1000);
    expect(report.checked["SPGist/MOVE_LEAFS"]).toBeGreaterThan(5);
    expect(report.checked["SPGist/PICKSPLIT"]).toBeGreaterThan(20);
    expect(report.checked["SPGist/ADD_NODE"]).toBeGreaterThan(500);
    expect(report.checked["SPGist/SPLIT_TUPLE"]).toBeGreaterThan(5);
    expect(report.checked["SPGist/VACUUM_LEAF"]).toBeGreaterThan(10);
    expect(report.checked["SPGist/VACUUM_ROOT"]).toBeGreaterThan(0);
    expect(report.checked["SPGist/VACUUM_REDIRECT"]).toBeGreaterThan(0);
  });
});
