import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStrataClient } from "@strata/api/client";
import { encodeRequest, ForkNumber, LATEST_LSN, PagestreamSlruKind, PageServiceClient, parseLsn, RequestTag, ResponseTag } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { makeDataDir, removeDataDir, runCli, startDaemon, strataBin, type Daemon } from "./test-daemon.ts";

describe("page service (pagestream over the PostgreSQL wire protocol)", () => {
  let primary: PgCluster;
  let dataDir: string;
  let daemon: Daemon;
  let tenantId: string;
  let timelineId: string;
  let accounts: { spcNode: number; dbNode: number; relNode: number };
  let blocks: number;

  beforeAll(async () => {
    primary = await PgCluster.start({ settings: { autovacuum: "off" } });
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    dataDir = makeDataDir();
    daemon = await startDaemon(dataDir);
    const api = createStrataClient(daemon.apiUrl);
    const tenant = await api.tenants.create.mutate({ fromPrimary: primary.connectionString() });
    tenantId = tenant.id;
    timelineId = tenant.timelines[0].id;
    await primary.pgbench(["-t", "100", "-c", "2"]);
    const [row] = await primary.sql<{ db: number; filenode: number; blocks: string; lsn: string }>(
      "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()) AS db, pg_relation_filenode('pgbench_accounts') AS filenode, (pg_relation_size('pgbench_accounts') / 8192)::text AS blocks, pg_current_wal_insert_lsn()::text AS lsn",
    );
    accounts = { spcNode: 1663, dbNode: row.db, relNode: row.filenode };
    blocks = Number(row.blocks);
    await api.timelines.waitLsn.mutate({ tenantId, timelineId, lsn: row.lsn, timeoutSeconds: 120 });
  });

  afterAll(async () => {
    await daemon?.stop();
    await primary?.stop();
    removeDataDir(dataDir);
  });

  const connect = () => PageServiceClient.connect("127.0.0.1", daemon.pgPort);

  async function apiPage(block: number, lsn = "latest"): Promise<Buffer> {
    const result = await createStrataClient(daemon.apiUrl).timelines.getPage.query({ tenantId, timelineId, rel: `1663/${accounts.dbNode}/${accounts.relNode}`, block, lsn });
    return Buffer.from(result.page, "base64");
  }

  it("answers Exists, Nblocks, GetPage, DbSize and GetSlruSegment in protocol v2 and v3", async () => {
    for (const version of [2, 3] as const) {
      const client = await connect();
      const stream = await client.pagestream(tenantId, timelineId, version);
      expect(await stream.exists(accounts, ForkNumber.Main)).toBe(true);
      expect(await stream.exists({ ...accounts, relNode: 999_999 }, ForkNumber.Main)).toBe(false);
      expect(await stream.nblocks(accounts, ForkNumber.Main)).toBe(blocks);
      for (const block of [0, 7, blocks - 1]) expect((await stream.getPage(accounts, ForkNumber.Main, block)).equals(await apiPage(block))).toBe(true);
      // past the end reads as zeros, as computes expect
      expect((await stream.getPage(accounts, ForkNumber.Main, blocks + 10)).equals(Buffer.alloc(8192))).toBe(true);
      const dbSize = await stream.dbSize(accounts.dbNode);
      expect(dbSize).toBeGreaterThan(BigInt(blocks * 8192));
      const clog = await stream.slruSegment(PagestreamSlruKind.Clog, 0);
      expect(clog.length % 8192).toBe(0);
      expect(clog.length).toBeGreaterThan(0);
      client.close();
    }
  });

  it("reads historical versions at a request LSN", async () => {
    const info = await createStrataClient(daemon.apiUrl).timelines.get.query({ tenantId, timelineId });
    const client = await connect();
    const stream = await client.pagestream(tenantId, timelineId);
    const lsn = parseLsn(info.startLsn);
    expect((await stream.getPage(accounts, ForkNumber.Main, 0, { lsn })).equals(await apiPage(0, info.startLsn))).toBe(true);
    client.close();
  });

  it("keeps the stream usable after bad requests, and refuses unknown tenants and timelines with a clear error", async () => {
    const client = await connect();
    await expect(client.pagestream("ab".repeat(16), timelineId)).rejects.toThrow(/has no timeline/);
    await expect(client.pagestream("nonsense", timelineId)).rejects.toThrow(/32 hex characters/);
    await expect(client.command("frobnicate")).rejects.toThrow(/unknown page service command/);
    const stream = await client.pagestream(tenantId, timelineId);
    const getPage = { tag: RequestTag.GetPage, rel: accounts, fork: ForkNumber.Main, block: 0, reqid: 0n, requestLsn: LATEST_LSN, notModifiedSince: 0n } as const;
    const truncated = await stream.sendRaw(encodeRequest(getPage, 2).subarray(0, 20), getPage);
    expect(truncated).toMatchObject({ tag: ResponseTag.Error });
    expect((truncated as { message: string }).message).toMatch(/must be 34 bytes/);
    const unknownTag = await stream.sendRaw(Buffer.from([77, 1, 2, 3]), getPage);
    expect((unknownTag as { message: string }).message).toMatch(/unknown pagestream request tag 77/);
    await expect(stream.getPage(accounts, ForkNumber.Main, 0, { lsn: 0n })).rejects.toThrow(/invalid request LSN 0\/0/);
    await expect(stream.getPage(accounts, ForkNumber.Main, 0, { lsn: 16n })).rejects.toThrow(/below the first readable LSN/);
    await expect(stream.getPage(accounts, ForkNumber.Main, 0, { lsn: 16n, notModifiedSince: 32n })).rejects.toThrow(/below not_modified_since/);
    await expect(stream.nblocks({ ...accounts, relNode: 999_999 }, ForkNumber.Main)).rejects.toThrow(/does not exist/);
    // still answers after all that
    expect((await stream.getPage(accounts, ForkNumber.Main, 1)).equals(await apiPage(1))).toBe(true);
    client.close();
  });

  it("ends a full backup whose client went away, and keeps serving everyone else", async () => {
    const dropping = await connect();
    let pieces = 0;
    await expect(
      dropping.fullbackup(tenantId, timelineId, undefined, () => {
        if (++pieces === 3) throw new Error("reader gave up");
      }),
    ).rejects.toThrow(/reader gave up/);
    // the server's side of that backup ends (its scan closed), it does not wait forever
    for (let waited = 0; !daemon.output().includes('"full backup failed"'); waited += 50) {
      if (waited > 30_000) throw new Error(`no "full backup failed" in the log:\n${daemon.output().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const client = await connect();
    const stream = await client.pagestream(tenantId, timelineId);
    expect((await stream.getPage(accounts, ForkNumber.Main, 3)).equals(await apiPage(3))).toBe(true);
    client.close();
    const again = await connect();
    let bytes = 0;
    await again.fullbackup(tenantId, timelineId, undefined, (piece) => void (bytes += piece.length));
    expect(bytes).toBeGreaterThan(blocks * 8192);
    expect(bytes % 512).toBe(0);
    again.close();
  });

  it("streams a full backup tar with `strata fullbackup` to a file or stdout, and refuses bad LSNs with a clear error", async () => {
    const env = { STRATA_API: daemon.apiUrl };
    const out = path.join(os.tmpdir(), `strata-fullbackup-${process.pid}.tar`);
    try {
      const result = await runCli(["fullbackup", "--tenant", tenantId, "--timeline", timelineId, "--out", out], env);
      expect(result.code, result.stderr).toBe(0);
      const listing = execFileSync("tar", ["-tf", out]).toString().split("\n");
      for (const entry of ["PG_VERSION", "global/pg_control", "global/pg_filenode.map", `base/${accounts.dbNode}/${accounts.relNode}`, "pg_xact/0000"]) expect(listing).toContain(entry);
      expect(listing.some((e) => /^pg_wal\/[0-9A-F]{24}$/.test(e))).toBe(true);
      // the bytes survive the client's reused read buffer, written to a file and to stdout: the
      // accounts table in each archive is, block by block, what GetPage returns
      const fromStdout = execFileSync(process.execPath, [strataBin, "fullbackup", "--tenant", tenantId, "--timeline", timelineId, "--out", "-"], {
        env: { ...process.env, ...env },
        maxBuffer: 1 << 30,
      });
      const member = `base/${accounts.dbNode}/${accounts.relNode}`;
      const client = await connect();
      const stream = await client.pagestream(tenantId, timelineId);
      for (const file of [execFileSync("tar", ["-xOf", out, member], { maxBuffer: 1 << 30 }), execFileSync("tar", ["-xO", "-f", "-", member], { input: fromStdout, maxBuffer: 1 << 30 })]) {
        expect(file.length).toBe(blocks * 8192);
        for (let block = 0; block < blocks; block++) {
          if (!file.subarray(block * 8192, (block + 1) * 8192).equals(await stream.getPage(accounts, ForkNumber.Main, block))) throw new Error(`block ${block} of ${member} differs from GetPage`);
        }
      }
      client.close();
      // a reader that stops early (| head): a clear error and exit code 1, not a crash
      const cut = execFileSync("bash", ["-c", `"${process.execPath}" "${strataBin}" fullbackup --tenant ${tenantId} --timeline ${timelineId} --out - 2>"${out}.err" | head -c 1000 >/dev/null; echo \${PIPESTATUS[0]}`], { env: { ...process.env, ...env } });
      expect(cut.toString().trim()).toBe("1");
      const cutErr = readFileSync(`${out}.err`, "utf8");
      expect(cutErr).toMatch(/^strata: .*EPIPE/m);
      expect(cutErr).not.toMatch(/Unhandled|at .*\.js:\d+/);
      rmSync(`${out}.err`, { force: true });
      const low = await runCli(["fullbackup", "--tenant", tenantId, "--timeline", timelineId, "--lsn", "0/10", "--out", out], env);
      expect(low.code).toBe(1);
      expect(low.stderr).toMatch(/below the first readable LSN/);
      const unknown = await runCli(["fullbackup", "--tenant", tenantId, "--timeline", "ab".repeat(16), "--out", out], env);
      expect(unknown.code).toBe(1);
      // (found out by the API, asked for the LSN "latest" means before the backup begins)
      expect(unknown.stderr).toMatch(/NOT_FOUND: timeline (ab){16} not found/);
    } finally {
      rmSync(out, { force: true });
    }
  });

  it("a corrupt frame closes only that connection; 32 concurrent pipelining clients are all served", async () => {
    const broken = await connect();
    const brokenStream = await broken.pagestream(tenantId, timelineId);
    const died = brokenStream.getPage(accounts, ForkNumber.Main, 0).catch((e) => e);
    broken.writeRaw(Buffer.from([0x64, 0xff, 0xff, 0xff, 0xff]));
    await died;
    await expect(brokenStream.getPage(accounts, ForkNumber.Main, 0)).rejects.toThrow(/closed|invalid length/);
    const expected = await Promise.all(Array.from({ length: 8 }, (_, i) => apiPage(i)));
    const results = await Promise.all(
      Array.from({ length: 32 }, async (_, c) => {
        const client = await connect();
        const stream = await client.pagestream(tenantId, timelineId, c % 2 ? 3 : 2);
        const pages = await Promise.all(Array.from({ length: 40 }, (_, i) => stream.getPage(accounts, ForkNumber.Main, (i + c) % 8)));
        client.close();
        return pages.every((page, i) => page.equals(expected[(i + c) % 8]));
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    const metrics = await (await fetch(`${daemon.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/strata_page_service_request_duration_seconds_count\{kind="get_page",ok="ok"\} \d+/);
    // 1280 reads of 8 pages: most come from the page cache
    expect(Number(/^strata_page_cache_hits (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(1000);
    expect(metrics).toMatch(/^strata_page_cache_pages \d+$/m);
  });
});
