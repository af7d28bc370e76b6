// The redo worker pool on hand-built chains: pages rebuilt on a worker equal those rebuilt on the
// caller's thread, errors keep their type, and jobs a stopped worker leaves behind still finish.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Lsn } from "../lsn.ts";
import { ForkNumber } from "../reltag.ts";
import { UnsupportedRecordError } from "../redo/types.ts";
import { relBlockKey, storeKey } from "../storage/keys.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { imageValue, runValue, walRecordValue } from "../storage/values.ts";
import { PageCache } from "../timeline/page-cache.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { emptyPage, genericDelta, oneBlockRecord } from "../timeline/testutil.ts";
import { RedoPool } from "./pool.ts";
import { redoPoolForTests } from "./testutil.ts";

const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };
const GENERIC = 20;

/** A chain for `block`: an image at 0x1000, then `n` generic records (every tenth stored as part of a run of 3). */
function chain(block: number, n: number, tag: number): { entries: Array<{ key: Buffer; value: Buffer }>; end: Lsn } {
  const key = relBlockKey(rel, ForkNumber.Main, block);
  const entries = [{ key: storeKey(key, 0x1000n), value: imageValue(emptyPage(0x1000n, tag)) }];
  const recordAt = (i: number) => {
    const lsn = 0x1000n + BigInt(i) * 0x100n;
    return { lsn, value: walRecordValue(oneBlockRecord(GENERIC, rel, block, genericDelta(8000 + ((i * 7 + tag) % 188), Buffer.from([i & 0xff, tag]))), lsn - 0x40n, false) };
  };
  for (let i = 1; i <= n; i++) {
    if (i % 10 === 0 && i + 2 <= n) {
      const run = [recordAt(i), recordAt(i + 1), recordAt(i + 2)];
      entries.push({ key: storeKey(key, run[0].lsn), value: runValue(run) });
      i += 2;
    } else {
      const { lsn, value } = recordAt(i);
      entries.push({ key: storeKey(key, lsn), value });
    }
  }
  return { entries, end: 0x1000n + BigInt(n) * 0x100n };
}

describe("redo worker pool", () => {
  let dir: string;
  let store: TimelineStore;
  // every chain of 4 versions or more to the workers, also a read alone (deterministic counts)
  const redo = redoPoolForTests();
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "strata-redo-pool-"));
    store = await TimelineStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const readers = () => ({
    here: new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: null }),
    workers: new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: redo.pool }),
  });

  it("rebuilds long chains on the workers into the pages replay on the caller's thread makes, at every LSN", async () => {
    expect(redo.pool.stats.workers).toBe(2);
    const blocks = [0, 1, 2, 3, 4, 5];
    let end = 0n;
    for (const block of blocks) {
      const c = chain(block, 40 + block * 30, block + 1);
      await store.commit(c.entries, { lastRecordLsn: c.end, diskConsistentLsn: c.end, startLsn: 0x1000n });
      end = c.end > end ? c.end : end;
    }
    const { here, workers } = readers();
    const jobsBefore = redo.pool.stats.jobs;
    let compared = 0;
    for (const lsn of [0x1000n + 2n * 0x100n, 0x1000n + 35n * 0x100n, 0x1000n + 101n * 0x100n + 0x80n, end]) {
      // every block at once: several jobs on each worker
      const [expected, got] = await Promise.all([
        Promise.all(blocks.map((b) => here.getPage(rel, ForkNumber.Main, b, lsn))),
        Promise.all(blocks.map((b) => workers.getPage(rel, ForkNumber.Main, b, lsn))),
      ]);
      for (let i = 0; i < blocks.length; i++) {
        expect(got[i].equals(expected[i]), `block ${blocks[i]} at ${lsn.toString(16)}`).toBe(true);
        compared++;
      }
    }
    expect(compared).toBe(24);
    // (the chains at 0x1200 have 3 versions, the image and 2 records: below the pool's 4, those replay here)
    expect(redo.pool.stats.jobs - jobsBefore).toBe(18);
    expect(redo.pool.stats.failed).toBe(0);
    // the image is stored in the page image files: the workers read it there themselves
    const last = await workers.getPage(rel, ForkNumber.Main, 5, end);
    expect(last[8190]).toBe(6);
  });

  it("fails a read whose chain has a record without redo support with the same error as replay on the caller's thread", async () => {
    const c = chain(9, 50, 3);
    // an rmgr with no redo at all, in the middle of the chain
    c.entries.splice(25, 1, { key: c.entries[25].key, value: walRecordValue(oneBlockRecord(128, rel, 9, Buffer.from("x")), c.entries[25].key.readBigUInt64BE(c.entries[25].key.length - 8) - 0x40n, false) });
    await store.commit(c.entries, { lastRecordLsn: c.end, diskConsistentLsn: c.end, startLsn: 0x1000n });
    const { here, workers } = readers();
    const failedBefore = redo.pool.stats.failed;
    const expected = await here.getPage(rel, ForkNumber.Main, 9, c.end).catch((err: Error) => err);
    expect(expected).toBeInstanceOf(UnsupportedRecordError);
    const got = await workers.getPage(rel, ForkNumber.Main, 9, c.end).catch((err: Error) => err);
    expect(got).toBeInstanceOf(UnsupportedRecordError);
    expect((got as Error).message).toBe((expected as Error).message);
    // the worker tried it first
    expect(redo.pool.stats.failed).toBe(failedBefore + 1);
  });

  it("finishes the reads whose jobs were on workers that stopped, on the caller's thread", async () => {
    const blocks = Array.from({ length: 24 }, (_, i) => i);
    let end = 0n;
    for (const block of blocks) {
      const c = chain(block, 200, block);
      await store.commit(c.entries, { lastRecordLsn: c.end, diskConsistentLsn: c.end, startLsn: 0x1000n });
      end = c.end;
    }
    const { here } = readers();
    const expected = await Promise.all(blocks.map((b) => here.getPage(rel, ForkNumber.Main, b, end)));
    const stopping = new RedoPool(2, 4, false);
    await stopping.start();
    const reader = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: stopping });
    const reads = Promise.all(blocks.map((b) => reader.getPage(rel, ForkNumber.Main, b, end)));
    // the reads are in flight on the workers once their chains are read: stop the threads under them
    while (stopping.stats.jobs + pendingJobs(stopping) === 0) await new Promise((r) => setImmediate(r));
    await stopping.close();
    const got = await reads;
    for (let i = 0; i < blocks.length; i++) expect(got[i].equals(expected[i]), `block ${i}`).toBe(true);
    expect(stopping.stats.failed).toBeGreaterThan(0);
  });

  it("replays a read on the caller's thread when no other read is in flight and the workers are idle (callerFirst)", async () => {
    const c = chain(4, 100, 2);
    await store.commit(c.entries, { lastRecordLsn: c.end, diskConsistentLsn: c.end, startLsn: 0x1000n });
    const callerFirst = new RedoPool(1, 4);
    try {
      await callerFirst.start();
      const reader = new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: callerFirst });
      const alone = await reader.getPage(rel, ForkNumber.Main, 4, c.end);
      expect(callerFirst.stats.jobs).toBe(0);
      // the first of two reads in flight to reach replay has the other still in flight: a worker
      // takes it (the second may find the first done and replay here)
      const together = await Promise.all([reader.getPage(rel, ForkNumber.Main, 4, c.end), reader.getPage(rel, ForkNumber.Main, 4, c.end - 0x100n)]);
      expect(callerFirst.stats.jobs).toBeGreaterThanOrEqual(1);
      expect(alone.equals(await readers().here.getPage(rel, ForkNumber.Main, 4, c.end))).toBe(true);
      expect(together[0].equals(alone)).toBe(true);
    } finally {
      await callerFirst.close();
    }
  });

  it("replays on the caller's thread when it has no workers", async () => {
    const c = chain(3, 100, 1);
    await store.commit(c.entries, { lastRecordLsn: c.end, diskConsistentLsn: c.end, startLsn: 0x1000n });
    const none = new RedoPool(0);
    const page = await new PageReader(store, { maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0), redoPool: none }).getPage(rel, ForkNumber.Main, 3, c.end);
    expect(page.equals(await readers().here.getPage(rel, ForkNumber.Main, 3, c.end))).toBe(true);
    expect(none.stats).toEqual({ workers: 0, jobs: 0, versions: 0, failed: 0 });
  });
});

