// An endpoint is a stock PostgreSQL 15 running on a branch: its data directory is a full backup
// of the branch at its latest LSN, and its WAL streams back into the branch (walreceiver on a
// physical slot of the endpoint). These are the process-level steps; EndpointService in the API
// package orders them with the metadata.
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, readFileSync, chmodSync, writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { readControlFile, WAL_LEVEL_NAMES } from "../basebackup/control.ts";
import { fullBackup, type FullBackupResult } from "../basebackup/fullbackup.ts";
import { decodeReplOriginCheckpoint, REPLORIGIN_CHECKPOINT_PATH } from "../basebackup/replorigin-checkpoint.ts";
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
  /** postgresql.conf settings the user gave for this endpoint (checkEndpointSettings) */
  settings?: Readonly<Record<string, string>>;
}

/**
 * Settings Strata sets itself for an endpoint (how it listens, the WAL its branch streams from it)
 * or that would move its files: not the user's to change.
 */
const RESERVED_SETTINGS = new Set([
  "listen_addresses", "port", "unix_socket_directories", "wal_level", "max_wal_senders", "max_replication_slots", "wal_keep_size",
  "logging_collector", "data_directory", "config_file", "hba_file", "ident_file", "external_pid_file", "include", "include_if_exists", "include_dir",
]);
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/;
export const MAX_ENDPOINT_SETTINGS = 100;
const MAX_SETTING_VALUE = 1024;

export class EndpointSettingError extends Error {}

/**
 * Checks user settings for an endpoint's postgresql.conf before anything is started: names as
 * PostgreSQL spells parameters (a custom class may prefix them: `auto_explain.log_min_duration`),
 * none of those Strata manages, values of at most MAX_SETTING_VALUE characters without control
 * characters. Whether PostgreSQL takes a value is for it to say when it starts.
 */
export function checkEndpointSettings(settings: Readonly<Record<string, string>>): void {
  const names = Object.keys(settings);
  if (names.length > MAX_ENDPOINT_SETTINGS) throw new EndpointSettingError(`at most ${MAX_ENDPOINT_SETTINGS} settings, not ${names.length}`);
  const seen = new Set<string>();
  for (const name of names) {
    if (!SETTING_NAME.test(name) || name.length > 63) throw new EndpointSettingError(`invalid setting name ${JSON.stringify(name)}: a PostgreSQL parameter name, e.g. work_mem`);
    const lower = name.toLowerCase();
    if (RESERVED_SETTINGS.has(lower)) throw new EndpointSettingError(`${name} is set by Strata for every endpoint and cannot be changed`);
    if (seen.has(lower)) throw new EndpointSettingError(`${name} is given twice`);
    seen.add(lower);
    const value = settings[name];
    if (typeof value !== "string" || value.length > MAX_SETTING_VALUE) throw new EndpointSettingError(`the value of ${name} must be a string of at most ${MAX_SETTING_VALUE} characters`);
    if (/[\u0000-\u001f\u007f]/.test(value)) throw new EndpointSettingError(`the value of ${name} holds a control character (a newline?)`);
  }
}

/** How many replication origins the data directory's pg_logical/replorigin_checkpoint holds (0 without one). */
function replicationOriginCount(dataDir: string): number {
  const file = path.join(dataDir, REPLORIGIN_CHECKPOINT_PATH);
  return existsSync(file) ? decodeReplOriginCheckpoint(readFileSync(file)).length : 0;
}

