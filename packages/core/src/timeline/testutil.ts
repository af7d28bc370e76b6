// Hand-built WAL records and pages for the page reader's unit tests.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Lsn } from "../lsn.ts";
import type { RelTag } from "../reltag.ts";
import type { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { readWalRange } from "../wal/reader.ts";
import { computeRecordCrc } from "../wal/record.ts";

/** A WAL record of `rmid` with one block reference (`rel`, main fork, `block`) carrying `data`. */
export function oneBlockRecord(rmid: number, rel: RelTag, block: number, data: Buffer, opts: { willInit?: boolean } = {}): Buffer {
  const total = 24 + 4 + 12 + 4 + data.length;
  const rec = Buffer.alloc(total);
  rec.writeUInt32LE(total, 0);
  rec[17] = rmid;
  let off = 24;
  rec[off++] = 0; // block id
  rec[off++] = 0x20 | (opts.willInit ? 0x40 : 0); // HAS_DATA, main fork
  rec.writeUInt16LE(data.length, off);
  off += 2;
  rec.writeUInt32LE(rel.spcNode, off);
  rec.writeUInt32LE(rel.dbNode, off + 4);
  rec.writeUInt32LE(rel.relNode, off + 8);
  rec.writeUInt32LE(block, off + 12);
  data.copy(rec, off + 16);
  rec.writeUInt32LE(computeRecordCrc(rec, total), 20);
  return rec;
}

/** Generic WAL block data: put `bytes` at `offset`. */
export function genericDelta(offset: number, bytes: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(offset, 0);
  head.writeUInt16LE(bytes.length, 2);
  return Buffer.concat([head, bytes]);
}

/** An initialized empty page with page LSN `lsn`; `mark` goes into its last-but-one byte. */
export function emptyPage(lsn: Lsn = 0n, mark = 0): Buffer {
  const page = Buffer.alloc(8192);
  page.writeUInt32LE(Number(lsn >> 32n), 0);
  page.writeUInt32LE(Number(lsn & 0xffffffffn), 4);
  page.writeUInt16LE(24, 12);
  page.writeUInt16LE(8000, 14);
  page.writeUInt16LE(8192, 16);
  page[8190] = mark;
  return page;
}

/**
 * Counts the entries the store's iterators hand out from now on (`read.entries`, which a test may
 * reset): how much of the store a read went through.
 */
export function countEntriesRead(store: TimelineStore): { entries: number; batches: number } {
  const read = { entries: 0, batches: 0 };
  const iterator = store.db.iterator.bind(store.db);
  store.db.iterator = ((options: unknown) => {
    const it = iterator(options as never);
    const nextv = it.nextv.bind(it);
    it.nextv = (async (size: number) => {
      const batch = await nextv(size);
      read.entries += batch.length;
      read.batches++;
      return batch;
    }) as typeof it.nextv;
    return it;
  }) as typeof store.db.iterator;
  return read;
}

/** Throwaway stores for one describe block, closed and removed by `cleanup` after each test. */
export function tempStores(prefix: string) {
  const dirs: string[] = [];
  const stores: TimelineStore[] = [];
  return {
    async openStore(): Promise<TimelineStore> {
      const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
      dirs.push(dir);
      const store = await TimelineStore.open(dir);
      stores.push(store);
      return store;
    },
    /** closes a store now (it must close, i.e. hold no open iterator) and forgets it */
    async closeStore(store: TimelineStore) {
      await store.close();
      stores.splice(stores.indexOf(store), 1);
    },
    async cleanup() {
      for (const s of stores.splice(0)) await s.close();
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** Writes hand-made versions as one ingest step ending at `last`. */
export async function commit(store: TimelineStore, entries: Array<{ key: Buffer; value: Buffer }>, startLsn = 0x10n, last = 0x10000n) {
  await store.commit(entries, { lastRecordLsn: last, diskConsistentLsn: last, startLsn });
}

/** Ingests WAL [from, to) straight from a pg_wal directory, a segment at a time; the durable LSN. */
export async function ingestFromWalDir(ingestor: TimelineIngestor, walDir: string, from: Lsn, to: Lsn): Promise<Lsn> {
  const segment = 16 * 1024 * 1024;
  let last = from;
  for (let pos = from; pos < to; ) {
    const next = pos + BigInt(Math.min(segment, Number(to - pos)));
    last = await ingestor.ingestWal(readWalRange(walDir, pos, next), pos);
    pos = next;
  }
  return last;
}
