import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ForkNumber } from "../reltag.ts";
import { entityPrefix, KeySpace, materializedBlockKey, relBlockKey, relSizeKey, storeKey } from "./keys.ts";
import { TimelineStore } from "./timeline-store.ts";
import { imageValue, readU32Value, u32Value, ValueKind, walRecordValue } from "./values.ts";
import { IngestBatch } from "../ingest/walingest.ts";
import { countEntriesRead } from "../timeline/testutil.ts";

const rel = { spcNode: 1663, dbNode: 5, relNode: 16384 };

describe("TimelineStore versions", () => {
  let dir: string;
  let store: TimelineStore;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "strata-store-"));
    store = await TimelineStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const setSize = (lsn: bigint, blocks: number) =>
    store.commit([{ key: storeKey(relSizeKey(rel, ForkNumber.Main), lsn), value: u32Value(blocks) }], { lastRecordLsn: lsn, diskConsistentLsn: lsn, startLsn: 0x100n });
  const sizeAt = async (lsn: bigint) => readU32Value((await store.getVersion(relSizeKey(rel, ForkNumber.Main), lsn))?.value);

  it("returns the newest version at or below an LSN, also after newer versions were written and read", async () => {
    expect(await sizeAt(0x100n)).toBeUndefined();
    await setSize(0x200n, 1);
    expect(await sizeAt(0x200n)).toBe(1);
    expect(await sizeAt(0x300n)).toBe(1);
    await setSize(0x400n, 5);
    expect(await sizeAt(0x400n)).toBe(5);
    expect(await sizeAt(0x3ffn)).toBe(1);
    expect(await sizeAt(0x1ffn)).toBeUndefined();
    await setSize(0x500n, 7);
    expect(await sizeAt(0x500n)).toBe(7);
    expect(await sizeAt(0x4ffn)).toBe(5);
  });

  it("does not keep a version read during a commit of that entity as valid past the commit", async () => {
    await setSize(0x200n, 1);
    for (let i = 0; i < 5; i++) {
      const lsn = 0x300n + BigInt(i) * 0x100n;
      const read = sizeAt(lsn - 0x100n);
      const commit = setSize(lsn, i + 2);
      expect(await read).toBe(i + 1);
      await commit;
      expect(await sizeAt(lsn)).toBe(i + 2);
    }
  });

  it("returns every version of a long reconstruct chain back to its base, and at most `limit` when asked", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 0);
    const entries = [{ key: storeKey(key, 0x100n), value: imageValue(Buffer.alloc(8192)) }];
    for (let i = 1; i <= 5000; i++) entries.push({ key: storeKey(key, 0x100n + BigInt(i)), value: walRecordValue(Buffer.alloc(40, i), 0x100n, false) });
    await store.commit(entries, { lastRecordLsn: 0x100n + 5000n, diskConsistentLsn: 0x100n + 5000n, startLsn: 0x100n });
    const full = await store.getReconstructChain(key, 0x100n + 5000n);
    expect(full.complete).toBe(true);
    expect(full.versions.map((v) => v.lsn)).toEqual(Array.from({ length: 5001 }, (_, i) => 0x100n + BigInt(i)));
    const above = await store.getReconstructChain(key, 0x100n + 4000n, 0x100n + 10n);
    expect(above.complete).toBe(false);
    expect(above.versions.length).toBe(3990);
    const limited = await store.getReconstructChain(key, 0x100n + 5000n, undefined, 51);
    expect(limited).toMatchObject({ complete: false, truncated: true });
    expect(limited.versions.map((v) => v.lsn)).toEqual(Array.from({ length: 51 }, (_, i) => 0x100n + 4950n + BigInt(i)));
  });

  it("reads versions stored in runs exactly as if each were its own entry, at any LSN, above any LSN and with a limit", async () => {
    const key = relBlockKey(rel, ForkNumber.Main, 0);
    // what ingest writes: runs of up to RUN_MAX_VERSIONS records, split by a will-init record at +3000
    const batch = new IngestBatch();
    batch.put(key, 0x100n, imageValue(Buffer.alloc(8192)));
    for (let i = 1; i <= 5000; i++) batch.put(key, 0x100n + BigInt(i), walRecordValue(Buffer.alloc(40, i), 0x100n, i === 3000));
    const entries = batch.finish();
    expect(entries.length).toBeLessThan(40);
    await store.commit(entries, { lastRecordLsn: 0x100n + 5000n, diskConsistentLsn: 0x100n + 5000n, startLsn: 0x100n });
    const lsns = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => 0x100n + BigInt(from + i));

    const full = await store.getReconstructChain(key, 0x100n + 2999n);
    expect(full.complete).toBe(true);
    expect(full.versions.map((v) => v.lsn)).toEqual(lsns(0, 2999));
    full.versions.slice(1).forEach((v, i) => expect(v.value).toMatchObject({ kind: ValueKind.WalRecord, raw: Buffer.alloc(40, i + 1) }));
    // inside a run: versions above the read LSN are left out
    const middle = await store.getReconstructChain(key, 0x100n + 1234n);
    expect(middle.versions.map((v) => v.lsn)).toEqual(lsns(0, 1234));
    // after the will-init record the chain starts there
    const newest = await store.getReconstructChain(key, 0x100n + 5000n);
    expect(newest).toMatchObject({ complete: true, truncated: false });
    expect(newest.versions.map((v) => v.lsn)).toEqual(lsns(3000, 5000));
    // above an LSN inside a run (a materialized image there): only the versions after it
    const above = await store.getReconstructChain(key, 0x100n + 2500n, 0x100n + 1001n);
    expect(above.complete).toBe(false);
    expect(above.versions.map((v) => v.lsn)).toEqual(lsns(1002, 2500));
    // a limit returns at least that many of the newest versions and says the base was not reached
    const limited = await store.getReconstructChain(key, 0x100n + 2999n, undefined, 51);
    expect(limited).toMatchObject({ complete: false, truncated: true });
    expect(limited.versions.length).toBeGreaterThanOrEqual(51);
    expect(limited.versions.map((v) => v.lsn)).toEqual(lsns(3000 - limited.versions.length, 2999));
    // the newest version at or below an LSN inside a run
    expect((await store.getVersion(key, 0x100n + 777n))?.lsn).toBe(0x100n + 777n);
    expect((await store.getVersion(key, 0x100n + 777n))?.value).toMatchObject({ kind: ValueKind.WalRecord, raw: Buffer.alloc(40, 777) });
  });

  it("gives each entity's newest version at or below an LSN in one scan, without reading a long history whole", async () => {
    // relation sizes: three forks with a few versions, a table extended 5000 times between them,
    // and one created after the LSNs read
    const forkRel = (relNode: number) => ({ ...rel, relNode });
    const entries = [];
    for (const relNode of [100, 300]) for (let v = 1; v <= 5; v++) entries.push({ key: storeKey(relSizeKey(forkRel(relNode), ForkNumber.Main), 0x1000n * BigInt(v)), value: u32Value(relNode + v) });
    for (let v = 1; v <= 5000; v++) entries.push({ key: storeKey(relSizeKey(forkRel(200), ForkNumber.Main), 0x100n + BigInt(v)), value: u32Value(v) });
    entries.push({ key: storeKey(relSizeKey(forkRel(200), ForkNumber.Fsm), 0x2000n), value: u32Value(3) });
    entries.push({ key: storeKey(relSizeKey(forkRel(400), ForkNumber.Main), 0x9000n), value: u32Value(1) });
    await store.commit(entries, { lastRecordLsn: 0x9000n, diskConsistentLsn: 0x9000n, startLsn: 0x100n });
    const read = countEntriesRead(store);
    for (const lsn of [0x100n, 0x101n, 0x100n + 2500n, 0x1000n + 4999n, 0x3000n, 0x8fffn]) {
      read.entries = 0;
      const scanned = await store.scanLatest(entityPrefix(KeySpace.RelSize), lsn);
      expect(read.entries, `entries read at ${lsn}`).toBeLessThan(2500);
      const expected = [];
      for (const relNode of [100, 200, 300, 400]) {
        for (const fork of [ForkNumber.Main, ForkNumber.Fsm]) {
          const version = await store.getVersion(relSizeKey(forkRel(relNode), fork), lsn);
          if (version) expected.push({ relNode, fork, lsn: version.lsn, blocks: readU32Value(version.value) });
        }
      }
      const got = scanned.map((e) => ({ relNode: e.entityKey.readUInt32BE(9), fork: e.entityKey[13], lsn: e.lsn, blocks: readU32Value(e.value) }));
      expect(got, `at ${lsn}`).toEqual(expected);
    }
  });

  it("finishes storing the materialized images readers did not wait for before it closes", async () => {
    const page = (block: number) => Buffer.alloc(8192, block + 1);
    // a read hands them over and returns (PageReader.materializeLater)
    const stored = Array.from({ length: 20 }, (_, block) => store.putDerived(materializedBlockKey(rel, ForkNumber.Main, block), 0x300n, imageValue(page(block))));
    await store.close();
    await Promise.all(stored);
    store = await TimelineStore.open(dir);
    for (let block = 0; block < 20; block++) {
      const image = await store.getVersion(materializedBlockKey(rel, ForkNumber.Main, block), 0x300n);
      expect(image?.value.kind === ValueKind.Image && image.value.bytes.equals(page(block)), `block ${block}`).toBe(true);
    }
  });

  it("tells a reader whether any write started or finished since its token", async () => {
    const token = store.writeToken();
    expect(store.unchangedSince(token)).toBe(true);
    const commit = setSize(0x200n, 1);
    expect(store.writeToken()).toBe(-1);
    expect(store.unchangedSince(token)).toBe(false);
    await commit;
    expect(store.unchangedSince(token)).toBe(false);
    expect(store.unchangedSince(store.writeToken())).toBe(true);
  });
});
