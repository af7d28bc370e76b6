import { mkdtempSync, readdirSync, rmSync, truncateSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ForkNumber } from "../reltag.ts";
import { readTar } from "../replication/tar.ts";
import type { Lsn } from "../lsn.ts";
import type { RelTag } from "../reltag.ts";
import { crc32c } from "../wal/crc32c.ts";
import { ControlField } from "./control.ts";
import { decodeReplOriginCheckpoint } from "./replorigin-checkpoint.ts";
import { fullBackup, FullBackupError } from "./fullbackup.ts";
import { pageChecksum } from "./page-checksum.ts";
import { fakeReader, heap, LSN, page } from "./testutil.ts";
import { relBlockKey, storeKey } from "../storage/keys.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { imageValue, walRecordValue } from "../storage/values.ts";
import { PageCache } from "../timeline/page-cache.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { emptyPage, genericDelta, oneBlockRecord } from "../timeline/testutil.ts";
import type { RedoPool } from "../walredo/pool.ts";
import { redoPoolForTests } from "../walredo/testutil.ts";

async function untar(chunks: Buffer[]): Promise<Map<string, Buffer | "dir">> {
  const files = new Map<string, Buffer | "dir">();
  const queue = [...chunks];
  await readTar(
    async () => queue.shift() ?? null,
    async (entry, body) => {
      const parts: Buffer[] = [];
      for await (const c of body) parts.push(Buffer.from(c));
      files.set(entry.path, entry.type === "dir" ? "dir" : Buffer.concat(parts));
    },
  );
  return files;
}

/** The promise rejections nobody handled while `run` ran, and in the 50 ms after it. */
async function unhandledRejectionsDuring(run: () => Promise<void>): Promise<unknown[]> {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  process.on("unhandledRejection", onRejection);
  try {
    await run();
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    process.off("unhandledRejection", onRejection);
  }
  return rejections;
}

