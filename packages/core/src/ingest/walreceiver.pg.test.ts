import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TimelineStore } from "../storage/timeline-store.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { importFromPrimary } from "./import-primary.ts";
import { TimelineIngestor } from "./timeline-ingest.ts";
import { WalReceiver } from "./walreceiver.ts";

describe("walreceiver", () => {
  let primary: PgCluster;
  let other: PgCluster;
  let dir: string;
  let store: TimelineStore;

  beforeAll(async () => {
    [primary, other] = await Promise.all([PgCluster.start(), PgCluster.start()]);
    dir = mkdtempSync(path.join(os.tmpdir(), "strata-walreceiver-"));
    store = await TimelineStore.open(dir);
    await importFromPrimary(store, primary.connectionString(), "strata_followed");
  });

  afterAll(async () => {
    await store?.close();
    await Promise.all([primary?.stop(), other?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("refuses the WAL of another database system that answers where the primary was, and keeps trying", async () => {
    // another cluster, with a slot of the same name, now at the primary's address
    await other.sql("SELECT pg_create_physical_replication_slot('strata_followed', true)");
    // and WAL past the timeline's LSN: it would stream (its segment starts are record starts too)
    for (let i = 0; i < 3; i++) {
      await other.sql(`CREATE TABLE elsewhere${i} AS SELECT generate_series(1, 1000) AS x`);
      await other.sql("SELECT pg_switch_wal()");
    }
    const ingestor = await TimelineIngestor.open(store);
    const before = ingestor.resumeLsn;
    const receiver = new WalReceiver(ingestor, { primary: other.connectionString(), slot: "strata_followed", initialBackoffMs: 50, maxBackoffMs: 100 });
    receiver.start();
    try {
      for (let i = 0; i < 100 && receiver.status.reconnects < 2; i++) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(receiver.status.lastError).toMatch(/different database system: its system identifier is \d+, the timeline's is \d+/);
      expect(receiver.status.reconnects).toBeGreaterThanOrEqual(2);
      expect(receiver.status.state).not.toBe("streaming");
      expect(receiver.status.receivedBytes).toBe(0);
      expect(ingestor.resumeLsn).toBe(before);
    } finally {
      await receiver.stop();
    }
  });
});
