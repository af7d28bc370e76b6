// endOfValidWal: where the WAL a stopped (or crashed) cluster left in pg_wal ends, as its own
// crash recovery would see it. Checked against the records PostgreSQL wrote.
import { cpSync, mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PgCluster } from "../testing/pgcluster.ts";
import { endOfValidWal, readWalSegments, walFileName } from "./reader.ts";
import { captureWal } from "./testutil.ts";
import type { Lsn } from "../lsn.ts";

const SEGMENT = 16 * 1024 * 1024;

describe("the end of the valid WAL in a pg_wal directory", () => {
  let cluster: PgCluster;
  let start: Lsn;
  let ends: Lsn[];
  let dir: string;

  beforeAll(async () => {
    cluster = await PgCluster.start();
    ({ start } = await captureWal(cluster, () => cluster.sql("CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g")));
    await cluster.stopServer("SIGQUIT"); // an immediate stop: no shutdown checkpoint after the inserts
    ends = [...readWalSegments(cluster.walDir, start, undefined)].map((r) => r.endLsn);
    dir = mkdtempSync(path.join(os.tmpdir(), "strata-end-of-wal-"));
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A copy of pg_wal with `change` applied to the segment holding `lsn`. */
  function walCopy(name: string, lsn: Lsn, change: (fd: number, offset: number) => void): string {
    const copy = path.join(dir, name);
    cpSync(cluster.walDir, copy, { recursive: true });
    const fd = openSync(path.join(copy, walFileName(1, lsn)), "r+");
    try {
      change(fd, Number(lsn % BigInt(SEGMENT)));
    } finally {
      closeSync(fd);
    }
    return copy;
  }

  it("is the end of the last record PostgreSQL wrote", () => {
    expect(ends.length).toBeGreaterThan(3000);
    expect(endOfValidWal(cluster.walDir, start)).toBe(ends[ends.length - 1]);
  });

  it("stops before a torn record (its CRC fails), as crash recovery does", () => {
    const torn = ends[ends.length - 3]; // where the last record but one starts
    const copy = walCopy("torn", torn, (fd, offset) => {
      // one byte of the record's body flipped (past its 24-byte header)
      const byte = Buffer.alloc(1);
      readSync(fd, byte, 0, 1, offset + 26);
      byte[0] ^= 0xff;
      writeSync(fd, byte, 0, 1, offset + 26);
    });
    expect(endOfValidWal(copy, start)).toBe(torn);
  });

  it("stops at zeros where a record should start", () => {
    const cut = ends[ends.length - 10];
    const copy = walCopy("zeros", cut, (fd, offset) => writeSync(fd, Buffer.alloc(64), 0, 64, offset));
    expect(endOfValidWal(copy, start)).toBe(cut);
  });

  it("is where it starts when no segment holds that position", () => {
    const beyond = (ends[ends.length - 1] / BigInt(SEGMENT) + 5n) * BigInt(SEGMENT);
    expect(endOfValidWal(cluster.walDir, beyond)).toBe(beyond);
  });
});
