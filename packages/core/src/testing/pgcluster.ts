// Throwaway PostgreSQL 15 clusters for tests and benchmarks: initdb as the `postgres` user into a
// temp dir, start on a free loopback port, and always stop by pid and remove, also when the test
// fails or the process is interrupted.
import { execFile, execFileSync, spawn } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { formatLsn, pageStartIfPastHeader, parseLsn, type Lsn } from "../lsn.ts";

const execFileAsync = promisify(execFile);

export { PG_BIN, pgBinary, runAsPostgres, freePort, signalAndWait } from "../compute/postgres.ts";
import { isAlive, isRoot, pgBinary, postgresIds, runAsPostgres, freePort, signalAndWait } from "../compute/postgres.ts";

/** Makes a temp directory that the `postgres` user owns (and can reach). */
export function makePostgresTempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  if (isRoot) {
    const { uid, gid } = postgresIds();
    chownSync(dir, uid, gid);
  }
  return dir;
}

const running = new Set<PgCluster>();
let exitHooksInstalled = false;

function installExitHooks() {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const stopAll = () => {
    for (const cluster of running) cluster.stopNow();
  };
  process.on("exit", stopAll);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      stopAll();
      process.kill(process.pid, signal);
    });
  }
}

export interface PgClusterOptions {
  /** postgresql.conf settings, e.g. { wal_level: "replica", max_wal_senders: 4 } */
  settings?: Record<string, string | number | boolean>;
  /** extra initdb arguments, e.g. ["--data-checksums"] */
  initdbArgs?: string[];
  /** keep the data directory when stopping (the caller removes it) */
  keepData?: boolean;
}

export class PgCluster {
  readonly host = "127.0.0.1";
  private constructor(
    readonly baseDir: string,
    readonly dataDir: string,
    readonly port: number,
    private readonly keepData: boolean,
  ) {}
  pid = 0;