describe("redo worker pool and the process", () => {
  it("keeps a process alive while it starts and replays, and not once it is idle", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "strata-redo-exit-"));
    try {
      // a script whose last await is a page rebuilt on a worker: it must print the page's mark
      // (the pending job kept it alive) and then exit by itself (the idle threads do not)
      const script = path.join(dir, "script.mts");
      const src = (f: string) => JSON.stringify(path.join(import.meta.dirname, f));
      writeFileSync(
        script,
        `import { TimelineStore } from ${src("../storage/timeline-store.ts")};
import { PageReader } from ${src("../timeline/page-reader.ts")};
import { PageCache } from ${src("../timeline/page-cache.ts")};
import { RedoPool } from ${src("./pool.ts")};
import { relBlockKey, storeKey } from ${src("../storage/keys.ts")};
import { imageValue, walRecordValue } from ${src("../storage/values.ts")};
import { emptyPage, genericDelta, oneBlockRecord } from ${src("../timeline/testutil.ts")};
const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };
const store = await TimelineStore.open(${JSON.stringify(path.join(dir, "store"))});
const key = relBlockKey(rel, 0, 0);
const entries = [{ key: storeKey(key, 0x1000n), value: imageValue(emptyPage(0x1000n, 42)) }];
for (let i = 1; i <= 50; i++) entries.push({ key: storeKey(key, 0x1000n + BigInt(i) * 0x100n), value: walRecordValue(oneBlockRecord(20, rel, 0, genericDelta(8000 + i, Buffer.from([i]))), 0x1000n + BigInt(i) * 0x100n - 0x40n, false) });
await store.commit(entries, { lastRecordLsn: 0x4200n, diskConsistentLsn: 0x4200n, startLsn: 0x1000n });
const pool = new RedoPool(1, 4, false);
await pool.start();
const page = await new PageReader(store, { pageCache: new PageCache(0), maxReplay: 1e9, redoPool: pool }).getPage(rel, 0, 0, 0x4200n);
await store.close();
// and a pool that was started and never used
await new RedoPool(1).start();
console.log(JSON.stringify({ mark: page[8190], last: page[8050], jobs: pool.stats.jobs }));
`,
      );
      const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve(-1);
        }, 20_000);
        child.once("exit", (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      expect({ code, out }).toEqual({ code: 0, out: `${JSON.stringify({ mark: 42, last: 50, jobs: 1 })}\n` });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

/** Jobs a pool has handed to its workers and not yet had back. */
function pendingJobs(pool: RedoPool): number {
  return pool.pending;
}
