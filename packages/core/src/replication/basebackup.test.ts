import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatLsn } from "../lsn.ts";
import { makePostgresTempDir, PgCluster } from "../testing/pgcluster.ts";
import { baseBackup, UnsupportedTablespaceError, type BackupEntry } from "./basebackup.ts";
import { ReplicationConnection } from "./connection.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function listFiles(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const d of readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(...listFiles(root, p));
    else if (d.isFile()) out.push(p);
  }
  return out;
}

describe("base backup", () => {
  let cluster: PgCluster;
  const connect = () => ReplicationConnection.connect({ host: cluster.host, port: cluster.port, user: "postgres" });

  beforeAll(async () => {
    // No autovacuum: nothing may touch relation files while we compare them with the disk.
    cluster = await PgCluster.start({ settings: { autovacuum: "off" } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("streams every data-directory file; relation files equal the disk byte for byte", async () => {
    await cluster.sql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g; CREATE INDEX ON t(id)");
    await cluster.sql("VACUUM t");
    await cluster.sql("CHECKPOINT");
    const conn = await connect();
    const got = new Map<string, { entry: BackupEntry; sha: string; bytes: number; text?: string }>();
    let progress = 0;
    try {
      const result = await baseBackup(conn, { label: "strata-test", fast: true, onProgress: (done) => (progress = done) }, async (entry, body) => {
        const hash = createHash("sha256");
        let bytes = 0;
        const small: Buffer[] = [];
        for await (const chunk of body) {
          hash.update(chunk);
          bytes += chunk.length;
          if (entry.path === "backup_label") small.push(Buffer.from(chunk));
        }
        got.set(entry.path, { entry, sha: hash.digest("hex"), bytes, text: small.length ? Buffer.concat(small).toString() : undefined });
      });
      expect(result.startLsn < result.endLsn).toBe(true);
      expect(result.timeline).toBe(1);
      expect(result.tablespaces).toEqual([{ oid: null, location: null, size: expect.any(Number) }]);
      expect(progress).toBe(result.bytes);
      expect((await conn.identifySystem()).timeline).toBe(1); // connection reusable after the backup

      for (const p of ["global/pg_control", "PG_VERSION", "pg_xact/0000", "global/pg_filenode.map", "base/1/pg_filenode.map", "backup_label"]) {
        expect(got.get(p)?.entry.type, p).toBe("file");
      }
      expect(got.get("base")?.entry.type).toBe("dir");
      expect(got.get("global/pg_control")!.bytes).toBe(8192);
      expect(got.get("backup_label")!.text).toContain(`START WAL LOCATION: ${formatLsn(result.startLsn)}`);
      expect(got.get("backup_label")!.text).toContain("LABEL: strata-test");
      expect([...got.keys()].pop()).toBe("global/pg_control"); // copied last

      // Compared with the disk: every file under base/ and global/ except global/pg_control (rewritten
      // by the backup's own checkpoint and copied last). The server leaves out pg_internal.init
      // (relcache init files) and temporary relations by itself.
      const onDisk = [...listFiles(cluster.dataDir, "base"), ...listFiles(cluster.dataDir, "global")].filter(
        (p) => p !== "global/pg_control" && !p.endsWith("pg_internal.init"),
      );
      expect(onDisk.length).toBeGreaterThan(500);
      const differing: string[] = [];
      for (const p of onDisk) {
        const mine = got.get(p);
        const disk = readFileSync(path.join(cluster.dataDir, p));
        if (!mine || mine.bytes !== statSync(path.join(cluster.dataDir, p)).size || mine.sha !== createHash("sha256").update(disk).digest("hex")) differing.push(p);
      }
      expect(differing).toEqual([]);
      const [{ f }] = await cluster.sql<{ f: string }>("SELECT pg_relation_filepath('t') AS f");
      expect(got.get(f)!.bytes).toBeGreaterThan(3_000_000);
    } finally {
      await conn.close();
    }
  });

  it("refuses tablespaces outside the data directory before streaming anything", async () => {
    const dir = makePostgresTempDir("strata-ts-");
    await cluster.sql(`CREATE TABLESPACE ts1 LOCATION '${dir}'`);
    const conn = await connect();
    let files = 0;
    try {
      const err = await baseBackup(conn, {}, async () => void files++).catch((e) => e);
      expect(err).toBeInstanceOf(UnsupportedTablespaceError);
      expect(err.message).toMatch(new RegExp(`tablespaces outside the data directory \\(oid \\d+ at ${dir}\\)`));
      expect(files).toBe(0);
    } finally {
      await conn.close();
      await cluster.sql("DROP TABLESPACE ts1");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("streams a ~100 MB database with bounded memory through a slow consumer", async () => {
    await cluster.pgbench(["-i", "-s", "6", "-q"]);
    await cluster.sql("CHECKPOINT");
    const conn = await connect();
    try {
      const before = process.memoryUsage().rss;
      let peak = before;
      let chunks = 0;
      let biggest = 0;
      const result = await baseBackup(conn, {}, async (entry, body) => {
        const hash = createHash("sha256");
        for await (const chunk of body) {
          hash.update(chunk);
          biggest = Math.max(biggest, chunk.length);
          if (++chunks % 32 === 0) {
            await sleep(5); // slower than the server: without backpressure the socket data would pile up
            peak = Math.max(peak, process.memoryUsage().rss);
          }
        }
        hash.digest();
      });
      expect(result.bytes).toBeGreaterThan(95_000_000);
      expect(biggest).toBeLessThanOrEqual(1 << 20);
      expect(peak - before).toBeLessThan(64 * 1024 * 1024);
    } finally {
      await conn.close();
    }
  });
});
