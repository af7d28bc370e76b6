// Decodes the WAL of a DDL/DML mix (TOAST, every index AM, VACUUM, TRUNCATE, CREATE/DROP DATABASE
// with both strategies, subtransactions, two-phase commit, sequences, hint-bit FPIs, pg_switch_wal)
// and compares it with pg_waldump record by record.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { PgCluster } from "../testing/pgcluster.ts";
import { captureWal, compareWithPgWaldump } from "./testutil.ts";
import type { DecodedRecord } from "./record.ts";
import type { WaldumpEntry } from "./waldump.ts";

describe("WAL of a DDL/DML mix", () => {
  let cluster: PgCluster;
  let records: DecodedRecord[];
  let theirs: WaldumpEntry[];
  let diffs: string[];

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { max_prepared_transactions: 5, wal_keep_size: "512MB" }, initdbArgs: ["--data-checksums"] });
    try {
      await cluster.sql("CHECKPOINT");
      const { start, end } = await captureWal(cluster, async () => {
        const sql = (q: string) => cluster.sql(q);
        await sql(`CREATE TABLE toasty(id int PRIMARY KEY, body text);
          INSERT INTO toasty SELECT g, (SELECT string_agg(md5(random()::text || h), '') FROM generate_series(1, 150) h) FROM generate_series(1, 40) g;`);
        await sql(`CREATE TABLE items(id serial PRIMARY KEY, k int, tags int[], pt point, t text);
          INSERT INTO items(k, tags, pt, t) SELECT g % 100, ARRAY[g % 7, g % 11], point(g, g % 50), md5(g::text) FROM generate_series(1, 2000) g;
          CREATE INDEX items_k_hash ON items USING hash(k);
          CREATE INDEX items_tags_gin ON items USING gin(tags);
          CREATE INDEX items_pt_gist ON items USING gist(pt);
          CREATE INDEX items_t_spgist ON items USING spgist(t);
          CREATE INDEX items_id_brin ON items USING brin(id) WITH (pages_per_range = 2);
          CREATE INDEX items_k_btree ON items(k);`);
        await sql("CHECKPOINT");
        await sql(`INSERT INTO items(k, tags, pt, t) SELECT g % 100, ARRAY[g % 5], point(g, g), md5(g::text) FROM generate_series(2001, 4000) g;
          UPDATE items SET k = k + 1 WHERE id % 10 = 0;
          DELETE FROM items WHERE id % 7 = 0;
          SELECT count(*) FROM items;`);
        await sql("VACUUM items");
        await sql("CREATE TABLE shrink AS SELECT g FROM generate_series(1, 5000) g; DELETE FROM shrink WHERE g > 100");
        await sql("VACUUM shrink"); // empty tail pages: the heap is truncated
        await sql("TRUNCATE toasty");
        await sql("CREATE SEQUENCE s; SELECT nextval('s') FROM generate_series(1, 40)");
        await sql(`BEGIN; INSERT INTO items(k) VALUES (1); SAVEPOINT a; INSERT INTO items(k) VALUES (2); ROLLBACK TO a;
          SAVEPOINT b; INSERT INTO items(k) VALUES (3); RELEASE b; COMMIT;`);
        await sql("BEGIN; INSERT INTO items(k) VALUES (4); PREPARE TRANSACTION 'p1'");
        await sql("COMMIT PREPARED 'p1'");
        await sql("BEGIN; INSERT INTO items(k) VALUES (5); PREPARE TRANSACTION 'p2'");
        await sql("ROLLBACK PREPARED 'p2'");
        await sql("SELECT pg_switch_wal()");
        await sql("CREATE DATABASE d_wal STRATEGY = wal_log");
        await sql("DROP DATABASE d_wal");
        await sql("CREATE DATABASE d_copy STRATEGY = file_copy");
        await sql("DROP DATABASE d_copy");
        await sql("INSERT INTO items(k) SELECT g FROM generate_series(1, 100) g");
      });
      ({ records, theirs, diffs } = await compareWithPgWaldump(cluster, start, end));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test("every record matches pg_waldump -b, including images and block refs", () => {
    expect(diffs).toEqual([]);
    expect(records.length).toBeGreaterThan(3_000);
  });

  test("the mix produced the record types it was meant to exercise", () => {
    const types = new Set(theirs.map((e) => `${e.rmgr}/${e.type}`));
    for (const t of [
      "Hash/INSERT", "Gin/INSERT", "Gist/PAGE_UPDATE", "SPGist/ADD_LEAF", "BRIN/INSERT", "Btree/INSERT_LEAF",
      "Heap2/PRUNE", "Heap2/VACUUM", "Heap2/VISIBLE", "Storage/TRUNCATE", "Storage/CREATE", "Sequence/LOG",
      "Transaction/PREPARE", "Transaction/COMMIT_PREPARED", "Transaction/ABORT_PREPARED", "Transaction/ABORT",
      "XLOG/SWITCH", "XLOG/FPI", "XLOG/FPI_FOR_HINT", "Database/CREATE_WAL_LOG", "Database/CREATE_FILE_COPY", "Database/DROP",
      "RelMap/UPDATE", "Standby/RUNNING_XACTS",
    ]) {
      expect(types, t).toContain(t);
    }
    // XLOG_SWITCH ends at the segment end; the next record follows the next segment's long header
    const switchRecord = records.find((r) => r.rmid === 0 && (r.info & 0xf0) === 0x40)!;
    expect(switchRecord.endLsn % (16n * 1024n * 1024n)).toBe(0n);
    const after = records[records.indexOf(switchRecord) + 1];
    expect(after.lsn).toBe(switchRecord.endLsn + 40n); // after the next segment's long page header
  });
});
