import { closeSync, existsSync, openSync, readFileSync, readSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { ReplicationConnection } from "./connection.ts";
import { PrimaryError, ReplicationStreamClosed } from "./errors.ts";
import type { Frame } from "./protocol.ts";
import { ReplicationStream, type XLogData } from "./stream.ts";

const SEGMENT = 16n * 1024n * 1024n;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function segmentFile(walDir: string, lsn: Lsn, tli = 1): string {
  const segno = lsn / SEGMENT;
  const perId = 0x1_0000_0000n / SEGMENT;
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return path.join(walDir, hex(tli) + hex(segno / perId) + hex(segno % perId));
}

/** The bytes [start, start+len) of the WAL as stored in the segment files. */
function walFromDisk(walDir: string, start: Lsn, len: number): Buffer {
  const out = Buffer.alloc(len);
  let done = 0;
  while (done < len) {
    const lsn = start + BigInt(done);
    const offset = Number(lsn % SEGMENT);
    const n = Math.min(len - done, Number(SEGMENT) - offset);
    const fd = openSync(segmentFile(walDir, lsn), "r");
    try {
      readSync(fd, out, done, n, offset);
    } finally {
      closeSync(fd);
    }
    done += n;
  }
  return out;
}

/** Asserts the messages are contiguous from `start` and equal the segment files byte for byte. */
function expectSameAsDisk(walDir: string, start: Lsn, msgs: XLogData[]) {
  let expected = start;
  let mismatches = 0;
  for (const m of msgs) {
    expect(formatLsn(m.walStart)).toBe(formatLsn(expected));
    if (!m.data.equals(walFromDisk(walDir, m.walStart, m.data.length))) mismatches++;
    expected += BigInt(m.data.length);
  }
  expect(mismatches).toBe(0);
  return expected;
}

async function flushLsn(cluster: PgCluster): Promise<Lsn> {
  return parseLsn((await cluster.sql<{ l: string }>("SELECT pg_current_wal_flush_lsn()::text AS l"))[0].l);
}

async function receiveUntil(stream: ReplicationStream, target: Lsn, into: XLogData[]) {
  while (stream.lastReceivedLsn < target) {
    const m = await stream.next();
    if (!m) throw new Error("stream ended early");
    into.push(m);
  }
}

describe("WAL streaming", () => {
  let cluster: PgCluster;
  const target = () => ({ host: cluster.host, port: cluster.port, user: "postgres" });

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_sender_timeout: "'2s'", wal_keep_size: 0 } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("reports a removed start segment as a PrimaryError and stays usable", async () => {
    await cluster.sql("CREATE TABLE churn(x int)");
    for (let i = 0; i < 4; i++) await cluster.sql("INSERT INTO churn VALUES (1); SELECT pg_switch_wal()");
    await cluster.sql("CHECKPOINT");
    expect(existsSync(segmentFile(cluster.walDir, 0x1000000n))).toBe(false);

    const conn = await ReplicationConnection.connect(target());
    try {
      const stream = await conn.startReplication({ startLsn: 0x1000000n, timeline: 1 });
      const err = await stream.next().catch((e) => e);
      expect(err).toBeInstanceOf(PrimaryError);
      expect(err.message).toMatch(/requested WAL segment 000000010000000000000001 has already been removed/);
      await expect(stream.next()).rejects.toBe(err); // stays failed
      expect((await conn.identifySystem()).timeline).toBe(1);
    } finally {
      await conn.close();
    }
  });

  it("streams pgbench WAL byte-for-byte equal to the segment files, and the slot follows the flushed position", async () => {
    const conn = await ReplicationConnection.connect(target());
    try {
      const slot = await conn.createPhysicalSlot("strata_stream", { reserveWal: true });
      const start = slot.restartLsn!;
      const stream = await conn.startReplication({ slot: "strata_stream", startLsn: start, timeline: 1 });
      await cluster.pgbench(["-i", "-s", "1", "-q"]);
      const end = await flushLsn(cluster);
      const msgs: XLogData[] = [];
      await receiveUntil(stream, end, msgs);
      expect(end - start).toBeGreaterThan(10_000_000n);
      expect(msgs.every((m) => m.data.length <= 128 * 1024)).toBe(true);
      expectSameAsDisk(cluster.walDir, start, msgs);

      const flushed = start + (end - start) / 2n;
      stream.sendStatus({ written: stream.lastReceivedLsn, flushed, applied: flushed });
      const restartLsn = async () =>
        parseLsn((await cluster.sql<{ l: string }>("SELECT restart_lsn::text AS l FROM pg_replication_slots WHERE slot_name = 'strata_stream'"))[0].l);
      let seen = await restartLsn();
      for (let i = 0; i < 50 && seen === start; i++) {
        await sleep(100);
        seen = await restartLsn();
      }
      expect(seen > start).toBe(true);
      expect(seen <= flushed).toBe(true);
      await cluster.sql("CHECKPOINT");
      await sleep(1200); // a periodic status update goes out meanwhile; it must repeat `flushed`, not more
      expect((await restartLsn()) <= flushed).toBe(true);
      expect(stream.reportedStatus.flushed).toBe(flushed);

      await stream.stop();
      expect(await stream.next()).toBeNull();
      expect((await conn.identifySystem()).timeline).toBe(1); // connection reusable after CopyDone
      await conn.dropSlot("strata_stream");
    } finally {
      await conn.close();
    }
  });

  it("hands over the messages already received without waiting (takeBuffered), in order, with next() going on after them", async () => {
    const conn = await ReplicationConnection.connect(target());
    try {
      const start = await flushLsn(cluster);
      const stream = await conn.startReplication({ startLsn: start, timeline: 1 });
      await cluster.pgbench(["-i", "-s", "1", "-q"]);
      const end = await flushLsn(cluster);
      await sleep(300); // the walsender sends while nobody reads: frames pile up in the connection
      const msgs: XLogData[] = [(await stream.next())!];
      const buffered = stream.takeBuffered(1024 * 1024);
      expect(buffered.length).toBeGreaterThan(1);
      const bytes = buffered.reduce((n, m) => n + m.data.length, 0);
      expect(bytes).toBeLessThan(1024 * 1024 + 128 * 1024); // stops once past the limit
      msgs.push(...buffered);
      expect(stream.lastReceivedLsn).toBe(buffered[buffered.length - 1].walStart + BigInt(buffered[buffered.length - 1].data.length));
      // the rest, alternating both ways of reading
      while (stream.lastReceivedLsn < end) {
        const m = await stream.next();
        if (!m) throw new Error("stream ended early");
        msgs.push(m, ...stream.takeBuffered(256 * 1024));
      }
      expectSameAsDisk(cluster.walDir, start, msgs);
      await stream.stop();
      expect(stream.takeBuffered(1024 * 1024)).toEqual([]);
      expect(await stream.next()).toBeNull();
    } finally {
      await conn.close();
    }
  });

  it("batches a live stream's reads: after a read that caught up, WAL waits in the socket for liveReadWaitMs, then comes in whole", async () => {
    // Per wait setting: WAL A is read (a small read: the stream is caught up), then WAL B is
    // written at once. With a wait, B is still unread 300 ms later (the wait is far longer than
    // any INSERT round trip); without one, it is there.
    const unreadAfterWrite = async (liveReadWaitMs: number) => {
      const conn = await ReplicationConnection.connect(target());
      try {
        const stream = await conn.startReplication({ startLsn: await flushLsn(cluster), timeline: 1, liveReadWaitMs });
        await cluster.sql("CREATE TABLE IF NOT EXISTS batched(x int); INSERT INTO batched VALUES (1)");
        const a = await flushLsn(cluster);
        while (stream.lastReceivedLsn < a) {
          if (!(await stream.next())) throw new Error("stream ended early");
          stream.takeBuffered(1024 * 1024);
        }
        await cluster.sql("INSERT INTO batched VALUES (2)");
        const b = await flushLsn(cluster);
        await sleep(300);
        stream.takeBuffered(1024 * 1024);
        const unread = stream.lastReceivedLsn < b;
        const msgs: XLogData[] = [];
        const from = stream.lastReceivedLsn;
        await receiveUntil(stream, b, msgs); // whatever the setting, it does come
        expectSameAsDisk(cluster.walDir, from, msgs);
        await stream.stop();
        return unread;
      } finally {
        await conn.close();
      }
    };
    expect(await unreadAfterWrite(2000)).toBe(true);
    expect(await unreadAfterWrite(0)).toBe(false);
  });

  it("answers keepalives so a 2 s wal_sender_timeout doesn't cut an idle stream", async () => {
    const conn = await ReplicationConnection.connect(target(), { applicationName: "strata-keepalive" });
    try {
      const start = (await conn.identifySystem()).xlogPos;
      const stream = await conn.startReplication({ startLsn: start, timeline: 1, statusIntervalMs: 0 });
      const pending = stream.next().then(
        (m) => ({ m }),
        (e) => ({ e }),
      );
      await sleep(5000);
      const rows = await cluster.sql<{ state: string }>("SELECT state FROM pg_stat_replication WHERE application_name = 'strata-keepalive'");
      expect(rows).toEqual([{ state: "streaming" }]);
      await cluster.sql("CREATE TABLE after_idle(x int)");
      const got = await pending;
      expect(got).toHaveProperty("m");
      expect((got as { m: XLogData }).m.walStart).toBe(start);
      expect(readFileSync(cluster.logFile, "utf8")).not.toMatch(/replication timeout/);
      await stream.stop();
    } finally {
      await conn.close();
    }
  });

  it("ends with a clear error when the primary restarts, and resumes at the last received LSN with no gap", async () => {
    let conn = await ReplicationConnection.connect(target());
    await conn.ensurePhysicalSlot("strata_restart");
    const start = (await conn.identifySystem()).xlogPos;
    const stream = await conn.startReplication({ slot: "strata_restart", startLsn: start, timeline: 1 });
    const msgs: XLogData[] = [];
    const consumer = (async () => {
      try {
        // (as the walreceiver reads: what the walsender sends as it shuts down, up to its
        // CommandComplete, mostly comes in together)
        for (let m = await stream.next(); m; m = await stream.next()) {
          msgs.push(m, ...stream.takeBuffered(1024 * 1024));
          stream.sendStatus({ flushed: stream.lastReceivedLsn }); // lets the walsender finish its shutdown promptly
        }
        return null;
      } catch (e) {
        return e as Error;
      }
    })();
    await cluster.sql("CREATE TABLE before_restart AS SELECT generate_series(1, 20000) AS x");
    const t0 = Date.now();
    await cluster.stopServer();
    const err = await consumer;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(err).toBeInstanceOf(ReplicationStreamClosed);
    expect((err as ReplicationStreamClosed).reason).toBe("server-shutdown");
    const last = stream.lastReceivedLsn;
    expect((err as ReplicationStreamClosed).lastReceivedLsn).toBe(last);
    expect(err!.message).toContain(`reconnect and restart from ${formatLsn(last)}`);
    await conn.close();

    await cluster.startServer();
    conn = await ReplicationConnection.connect(target());
    try {
      const resumed = await conn.startReplication({ slot: "strata_restart", startLsn: last, timeline: 1 });
      await cluster.sql("CREATE TABLE after_restart AS SELECT generate_series(1, 20000) AS x");
      const end = await flushLsn(cluster);
      const more: XLogData[] = [];
      await receiveUntil(resumed, end, more);
      expect(more[0].walStart).toBe(last);
      expectSameAsDisk(cluster.walDir, start, [...msgs, ...more]); // contiguous across the restart
      await resumed.stop();
      await conn.dropSlot("strata_restart");
    } finally {
      await conn.close();
    }
  });

  it("surfaces a walsender killed mid-stream as the server's FATAL error, with the connection closed", async () => {
    const conn = await ReplicationConnection.connect(target(), { applicationName: "strata-victim" });
    try {
      const stream = await conn.startReplication({ startLsn: (await conn.identifySystem()).xlogPos, timeline: 1 });
      const pending = stream.next().catch((e) => e);
      await cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'strata-victim'");
      const err = await pending;
      expect(err).toBeInstanceOf(PrimaryError);
      expect(err.code).toBe("57P01");
      expect(err.severity).toBe("FATAL");
      expect(conn.isClosed).toBe(true);
    } finally {
      await conn.close();
    }
  });
});

