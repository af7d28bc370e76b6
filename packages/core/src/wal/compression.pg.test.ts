// Full-page images written with wal_compression = pglz / lz4 / zstd: decoded records match
// pg_waldump -b (which names the method), and every image restores to a sane 8 KiB page.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { formatLsn } from "../lsn.ts";
import { BLCKSZ, formatRelTag } from "../reltag.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { decompressImage, restoreBlockImage } from "./image.ts";
import { captureWal, compareWithPgWaldump } from "./testutil.ts";

describe.each(["pglz", "lz4", "zstd"] as const)("wal_compression = %s", (method) => {
  let cluster: PgCluster;
  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "256MB" } });
    try {
      await cluster.sql(`CREATE TABLE t(a int, b text); CREATE INDEX t_a ON t(a);
        INSERT INTO t SELECT g, repeat(md5(g::text), 1 + g % 5) FROM generate_series(1, 20000) g;`);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test("compressed FPIs decode like pg_waldump and restore to valid 8 KiB pages", async () => {
    await cluster.sql("CHECKPOINT");
    const { start, end } = await captureWal(cluster, () =>
      cluster.sql(`SET wal_compression = ${method}; UPDATE t SET a = a + 1 WHERE a % 40 = 0; DELETE FROM t WHERE a % 333 = 0`),
    );
    const { records, diffs, theirs } = await compareWithPgWaldump(cluster, start, end);
    expect(diffs).toEqual([]);
    expect(theirs.filter((e) => e.blocks.some((b) => b.image?.method === method)).length).toBeGreaterThan(20);

    const [{ relfilenode: heapNode }] = await cluster.sql<{ relfilenode: number }>("SELECT relfilenode FROM pg_class WHERE relname = 't'");
    let compressed = 0;
    let heapPagesChecked = 0;
    for (const r of records) {
      for (const b of r.blocks) {
        if (!b.image) continue;
        const where = `${formatLsn(r.lsn)} blk ${formatRelTag(b.rel)}/${b.blockNumber}`;
        if (b.image.compression !== "none") {
          compressed++;
          expect(b.image.compression, where).toBe(method);
          expect(b.image.length, where).toBeLessThan(BLCKSZ - b.image.holeLength);
        }
        expect(decompressImage(b.image).length, where).toBe(BLCKSZ - b.image.holeLength);
        const page = restoreBlockImage(b);
        expect(page.length).toBe(BLCKSZ);
        // standard pages: the hole is exactly [pd_lower, pd_upper)
        const pdLower = page.readUInt16LE(12);
        const pdUpper = page.readUInt16LE(14);
        const pdSpecial = page.readUInt16LE(16);
        const pageLsn = (BigInt(page.readUInt32LE(0)) << 32n) | BigInt(page.readUInt32LE(4));
        expect(pageLsn < r.lsn, where).toBe(true);
        if (b.image.holeLength > 0) {
          expect([pdLower, pdUpper], where).toEqual([b.image.holeOffset, b.image.holeOffset + b.image.holeLength]);
        }
        if (b.rel.relNode === heapNode && b.forkNum === 0) {
          heapPagesChecked++;
          expect(pdLower >= 24 && pdLower <= pdUpper && pdUpper <= pdSpecial && pdSpecial === BLCKSZ, where).toBe(true);
          // every used line pointer points inside the tuple area
          for (let lp = 24; lp < pdLower; lp += 4) {
            const word = page.readUInt32LE(lp);
            const flags = (word >>> 15) & 3;
            const off = word & 0x7fff;
            const len = word >>> 17;
            if (flags === 1) expect(off >= pdUpper && off + len <= pdSpecial, `${where} lp ${(lp - 24) / 4 + 1}`).toBe(true);
          }
        }
      }
    }
    expect(compressed).toBeGreaterThan(20);
    expect(heapPagesChecked).toBeGreaterThan(10);
  });
});