describe("full backup layout", () => {
  it("writes every fork in relation segments, unlogged main forks from init forks, SLRUs, relmaps, 2PC files and pg_control last", async () => {
    const chunks: Buffer[] = [];
    const progress: number[][] = [];
    const result = await fullBackup(fakeReader(), LSN, async (c) => void chunks.push(Buffer.from(c)), { onProgress: (b, t) => progress.push([b, t]) });
    const files = await untar(chunks);
    const names = [...files.keys()];
    expect(names.at(-1)).toBe("global/pg_control");
    for (const dir of ["pg_wal/archive_status", "pg_notify", "pg_replslot", "pg_commit_ts", "pg_logical/mappings", "base/1", "base/5"]) expect(files.get(dir)).toBe("dir");

    // 5 blocks with 2-block segments: 16384, 16384.1, 16384.2
    expect([files.get("base/5/16384"), files.get("base/5/16384.1"), files.get("base/5/16384.2")].map((f) => (f as Buffer).length)).toEqual([16384, 16384, 8192]);
    const third = files.get("base/5/16384.2") as Buffer;
    expect([third[100], third[101]]).toEqual([ForkNumber.Main, 4]);
    expect(third.readUInt16LE(8)).toBe(pageChecksum(third, 4)); // checksum uses the relation's block number
    expect((files.get("base/5/16384_fsm.1") as Buffer).length).toBe(8192);
    expect((files.get("base/5/16384_vm") as Buffer).length).toBe(8192);
    // unlogged: init fork twice, nothing else
    const init = files.get("base/5/16390_init") as Buffer;
    expect(files.get("base/5/16390")).toEqual(init);
    expect(init[100]).toBe(ForkNumber.Init);
    expect(names.filter((n) => n.startsWith("base/5/16390"))).toEqual(["base/5/16390_init", "base/5/16390"]);
    // empty relation, shared catalog
    expect(files.get("global/1262")).toEqual(Buffer.alloc(0));

    // pg_xact 0000 extended to the page holding nextXid 40000 (page 1) with a zero page
    const xact = files.get("pg_xact/0000") as Buffer;
    expect(xact.length).toBe(2 * 8192);
    expect(xact.subarray(8192).every((b) => b === 0x55)).toBe(true); // fake reader returns its page for any block
    expect((files.get("pg_multixact/offsets/0000") as Buffer).length).toBe(8192);

    expect(files.get("global/pg_filenode.map")).toEqual(Buffer.alloc(512, 0x11));
    expect(files.get("base/5/pg_filenode.map")).toEqual(Buffer.alloc(512, 0x22));
    expect(files.has("base/1/pg_filenode.map")).toBe(false);
    expect(files.get("base/1/PG_VERSION")?.toString()).toBe("15\n");
    const twophase = files.get("pg_twophase/000002A1") as Buffer;
    expect(twophase.subarray(0, -4).toString()).toBe("state bytes");
    expect(twophase.readUInt32LE(twophase.length - 4)).toBe(crc32c(Buffer.from("state bytes")));
    expect(files.get("pg_wal/00000002.history")?.toString()).toBe("1\t0/3000158\tno recovery target specified\n");
    expect(decodeReplOriginCheckpoint(files.get("pg_logical/replorigin_checkpoint") as Buffer)).toEqual([{ id: 1, remoteLsn: 0x5a5a5an }, { id: 3, remoteLsn: 0x1_0000_0000n }]);
    expect(files.get("postgresql.conf")?.toString()).toContain("max_prepared_transactions = 7");
    expect(files.get("pg_hba.conf")?.toString()).toMatch(/host\s+replication\s+all\s+127\.0\.0\.1\/32\s+trust/);

    const ctl = files.get("global/pg_control") as Buffer;
    expect(ctl.readBigUInt64LE(ControlField.checkPoint)).toBe(LSN);
    const wal = files.get("pg_wal/000000010000000000000004") as Buffer;
    expect(wal.length).toBe(16 * 1024 * 1024);
    expect(wal.readBigUInt64LE(0x766820 + 8)).toBe(LSN - 0x60n); // xl_prev = start of the record before

    expect(result.bytes).toBe(chunks.reduce((n, c) => n + c.length, 0));
    expect(progress.at(-1)).toEqual([result.bytes, result.bytes]);
  });

  it("refills a chunk buffer only once the sink is done with it", async () => {
    const time = new Date(1_700_000_000_000);
    const reference: Buffer[] = [];
    await fullBackup(fakeReader(), LSN, async (c) => void reference.push(Buffer.from(c)), { time });
    // a sink that reads relation chunks late (20 event loop turns), everything else soon: several
    // chunk buffers are out at once, and the ring must wait before refilling one
    const late: Buffer[] = [];
    let calls = 0;
    await fullBackup(
      fakeReader(),
      LSN,
      (chunk) =>
        new Promise<void>((resolve) => {
          const slot = calls++;
          const turn = (left: number): void => {
            if (left > 0) return void setImmediate(() => turn(left - 1));
            late[slot] = Buffer.from(chunk);
            resolve();
          };
          turn(chunk.length >= 8192 && chunk.length % 8192 === 0 ? 20 : 1);
        }),
      { time },
    );
    const [got, want] = [await untar(late), await untar(reference)];
    expect([...got.keys()]).toEqual([...want.keys()]);
    for (const [name, content] of want) {
      const other = got.get(name);
      if (content instanceof Buffer ? !(other instanceof Buffer && other.equals(content)) : other !== content) throw new Error(`${name} differs`);
    }
  });

  it("gives each relation file its own relation's size", async () => {
    const rels = Array.from({ length: 40 }, (_, i) => ({ rel: { spcNode: 1663, dbNode: 5, relNode: 20000 + i }, fork: ForkNumber.Main }));
    const reader = fakeReader({ listRelations: async () => rels, relSize: async (rel: RelTag) => rel.relNode % 3 }); // 0, 1 or 2 blocks
    const chunks: Buffer[] = [];
    await fullBackup(reader, LSN, async (c) => void chunks.push(Buffer.from(c)));
    const files = await untar(chunks);
    for (const { rel } of rels) expect((files.get(`base/5/${rel.relNode}`) as Buffer).length).toBe((rel.relNode % 3) * 8192);
  });

  it("rejects an unaligned LSN and an LSN inside a record", async () => {
    await expect(fullBackup(fakeReader(), LSN + 4n, async () => {})).rejects.toThrow(/not 8-byte aligned/);
    const inside = fakeReader({ recordBefore: async (lsn: Lsn) => ({ start: lsn - 0x10n, end: lsn + 0x40n }) });
    await expect(fullBackup(inside, LSN, async () => {})).rejects.toThrow(/inside the WAL record at 0\/4766810/);
  });

  it("names the page that cannot be rebuilt", async () => {
    const failing = fakeReader({
      getPage: async (_rel: RelTag, _fork: ForkNumber, block: number) => {
        if (block === 3) throw new Error("no redo support for Gin/SPLIT");
        return page(0, block);
      },
    });
    await expect(fullBackup(failing, LSN, async () => {})).rejects.toThrow(/reading base\/5\/16384\.1 block 3 at 0\/4766820: no redo support/);
  });

  it("writes user tablespaces as directories under pg_tblspc (in-place tablespaces), with their databases' directories and relations, empty ones too", async () => {
    // tablespace 16500 holds database 16600 (its default tablespace) and table 17000 of database 5
    const inTablespace = { spcNode: 16500, dbNode: 5, relNode: 17000 };
    const catalog = { spcNode: 16500, dbNode: 16600, relNode: 1259 };
    const base = fakeReader();
    const reader = fakeReader({
      listDatabases: async () => [...(await base.listDatabases(LSN)), { spcNode: 16500, dbNode: 16600 }],
      listRelations: async () => [...(await base.listRelations(LSN)), { rel: inTablespace, fork: ForkNumber.Main }, { rel: catalog, fork: ForkNumber.Main }],
      relSize: async (rel: RelTag, fork: ForkNumber) => (rel.spcNode === 16500 ? 1 : base.relSize(rel, fork, LSN)),
      getRelmap: async (spc: number, db: number) => (db === 16600 ? Buffer.alloc(512, 0x33) : base.getRelmap(spc, db, LSN)),
      listTablespaces: async () => [16500, 16700], // 16700: created, nothing in it yet
    });
    const chunks: Buffer[] = [];
    await fullBackup(reader, LSN, async (c) => void chunks.push(Buffer.from(c)));
    const files = await untar(chunks);
    const names = [...files.keys()];
    const version = "pg_tblspc/16500/PG_15_202209061";
    for (const dir of ["pg_tblspc/16500", version, `${version}/16600`, `${version}/5`, "pg_tblspc/16700", "pg_tblspc/16700/PG_15_202209061"]) expect(files.get(dir)).toBe("dir");
    // parents come before what they hold
    expect(names.indexOf("pg_tblspc/16500")).toBeLessThan(names.indexOf(version));
    expect(names.indexOf(version)).toBeLessThan(names.indexOf(`${version}/5`));
    expect(names.indexOf(`${version}/5`)).toBeLessThan(names.indexOf(`${version}/5/17000`));
    expect(files.get(`${version}/16600/PG_VERSION`)?.toString()).toBe("15\n");
    expect(files.get(`${version}/16600/pg_filenode.map`)).toEqual(Buffer.alloc(512, 0x33));
    expect(files.has(`${version}/5/PG_VERSION`)).toBe(false); // only a database's own directory has one
    expect([(files.get(`${version}/5/17000`) as Buffer).length, (files.get(`${version}/16600/1259`) as Buffer).length]).toEqual([8192, 8192]);
    expect(files.get("postgresql.conf")?.toString()).toContain("allow_in_place_tablespaces = on");

    const plain: Buffer[] = [];
    await fullBackup(fakeReader(), LSN, async (c) => void plain.push(Buffer.from(c)));
    const plainFiles = await untar(plain);
    expect(plainFiles.get("postgresql.conf")?.toString()).not.toContain("allow_in_place_tablespaces");
    expect([...plainFiles.keys()].some((n) => n.startsWith("pg_tblspc/"))).toBe(false);
  });

  describe("a relation read from a store's page image files", () => {
    const BLOCKS = 40; // 3 chunks of up to 15 pages, each one run of stored images

    /** A real reader over a store holding heap's main fork as BLOCKS images stored one after another; the rest of the cluster from the fake reader. */
    async function storeReader(
      dir: string,
      options: { redoPool?: RedoPool | null; extra?: Array<{ key: Buffer; value: Buffer }> } = {},
    ): Promise<{ store: TimelineStore; reader: PageReader }> {
      const store = await TimelineStore.open(path.join(dir, "store"));
      const entries = Array.from({ length: BLOCKS }, (_, block) => ({ key: storeKey(relBlockKey(heap, ForkNumber.Main, block), 0x100n), value: imageValue(page(ForkNumber.Main, block)) }));
      await store.commit([...entries, ...(options.extra ?? [])], { lastRecordLsn: LSN, diskConsistentLsn: LSN, startLsn: 0x100n });
      const fake = fakeReader();
      const control = Buffer.from(await fake.getControlFile(LSN) as Buffer);
      control.writeUInt32LE(131072, ControlField.relsegSize); // 1 GB segments: one file
      control.writeUInt32LE(crc32c(control, 0, ControlField.crc), ControlField.crc);
      const reader = Object.assign(new PageReader(store, { redoPool: options.redoPool, maxReplay: Number.MAX_SAFE_INTEGER, pageCache: new PageCache(0) }), {
        getControlFile: async () => control,
        getCheckpoint: fake.getCheckpoint,
        recordBefore: fake.recordBefore,
        listSlruSegments: fake.listSlruSegments,
        getSlruPage: fake.getSlruPage,
        listRelations: async () => [{ rel: heap, fork: ForkNumber.Main }],
        relSize: async () => BLOCKS,
        relationSizes: async (forks: unknown[]) => forks.map(() => BLOCKS),
        listDatabases: fake.listDatabases,
        getRelmap: fake.getRelmap,
        listTwoPhase: fake.listTwoPhase,
        listTimelineHistories: fake.listTimelineHistories,
        listReplicationOrigins: fake.listReplicationOrigins,
      });
      return { store, reader };
    }

    it("writes a relation stored as runs of images in block order, each page with its checksum", async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "strata-fullbackup-"));
      const { store, reader } = await storeReader(dir);
      try {
        // a slow sink keeps several chunks in flight at once
        const chunks: Buffer[] = [];
        await fullBackup(reader, LSN, async (c) => {
          chunks.push(Buffer.from(c));
          await new Promise((resolve) => setImmediate(resolve));
        });
        const file = (await untar(chunks)).get("base/5/16384") as Buffer;
        expect(file.length).toBe(BLOCKS * 8192);
        for (let block = 0; block < BLOCKS; block++) {
          const got = file.subarray(block * 8192, (block + 1) * 8192);
          expect([got[100], got[101]]).toEqual([ForkNumber.Main, block]);
          expect(got.readUInt16LE(8)).toBe(pageChecksum(got, block));
        }
      } finally {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    /** `records` generic records on each of `blocks` above their images (the chains a backup right after a backlog replays); `bad`: one record of an rmgr without redo in block 20's. */
    function longChains(blocks: number[], records: number, bad = false): Array<{ key: Buffer; value: Buffer }> {
      const out: Array<{ key: Buffer; value: Buffer }> = [];
      for (const block of blocks) {
        // (a page with tuple space for the records to write in: generic redo zeroes the hole)
        out.push({ key: storeKey(relBlockKey(heap, ForkNumber.Main, block), 0x800n), value: imageValue(emptyPage(0x800n, block)) });
        for (let i = 1; i <= records; i++) {
          const lsn = 0x1000n + BigInt(i) * 0x100n;
          const rmid = bad && block === 20 && i === records / 2 ? 128 : 20;
          const data = rmid === 20 ? genericDelta(8000 + i, Buffer.from([i & 0xff, block])) : Buffer.from("xxxx");
          out.push({ key: storeKey(relBlockKey(heap, ForkNumber.Main, block), lsn), value: walRecordValue(oneBlockRecord(rmid, heap, block, data), lsn - 0x40n, false) });
        }
      }
      return out;
    }

    describe("with redo workers", () => {
      const redo = redoPoolForTests();

      it("rebuilds long chains on the workers while it reads on: the same archive as replay on its own thread, each page in its place", async () => {
        const chains = longChains([0, 3, 14, 15, 16, 20, 29, 30, 39], 40);
        const archives: Array<Map<string, Buffer | "dir">> = [];
        for (const redoPool of [null, redo.pool]) {
          const dir = mkdtempSync(path.join(os.tmpdir(), "strata-fullbackup-"));
          const { store, reader } = await storeReader(dir, { redoPool, extra: chains });
          try {
            const jobs = redo.pool.stats.jobs;
            const chunks: Buffer[] = [];
            await fullBackup(reader, LSN, async (c) => {
              chunks.push(Buffer.from(c));
              await new Promise((resolve) => setImmediate(resolve));
            });
            archives.push(await untar(chunks));
            // (the reader learns the hint-bit setting on its first chain, replayed here; the rest go to the workers)
            if (redoPool) expect(redo.pool.stats.jobs - jobs).toBeGreaterThanOrEqual(7);
          } finally {
            await store.close();
            rmSync(dir, { recursive: true, force: true });
          }
        }
        const [here, workers] = archives.map((files) => files.get("base/5/16384") as Buffer);
        expect(here.length).toBe(BLOCKS * 8192);
        expect(workers.equals(here)).toBe(true);
        for (const block of [0, 3, 20, 39]) {
          const got = here.subarray(block * 8192, (block + 1) * 8192);
          expect(got[8190]).toBe(block); // the base image's mark, under the records'
          for (let i = 1; i <= 40; i++) expect([got[8000 + i], got[8000 + i + 1]]).toEqual([i & 0xff, i < 40 ? (i + 1) & 0xff : block]);
          expect(got.readUInt16LE(8)).toBe(pageChecksum(got, block));
        }
      });

      it("names the block a worker could not rebuild, and leaves no rejection unhandled", async () => {
        const dir = mkdtempSync(path.join(os.tmpdir(), "strata-fullbackup-"));
        const { store, reader } = await storeReader(dir, { redoPool: redo.pool, extra: longChains([3, 14, 20, 29], 40, true) });
        try {
          const rejections = await unhandledRejectionsDuring(async () => {
            const failed = fullBackup(reader, LSN, async () => {});
            await expect(failed).rejects.toThrow(FullBackupError);
            await expect(failed).rejects.toThrow(/^reading base\/5\/16384 block 20 at 0\/4766820: /);
          });
          expect(rejections).toEqual([]);
        } finally {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        }
      });
    });

    it("names the blocks whose stored images cannot be read", async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "strata-fullbackup-"));
      const { store, reader } = await storeReader(dir);
      try {
        const images = path.join(dir, "store", "page-images");
        const [file] = readdirSync(images).filter((name) => name.endsWith(".img"));
        truncateSync(path.join(images, file), 20 * 8192); // blocks 20.. are gone: the second chunk's run is short
        const rejections = await unhandledRejectionsDuring(async () => {
          const failed = fullBackup(reader, LSN, async () => {});
          await expect(failed).rejects.toThrow(FullBackupError);
          await expect(failed).rejects.toThrow(/reading base\/5\/16384 blocks 15\.\.29 at 0\/4766820: .*truncated/);
        });
        expect(rejections).toEqual([]);
      } finally {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
