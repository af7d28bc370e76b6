// Test helper: runs the real `strata pageserver` as a child process on free loopback ports and
// always stops it by pid.
import { spawn, type ChildProcess } from "node:child_process";
import pg from "pg";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pageserverEnv } from "../daemon-env.mjs";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const strataBin = path.join(repoRoot, "apps/pageserver/bin/strata.mjs");

export interface Daemon {
  dataDir: string;
  apiUrl: string;
  pgPort: number;
  process: ChildProcess;
  output: () => string;
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

const started = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of started) child.kill("SIGKILL");
});

export function makeDataDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), "strata-test-"));
}

export function removeDataDir(dir: string) {
  rmSync(dir, { recursive: true, force: true });
}

function waitExit(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

export async function startDaemon(dataDir: string, env: Record<string, string> = {}): Promise<Daemon> {
  const child = spawn(process.execPath, [strataBin, "pageserver", "--data", dataDir, "--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"], {
    cwd: repoRoot,
    env: pageserverEnv({ ...process.env, ...env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.add(child);
  child.once("exit", () => started.delete(child));
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const ready = await new Promise<{ http: string; pageService: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pageserver did not become ready:\n${out}`)), 60_000);
    const onData = () => {
      for (const line of out.split("\n")) {
        if (!line.includes('"pageserver ready"')) continue;
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        const parsed = JSON.parse(line);
        resolve({ http: parsed.http, pageService: parsed.pageService });
        return;
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`pageserver exited with ${code} before ready:\n${out}`));
    });
  });
  return {
    dataDir,
    apiUrl: `http://${ready.http}`,
    pgPort: Number(ready.pageService.split(":").pop()),
    process: child,
    output: () => out,
    async stop() {
      child.kill("SIGTERM");
      return waitExit(child);
    },
    async kill9() {
      child.kill("SIGKILL");
      await waitExit(child);
    },
  };
}

export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [strataBin, ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

/** runCli whose reader closes the pipe after the first output (as `strata … | head -1` does). */
export function runCliClosingStdout(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; received: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [strataBin, ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let received = 0;
    let stderr = "";
    child.stdout.once("data", (d: Buffer) => {
      received = d.length;
      child.stdout.destroy();
    });
    child.stderr.on("data", (d) => (stderr += d));
    child.once("exit", (code, signal) => resolve({ code, signal, received, stderr }));
  });
}

/** Checksums of the pgbench tables' contents: equal on two servers when they hold the same data. */
export const PGBENCH_CHECKSUMS = `SELECT (SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts) AS accounts,
  (SELECT md5(string_agg(bid || ':' || bbalance, ',' ORDER BY bid)) FROM pgbench_branches) AS branches,
  (SELECT md5(string_agg(tid || ':' || tbalance, ',' ORDER BY tid)) FROM pgbench_tellers) AS tellers,
  (SELECT count(*)::text FROM pgbench_history) AS history`;

/** The compaction passes a timeline finished so far, from the daemon's log (one line each). */
export function compactionPasses(daemon: Daemon, timelineId: string): Array<{ images: number; moved: number; underLoad?: boolean }> {
  return daemon
    .output()
    .split("\n")
    .filter((line) => line.includes('"compaction pass"') && line.includes(timelineId))
    .map((line) => JSON.parse(line));
}

/** Waits (polling the daemon's log) until `done` holds for the timeline's compaction passes. */
export async function waitForCompactionPasses(daemon: Daemon, timelineId: string, done: (passes: Array<{ images: number; moved: number; underLoad?: boolean }>) => boolean, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  while (!done(compactionPasses(daemon, timelineId))) {
    if (Date.now() > deadline) throw new Error(`the compaction passes of ${timelineId} did not get there within ${seconds} s:\n${daemon.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs SQL (one or more statements) on a server by URL and returns the last statement's rows. */
export async function query<T extends Record<string, unknown>>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query(sql);
    return (Array.isArray(result) ? result[result.length - 1] : result).rows as T[];
  } finally {
    await client.end();
  }
}