  static async start(options: PgClusterOptions = {}): Promise<PgCluster> {
    installExitHooks();
    const baseDir = makePostgresTempDir("strata-pg-");
    const dataDir = path.join(baseDir, "data");
    try {
      await runAsPostgres("initdb", ["-D", dataDir, "-U", "postgres", "--auth=trust", "--no-sync", ...(options.initdbArgs ?? [])]);
    } catch (err) {
      rmSync(baseDir, { recursive: true, force: true });
      throw err;
    }
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const cluster = new PgCluster(baseDir, dataDir, port, options.keepData ?? false);
      try {
        await cluster.configure(options.settings ?? {});
        await cluster.startServer();
        return cluster;
      } catch (err) {
        lastError = err;
        cluster.stopNow({ keepDir: true });
      }
    }
    rmSync(baseDir, { recursive: true, force: true });
    throw lastError;
  }

  private async configure(settings: Record<string, string | number | boolean>) {
    const conf: Record<string, string | number | boolean> = {
      listen_addresses: "'127.0.0.1'",
      port: this.port,
      unix_socket_directories: `'${this.baseDir}'`,
      fsync: "off",
      wal_level: "replica",
      max_wal_senders: 10,
      max_replication_slots: 10,
      logging_collector: "off",
      ...settings,
    };
    const lines = Object.entries(conf).map(([k, v]) => `${k} = ${v}`);
    appendFileSync(path.join(this.dataDir, "postgresql.conf"), "\n# strata test harness\n" + lines.join("\n") + "\n");
  }

  /** Starts (or restarts) the server and records its postmaster pid. */
  async startServer(): Promise<void> {
    await runAsPostgres("pg_ctl", ["-D", this.dataDir, "-l", path.join(this.baseDir, "server.log"), "-w", "-t", "60", "start"]);
    this.pid = Number(readFileSync(path.join(this.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    running.add(this);
  }

  /** Stops the server by pid (fast shutdown) and waits for it to exit; removes the dir unless kept. */
  async stop(): Promise<void> {
    await this.stopServer();
    running.delete(this);
    if (!this.keepData) rmSync(this.baseDir, { recursive: true, force: true });
  }

  /** Stops the server but keeps the cluster (for restart tests). */
  async stopServer(signal: NodeJS.Signals = "SIGINT"): Promise<void> {
    if (!this.pid) return;
    await signalAndWait(this.pid, signal, 60_000);
    this.pid = 0;
    running.delete(this);
  }

  /** Synchronous immediate stop, for exit hooks. */
  stopNow(opts: { keepDir?: boolean } = {}): void {
    if (this.pid) {
      try {
        process.kill(this.pid, "SIGQUIT");
      } catch {}
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && isAlive(this.pid)) execFileSync("sleep", ["0.05"]);
      this.pid = 0;
    }
    running.delete(this);
    if (!opts.keepDir && !this.keepData) rmSync(this.baseDir, { recursive: true, force: true });
  }

  connectionString(database = "postgres", user = "postgres"): string {
    return `postgresql://${user}@${this.host}:${this.port}/${database}`;
  }

  /** Runs one or more SQL statements and returns the rows of the last one. */
  async sql<T extends Record<string, unknown> = Record<string, unknown>>(query: string, params: unknown[] = [], database = "postgres"): Promise<T[]> {
    const client = new pg.Client({ host: this.host, port: this.port, user: "postgres", database });
    await client.connect();
    try {
      const result = await client.query(query, params);
      const last = Array.isArray(result) ? result[result.length - 1] : result;
      return last.rows as T[];
    } finally {
      await client.end();
    }
  }

  /**
   * The end of the WAL written so far, once it is flushed to pg_wal (for tests that read the
   * segment files up to it). When the last record ended at a page boundary,
   * pg_current_wal_insert_lsn() points past the next page's header, which is written only with
   * the next record: the page start is returned then, or reading up to it meets a zeroed page.
   */
  async flushedWalEnd(timeoutMs = 30_000): Promise<Lsn> {
    const [{ lsn: text, segment }] = await this.sql<{ lsn: string; segment: string }>(
      "SELECT pg_current_wal_insert_lsn()::text AS lsn, (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS segment",
    );
    const end = pageStartIfPastHeader(parseLsn(text), Number(segment));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [{ done }] = await this.sql<{ done: boolean }>("SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS done", [formatLsn(end)]);
      if (done) return end;
      if (Date.now() > deadline) throw new Error(`WAL up to ${formatLsn(end)} was not flushed within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /**
   * Runs a script statement by statement (statements end with ";" at the end of a line; lines
   * starting with "--" are comments), for commands that refuse a transaction block (VACUUM,
   * CREATE INDEX CONCURRENTLY, CREATE DATABASE…).
   */
  async script(text: string, database = "postgres"): Promise<void> {
    const statements = text
      .split("\n")
      .filter((line) => !line.trim().startsWith("--"))
      .join("\n")
      .split(/;\s*\n/)
      .map((statement) => statement.trim().replace(/;$/, ""))
      .filter(Boolean);
    for (const statement of statements) await this.sql(statement, [], database);
  }

  /** Runs a client binary (psql, pgbench, pg_waldump…) against this cluster. */
  async run(bin: string, args: string[], timeoutMs = 600_000): Promise<{ stdout: string; stderr: string }> {
    return execFileAsync(pgBinary(bin), args, {
      timeout: timeoutMs,
      maxBuffer: 1024 * 1024 * 1024,
      env: { ...process.env, PGHOST: this.host, PGPORT: String(this.port), PGUSER: "postgres" },
    });
  }

  pgbench(args: string[], database = "postgres") {
    return this.run("pgbench", [...args, database]);
  }

  /** Spawns a long-running client binary; the caller kills it. */
  spawnClient(bin: string, args: string[]) {
    return spawn(pgBinary(bin), args, {
      env: { ...process.env, PGHOST: this.host, PGPORT: String(this.port), PGUSER: "postgres" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  }

  get walDir(): string {
    return path.join(this.dataDir, "pg_wal");
  }

  get logFile(): string {
    return path.join(this.baseDir, "server.log");
  }

  get isRunning(): boolean {
    return this.pid !== 0 && existsSync(path.join(this.dataDir, "postmaster.pid"));
  }
}

/** Writes a file in a dir the postgres user owns (e.g. extra conf includes). */
export function writePostgresFile(file: string, content: string) {
  writeFileSync(file, content);
  if (isRoot) {
    const { uid, gid } = postgresIds();
    chownSync(file, uid, gid);
  }
}
