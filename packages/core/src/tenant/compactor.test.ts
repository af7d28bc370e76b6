import { describe, expect, it } from "vitest";
import type { PagesOfFork } from "../ingest/walingest.ts";
import type { PageReader } from "../timeline/page-reader.ts";
import { compactionFromEnv, Compactor, type CompactedTimeline, DEFAULT_COMPACTION } from "./compactor.ts";

/**
 * A timeline whose walreceiver reports what the test sets. With `written`, each drain hands out a
 * block of a relation that no longer exists, so a pass starts and leaves it alone.
 */
function fakeTimeline(written = false) {
  const receiver = {
    status: { state: "streaming", recordBytes: 0, primaryFlushLsn: 0x1000n },
    lastRecordLsn: 0x1000n,
    drains: 0,
    drainWrittenPages(): PagesOfFork[] {
      this.drains++;
      return written ? [{ rel: { spcNode: 1663, dbNode: 5, relNode: 16384 }, fork: 0, blocks: [7] }] : [];
    },
  };
  // (no block of its store has history: a scan of its blocks finds nothing)
  const store = { scansInProgress: 0, db: { iterator: () => ({ nextv: async () => [], close: async () => {} }) } };
  const reader = { relationSizes: async () => [undefined], store } as unknown as PageReader;
  const timeline: CompactedTimeline = { reader, receiver };
  return { timeline, receiver, store };
}

const settings = { minRecords: 1, quietBytesPerSecond: 100_000, minIntervalMs: 30_000 };

/** The sampler's one tick a second, on a clock of the test's own (the first tick has no rate yet). */
function ticker(compactor: Compactor, timeline: CompactedTimeline) {
  let now = 1_000_000;
  return () => {
    compactor.tick("t/a", timeline, now);
    now += 1000;
  };
}

/** A second in which the receiver took 1 MB of records and ends `behind` its primary, then the tick. */
function busySecond(receiver: ReturnType<typeof fakeTimeline>["receiver"], tick: () => void, behind: bigint) {
  receiver.status.recordBytes += 1_000_000;
  receiver.lastRecordLsn += 1_000_000n;
  receiver.status.primaryFlushLsn = receiver.lastRecordLsn + behind;
  tick();
}

