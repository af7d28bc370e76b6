// History cuts against real PostgreSQL 15 WAL: every page of every relation reads the same, by
// getPage and by relation scans, at LSNs below, between and at two cuts made while ingest went on.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importFromPrimary } from "../ingest/import-primary.ts";
import { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import type { PagesOfFork } from "../ingest/walingest.ts";
import type { Lsn } from "../lsn.ts";
import { KeySpace } from "../storage/keys.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { cutHistory, type HistoryCutResult } from "./history-cut.ts";
import { PageCache } from "./page-cache.ts";
import { PageReader } from "./page-reader.ts";
import { RelationScanner } from "./relation-scan.ts";
import { countEntriesRead, ingestFromWalDir } from "./testutil.ts";


/** sha1 of every block of every relation fork at `lsn`, by getPage; the same blocks read by one scan must match. */
async function pagesAt(reader: PageReader, lsn: Lsn): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const scanner = new RelationScanner(reader, lsn);
  try {
    for (const { rel, fork } of await reader.listRelations(lsn)) {
      const n = (await reader.relSize(rel, fork, lsn)) ?? 0;
      for await (const { blockNumber, page } of scanner.pages(rel, fork, 0, n)) {
        const id = `${rel.dbNode}/${rel.relNode}/${fork}/${blockNumber}`;
        const hash = createHash("sha1").update(page).digest("hex");
        const direct = createHash("sha1").update(await reader.getPage(rel, fork, blockNumber, lsn)).digest("hex");
        out.set(id, hash === direct ? hash : `scan ${hash} != getPage ${direct}`);
      }
    }
  } finally {
    await scanner.close();
  }
  return out;
}

describe("history cuts on PostgreSQL WAL", () => {
  let primary: PgCluster | undefined;
  const work = mkdtempSync(path.join(os.tmpdir(), "strata-cut-pg-"));
  let store: TimelineStore;
  const reader = () => new PageReader(store, { pageCache: new PageCache(0) });
  let lsns: Lsn[] = [];
  const before = new Map<Lsn, Map<string, string>>();
  let cuts: HistoryCutResult[] = [];
  let end: Lsn;
  let scanEntriesBefore = 0;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off", wal_keep_size: "1GB" } });
    store = await TimelineStore.open(path.join(work, "timeline"));
    const imported = await importFromPrimary(store, primary.connectionString(), "strata_cut");
    const ingestor = await TimelineIngestor.open(store);

    await primary.pgbench(["-i", "-s", "1", "-q"]);
    await primary.sql("CREATE TABLE extra (id int PRIMARY KEY, v text)");
    await primary.sql("INSERT INTO extra SELECT g, md5(g::text) FROM generate_series(1, 3000) g");
    const early = await ingestFromWalDir(ingestor, primary.walDir, imported.startLsn, await primary.flushedWalEnd());

    await primary.pgbench(["-n", "-t", "300", "-c", "2"]);
    await primary.sql("UPDATE extra SET v = v || 'x' WHERE id % 7 = 0");
    await primary.sql("VACUUM extra");
    const middle = await ingestFromWalDir(ingestor, primary.walDir, early, await primary.flushedWalEnd());
    const writtenFirst: PagesOfFork[] = ingestor.drainWrittenPages();

    await primary.pgbench(["-n", "-t", "300", "-c", "2"]);
    await primary.sql("DELETE FROM extra WHERE id % 11 = 0");
    await primary.sql("TRUNCATE pgbench_history");
    await primary.sql("CREATE INDEX ON extra (v)");
    end = await ingestFromWalDir(ingestor, primary.walDir, middle, await primary.flushedWalEnd());
    const writtenThen = ingestor.drainWrittenPages();
    await primary.stop();
    primary = undefined;

    // every page at LSNs before, at and between the cuts, before any cut
    const quarter = await reader().roundToRecordBoundary(middle + (end - middle) / 4n);
    lsns = [early, await reader().roundToRecordBoundary((early + middle) / 2n), middle, quarter, end];
    for (const lsn of lsns) before.set(lsn, await pagesAt(reader(), lsn));
    const read = countEntriesRead(store);
    await pagesAt(reader(), end);
    scanEntriesBefore = read.entries;

    // the first cut at the middle LSN after ingest went past it, then one at the end
    cuts = [await cutHistory(reader(), writtenFirst, middle), await cutHistory(reader(), writtenThen, end)];
  });

  afterAll(async () => {
    await store?.close();
    await primary?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("cuts the blocks ingest saw written", async () => {
    for (const cut of cuts) {
      expect(cut.images).toBeGreaterThan(100);
      expect(cut.moved).toBeGreaterThan(cut.images);
      expect(cut.failed).toBe(0);
    }
    const history = await store.db.keys({ gte: Buffer.from([KeySpace.RelBlockHistory]), lt: Buffer.from([KeySpace.RelBlockHistory + 1]) }).all();
    expect(history.length).toBe(cuts[0].moved + cuts[1].moved);
  });

  it("reads every page of every relation the same at every LSN, by getPage and by a relation scan", async () => {
    for (const lsn of lsns) {
      const after = await pagesAt(reader(), lsn);
      const expected = before.get(lsn)!;
      expect(after.size).toBe(expected.size);
      const differ = [...expected].filter(([id, hash]) => after.get(id) !== hash || hash.startsWith("scan")).map(([id]) => id);
      expect(differ, `at ${lsn.toString(16)}`).toEqual([]);
    }
  });

  it("reads far fewer versions to scan every page at the end", async () => {
    const read = countEntriesRead(store);
    await pagesAt(reader(), end);
    expect(read.entries).toBeLessThan(scanEntriesBefore / 2);
  });
});