describe("takeBuffered (frames already received)", () => {
  /** A connection holding `frames`, then closed: what a walsender that shut down leaves behind. */
  function connectionWith(frames: Frame[]) {
    const written: Buffer[] = [];
    const conn = {
      isClosed: false,
      nextBuffered: () => frames.shift(),
      readFrame: async () => frames.shift() ?? Promise.reject(new Error("connection closed")),
      write: (b: Buffer) => void written.push(b),
      destroy: () => {},
      release: () => {},
    };
    return { conn: conn as unknown as ReplicationConnection, written };
  }
  const xlogData = (walStart: Lsn, bytes: number): Frame => {
    const body = Buffer.alloc(25 + bytes, 7);
    body.write("w", 0);
    body.writeBigUInt64BE(walStart, 1);
    body.writeBigUInt64BE(walStart + BigInt(bytes), 9);
    body.writeBigInt64BE(0n, 17);
    return { type: "d", body };
  };
  const keepalive = (walEnd: Lsn, replyRequested: boolean): Frame => {
    const body = Buffer.alloc(18);
    body.write("k", 0);
    body.writeBigUInt64BE(walEnd, 1);
    body[17] = replyRequested ? 1 : 0;
    return { type: "d", body };
  };

  it("answers keepalives on the way, and leaves the walsender's CommandComplete for next(), which reports the shutdown", async () => {
    const { conn, written } = connectionWith([
      xlogData(0x1000n, 100),
      xlogData(0x1064n, 50),
      keepalive(0x2000n, true),
      xlogData(0x1096n, 10),
      { type: "C", body: Buffer.from("COPY 0\0") },
      xlogData(0x10a0n, 10),
    ]);
    const stream = new ReplicationStream(conn, 0x1000n, 0);
    const first = await stream.next();
    expect(first?.walStart).toBe(0x1000n);
    const more = stream.takeBuffered(1024);
    expect(more.map((m) => [m.walStart, m.data.length])).toEqual([
      [0x1064n, 50],
      [0x1096n, 10],
    ]);
    expect(written.length).toBe(1); // the reply the keepalive asked for
    expect(stream.takeBuffered(1024)).toEqual([]); // still held for next()
    expect((await stream.next())?.walStart).toBe(0x10a0n);
    const err = await stream.next().catch((e: Error) => e);
    expect(err).toBeInstanceOf(ReplicationStreamClosed);
    expect((err as ReplicationStreamClosed).reason).toBe("server-shutdown");
  });

  it("stops at a message that does not continue the stream, which next() then reports", async () => {
    const { conn } = connectionWith([xlogData(0x1000n, 100), xlogData(0x5000n, 10)]);
    const stream = new ReplicationStream(conn, 0x1000n, 0);
    expect(stream.takeBuffered(1024).map((m) => m.walStart)).toEqual([0x1000n]);
    await expect(stream.next()).rejects.toThrow(/does not continue the stream at 0\/1064/);
  });
});