describe("compactor", () => {
  it("starts a pass only once the timeline's records arrive slower than the quiet rate", () => {
    const compactor = new Compactor(settings);
    const { timeline, receiver } = fakeTimeline();
    const tick = ticker(compactor, timeline);
    // the first tick has no rate yet; then 1 MB/s of records
    tick();
    for (let i = 0; i < 5; i++) {
      receiver.status.recordBytes += 1_000_000;
      receiver.lastRecordLsn += 1_000_000n;
      receiver.status.primaryFlushLsn = receiver.lastRecordLsn;
      tick();
    }
    expect(receiver.drains).toBe(0);
    // the load stops
    receiver.status.recordBytes += 1000;
    tick();
    expect(receiver.drains).toBe(1);
  });

  it("waits for the timeline to catch up with its primary, and runs passes at most once per interval", () => {
    const compactor = new Compactor(settings);
    const { timeline, receiver } = fakeTimeline();
    const tick = ticker(compactor, timeline);
    tick();
    // nothing ingested, but far behind the primary (a backlog being received)
    receiver.status.primaryFlushLsn = receiver.lastRecordLsn + 50_000_000n;
    tick();
    expect(receiver.drains).toBe(0);
    receiver.status.primaryFlushLsn = receiver.lastRecordLsn;
    tick();
    expect(receiver.drains).toBe(1);
    tick();
    expect(receiver.drains).toBe(1);
  });

  it("runs a pass over written blocks at most once per interval", async () => {
    const passes: unknown[] = [];
    const compactor = new Compactor(settings, (_key, result) => passes.push(result));
    const { timeline, receiver } = fakeTimeline(true);
    const tick = ticker(compactor, timeline);
    tick();
    tick();
    expect(receiver.drains).toBe(1);
    await compactor.idle("t/a");
    expect(passes).toEqual([{ images: 0, trimmed: 0, moved: 0, unchanged: 1, failed: 0, stopped: false }]);
    // the pass started on the second tick: the 31st is 30 s later
    for (let i = 0; i < 29; i++) tick();
    expect(receiver.drains).toBe(1);
    tick();
    expect(receiver.drains).toBe(2);
    await compactor.detach("t/a");
  });

  it("holds a pass while a full backup scans the timeline's store, and goes on after it", async () => {
    const passes: unknown[] = [];
    const compactor = new Compactor(settings, (_key, result) => passes.push(result));
    const { timeline, receiver, store } = fakeTimeline(true);
    store.scansInProgress = 1;
    const tick = ticker(compactor, timeline);
    tick();
    tick();
    expect(receiver.drains).toBe(1);
    await new Promise((r) => setTimeout(r, 600));
    expect(passes).toEqual([]);
    store.scansInProgress = 0;
    await compactor.idle("t/a");
    expect(passes).toHaveLength(1);
  });

  it("counts a receiver that is not streaming (waiting to reconnect) as quiet, and a stopped one is cut at once", () => {
    const compactor = new Compactor(settings);
    const { timeline, receiver } = fakeTimeline();
    receiver.status.state = "backoff";
    receiver.status.primaryFlushLsn = receiver.lastRecordLsn + 50_000_000n;
    const tick = ticker(compactor, timeline);
    tick();
    tick();
    expect(receiver.drains).toBe(1);
    compactor.receiverStopped("t/a", timeline, receiver);
    expect(receiver.drains).toBe(2);
  });

  it("cuts a timeline that keeps up with a busy primary once maxWaitMs has passed since its last pass, but not one catching up", async () => {
    const compactor = new Compactor({ ...settings, maxWaitMs: 10_000 });
    const { timeline, receiver } = fakeTimeline();
    const tick = ticker(compactor, timeline);
    const busy = (behind: bigint) => busySecond(receiver, tick, behind);
    // a catch-up far behind its primary: 1 MB/s for 30 s, no pass
    for (let i = 0; i < 30; i++) busy(100_000_000n);
    expect(receiver.drains).toBe(0);
    // keeping up (within 16 MB) with a primary that writes 1 MB/s: a pass once 10 s have passed
    // since the compactor first saw the timeline, the next 10 s after that one ended (by the next tick)
    busy(1_000_000n);
    expect(receiver.drains).toBe(1);
    await compactor.idle("t/a");
    for (let i = 0; i < 10; i++) busy(1_000_000n);
    expect(receiver.drains).toBe(1);
    busy(1_000_000n);
    expect(receiver.drains).toBe(2);
    // without maxWaitMs: only when quiet
    const quietOnly = new Compactor(settings);
    const other = fakeTimeline();
    const tickOther = ticker(quietOnly, other.timeline);
    for (let i = 0; i < 60; i++) busySecond(other.receiver, tickOther, 0n);
    expect(other.receiver.drains).toBe(0);
  });

  it("holds a pass under load while the timeline falls behind its primary, and goes on once it keeps up", async () => {
    const passes: unknown[] = [];
    const compactor = new Compactor({ ...settings, maxWaitMs: 5_000 }, (_key, result) => passes.push(result));
    const { timeline, receiver } = fakeTimeline(true);
    const tick = ticker(compactor, timeline);
    const busy = (behind: bigint) => busySecond(receiver, tick, behind);
    for (let i = 0; i < 6; i++) busy(0n);
    expect(receiver.drains).toBe(1);
    // before its first group the timeline falls 100 MB behind: the pass waits
    busy(100_000_000n);
    await new Promise((r) => setTimeout(r, 600));
    expect(passes).toEqual([]);
    busy(0n);
    await compactor.idle("t/a");
    expect(passes).toHaveLength(1);
  });

  it("waits maxWaitMs from the end of a pass under load that took longer, not from its start", async () => {
    const compactor = new Compactor({ ...settings, maxWaitMs: 5_000 });
    const { timeline, receiver, store } = fakeTimeline(true);
    const tick = ticker(compactor, timeline);
    const busy = () => busySecond(receiver, tick, 0n);
    for (let i = 0; i < 6; i++) busy();
    expect(receiver.drains).toBe(1);
    // a full backup holds the pass for 8 s of load, longer than maxWaitMs
    store.scansInProgress = 1;
    for (let i = 0; i < 8; i++) busy();
    store.scansInProgress = 0;
    await compactor.idle("t/a");
    // the next one 5 s after the end, not at once
    for (let i = 0; i < 5; i++) busy();
    expect(receiver.drains).toBe(1);
    busy();
    expect(receiver.drains).toBe(2);
  });

  it("does nothing when turned off", () => {
    const compactor = new Compactor({ ...settings, minRecords: 0 });
    const { timeline, receiver } = fakeTimeline();
    const tick = ticker(compactor, timeline);
    tick();
    tick();
    compactor.receiverStopped("t/a", timeline, receiver);
    expect(receiver.drains).toBe(0);
  });

  it("reads its settings from the environment and refuses nonsense", () => {
    expect(compactionFromEnv({})).toEqual(DEFAULT_COMPACTION);
    expect(
      compactionFromEnv({ STRATA_COMPACTION_MIN_RECORDS: "0", STRATA_COMPACTION_QUIET_KBPS: "64", STRATA_COMPACTION_INTERVAL_S: "5", STRATA_COMPACTION_PARALLEL_REPLAY: "1", STRATA_COMPACTION_MAX_WAIT_S: "0" }),
    ).toEqual({
      minRecords: 0,
      quietBytesPerSecond: 64 * 1024,
      minIntervalMs: 5000,
      parallelReplay: true,
      maxWaitMs: 0,
    });
    expect(compactionFromEnv({ STRATA_COMPACTION_MAX_WAIT_S: "120" }).maxWaitMs).toBe(120_000);
    expect(() => compactionFromEnv({ STRATA_COMPACTION_MIN_RECORDS: "many" })).toThrow(/STRATA_COMPACTION_MIN_RECORDS/);
    expect(() => compactionFromEnv({ STRATA_COMPACTION_PARALLEL_REPLAY: "yes" })).toThrow(/STRATA_COMPACTION_PARALLEL_REPLAY must be 1 or 0/);
    expect(() => compactionFromEnv({ STRATA_COMPACTION_MAX_WAIT_S: "-1" })).toThrow(/STRATA_COMPACTION_MAX_WAIT_S/);
  });
});
