// A second workload (operator classes, extensions and maintenance paths the first one does not use),
// checked the same way: every wal_consistency_checking image, then every on-disk block.
import { describe, expect, it } from "vitest";
import { runConsistencyOracle } from "./oracle.ts";

describe("redo of a workload over other operator classes and maintenance paths", () => {
  it("rebuilds every page image and on-disk block with zero mismatches", async () => {
    const report = await runConsistencyOracle({
      compareOnDisk: true,
      prepare: async (cluster) => {
        await cluster.script(`
          CREATE EXTENSION IF NOT EXISTS pg_trgm;
          CREATE EXTENSION IF NOT EXISTS btree_gin;
          CREATE EXTENSION IF NOT EXISTS bloom;
        `);
      },
      workload: async (cluster) => {
        await cluster.script(`
          -- trigram GIN and GiST (signature keys), GIN posting trees (many rows per key), jsonb
          CREATE TABLE x_text (id int, t text, j jsonb, tags text[]);
          CREATE INDEX x_text_trgm_gin ON x_text USING gin (t gin_trgm_ops) WITH (fastupdate = off);
          CREATE INDEX x_text_trgm_gist ON x_text USING gist (t gist_trgm_ops(siglen = 32));
          CREATE INDEX x_text_j ON x_text USING gin (j jsonb_path_ops);
          CREATE INDEX x_text_tags ON x_text USING gin (tags);
          CREATE INDEX x_text_id_gin ON x_text USING gin (id);
          INSERT INTO x_text SELECT g, md5((g % 300)::text) || ' word' || (g % 7), jsonb_build_object('k', g % 5, 'v', g), ARRAY['a', 'b' || (g % 3)] FROM generate_series(1, 400) g;
          DELETE FROM x_text WHERE id % 4 = 0;
          VACUUM x_text;
          UPDATE x_text SET t = t || ' more' WHERE id % 9 = 0;
          -- SP-GiST over text (prefix tree), inet and boxes (quad tree); GiST over boxes, circles, tsvector
          CREATE TABLE x_sp (id int, t text, a inet, b box, c circle, d tsvector);
          CREATE INDEX x_sp_t ON x_sp USING spgist (t);
          CREATE INDEX x_sp_a ON x_sp USING spgist (a);
          CREATE INDEX x_sp_b ON x_sp USING spgist (b);
          CREATE INDEX x_sp_gb ON x_sp USING gist (b);
          CREATE INDEX x_sp_gc ON x_sp USING gist (c);
          CREATE INDEX x_sp_gd ON x_sp USING gist (d);
          INSERT INTO x_sp SELECT g, 'prefix/' || (g % 13) || '/' || md5(g::text), ('10.' || (g % 250) || '.' || (g % 17) || '.0/24')::inet,
            box(point(g % 100, g % 37), point(g % 100 + 3, g % 37 + 2)), circle(point(g % 50, g % 70), 1 + g % 4),
            to_tsvector('simple', 'word' || (g % 40) || ' other' || (g % 11)) FROM generate_series(1, 2000) g;
          DELETE FROM x_sp WHERE id % 3 = 1;
          VACUUM x_sp;
          -- btree: INCLUDE columns, unique, no deduplication, page deletion after a range delete
          CREATE TABLE x_bt (id int, k text, v int);
          CREATE UNIQUE INDEX x_bt_id ON x_bt (id) INCLUDE (v);
          CREATE INDEX x_bt_k ON x_bt (k) WITH (deduplicate_items = off);
          INSERT INTO x_bt SELECT g, lpad((g % 500)::text, 40, '0'), g FROM generate_series(1, 8000) g;
          DELETE FROM x_bt WHERE id BETWEEN 1000 AND 7000;
          VACUUM x_bt;
          INSERT INTO x_bt SELECT g, 'again' || g, g FROM generate_series(1000, 2000) g;
          -- hash: many splits and overflow chains, squeezed by vacuum
          CREATE TABLE x_hash (id int, v int);
          CREATE INDEX x_hash_v ON x_hash USING hash (v);
          INSERT INTO x_hash SELECT g, g % 40 FROM generate_series(1, 5000) g;
          INSERT INTO x_hash SELECT g, g FROM generate_series(1, 4000) g;
          DELETE FROM x_hash WHERE v < 30;
          VACUUM x_hash;
          -- BRIN minmax-multi and bloom opclasses, desummarize and resummarize; a bloom index (generic WAL)
          CREATE TABLE x_brin (id int, v int, s text);
          CREATE INDEX x_brin_mm ON x_brin USING brin (v int4_minmax_multi_ops) WITH (pages_per_range = 2);
          CREATE INDEX x_brin_bl ON x_brin USING brin (s text_bloom_ops) WITH (pages_per_range = 2);
          CREATE INDEX x_bloom ON x_brin USING bloom (id, v);
          INSERT INTO x_brin SELECT g, (g * 7919) % 10007, md5(g::text) FROM generate_series(1, 3000) g;
          SELECT brin_summarize_new_values('x_brin_mm');
          SELECT brin_summarize_new_values('x_brin_bl');
          SELECT brin_desummarize_range('x_brin_mm', 0);
          SELECT brin_summarize_range('x_brin_mm', 0);
          DELETE FROM x_brin WHERE id % 10 = 0;
          VACUUM x_brin;
          -- heap: COPY FREEZE into a table made in the same transaction (all-frozen pages), wide rows
          -- with NULLs, on-access pruning of HOT chains, VACUUM FREEZE, row locks in subtransactions
          BEGIN; CREATE TABLE x_frozen (id int); COPY x_frozen FROM PROGRAM 'seq 1 30000' WITH (FREEZE); COMMIT;
          CREATE TABLE x_heap (id int PRIMARY KEY, c1 int, c2 text, c3 int, c4 text, c5 int) WITH (fillfactor = 60);
          INSERT INTO x_heap SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE g END, md5(g::text), NULL, CASE WHEN g % 2 = 0 THEN 'x' END, g FROM generate_series(1, 2000) g;
          UPDATE x_heap SET c5 = c5 + 1 WHERE id % 2 = 0;
          UPDATE x_heap SET c5 = c5 + 1 WHERE id % 2 = 0;
          UPDATE x_heap SET c5 = c5 + 1 WHERE id % 2 = 0;
          SELECT count(*) FROM x_heap WHERE c5 > 0;
          ALTER TABLE x_heap ADD COLUMN c6 int DEFAULT 7;
          BEGIN; SELECT * FROM x_heap WHERE id < 50 FOR UPDATE; SAVEPOINT a; UPDATE x_heap SET c1 = 0 WHERE id < 20; ROLLBACK TO a; SELECT * FROM x_heap WHERE id < 30 FOR NO KEY UPDATE; COMMIT;
          VACUUM (FREEZE, INDEX_CLEANUP off) x_heap;
          DELETE FROM x_heap WHERE id > 1500;
          VACUUM (TRUNCATE on) x_heap;
          -- sequences that cycle, TRUNCATE rolled back, partitions detached and attached
          CREATE SEQUENCE x_seq MAXVALUE 50 CYCLE CACHE 10;
          SELECT nextval('x_seq') FROM generate_series(1, 120);
          BEGIN; TRUNCATE x_bt; ROLLBACK;
          CREATE TABLE x_part (id int, v int) PARTITION BY LIST (v);
          CREATE TABLE x_part_a PARTITION OF x_part FOR VALUES IN (1, 2);
          CREATE TABLE x_part_b PARTITION OF x_part FOR VALUES IN (3);
          INSERT INTO x_part SELECT g, 1 + g % 3 FROM generate_series(1, 3000) g;
          ALTER TABLE x_part DETACH PARTITION x_part_b;
          ALTER TABLE x_part ATTACH PARTITION x_part_b FOR VALUES IN (3);
          CLUSTER x_bt USING x_bt_id;
          REINDEX TABLE CONCURRENTLY x_sp;
        `);
      },
    });
    console.log("checked", report.checked, "on disk", report.onDisk?.compared, "page LSN differences", report.onDisk?.lsnDifferences);
    expect(report.mismatches).toEqual([]);
    expect(report.errors).toEqual({});
    expect(report.unsupported).toEqual({});
    expect(report.onDisk!.mismatches).toEqual([]);
    expect(report.onDisk?.unsupported).toEqual({});
    // the paths this workload is for were taken
    const expected = [
      "Gin/INSERT", "Gist/PAGE_SPLIT", "SPGist/PICKSPLIT", "SPGist/VACUUM_REDIRECT", "Btree/UNLINK_PAGE", "Hash/SQUEEZE_PAGE",
      "Hash/MOVE_PAGE_CONTENTS", "BRIN/DESUMMARIZE", "Generic/Generic", "Heap2/VISIBLE", "Heap2/FREEZE_PAGE", "Sequence/LOG",
    ];
    for (const type of expected) expect(report.checked[type] ?? 0, type).toBeGreaterThan(0);
    for (const kind of ["heap", "vm", "btree", "gin", "gist", "hash", "brin", "bloom", "spgist"]) expect(report.onDisk?.compared[kind] ?? 0, kind).toBeGreaterThan(0);
  }, 600_000);
});
