// Relation scans against real PostgreSQL 15 WAL: a timeline following a primary, materialized
// images for some blocks, and a branch that received part of the later WAL itself.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importFromPrimary } from "../ingest/import-primary.ts";
import { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import type { Lsn } from "../lsn.ts";
import { ForkNumber, type RelTag } from "../reltag.ts";
import { entityPrefix, KeySpace, relBlockKey } from "../storage/keys.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { PageReader } from "./page-reader.ts";
import { RelationScanner, scanRelationPages } from "./relation-scan.ts";
import { ingestFromWalDir } from "./testutil.ts";

/**
 * Reads every fork of every relation at `lsn` through one RelationScanner (as full backup does)
 * and compares each page with getPage, and with a scan of that fork alone.
 */
async function compareAll(reader: PageReader, lsn: Lsn) {
  let blocks = 0;
  const mismatches: string[] = [];
  const scanner = new RelationScanner(reader, lsn);
  try {
    for (const { rel, fork } of await reader.listRelations(lsn)) {
      const n = (await reader.relSize(rel, fork, lsn)) ?? 0;
      const alone = scanRelationPages(reader, rel, fork, 0, n, lsn);
      let expectedBlock = 0;
      for await (const { blockNumber, page } of scanner.pages(rel, fork, 0, n)) {
        expect(blockNumber).toBe(expectedBlock++);
        if (!page.equals(await reader.getPage(rel, fork, blockNumber, lsn))) mismatches.push(`${rel.dbNode}/${rel.relNode}/${fork} block ${blockNumber}`);
        const single = await alone.next();
        if (single.done || !single.value.page.equals(page)) mismatches.push(`${rel.dbNode}/${rel.relNode}/${fork} block ${blockNumber}: scanned alone`);
        blocks++;
      }
      expect((await alone.next()).done).toBe(true);
      expect(expectedBlock).toBe(n);
    }
  } finally {
    await scanner.close();
  }
  // one pass: this timeline's two iterators and, on a branch, the ancestors'
  let timelines = 1;
  for (let r = reader.ancestor; r; r = r.reader.ancestor) timelines++;
  expect(scanner.stats.opened).toBeLessThanOrEqual(2 * timelines);
  return { blocks, mismatches };
}

describe("relation scan on PostgreSQL WAL", () => {
  let primary: PgCluster | undefined;
  const work = mkdtempSync(path.join(os.tmpdir(), "strata-relscan-pg-"));
  let parentStore: TimelineStore;
  let childStore: TimelineStore;
  let parent: PageReader;
  let child: PageReader;
  /** parent: after pgbench -i; the branch point; child: its latest LSN */
  let early: Lsn;
  let branchLsn: Lsn;
  let childEnd: Lsn;
  let accounts: RelTag;
  let accountsBlocks: number;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off", wal_keep_size: "1GB" } });
    parentStore = await TimelineStore.open(path.join(work, "parent"));
    const imported = await importFromPrimary(parentStore, primary.connectionString(), "strata_relscan");
    const parentIngest = await TimelineIngestor.open(parentStore);

    await primary.pgbench(["-i", "-s", "1", "-q"]);
    await primary.sql("CREATE TABLE extra (id int PRIMARY KEY, v text)");
    await primary.sql("INSERT INTO extra SELECT g, md5(g::text) FROM generate_series(1, 3000) g");
    const end1 = await primary.flushedWalEnd();
    early = await ingestFromWalDir(parentIngest, primary.walDir, imported.startLsn, end1);

    await primary.pgbench(["-n", "-t", "150", "-c", "2"]);
    await primary.sql("UPDATE extra SET v = v || 'x' WHERE id % 7 = 0");
    const end2 = await primary.flushedWalEnd();
    branchLsn = await ingestFromWalDir(parentIngest, primary.walDir, end1, end2);
    parent = new PageReader(parentStore);

    // the branch: empty at the branch point, then the primary's later WAL goes to it alone
    childStore = await TimelineStore.open(path.join(work, "child"));
    await childStore.commit([], { lastRecordLsn: branchLsn, diskConsistentLsn: branchLsn, startLsn: branchLsn });
    child = new PageReader(childStore, { ancestor: { reader: parent, lsn: branchLsn } });
    const childIngest = await TimelineIngestor.open(childStore, child);
    await primary.sql("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 997 = 0");
    await primary.sql("DELETE FROM extra WHERE id % 11 = 0");
    await primary.sql("CREATE TABLE branch_only AS SELECT g AS id FROM generate_series(1, 2000) g");
    const end3 = await primary.flushedWalEnd();
    childEnd = await ingestFromWalDir(childIngest, primary.walDir, branchLsn, end3);
    await primary.stop();
    primary = undefined;

    // pgbench_accounts: the largest relation of the main database
    let best = { rel: undefined as RelTag | undefined, n: 0 };
    for (const { rel, fork } of await parent.listRelations(branchLsn)) {
      if (fork !== ForkNumber.Main) continue;
      const n = (await parent.relSize(rel, fork, branchLsn)) ?? 0;
      if (n > best.n) best = { rel, n };
    }
    accounts = best.rel!;
    accountsBlocks = best.n;

    // materialized images for some blocks, at the early LSN and at the latest, on both timelines
    for (let b = 0; b < accountsBlocks; b += 7) await parent.materialize(accounts, ForkNumber.Main, b, early);
    for (let b = 3; b < accountsBlocks; b += 5) await parent.materialize(accounts, ForkNumber.Main, b, branchLsn);
    for (let b = 1; b < accountsBlocks; b += 4) await child.materialize(accounts, ForkNumber.Main, b, childEnd);
  });

  afterAll(async () => {
    await childStore?.close();
    await parentStore?.close();
    await primary?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("equals getPage for every block of every relation on a timeline with materialized images", async () => {
    const materialized = await parentStore.scanLatest(entityPrefix(KeySpace.MaterializedBlock), branchLsn);
    expect(materialized.length).toBeGreaterThan(0);
    const { blocks, mismatches } = await compareAll(parent, branchLsn);
    expect(blocks).toBeGreaterThan(accountsBlocks);
    expect(mismatches).toEqual([]);
  });

  it("equals getPage at an older LSN", async () => {
    const { blocks, mismatches } = await compareAll(parent, early);
    expect(blocks).toBeGreaterThan(0);
    expect(mismatches).toEqual([]);
  });

  it("equals getPage on a branch where some blocks changed and others come from the parent", async () => {
    // the branch rewrote some blocks of pgbench_accounts, not all of them
    let changed = 0;
    for (let b = 0; b < accountsBlocks; b++) if (await childStore.getVersion(relBlockKey(accounts, ForkNumber.Main, b), childEnd)) changed++;
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThan(accountsBlocks);
    expect((await childStore.scanLatest(entityPrefix(KeySpace.MaterializedBlock), childEnd)).length).toBeGreaterThan(0);
    const latest = await compareAll(child, childEnd);
    expect(latest.mismatches).toEqual([]);
    // below the branch point everything comes from the parent
    const below = await compareAll(child, early);
    expect(below.mismatches).toEqual([]);
  });

  it("equals getPage for a block range that does not start at 0", async () => {
    for (const [reader, lsn] of [[parent, early], [parent, branchLsn], [child, childEnd]] as const) {
      const from = 100;
      const to = Math.min(accountsBlocks, 900);
      const seen: number[] = [];
      for await (const { blockNumber, page } of scanRelationPages(reader, accounts, ForkNumber.Main, from, to, lsn)) {
        seen.push(blockNumber);
        expect(page.equals(await reader.getPage(accounts, ForkNumber.Main, blockNumber, lsn)), `block ${blockNumber}`).toBe(true);
      }
      expect(seen).toEqual(Array.from({ length: to - from }, (_, i) => from + i));
    }
  });
});
