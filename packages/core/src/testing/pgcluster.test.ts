import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { isAlive } from "../compute/postgres.ts";
import { PgCluster } from "./pgcluster.ts";

describe("PgCluster harness", () => {
  it("starts two clusters in parallel on different ports with caller settings, and removes them on stop", async () => {
    const [a, b] = await Promise.all([
      PgCluster.start({ settings: { wal_level: "logical" } }),
      PgCluster.start({ settings: { max_wal_senders: 3 } }),
    ]);
    const pids = [a.pid, b.pid];
    try {
      expect(a.port).not.toBe(b.port);
      expect(a.baseDir).not.toBe(b.baseDir);
      expect((await a.sql("show wal_level"))[0].wal_level).toBe("logical");
      expect((await b.sql("show max_wal_senders"))[0].max_wal_senders).toBe("3");
      const version = await a.sql<{ server_version_num: string }>("show server_version_num");
      expect(version[0].server_version_num.startsWith("15")).toBe(true);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    expect(existsSync(a.baseDir)).toBe(false);
    // exited (a postmaster init has not reaped yet still answers kill -0, but runs nothing)
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });
});
