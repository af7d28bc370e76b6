import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ForkNumber } from "../reltag.ts";
import { relBlockKey, storeKey } from "../storage/keys.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { imageValue, walRecordValue } from "../storage/values.ts";
import { PageCache } from "./page-cache.ts";
import { PageReader } from "./page-reader.ts";
import { emptyPage, genericDelta, oneBlockRecord } from "./testutil.ts";

const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };

/** A Generic WAL record (rmid 20) setting `bytes` at `offset` of main-fork block `block`. */
const genericRecord = (block: number, offset: number, bytes: Buffer) => oneBlockRecord(20, rel, block, genericDelta(offset, bytes));

describe("the shared page cache", () => {
  let dir: string;
  let store: TimelineStore;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "strata-page-cache-"));
    store = await TimelineStore.open(path.join(dir, "a"));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const commitRecord = (s: TimelineStore, block: number, lsn: bigint, byte: number) =>
    s.commit([{ key: storeKey(relBlockKey(rel, ForkNumber.Main, block), lsn), value: walRecordValue(genericRecord(block, 8000, Buffer.from([byte])), lsn - 0x20n, false) }], {
      lastRecordLsn: lsn,
      diskConsistentLsn: lsn,
      startLsn: 0x100n,
    });
  const commitImage = (s: TimelineStore, block: number, lsn: bigint) =>
    s.commit([{ key: storeKey(relBlockKey(rel, ForkNumber.Main, block), lsn), value: imageValue(emptyPage()) }], { lastRecordLsn: lsn, diskConsistentLsn: lsn, startLsn: 0x100n });

  it("serves a page read at the latest LSN until a newer record for that block is committed, and keeps serving the older LSNs", async () => {
    const cache = new PageCache(100);
    const reader = new PageReader(store, { pageCache: cache });
    await commitImage(store, 1, 0x100n);
    await commitRecord(store, 1, 0x200n, 7);
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x200n))[8000]).toBe(7);
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x200n))[8000]).toBe(7);
    expect(cache.hits).toBe(1);
    // a later LSN with no new version for the block is still the cached page
    await commitRecord(store, 2, 0x300n, 1);
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x300n))[8000]).toBe(7);
    expect(cache.hits).toBe(2);
    await commitRecord(store, 1, 0x400n, 9);
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x400n))[8000]).toBe(9);
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x3ffn))[8000]).toBe(7);
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x1ffn))[8000]).toBe(0);
  });

  it("brings an older cached page forward by replaying only the versions committed after it", async () => {
    const cache = new PageCache(100);
    const reader = new PageReader(store, { pageCache: cache });
    const plain = new PageReader(store, { pageCache: new PageCache(0) });
    await commitImage(store, 1, 0x100n);
    for (let i = 1; i <= 30; i++) await commitRecord(store, 1, 0x100n + BigInt(i) * 0x10n, i);
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x100n + 30n * 0x10n))[8000]).toBe(30);
    const chainReads: Array<{ aboveLsn: bigint | undefined; versions: number }> = [];
    const getChain = store.getStoredChain.bind(store);
    store.getStoredChain = async (...args) => {
      const chain = await getChain(...args);
      chainReads.push({ aboveLsn: args[2], versions: chain.versions.length });
      return chain;
    };
    // two more records: the next read replays those two on the cached page, not all 32
    await commitRecord(store, 1, 0x400n, 31);
    await commitRecord(store, 1, 0x410n, 32);
    const page = await reader.getPage(rel, ForkNumber.Main, 1, 0x410n);
    expect(page[8000]).toBe(32);
    expect(chainReads).toEqual([{ aboveLsn: 0x3ffn, versions: 2 }]);
    expect(page).toEqual(await plain.getPage(rel, ForkNumber.Main, 1, 0x410n));
    // an image after the cached page: the read starts from it, not from the cached page
    await commitImage(store, 1, 0x500n);
    await commitRecord(store, 1, 0x510n, 5);
    chainReads.length = 0;
    const afterImage = await reader.getPage(rel, ForkNumber.Main, 1, 0x510n);
    expect(chainReads).toEqual([{ aboveLsn: 0x4ffn, versions: 2 }]);
    expect(afterImage[8000]).toBe(5);
    expect(afterImage).toEqual(await plain.getPage(rel, ForkNumber.Main, 1, 0x510n));
  });

  it("replays newer versions onto a copy of the cached older page, which stays as it was", async () => {
    const reader = new PageReader(store, { pageCache: new PageCache(100) });
    await commitImage(store, 1, 0x100n);
    await commitRecord(store, 1, 0x200n, 7);
    await reader.getPage(rel, ForkNumber.Main, 1, 0x200n);
    // a read-only caller may hold the cache's own buffer (the page service sending it)
    const held = await reader.getPage(rel, ForkNumber.Main, 1, 0x200n, { readOnly: true });
    expect(held[8000]).toBe(7);
    await commitRecord(store, 1, 0x300n, 8);
    // read at the newer LSN: starts from the cached page at 0x200
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x300n))[8000]).toBe(8);
    expect(held[8000]).toBe(7);
  });

  it("hands out copies: changing a returned page does not change the cache", async () => {
    const reader = new PageReader(store, { pageCache: new PageCache(100) });
    await commitImage(store, 1, 0x100n);
    await commitRecord(store, 1, 0x200n, 7);
    (await reader.getPage(rel, ForkNumber.Main, 1, 0x200n)).fill(0xee);
    (await reader.getPage(rel, ForkNumber.Main, 1, 0x200n)).fill(0xee);
    expect((await reader.getPage(rel, ForkNumber.Main, 1, 0x200n))[8000]).toBe(7);
  });

  it("keeps the pages of different timelines apart, holds at most maxPages and forgets a closed store", async () => {
    const cache = new PageCache(2);
    const other = await TimelineStore.open(path.join(dir, "b"));
    const a = new PageReader(store, { pageCache: cache });
    const b = new PageReader(other, { pageCache: cache });
    await commitImage(store, 1, 0x100n);
    await commitRecord(store, 1, 0x200n, 1);
    await commitImage(other, 1, 0x100n);
    await commitRecord(other, 1, 0x200n, 2);
    expect((await a.getPage(rel, ForkNumber.Main, 1, 0x200n))[8000]).toBe(1);
    expect((await b.getPage(rel, ForkNumber.Main, 1, 0x200n))[8000]).toBe(2);
    expect((await a.getPage(rel, ForkNumber.Main, 1, 0x200n))[8000]).toBe(1);
    expect((await b.getPage(rel, ForkNumber.Main, 1, 0x200n))[8000]).toBe(2);
    expect(cache.hits).toBe(2);
    await a.getPage(rel, ForkNumber.Main, 5, 0x200n);
    expect(cache.size).toBe(2);
    await other.close();
    expect(cache.size).toBe(1);
  });

  it("evicts pages not read since they were cached before pages read again", () => {
    const cache = new PageCache(2);
    const page = (byte: number) => Buffer.alloc(8192, byte);
    const key = (block: number) => relBlockKey(rel, ForkNumber.Main, block);
    cache.put(store, key(1), page(1), 0x100n, 0x200n, true);
    cache.put(store, key(2), page(2), 0x100n, 0x200n, true);
    expect(cache.get(store, key(1), 0x200n)?.[0]).toBe(1);
    cache.put(store, key(3), page(3), 0x100n, 0x200n, true);
    expect(cache.size).toBe(2);
    expect(cache.get(store, key(2), 0x200n)).toBeUndefined();
    expect(cache.get(store, key(1), 0x200n)?.[0]).toBe(1);
    expect(cache.get(store, key(3), 0x200n)?.[0]).toBe(3);
  });

  it("does not keep a page open-ended when its read overlapped a commit of a newer version of that block", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 1);
    const image = (byte: number) => {
      const page = emptyPage();
      page[100] = byte;
      return imageValue(page);
    };
    await store.commit([{ key: storeKey(key, 0x100n), value: image(1) }], { lastRecordLsn: 0x100n, diskConsistentLsn: 0x100n, startLsn: 0x100n });
    for (let i = 0; i < 5; i++) {
      const reader = new PageReader(store, { pageCache: new PageCache(10) });
      const lsn = 0x200n + BigInt(i) * 0x100n;
      // the read starts at the latest LSN; the commit starts before it finishes
      const read = reader.getPage(rel, ForkNumber.Main, 1, lsn - 0x100n);
      const commit = store.commit([{ key: storeKey(key, lsn), value: image(i + 2) }], { lastRecordLsn: lsn, diskConsistentLsn: lsn, startLsn: 0x100n });
      expect((await read)[100]).toBe(i + 1);
      await commit;
      expect((await reader.getPage(rel, ForkNumber.Main, 1, lsn))[100]).toBe(i + 2);
    }
  });

  it("returns exactly what an uncached reader returns while commits and reads at random LSNs interleave", async () => {
    const cache = new PageCache(4);
    const cached = new PageReader(store, { pageCache: cache });
    const plain = new PageReader(store, { pageCache: new PageCache(0) });
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let block = 0; block < 5; block++) await commitImage(store, block, 0x100n + BigInt(block));
    let lsn = 0x1000n;
    for (let step = 0; step < 60; step++) {
      lsn += 0x40n;
      const block = random(5);
      // reads at the latest LSN and in the past race with this commit (started before or after it)
      const readsFirst = random(2) === 0;
      const race = () =>
        [0, 1, 2].map(() => {
          const b = random(5);
          const at = random(3) > 0 ? lsn - 0x40n : 0x1000n + BigInt(random(Number(lsn - 0x1000n)));
          return cached.getPage(rel, ForkNumber.Main, b, at).then((page) => ({ b, at, page }));
        });
      if (readsFirst) cache.clear(); // so these reads rebuild and insert
      const early = readsFirst ? race() : [];
      const commit = random(4) === 0 ? commitImage(store, block, lsn) : commitRecord(store, block, lsn, random(256));
      const racing = readsFirst ? early : race();
      await commit;
      for (const { b, at, page } of await Promise.all(racing)) expect(page, `block ${b} at ${at.toString(16)}`).toEqual(await plain.getPage(rel, ForkNumber.Main, b, at));
      // quiet reads at the latest LSN leave open-ended entries that the next commit must close
      for (const b of [random(5), random(5), random(5)]) {
        expect(await cached.getPage(rel, ForkNumber.Main, b, lsn), `block ${b} at latest`).toEqual(await plain.getPage(rel, ForkNumber.Main, b, lsn));
      }
    }
    expect(cache.hits).toBeGreaterThan(10);
  });
});
