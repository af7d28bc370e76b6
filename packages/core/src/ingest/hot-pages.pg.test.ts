// Hot pages against real PostgreSQL 15 WAL: every image a hot page makes while ingest stores its
// records equals the page rebuilt from the store's chain at that LSN, with the pages adopted late
// (after ingest went on past the version they were rebuilt at) or begun at the will-init record of
// a growing relation's next page, and through VACUUM's
// visibility-map writes, full-page images after a checkpoint, HOT pruning and a table rewrite.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importFromPrimary } from "./import-primary.ts";
import { TimelineIngestor } from "./timeline-ingest.ts";
import { HotPages, type ReadyImage } from "./hot-pages.ts";
import { formatLsn, type Lsn } from "../lsn.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { PageCache } from "../timeline/page-cache.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { readWalRange } from "../wal/reader.ts";

const CHUNK = 64 * 1024;

describe("hot pages on PostgreSQL WAL", () => {
  let primary: PgCluster | undefined;
  const work = mkdtempSync(path.join(os.tmpdir(), "strata-hot-pg-"));
  let store: TimelineStore;
  const hotPages = new HotPages(8);
  const images: ReadyImage[] = [];
  let adoptions = 0;
  let lateAdoptions = 0;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off", wal_keep_size: "1GB" } });
    store = await TimelineStore.open(path.join(work, "timeline"));
    const imported = await importFromPrimary(store, primary.connectionString(), "strata_hot");
    const ingestor = await TimelineIngestor.open(store, store, { hotPages });
    const reader = new PageReader(store, { pageCache: new PageCache(0) });
    hotPages.hintBitsLogged = await reader.walLogsHintBits(imported.startLsn);

    // The materializer's part, as the tenant manager does it: rebuild each long chain at its
    // version, then hand the page over; only every other step, so ingest has gone on meanwhile.
    let waiting: Array<{ rel: { spcNode: number; dbNode: number; relNode: number }; fork: number; block: number; lsn: Lsn }> = [];
    let step = 0;
    let durable = imported.startLsn;
    const ingestUpTo = async (end: Lsn) => {
      for (let pos = durable; pos < end; ) {
        const next = pos + BigInt(Math.min(CHUNK, Number(end - pos)));
        durable = await ingestor.ingestWal(readWalRange(primary!.walDir, pos, next), pos);
        pos = next;
        waiting.push(...ingestor.drainLongChains(durable));
        if (++step % 2 === 0) {
          for (const page of waiting) {
            const rebuilt = await reader.materialize(page.rel, page.fork, page.block, page.lsn);
            if (hotPages.adopt(page.rel, page.fork, page.block, page.lsn, rebuilt)) {
              adoptions++;
              if (page.lsn < durable) lateAdoptions++;
            }
          }
          waiting = [];
        }
        images.push(...ingestor.drainReadyImages(durable));
      }
    };

    await primary.pgbench(["-i", "-s", "1", "-q"]);
    await primary.sql("VACUUM pgbench_accounts"); // all-visible pages: later updates clear their bits
    await primary.sql("CREATE TABLE counters (id int PRIMARY KEY, n bigint)");
    await primary.sql("INSERT INTO counters SELECT g, 0 FROM generate_series(1, 20) g");
    await ingestUpTo(await primary.flushedWalEnd());
    await primary.pgbench(["-n", "-t", "400", "-c", "2"]);
    for (let i = 0; i < 30; i++) await primary.sql(`UPDATE counters SET n = n + 1 WHERE id % 3 = ${i % 3}`);
    await ingestUpTo(await primary.flushedWalEnd());
    await primary.sql("VACUUM counters");
    // the updates cleared visibility-map bits (writes that are not records): VACUUM sets them again
    await primary.sql("VACUUM pgbench_accounts");
    await primary.sql("VACUUM pgbench_branches");
    await primary.sql("CHECKPOINT"); // the next change of each page logs its image
    await primary.pgbench(["-n", "-t", "400", "-c", "2"]);
    await primary.sql("ALTER TABLE counters ADD COLUMN note text DEFAULT 'x'"); // rewrite: a new relfilenode
    for (let i = 0; i < 30; i++) await primary.sql(`UPDATE counters SET n = n + 1, note = note || 'y' WHERE id % 2 = ${i % 2}`);
    await ingestUpTo(await primary.flushedWalEnd());
    await primary.stop();
    primary = undefined;
  }, 300_000);

  afterAll(async () => {
    await primary?.stop();
    await store?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("makes images of pages adopted after ingest went past them, and of new pages of a growing relation", () => {
    expect(adoptions).toBeGreaterThan(3);
    expect(lateAdoptions).toBeGreaterThan(0);
    expect(hotPages.applied).toBeGreaterThan(1000);
    expect(hotPages.begunAtInit).toBeGreaterThan(0); // pgbench_history's new pages
    expect(images.length).toBeGreaterThan(50);
  });

  it("makes only images equal to the page rebuilt from the stored chain", async () => {
    // every record replayed from the store: no materialized image, no cache
    const chain = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0) });
    const different: string[] = [];
    for (const image of images) {
      const rebuilt = await chain.getPage(image.rel, image.fork, image.block, image.lsn);
      if (!rebuilt.equals(image.page)) different.push(`${image.rel.relNode}/${image.fork}/${image.block}@${formatLsn(image.lsn)}`);
    }
    expect(different).toEqual([]);
  });
});
