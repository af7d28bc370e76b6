// Benchmark: GetPage@latest over the page service. A pageserver follows a pgbench primary; we read
// random pgbench_accounts blocks through one pagestream_v2 connection:
//   - 1 client, sequential: p50/p99 latency (target p99 < 1 ms),
//   - 8 and 32 requests in flight (pipelined on the connection): pages/s (target >= 0.5x baseline).
// Baselines in the same run, with the same concurrency:
//   (a) a plain Node TCP request/response loop with the same framing and message sizes (CopyData
//       'd' + length around a 34-byte request and an 8193-byte response) against a server in a
//       separate Node process that answers from a fixed buffer (the transport floor),
//   (b) fs read (pread) of the same 8 KB pages from the primary's relation file, in this process.
//
//   npx tsx bench/pageservice-getpage.mts
//   BENCH_SCALE=20 BENCH_SECONDS=10 npx tsx bench/pageservice-getpage.mts
import { spawn, type ChildProcess } from "node:child_process";
import { open } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { formatLsn, parseLsn, PageServiceClient } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { createStrataClient } from "@strata/api/client";
import { makeDataDir, removeDataDir, startDaemon, type Daemon } from "../apps/pageserver/src/test-daemon.ts";
import { envNumber, fmtMs, percentile, progress, progressDone, runConcurrent } from "./lib.mts";

const SCALE = envNumber("BENCH_SCALE", 5);
const PGBENCH_SECONDS = envNumber("BENCH_PGBENCH_SECONDS", 10);
const SECONDS = envNumber("BENCH_SECONDS", 5); // per measurement
const INFLIGHT = (process.env.BENCH_INFLIGHT ?? "8,32").split(",").map(Number);
const REQ = 34;
const RESP = 8193;

// the baseline server: a separate Node process answering each framed 34-byte request with a framed
// 8193-byte response (PostgreSQL CopyData framing, as the page service uses)
const ECHO_SERVER = `
const net = require("node:net");
const REQ = ${REQ + 5}, RESP = ${RESP};
const resp = Buffer.alloc(RESP + 5, 7); resp[0] = 0x64; resp.writeInt32BE(RESP + 4, 1); resp[5] = 102;
const server = net.createServer((s) => {
  s.setNoDelay(true);
  let pending = 0;
  s.on("data", (chunk) => {
    pending += chunk.length;
    const n = Math.floor(pending / REQ);
    pending -= n * REQ;
    if (n === 1) s.write(resp);
    else if (n > 1) s.write(Buffer.concat(Array(n).fill(resp)));
  });
  s.on("error", () => {});
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
`;

function startEchoServer(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ["-e", ECHO_SERVER], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.stdout!.once("data", (d) => resolve({ child, port: Number(String(d).trim()) }));
    child.once("exit", (code) => reject(new Error(`echo server exited with ${code}`)));
  });
}

/** A pipelining client for the echo server: responses arrive in order. */
class EchoClient {
  private waiting: Array<() => void> = [];
  private buffered = 0;
  private readonly request = Buffer.alloc(REQ + 5);
  private constructor(private readonly socket: net.Socket) {
    this.request[0] = 0x64;
    this.request.writeInt32BE(REQ + 4, 1);
    this.request[5] = 2;
    socket.setNoDelay(true);
    socket.on("data", (chunk) => {
      // copy like a real client does (the page service client concatenates into its reader)
      this.buffered += Buffer.from(chunk).length;
      while (this.buffered >= RESP + 5 && this.waiting.length) {
        this.buffered -= RESP + 5;
        this.waiting.shift()!();
      }
    });
  }
  static async connect(port: number) {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new EchoClient(socket);
  }
  get(block: number): Promise<void> {
    this.request.writeUInt32BE(block, REQ + 5 - 4);
    this.socket.write(Buffer.from(this.request));
    return new Promise((resolve) => this.waiting.push(resolve));
  }
  close() {
    this.socket.destroy();
  }
}

