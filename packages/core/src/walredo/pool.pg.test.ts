// The redo worker pool on real PostgreSQL 15 WAL as ingest stores it (records in the record log,
// page images in the image files, runs of versions): every block of every relation fork rebuilt
// on the workers equals the block rebuilt on the caller's thread, at the end and at an LSN in the
// middle of the workload.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importFromPrimary } from "../ingest/import-primary.ts";
import { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import { formatLsn, type Lsn, parseLsn } from "../lsn.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { PageCache } from "../timeline/page-cache.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { readWalRange } from "../wal/reader.ts";
import { RedoPool } from "./pool.ts";

const CHUNK = 256 * 1024;

describe("redo workers on PostgreSQL WAL", () => {
  let primary: PgCluster | undefined;
  const work = mkdtempSync(path.join(os.tmpdir(), "strata-redo-pool-pg-"));
  let store: TimelineStore;
  // every chain to the workers, whatever else is in flight
  const pool = new RedoPool(2, 1, false);
  let middle: Lsn;
  let end: Lsn;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off", wal_keep_size: "1GB" } });
    store = await TimelineStore.open(path.join(work, "timeline"));
    const imported = await importFromPrimary(store, primary.connectionString(), "strata_redo_pool");
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    await primary.pgbench(["-n", "-c", "4", "-j", "2", "-t", "400"]);
    middle = parseLsn((await primary.sql<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn"))[0].lsn);
    await primary.sql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g");
    await primary.sql("CREATE INDEX ON t (v)");
    await primary.sql("UPDATE t SET v = v || 'x' WHERE id % 3 = 0");
    await primary.sql("DELETE FROM t WHERE id % 7 = 0");
    await primary.sql("VACUUM t");
    await primary.pgbench(["-n", "-c", "4", "-j", "2", "-t", "400"]);
    end = parseLsn((await primary.sql<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn"))[0].lsn);
    await primary.sql("SELECT pg_switch_wal()");
    const ingestor = await TimelineIngestor.open(store);
    for (let pos = imported.startLsn; pos < end; ) {
      const next = pos + BigInt(Math.min(CHUNK, Number(end - pos)));
      await ingestor.ingestWal(readWalRange(primary.walDir, pos, next), pos);
      pos = next;
    }
    await pool.start();
  }, 240_000);

  afterAll(async () => {
    await pool.close();
    await store?.close();
    await primary?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  for (const at of ["middle", "end"] as const) {
    it(`rebuilds every block at the ${at} of the workload as replay on the caller's thread does`, async () => {
      const lsn = at === "middle" ? middle : end;
      const here = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: null });
      const workers = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: pool });
      const jobsBefore = pool.stats.jobs;
      let blocks = 0;
      const differ: string[] = [];
      for (const { rel, fork } of await here.listRelations(lsn)) {
        const size = (await here.relSize(rel, fork, lsn)) ?? 0;
        const numbers = Array.from({ length: size }, (_, i) => i);
        // 16 at a time: jobs queue on both workers
        for (let i = 0; i < numbers.length; i += 16) {
          const batch = numbers.slice(i, i + 16);
          const [expected, got] = await Promise.all([
            Promise.all(batch.map((b) => here.getPage(rel, fork, b, lsn))),
            Promise.all(batch.map((b) => workers.getPage(rel, fork, b, lsn))),
          ]);
          batch.forEach((b, k) => {
            blocks++;
            if (!got[k].equals(expected[k])) differ.push(`${rel.spcNode}/${rel.dbNode}/${rel.relNode} fork ${fork} block ${b}`);
          });
        }
      }
      expect(differ, `pages that differ at ${formatLsn(lsn)}`).toEqual([]);
      expect(blocks).toBeGreaterThan(1000);
      // most blocks have versions above their imported page: those went to the workers
      expect(pool.stats.jobs - jobsBefore).toBeGreaterThan(at === "middle" ? 500 : 1000);
      expect(pool.stats.failed).toBe(0);
    }, 240_000);
  }
});