/** `name = 'value'` as postgresql.conf reads it back (quotes doubled, backslashes escaped). */
function settingLine(name: string, value: string): string {
  return `${name} = '${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

/**
 * Settings an endpoint needs on top of the backup's postgresql.conf: WAL for its walsender to
 * stream (wal_level at least replica: a logical one stays logical, as the branch's source had it).
 */
export function configureEndpoint(dataDir: string, config: EndpointConfig): void {
  if (config.settings) checkEndpointSettings(config.settings);
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
      // (at least as many as the replication origins the backup carries: startup refuses fewer)
      `max_replication_slots = ${Math.max(10, replicationOriginCount(dataDir))}`,
      // keep WAL around even before the slot exists or if the pageserver is away for a while
      "wal_keep_size = '1GB'",
      "logging_collector = off",
      ...(config.settings && Object.keys(config.settings).length ? ["# given at endpoint start", ...Object.entries(config.settings).map(([name, value]) => settingLine(name, value))] : []),
      "",
    ].join("\n"),
  );
  writeFileSync(
    path.join(dataDir, "pg_hba.conf"),
    ["local all all trust", "host all all 127.0.0.1/32 trust", "local replication all trust", "host replication all 127.0.0.1/32 trust", ""].join("\n"),
  );
  chownToPostgres(path.join(dataDir, "pg_hba.conf"));
}

/** Starts postgres on the data directory and returns the postmaster pid. `settings` apply to this run only. */
export async function startPostgres(dataDir: string, logFile: string, settings: Record<string, string | number> = {}): Promise<number> {
  writeFileSync(logFile, "");
  chownToPostgres(logFile);
  const options = Object.entries(settings).map(([name, value]) => `-c ${name}=${value}`);
  try {
    await runAsPostgres("pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "120", ...(options.length ? ["-o", options.join(" ")] : []), "start"], { timeoutMs: 150_000 });
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

/** pg_subscription's OID (a shared, mapped catalog: its file is found through global/pg_filenode.map). */
const SUBSCRIPTION_RELATION_ID = 6100;
const RELMAP_MAGIC = 0x592717;
const GLOBALTABLESPACE_OID = 1664;

/**
 * Whether the cluster at `lsn` may have logical replication subscriptions: pg_subscription has
 * pages. (A cluster where none was ever created has none, the usual case.)
 */
export async function mayHaveSubscriptions(reader: PageReader, lsn: Lsn): Promise<boolean> {
  const map = await reader.getRelmap(GLOBALTABLESPACE_OID, 0, lsn);
  if (!map || map.readInt32LE(0) !== RELMAP_MAGIC) return true; // cannot tell: take the careful path
  const count = map.readInt32LE(4);
  for (let i = 0; i < count; i++) {
    if (map.readUInt32LE(8 + i * 8) !== SUBSCRIPTION_RELATION_ID) continue;
    const relNode = map.readUInt32LE(12 + i * 8);
    return ((await reader.relSize({ spcNode: GLOBALTABLESPACE_OID, dbNode: 0, relNode }, 0, lsn)) ?? 0) > 0;
  }
  return true;
}

/**
 * Disables the subscriptions a branch inherited and detaches them from their replication slot
 * (`slot_name = NONE`): that slot, on the publisher, still belongs to the subscription of the
 * cluster the branch was made from, and an endpoint applying from it would take changes that
 * cluster then never gets. Run with the endpoint's logical replication workers off. Returns the
 * subscriptions detached, as "database.name".
 */
export async function detachInheritedSubscriptions(url: string): Promise<string[]> {
  const query = async <T>(database: string, sql: string): Promise<T[]> => {
    const target = new URL(url);
    target.pathname = `/${encodeURIComponent(database)}`;
    const client = new pg.Client({ connectionString: target.toString() });
    await client.connect();
    try {
      return (await client.query(sql)).rows as T[];
    } finally {
      await client.end();
    }
  };
  const subscriptions = await query<{ name: string; database: string; slot: string | null; enabled: boolean }>(
    "postgres",
    "SELECT s.subname AS name, d.datname AS database, s.subslotname AS slot, s.subenabled AS enabled FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid ORDER BY 2, 1",
  );
  const detached: string[] = [];
  for (const sub of subscriptions) {
    if (!sub.enabled && sub.slot === null) continue;
    const name = `"${sub.name.replaceAll('"', '""')}"`;
    if (sub.enabled) await query(sub.database, `ALTER SUBSCRIPTION ${name} DISABLE`);
    if (sub.slot !== null) await query(sub.database, `ALTER SUBSCRIPTION ${name} SET (slot_name = NONE)`);
    detached.push(`${sub.database}.${sub.name}`);
  }
  return detached;
}
