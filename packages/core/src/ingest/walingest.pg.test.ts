import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import pg from "pg";
import path from "node:path";
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";
import { ForkNumber } from "../reltag.ts";
import { checkpointKey, dbDirEntryKey, ENTITY_KEY_LENGTH, entityPrefix, KeySpace, relSizeKey, SlruKind, slruBlockKey, twoPhaseFileKey } from "../storage/keys.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { decodeValue, DerivedKind, expandEntry, imageValue, readImageRef, readU32Value, ValueKind, walRecordValue } from "../storage/values.ts";
import { decodeLoggedRecord, decodeRecordLogPiece, type LoggedRecord } from "../storage/record-log.ts";
import { withoutImages } from "../wal/record.ts";
import { formatRecordLine } from "../wal/waldump.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { captureWal, decodeRange } from "../wal/testutil.ts";
import { readWalRange } from "../wal/reader.ts";
import { CheckPointField } from "./records.ts";
import { TimelineIngestor } from "./timeline-ingest.ts";

const SEGMENT = 16 * 1024 * 1024;

async function newStore(dir: string, startLsn: Lsn) {
  const store = await TimelineStore.open(dir);
  await store.commit([], { lastRecordLsn: startLsn, diskConsistentLsn: startLsn, startLsn });
  return store;
}

/** The records of the WAL record log, in LSN order, whatever pieces they were stored in. */
async function loggedRecords(store: TimelineStore): Promise<LoggedRecord[]> {
  const out: LoggedRecord[] = [];
  for await (const [key, value] of store.iterate(entityPrefix(KeySpace.WalRecordLog), Buffer.alloc(28, KeySpace.WalRecordLog).fill(0xff, 1))) {
    const records = decodeRecordLogPiece(value, store.recordLog);
    // a piece is keyed by its first record
    expect(key.readBigUInt64BE(19)).toBe(records[0].start);
    out.push(...records);
  }
  return out;
}

/** A WalRecordInLog value as the WalRecord value with the same record inline. */
function inlineRecord(raw: Buffer, store: TimelineStore): Buffer {
  const value = decodeValue(raw, store.valueFiles);
  if (value.kind !== ValueKind.WalRecord) throw new Error(`a record reference decoded as kind ${value.kind}`);
  return walRecordValue(value.raw, value.recordLsn, value.willInit);
}

/**
 * Every stored entry, except that the WAL record log (whose piece boundaries follow the commit
 * boundaries) is compared by the records it holds.
 */
async function dumpStore(store: TimelineStore): Promise<{ entries: string[]; records: string[] }> {
  const entries: string[] = [];
  for await (const [k, v] of store.iterate(Buffer.alloc(1), Buffer.alloc(28, 0xff))) {
    // versions one by one: how an ingest step groups them into runs depends on its batching
    if (k[0] === KeySpace.WalRecordLog) continue;
    if (k.length !== ENTITY_KEY_LENGTH + 8) {
      entries.push(`${k.toString("hex")}=${v.toString("hex")}`); // unversioned metadata
      continue;
    }
    const entity = k.subarray(0, ENTITY_KEY_LENGTH).toString("hex");
    for (const version of expandEntry(k.readBigUInt64BE(ENTITY_KEY_LENGTH), v)) {
      // an image in the page image files, or a record read from the log, compares by its bytes
      // (where they sit depends on write order and piece boundaries)
      const raw = version.raw[0] === ValueKind.ImageRef ? imageValue(store.images.read(readImageRef(version.raw))) : version.raw[0] === ValueKind.WalRecordInLog ? inlineRecord(version.raw, store) : version.raw;
      entries.push(`${entity}@${version.lsn.toString(16).padStart(16, "0")}=${raw.toString("hex")}`);
    }
  }
  const records = (await loggedRecords(store)).map((r) => `${formatLsn(r.start)}-${formatLsn(r.end)}=${r.raw.toString("hex")}`);
  return { entries, records };
}

