// An endpoint is a stock PostgreSQL 15 running on a branch: its data directory is a full backup
// of the branch at its latest LSN, and its WAL streams back into the branch (walreceiver on a
// physical slot of the endpoint). These are the process-level steps; EndpointService in the API
// package orders them with the metadata.
import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync, chmodSync, writeFileSync } from "node:fs";
import path from "node:path";
import { readControlFile, WAL_LEVEL_NAMES } from "../basebackup/control.ts";
import { fullBackup, type FullBackupResult } from "../basebackup/fullbackup.ts";
import { parseLsn, type Lsn } from "../lsn.ts";
import type { PageReader } from "../timeline/page-reader.ts";
import { DEFAULT_WAL_SEGMENT_SIZE, readWalSegments } from "../wal/reader.ts";
import { chownToPostgres, isRoot, pgBinary, runAsPostgres, signalAndWait } from "./postgres.ts";

/** Writes a full backup of the branch at `lsn` into `dataDir` (streamed through tar, no temp file). */
export async function prepareDataDirectory(reader: PageReader, lsn: Lsn, dataDir: string): Promise<FullBackupResult> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tar = spawn("tar", ["-x", "-f", "-", "-C", dataDir], { stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  tar.stderr.on("data", (d) => (stderr += d));
  // a tar that cannot be started reports 'error' and never 'exit'
  const exited = new Promise<number | null>((resolve) => {
    tar.once("exit", resolve);
    tar.once("error", (err) => {
      stderr += err.message;
      resolve(null);
    });
  });
  let result: FullBackupResult | undefined;
  let failure: unknown;
  try {
    result = await fullBackup(reader, lsn, tar.stdin);
  } catch (err) {
    failure = err;
  } finally {
    tar.stdin.end();
  }
  const code = await exited;
  // a write that failed because tar went away: tar's own message says why
  const tarGone = failure === undefined || ["EPIPE", "ERR_STREAM_DESTROYED"].includes((failure as NodeJS.ErrnoException).code ?? "");
  if (code !== 0 && tarGone) throw new Error(`extracting the full backup failed: tar exited with ${code}: ${stderr.trim()}`, { cause: failure });
  if (!result) throw failure;
  if (isRoot) {
    await new Promise<void>((resolve, reject) =>
      spawn("chown", ["-R", "postgres:postgres", dataDir])
        .once("exit", (c) => (c === 0 ? resolve() : reject(new Error(`chown exited with ${c}`))))
        .once("error", (err) => reject(new Error(`chown could not run: ${err.message}`))),
    );
  }
  chmodSync(dataDir, 0o700);
  return result;
}

export interface EndpointConfig {
  port: number;
  socketDir: string;
}

/**
 * Settings an endpoint needs on top of the backup's postgresql.conf: WAL for its walsender to
 * stream (wal_level at least replica: a logical one stays logical, as the branch's source had it).
 */
export function configureEndpoint(dataDir: string, config: EndpointConfig): void {
  const source = readControlFile(readFileSync(path.join(dataDir, "global", "pg_control")));
  appendFileSync(
    path.join(dataDir, "postgresql.conf"),
    [
      "",
      "# strata endpoint",
      "listen_addresses = '127.0.0.1'",
      `port = ${config.port}`,
      `unix_socket_directories = '${config.socketDir}'`,
      `wal_level = ${WAL_LEVEL_NAMES[source.walLevel] === "logical" ? "logical" : "replica"}`,
      `max_wal_senders = ${Math.max(10, source.maxWalSenders)}`,
      "max_replication_slots = 10",
      // keep WAL around even before the slot exists or if the pageserver is away for a while
      "wal_keep_size = '1GB'",
      "logging_collector = off",
      "",
    ].join("\n"),
  );
  writeFileSync(
    path.join(dataDir, "pg_hba.conf"),
    ["local all all trust", "host all all 127.0.0.1/32 trust", "local replication all trust", "host replication all 127.0.0.1/32 trust", ""].join("\n"),
  );
  chownToPostgres(path.join(dataDir, "pg_hba.conf"));
}

/** Starts postgres on the data directory and returns the postmaster pid. */
export async function startPostgres(dataDir: string, logFile: string): Promise<number> {
  writeFileSync(logFile, "");
  chownToPostgres(logFile);
  try {
    await runAsPostgres("pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "120", "start"], { timeoutMs: 150_000 });
  } catch (err) {
    let log = "";
    try {
      log = readFileSync(logFile, "utf8").split("\n").slice(-15).join("\n");
    } catch {}
    throw new Error(`postgres did not start on ${dataDir}: ${(err as Error).message.split("\n")[0]}\n${log}`);
  }
  return Number(readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
}

/** Fast shutdown by pid; resolves when the postmaster has exited. */
export async function stopPostgres(pid: number, timeoutMs = 120_000): Promise<void> {
  if (!(await signalAndWait(pid, "SIGINT", timeoutMs))) {
    await signalAndWait(pid, "SIGQUIT", 10_000);
    throw new Error(`postgres (pid ${pid}) did not shut down within ${timeoutMs} ms; sent SIGQUIT`);
  }
}

/** End LSN of the last checkpoint record of a stopped cluster (its shutdown checkpoint). */
export async function shutdownCheckpointEnd(dataDir: string): Promise<Lsn> {
  const { stdout } = await runAsPostgres("pg_controldata", ["-D", dataDir]);
  const match = /Latest checkpoint location:\s+(\S+)/.exec(stdout);
  if (!match) throw new Error(`pg_controldata printed no checkpoint location for ${dataDir}`);
  const checkpoint = parseLsn(match[1]);
  const segmentSize = Number(/Bytes per WAL segment:\s+(\d+)/.exec(stdout)?.[1] ?? DEFAULT_WAL_SEGMENT_SIZE);
  for (const record of readWalSegments(path.join(dataDir, "pg_wal"), checkpoint, undefined, { segmentSize })) return record.endLsn;
  throw new Error(`the checkpoint record at ${match[1]} is not in ${dataDir}/pg_wal`);
}

export { pgBinary };
