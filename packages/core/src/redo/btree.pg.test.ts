import { describe, expect, it } from "vitest";
import { btreeRmgr } from "./btree.ts";
import { runConsistencyOracle } from "./oracle.ts";

describe("B-tree redo against PostgreSQL's own page images", () => {
  it("rebuilds leaf, internal and meta pages through inserts, splits, dedup, deletion, vacuum and page unlinking", async () => {
    // which variants of the record types the replay went through (counted per page application)
    const seen = { splitWithPostingSplit: 0, unlinkRebuildsLeaf: 0, vacuumUpdatesPostings: 0, deleteUpdatesPostings: 0, newRootInternal: 0 };
    const redo = btreeRmgr.redo;
    btreeRmgr.redo = (page, record, block) => {
      const info = record.info & 0xf0;
      const main = record.mainData;
      if ((info === 0x30 || info === 0x40) && block.id === 0 && main.readUInt16LE(8) !== 0) seen.splitWithPostingSplit++;
      if ((info === 0x80 || info === 0x90) && block.id === 3) seen.unlinkRebuildsLeaf++;
      if (info === 0xc0 && main.readUInt16LE(2) > 0) seen.vacuumUpdatesPostings++;
      if (info === 0x70 && main.readUInt16LE(6) > 0) seen.deleteUpdatesPostings++;
      if (info === 0xa0 && block.id === 0 && main.readUInt32LE(4) > 0) seen.newRootInternal++;
      return redo(page, record, block);
    };
    const report = await runConsistencyOracle({
      rmgrs: ["Btree"],
      workload: async (cluster) => {
        const sql = (q: string) => cluster.sql(q);
        await cluster.pgbench(["-i", "-s", "1", "-q"]);
        await cluster.pgbench(["-t", "100", "-c", "2", "-n"]);

        // indexes built on an empty table: the first insert creates a leaf root (NEWROOT level 0)
        await sql("CREATE TABLE d (k int, v int, t text)");
        await sql("CREATE INDEX d_k ON d (k)"); // non-unique, deduplicated
        await sql("CREATE INDEX d_tk ON d (t, k)"); // multi-column, text first, deduplicated too
        await sql("INSERT INTO d SELECT g % 30, g, 'val-' || (g % 5) FROM generate_series(1, 2000) g");
        // delete some of each key's duplicates: VACUUM removes whole tuples and shrinks posting lists
        await sql("DELETE FROM d WHERE v % 3 = 0 OR (k = 5 AND v > 100)");
        await sql("VACUUM d");
        // new rows land in the freed heap space, below the TIDs posting lists hold: posting splits
        await sql("INSERT INTO d SELECT g % 30, g, 'val-' || (g % 5) FROM generate_series(1, 600) g");

        // unique keys: even ones in order (rightmost splits), then odd ones at random (splits in the middle)
        await sql("CREATE TABLE u (id int PRIMARY KEY, h text)");
        await sql("CREATE INDEX u_h ON u (h) INCLUDE (id)"); // INCLUDE column: never deduplicated
        await sql("INSERT INTO u SELECT g * 2, md5(g::text) FROM generate_series(1, 1200) g");
        await sql("INSERT INTO u SELECT g * 2 + 1, md5(g::text) FROM generate_series(1, 1200) g ORDER BY random()");
        // LP_DEAD hints from an index scan; inserts into those full pages delete them first
        await sql("DELETE FROM u WHERE id % 5 <> 0 AND id < 2000");
        await sql("SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT count(*) FROM u WHERE id < 2000; SELECT count(*) FROM u WHERE h > ''");
        await sql("INSERT INTO u SELECT g, md5(g::text) FROM generate_series(1, 2000) g WHERE g % 7 = 1 ON CONFLICT DO NOTHING");

        // wide incompressible keys make a deep tree cheaply; deleting most of it and vacuuming twice
        // deletes leaves and whole subtrees of internal pages (half-dead, unlink, fast root, cleanup info)
        const wide = (from: number, to: number, tag: string, div = 1) =>
          `SELECT lpad((g / ${div})::text, 6, '0') || (SELECT string_agg(md5(g || '${tag}' || i), '') FROM generate_series(1, 24) i) FROM generate_series(${from}, ${to}) g`;
        await sql("CREATE TABLE w (k text)");
        await sql("CREATE INDEX w_k ON w (k)");
        await sql(`INSERT INTO w ${wide(1, 1500, "x")}`);
        await sql("DELETE FROM w WHERE k < '001450'");
        await sql("VACUUM w");
        await sql("VACUUM w");
        // refill the surviving key range: splits reuse deleted pages and the fast root splits again
        await sql(`INSERT INTO w ${wide(14500, 15009, "y", 10)}`);

        // a new item whose heap TID falls inside a posting list of a full page: the split carries
        // the posting list split (heap space freed without index cleanup gives TIDs in the middle)
        await sql("CREATE TABLE p (k int, pad text)");
        await sql("INSERT INTO p SELECT g % 4, 'pad' FROM generate_series(1, 2000) g");
        await sql("CREATE INDEX p_k ON p (k)");
        await sql("DELETE FROM p WHERE (ctid::text::point)[1]::int % 2 = 0");
        await sql("VACUUM (INDEX_CLEANUP OFF) p");
        await sql("INSERT INTO p SELECT g % 4, 'new' FROM generate_series(1, 1000) g");

        // bottom-up deletion: non-HOT updates churn versions in the unchanged primary key index
        await sql("CREATE TABLE b (id int PRIMARY KEY, x int)");
        await sql("CREATE INDEX b_x ON b (x)");
        await sql("INSERT INTO b SELECT g, g FROM generate_series(1, 500) g");
        for (let i = 0; i < 3; i++) await sql("UPDATE b SET x = x + 1");

        // rebuilt and new indexes start from images; later changes replay on top of them
        await sql("REINDEX INDEX d_k");
        await sql("CREATE INDEX d_v ON d (v)");
        await sql("INSERT INTO d SELECT g % 30, g, 'again' FROM generate_series(1, 300) g");
      },
    }).finally(() => {
      btreeRmgr.redo = redo;
    });
    console.log("Btree oracle", JSON.stringify({ checked: report.checked, unsupported: report.unsupported, errors: report.errors, records: report.records, mismatches: report.mismatches.length, seen }));
    expect(report.mismatches).toEqual([]);
    expect(report.errors).toEqual({});
    expect(Object.keys(report.unsupported).filter((k) => k.startsWith("Btree/"))).toEqual([]);
    // every record type that touches a page was compared (REUSE_PAGE references none)
    const floors: Record<string, number> = {
      INSERT_LEAF: 5000,
      INSERT_UPPER: 100,
      INSERT_META: 1,
      SPLIT_L: 20,
      SPLIT_R: 100,
      INSERT_POST: 200,
      DEDUP: 50,
      VACUUM: 50,
      DELETE: 3,
      MARK_PAGE_HALFDEAD: 50,
      UNLINK_PAGE: 50,
      UNLINK_PAGE_META: 1,
      NEWROOT: 10,
      META_CLEANUP: 1,
    };
    for (const [type, floor] of Object.entries(floors)) expect(report.checked[`Btree/${type}`] ?? 0, type).toBeGreaterThanOrEqual(floor);
    for (const [variant, count] of Object.entries(seen)) expect(count, variant).toBeGreaterThan(0);
  }, 180_000);
});