describe("WAL ingest from a real PostgreSQL 15", () => {
  let cluster: PgCluster;
  let tmp: string;
  let range: { start: Lsn; end: Lsn };
  let facts: {
    dbOid: number;
    tables: Array<{ name: string; filenode: number; blocks: number; fsm: number; vm: number }>;
    droppedFilenode: number;
    committedXid: number;
    abortedXid: number;
    newDbOid: number;
    droppedDbOid: number;
    preparedXid: number;
    pendingPreparedXid: number;
  };

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), "strata-ingest-"));
    cluster = await PgCluster.start({ settings: { wal_keep_size: "1GB", max_prepared_transactions: 5 } });
    await cluster.sql("CHECKPOINT");
    const q = <T extends Record<string, unknown>>(sql: string, db = "postgres") => cluster.sql<T>(sql, [], db);
    // runs statements on one session and returns the rows of the one that produced rows
    const session = async <T extends Record<string, unknown>>(sql: string): Promise<T[]> => {
      const client = new pg.Client({ host: cluster.host, port: cluster.port, user: "postgres", database: "postgres" });
      await client.connect();
      try {
        const results = (await client.query(sql)) as unknown as pg.QueryResult[];
        return (results.find((r) => r.rows.length > 0)?.rows ?? []) as T[];
      } finally {
        await client.end();
      }
    };
    range = await captureWal(cluster, async () => {
      await cluster.pgbench(["-i", "-s", "1", "-q"]);
      await cluster.pgbench(["-t", "100", "-c", "2"]);
      // a heap that VACUUM truncates: main and VM forks shrink (before any prepared xact holds back the horizon)
      await q("CREATE TABLE shrink (x int, pad text) WITH (autovacuum_enabled = off)");
      await q("INSERT INTO shrink SELECT g, repeat('p', 200) FROM generate_series(1, 60000) g");
      await q("VACUUM shrink");
      await q("DELETE FROM shrink WHERE x > 700");
      await q("VACUUM shrink");
      await q("CREATE TABLE doomed (x int); INSERT INTO doomed SELECT generate_series(1, 5000)");
      const [{ filenode }] = await q<{ filenode: number }>("SELECT pg_relation_filenode('doomed') AS filenode");
      await q("DROP TABLE doomed");
      const [{ xid: committedXid }] = await session<{ xid: string }>("BEGIN; INSERT INTO pgbench_history VALUES (1,1,1,1,now()); SELECT txid_current()::text AS xid; COMMIT");
      await q("CREATE TABLE t (x int)");
      const aborted = await session<{ xid: string }>("BEGIN; INSERT INTO t VALUES (1); SELECT txid_current()::text AS xid; ROLLBACK");
      await q("BEGIN; INSERT INTO t VALUES (2); SAVEPOINT a; INSERT INTO t VALUES (3); ROLLBACK TO a; SAVEPOINT b; INSERT INTO t VALUES (4); RELEASE b; COMMIT");
      const [{ xid: preparedXid }] = await session<{ xid: string }>("BEGIN; INSERT INTO t VALUES (5); SELECT txid_current()::text AS xid; PREPARE TRANSACTION 'p1'");
      await q("COMMIT PREPARED 'p1'");
      const [{ xid: pendingPreparedXid }] = await session<{ xid: string }>("BEGIN; INSERT INTO t VALUES (6); SELECT txid_current()::text AS xid; PREPARE TRANSACTION 'p2'");
      await q("CREATE DATABASE d_wal STRATEGY wal_log");
      await q("CREATE DATABASE d_copy STRATEGY file_copy");
      const dbs = await q<{ datname: string; oid: number }>("SELECT datname, oid FROM pg_database");
      await q("DROP DATABASE d_copy");
      await q("VACUUM pgbench_accounts");
      await q("TRUNCATE pgbench_history");
      await q("CHECKPOINT");
      const tables = await q<{ name: string; filenode: number; blocks: string; fsm: string; vm: string }>(
        "SELECT relname AS name, pg_relation_filenode(oid) AS filenode, (pg_relation_size(oid) / 8192)::text AS blocks, (pg_relation_size(oid, 'fsm') / 8192)::text AS fsm, (pg_relation_size(oid, 'vm') / 8192)::text AS vm FROM pg_class WHERE relname IN ('pgbench_accounts','pgbench_branches','pgbench_tellers','pgbench_history','pgbench_accounts_pkey','t','shrink')",
      );
      const [{ oid: dbOid }] = await q<{ oid: number }>("SELECT oid FROM pg_database WHERE datname = current_database()");
      facts = {
        dbOid,
        tables: tables.map((t) => ({ name: t.name, filenode: t.filenode, blocks: Number(t.blocks), fsm: Number(t.fsm), vm: Number(t.vm) })),
        droppedFilenode: filenode,
        committedXid: Number(committedXid),
        abortedXid: Number(aborted[0].xid),
        newDbOid: dbs.find((d) => d.datname === "d_wal")!.oid,
        droppedDbOid: dbs.find((d) => d.datname === "d_copy")!.oid,
        preparedXid: Number(preparedXid),
        pendingPreparedXid: Number(pendingPreparedXid),
      };
      await q("ROLLBACK PREPARED 'p2'");
    });
  });

  afterAll(async () => {
    await cluster?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("stores every record, relation sizes, drops, CLOG status, databases, 2PC state and the checkpoint as PostgreSQL has them", async () => {
    const store = await newStore(path.join(tmp, "a"), range.start);
    try {
      const ingestor = await TimelineIngestor.open(store);
      const bytes = readWalRange(cluster.walDir, range.start, range.end);
      let pos = 0;
      while (pos < bytes.length) {
        const n = Math.min(bytes.length - pos, 1 + Math.floor(Math.random() * 200_000));
        // one piece, or consecutive pieces given together (as the walreceiver does with the
        // messages it received meanwhile)
        await ingestor.ingestWal(pieces(bytes.subarray(pos, pos + n)), range.start + BigInt(pos));
        pos += n;
      }
      const expected = decodeRange(cluster, range.start, range.end);
      const markers = await store.readMarkers();
      expect(formatLsn(markers.lastRecordLsn)).toBe(formatLsn(expected[expected.length - 1].endLsn));
      expect(markers.diskConsistentLsn).toBe(markers.lastRecordLsn);
      const logged = await loggedRecords(store);
      expect(logged.map((r) => r.start)).toEqual(expected.map((r) => r.lsn));
      expect(logged.map((r) => r.end)).toEqual(expected.map((r) => r.endLsn));
      // records are logged without their page images, and read back as the same records
      expect(logged.every((r, i) => r.raw.equals(withoutImages(expected[i])))).toBe(true);
      expect(logged.filter((r) => r.imagesOmitted).length).toBe(expected.filter((r) => r.blocks.some((b) => b.hasImage)).length);
      expect(logged.filter((r) => r.imagesOmitted).length).toBeGreaterThan(0);
      expect(logged.map((r) => formatRecordLine(decodeLoggedRecord(r)))).toEqual(expected.map((r) => formatRecordLine(r)));

      const at = markers.lastRecordLsn;
      for (const table of facts.tables) {
        const rel = { spcNode: 1663, dbNode: facts.dbOid, relNode: table.filenode };
        const size = async (fork: ForkNumber) => readU32Value((await store.getVersion(relSizeKey(rel, fork), at))?.value) ?? 0;
        // The free space map is not WAL-logged at all, and VACUUM may extend the visibility map
        // with zero pages without WAL: those sizes can only be bounded by what WAL shows.
        expect({ name: table.name, main: await size(ForkNumber.Main) }).toEqual({ name: table.name, main: table.blocks });
        expect(await size(ForkNumber.VisibilityMap)).toBeLessThanOrEqual(table.vm);
        if (table.name === "shrink" || table.name === "pgbench_accounts") expect(await size(ForkNumber.VisibilityMap)).toBe(table.vm);
      }
      const dropped = await store.getVersion(relSizeKey({ spcNode: 1663, dbNode: facts.dbOid, relNode: facts.droppedFilenode }, ForkNumber.Main), at);
      expect(dropped?.value.kind).toBe(ValueKind.Tombstone);
      const shrink = facts.tables.find((t) => t.name === "shrink")!;
      expect(shrink.blocks).toBeLessThan(100);

      const clogPage = await store.getReconstructChain(slruBlockKey(SlruKind.Clog, 0, 0), at);
      const statusOf = (xid: number) => {
        let status: number | undefined;
        for (const v of clogPage.versions) {
          if (v.value.kind !== ValueKind.Derived || v.value.derived !== DerivedKind.ClogSetStatus) continue;
          const p = v.value.payload;
          for (let i = 1; i < p.length; i += 4) if (p.readUInt32LE(i) === xid) status = p[0];
        }
        return status;
      };
      expect(statusOf(facts.committedXid)).toBe(1);
      expect(statusOf(facts.abortedXid)).toBe(2);
      expect(statusOf(facts.preparedXid)).toBe(1);
      expect(statusOf(facts.pendingPreparedXid)).toBe(2);

      expect((await store.getVersion(dbDirEntryKey(1663, facts.newDbOid), at))?.value.kind).toBe(ValueKind.Image);
      expect((await store.getVersion(dbDirEntryKey(1663, facts.droppedDbOid), at))?.value.kind).toBe(ValueKind.Tombstone);
      expect((await store.getVersion(twoPhaseFileKey(facts.pendingPreparedXid), at))?.value.kind).toBe(ValueKind.Tombstone);

      const checkpoint = await store.getVersion(checkpointKey(), at);
      expect(checkpoint?.value.kind).toBe(ValueKind.Image);
      if (checkpoint?.value.kind === ValueKind.Image) {
        const nextXid = Number(checkpoint.value.bytes.readBigUInt64LE(CheckPointField.nextXid) & 0xffffffffn);
        expect(nextXid).toBeGreaterThan(facts.pendingPreparedXid);
      }
    } finally {
      await store.close();
    }
  });

  it("ends with exactly the same store after being interrupted and resumed at its durable LSN", async () => {
    const bytes = readWalRange(cluster.walDir, range.start, range.end);
    const straight = await newStore(path.join(tmp, "straight"), range.start);
    await (await TimelineIngestor.open(straight)).ingestWal(bytes, range.start, 256 * 1024);
    const expected = await dumpStore(straight);
    await straight.close();

    const dir = path.join(tmp, "interrupted");
    await (await newStore(dir, range.start)).close();
    let pos = 0;
    for (let restart = 0; pos < bytes.length; restart++) {
      const store = await TimelineStore.open(dir);
      const ingestor = await TimelineIngestor.open(store);
      // the stream resumes where the store is durable, possibly re-sending bytes it had seen
      const resume = Number(ingestor.resumeLsn - range.start);
      const from = Math.max(0, resume - 5000);
      const n = Math.min(bytes.length - from, 300_000 + restart * 1000);
      // (in pieces: the re-sent bytes may end inside any of them)
      await ingestor.ingestWal(pieces(bytes.subarray(from, from + n)), range.start + BigInt(from), 256 * 1024);
      pos = from + n;
      await store.close();
    }
    const store = await TimelineStore.open(dir);
    expect(await dumpStore(store)).toEqual(expected);
    await store.close();
  });

  /** `bytes` as is, or split into 2-4 consecutive pieces at random points. */
  function pieces(bytes: Buffer): Buffer | Buffer[] {
    const count = Math.floor(Math.random() * 4);
    if (count === 0 || bytes.length < 8) return bytes;
    const cuts = Array.from({ length: count }, () => Math.floor(Math.random() * bytes.length)).sort((a, b) => a - b);
    return [0, ...cuts].map((at, i) => bytes.subarray(at, i < cuts.length ? cuts[i] : bytes.length));
  }

  /** The store (dumped) after ingesting `bytes` in one call: the reference for batched runs. */
  async function ingestedStraight(name: string, bytes: Buffer, maxBatchBytes?: number) {
    const straight = await newStore(path.join(tmp, name), range.start);
    await (await TimelineIngestor.open(straight)).ingestWal(bytes, range.start, maxBatchBytes === undefined ? {} : { maxBatchBytes });
    const dump = await dumpStore(straight);
    await straight.close();
    return dump;
  }

  /** Makes every commit of `store` take `delayMs` longer and counts commits in flight. */
  function slowDisk(store: TimelineStore, delayMs: number, beforeCommit?: () => void) {
    const commit = store.commit.bind(store);
    const disk = { inFlight: 0, maxInFlight: 0, durable: range.start };
    store.commit = async (entries, markers) => {
      disk.inFlight++;
      disk.maxInFlight = Math.max(disk.maxInFlight, disk.inFlight);
      beforeCommit?.();
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      await commit(entries, markers);
      disk.durable = markers.lastRecordLsn;
      disk.inFlight--;
    };
    return disk;
  }

  it("writes a commit while the next batch is built: at most one in flight, resume point only at durable LSNs", async () => {
    const bytes = readWalRange(cluster.walDir, range.start, range.end);
    const expected = await ingestedStraight("pipeline-ref", bytes, 256 * 1024);

    const store = await newStore(path.join(tmp, "pipelined"), range.start);
    try {
      const ingestor = await TimelineIngestor.open(store);
      let returnedWithCommitInFlight = 0;
      const disk = slowDisk(store, 5, () => expect(ingestor.resumeLsn).toBe(disk.durable));
      for (let pos = 0; pos < bytes.length; pos += 100_000) {
        const lsn = await ingestor.ingestWal(bytes.subarray(pos, pos + 100_000), range.start + BigInt(pos), { flush: false, maxBatchBytes: 256 * 1024 });
        if (disk.inFlight > 0) returnedWithCommitInFlight++;
        expect(lsn).toBe(ingestor.resumeLsn);
        expect(ingestor.resumeLsn <= disk.durable).toBe(true);
      }
      expect(await ingestor.flush()).toBe(disk.durable);
      expect(disk.inFlight).toBe(0);
      expect(ingestor.hasPending).toBe(false);
      expect(disk.maxInFlight).toBe(1);
      expect(returnedWithCommitInFlight).toBeGreaterThan(0);
      expect((await store.readMarkers()).lastRecordLsn).toBe(disk.durable);
      expect(await dumpStore(store)).toEqual(expected);
    } finally {
      await store.close();
    }
  });

  it("commits in the background on request without waiting, never two at once, resolving at the durable LSN", async () => {
    const bytes = readWalRange(cluster.walDir, range.start, range.end);
    const expected = await ingestedStraight("background-ref", bytes);

    const store = await newStore(path.join(tmp, "background"), range.start);
    try {
      const ingestor = await TimelineIngestor.open(store);
      const disk = slowDisk(store, 25);
      const started: Array<Promise<bigint>> = [];
      let refused = 0;
      for (let pos = 0; pos < bytes.length; pos += 20_000) {
        await ingestor.ingestWal(bytes.subarray(pos, pos + 20_000), range.start + BigInt(pos), { flush: false });
        const wasInFlight = disk.inFlight > 0;
        const commitDone = ingestor.commitInBackground();
        if (commitDone) started.push(commitDone.then((lsn) => (expect(disk.durable >= lsn).toBe(true), lsn)));
        else if (wasInFlight) refused++;
        if (pos % 100_000 === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const lsns = await Promise.all(started);
      expect(lsns.length).toBeGreaterThan(1);
      expect(refused).toBeGreaterThan(0);
      expect([...lsns].sort((a, b) => (a < b ? -1 : 1))).toEqual(lsns);
      expect(await ingestor.flush()).toBe(disk.durable);
      expect(disk.maxInFlight).toBe(1);
      expect((await store.readMarkers()).lastRecordLsn).toBe(disk.durable);
      expect(await dumpStore(store)).toEqual(expected);
    } finally {
      await store.close();
    }
  });

  it("stores nothing after a commit that failed in the background", async () => {
    const bytes = readWalRange(cluster.walDir, range.start, range.end);
    const store = await newStore(path.join(tmp, "commit-fails"), range.start);
    try {
      const ingestor = await TimelineIngestor.open(store);
      const commit = store.commit.bind(store);
      let calls = 0;
      let durable = range.start;
      store.commit = async (entries, markers) => {
        if (++calls === 2) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          throw new Error("disk full");
        }
        await commit(entries, markers);
        durable = markers.lastRecordLsn;
      };
      let error: unknown;
      try {
        for (let pos = 0; pos < bytes.length; pos += 100_000) {
          await ingestor.ingestWal(bytes.subarray(pos, pos + 100_000), range.start + BigInt(pos), { flush: false, maxBatchBytes: 256 * 1024 });
        }
        await ingestor.flush();
      } catch (err) {
        error = err;
      }
      expect(String(error)).toMatch(/disk full/);
      expect(calls).toBe(2);
      expect(durable).toBeGreaterThan(range.start);
      expect(ingestor.resumeLsn).toBe(durable);
      expect((await store.readMarkers()).lastRecordLsn).toBe(durable);
      await expect(ingestor.ingestWal(Buffer.alloc(0), range.end)).rejects.toThrow(/ingest stopped/);
      expect(calls).toBe(2);
    } finally {
      await store.close();
    }
  });

  it("stops at a corrupt record with an error naming its LSN and stores nothing after it", async () => {
    const bytes = Buffer.from(readWalRange(cluster.walDir, range.start, range.end));
    const records = decodeRange(cluster, range.start, range.end);
    // the flipped byte must lie in the record: not past its end, nor on the next page (a record
    // that starts in a page's last bytes would have it land in unchecked page-header padding)
    const victim = records.slice(Math.floor(records.length / 2)).find((r) => r.totalLength > 30 && Number(r.lsn % 8192n) + 30 < 8192)!;
    bytes[Number(victim.lsn - range.start) + 30] ^= 0xff;
    const store = await newStore(path.join(tmp, "corrupt"), range.start);
    try {
      const ingestor = await TimelineIngestor.open(store);
      await expect(ingestor.ingestWal(bytes, range.start)).rejects.toThrow(formatLsn(victim.lsn));
      const markers = await store.readMarkers();
      expect(markers.lastRecordLsn).toBeLessThanOrEqual(victim.lsn);
      await expect(ingestor.ingestWal(Buffer.alloc(0), range.end)).rejects.toThrow(/ingest stopped/);
    } finally {
      await store.close();
    }
  });
});