const cluster = await PgCluster.start({ settings: { max_wal_size: "'4GB'", checkpoint_timeout: "'1h'", shared_buffers: "'256MB'" } });
const dataDir = makeDataDir();
let daemon: Daemon | undefined;
let echo: ChildProcess | undefined;
try {
  progress(`pgbench -i -s ${SCALE}`);
  await cluster.pgbench(["-i", "-s", String(SCALE), "-q"]);
  // BENCH_DAEMON_NODE_OPTIONS="--require ./bench/cpu-profile-preload.cjs" profiles the daemon
  daemon = await startDaemon(dataDir, process.env.BENCH_DAEMON_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_DAEMON_NODE_OPTIONS } : {});
  const api = createStrataClient(daemon.apiUrl, "bench");
  progress("creating the tenant from the primary");
  const tenant = await api.tenants.create.mutate({ fromPrimary: cluster.connectionString() });
  const ids = { tenantId: tenant.id, timelineId: tenant.timelines[0].id };
  progress(`pgbench -T ${PGBENCH_SECONDS} while the pageserver follows`);
  await cluster.pgbench(["-n", "-c", "4", "-j", "2", "-T", String(PGBENCH_SECONDS)]);
  await cluster.sql("CHECKPOINT"); // the relation file on disk is current for the pread baseline
  const [{ lsn }] = await cluster.sql<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn");
  await api.timelines.waitLsn.mutate({ ...ids, lsn, timeoutSeconds: 600 });
  const [rel] = await cluster.sql<{ db: number; node: number; file: string; blocks: number }>(
    `SELECT (SELECT oid FROM pg_database WHERE datname = current_database())::int AS db, pg_relation_filenode('pgbench_accounts')::int AS node,
            pg_relation_filepath('pgbench_accounts') AS file, (pg_relation_size('pgbench_accounts') / 8192)::int AS blocks`,
  );
  const relTag = { spcNode: 1663, dbNode: rel.db, relNode: rel.node };
  progressDone();
  console.error(`pgbench_accounts: ${rel.blocks} blocks; timeline at ${lsn}`);

  // the same pseudo-random block sequence for every system
  let seed = 12345;
  const blocks = Array.from({ length: 1 << 20 }, () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % rel.blocks;
  });
  const blockAt = (i: number) => blocks[i % blocks.length];

  // Strata
  const ps = await PageServiceClient.connect("127.0.0.1", daemon.pgPort);
  const stream = await ps.pagestream(ids.tenantId, ids.timelineId, 2);
  let bad = 0;
  const strataOne = async (i: number) => {
    const page = await stream.getPage(relTag, 0, blockAt(i));
    if (page.length !== 8192) bad++;
  };
  // echo baseline
  const server = await startEchoServer();
  echo = server.child;
  const ec = await EchoClient.connect(server.port);
  const echoOne = (i: number) => ec.get(blockAt(i));
  // pread baseline (segment files are 1 GB)
  const files = new Map<number, ReturnType<typeof open>>();
  const fileFor = (seg: number) => {
    let fh = files.get(seg);
    if (!fh) {
      fh = open(path.join(cluster.dataDir, rel.file + (seg ? `.${seg}` : "")), "r");
      files.set(seg, fh);
    }
    return fh;
  };
  const preadOne = async (i: number) => {
    const b = blockAt(i);
    const buf = Buffer.allocUnsafe(8192);
    const fh = await fileFor(Math.floor(b / 131072));
    const { bytesRead } = await fh.read(buf, 0, 8192, (b % 131072) * 8192);
    if (bytesRead !== 8192) bad++;
  };

  const systems = [
    { name: "strata page service", one: strataOne },
    { name: "plain TCP loop", one: echoOne },
    { name: "pread of the relation file", one: preadOne },
  ];
  // warm up every path (JIT, page cache, materialization of the first reads is not the point here)
  for (const s of systems) {
    progress(`warming up ${s.name}`);
    await runConcurrent(s.one, 8, 1);
  }
  type Result = Awaited<ReturnType<typeof runConcurrent>>;
  const results: Record<string, Record<number, Result>> = {};
  for (const inflight of [1, ...INFLIGHT]) {
    for (const s of systems) {
      progress(`${s.name}: ${inflight} in flight for ${SECONDS} s`);
      (results[s.name] ??= {})[inflight] = await runConcurrent(s.one, inflight, SECONDS);
    }
  }
  progressDone();
  ps.close();
  ec.close();
  for (const fh of files.values()) await (await fh).close();

  console.log(`GetPage@latest of random pgbench_accounts blocks (${rel.blocks} blocks, scale ${SCALE}, after pgbench -T ${PGBENCH_SECONDS}), ${SECONDS} s per measurement`);
  for (const inflight of [1, ...INFLIGHT]) {
    for (const s of systems) {
      const r = results[s.name][inflight];
      console.log(
        `${inflight.toString().padStart(2)} in flight  ${s.name.padEnd(27)} ${r.perSecond.toFixed(0).padStart(7)} pages/s  ` +
          `p50 ${fmtMs(percentile(r.latencies, 50))}  p99 ${fmtMs(percentile(r.latencies, 99))}  (${r.ops} reads)`,
      );
    }
  }
  const s1 = results["strata page service"][1];
  console.log(`1 client: strata p99 ${fmtMs(percentile(s1.latencies, 99))} (target < 1 ms), p50 ${fmtMs(percentile(s1.latencies, 50))}`);
  for (const inflight of [1, ...INFLIGHT]) {
    const st = results["strata page service"][inflight].perSecond;
    console.log(
      `ratio at ${inflight} in flight: strata / TCP loop ${(st / results["plain TCP loop"][inflight].perSecond).toFixed(3)}x, ` +
        `strata / pread ${(st / results["pread of the relation file"][inflight].perSecond).toFixed(3)}x` +
        (inflight === 32 ? " (target >= 0.5x of the TCP loop)" : ""),
    );
  }
  if (bad) console.log(`WARNING: ${bad} short reads`);
} finally {
  progressDone();
  if (echo && echo.exitCode === null) echo.kill("SIGTERM");
  if (daemon) await daemon.stop().catch(() => {});
  removeDataDir(dataDir);
  await cluster.stop();
}
