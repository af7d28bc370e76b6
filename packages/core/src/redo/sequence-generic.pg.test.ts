import { describe, expect, it } from "vitest";
import { runConsistencyOracle } from "./oracle.ts";

describe("sequence and generic WAL redo against PostgreSQL's own page images", () => {
  it("rebuilds sequence pages and bloom-index pages exactly as the primary wrote them", async () => {
    const report = await runConsistencyOracle({
      rmgrs: ["Sequence", "Generic"],
      prepare: async (cluster) => {
        await cluster.sql("CREATE EXTENSION bloom");
      },
      workload: async (cluster) => {
        await cluster.sql("CREATE SEQUENCE s CACHE 1; CREATE TABLE b (a int, c int, t text)");
        await cluster.sql("SELECT nextval('s') FROM generate_series(1, 300)");
        await cluster.sql("ALTER SEQUENCE s RESTART WITH 1000; SELECT nextval('s')");
        await cluster.sql("CREATE INDEX bi ON b USING bloom (a, c)");
        await cluster.sql("INSERT INTO b SELECT g, g % 7, 'x' || g FROM generate_series(1, 3000) g");
        await cluster.sql("DELETE FROM b WHERE a % 3 = 0");
        await cluster.sql("VACUUM b");
        await cluster.sql("INSERT INTO b SELECT g, g % 5, 'y' FROM generate_series(1, 1000) g");
      },
    });
    expect(report.mismatches).toEqual([]);
    expect(report.errors).toEqual({});
    expect(report.checked["Sequence/LOG"]).toBeGreaterThan(5);
    expect(report.checked["Generic/Generic"] ?? 0).toBeGreaterThan(50);
  });
});
