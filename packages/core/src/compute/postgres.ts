// Running stock PostgreSQL 15 binaries: as the `postgres` user when we are root (initdb and
// postgres refuse root), on loopback ports.
import { execFile } from "node:child_process";
import { chownSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";

export function pgBinary(name: string): string {
  return path.join(PG_BIN, name);
}

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

export function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("no `postgres` system user: install the postgresql-15 package");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/** Gives a path to the postgres user (when running as root). */
export function chownToPostgres(file: string): void {
  if (!isRoot) return;
  const { uid, gid } = postgresIds();
  chownSync(file, uid, gid);
}

/** Runs a PostgreSQL binary as the `postgres` user. */
export async function runAsPostgres(bin: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}) {
  const file = isRoot ? "runuser" : pgBinary(bin);
  const argv = isRoot ? ["-u", "postgres", "--", pgBinary(bin), ...args] : args;
  return execFileAsync(file, argv, { cwd: opts.cwd ?? "/", timeout: opts.timeoutMs ?? 120_000, maxBuffer: 256 * 1024 * 1024 });
}

/** Listens on `port` of 127.0.0.1 (0: one the OS picks) and closes again: the port, or the error listening gave. */
function listenAndClose(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const { port: bound } = server.address() as net.AddressInfo;
      server.close(() => resolve(bound));
    });
  });
}

/** A loopback port nobody is listening on right now. */
export function freePort(): Promise<number> {
  return listenAndClose(0);
}

/**
 * `preferred` if nothing listens on it on 127.0.0.1 now (an endpoint restarted on its branch
 * keeps its connection string), otherwise a free port the OS picks.
 */
export async function freePortPreferring(preferred: number | null | undefined): Promise<number> {
  if (preferred) {
    const free = await listenAndClose(preferred).then(
      () => true,
      () => false,
    );
    if (free) return preferred;
  }
  return freePort();
}

/** Sends a signal to a pid and waits until it has exited. */
export async function signalAndWait(pid: number, signal: NodeJS.Signals, timeoutMs: number): Promise<boolean> {
  try {
    process.kill(pid, signal);
  } catch {
    return true;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/**
 * Whether a process runs. One that has exited but is not reaped yet (a zombie) counts as gone: a
 * postgres started through pg_ctl belongs to init once pg_ctl exits, and init on this kind of
 * machine took 1.8 s to reap a postmaster that had exited in 20 ms, which every stop waited out.
 */
export function isAlive(pid: number | null | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ") "
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(") ") + 2] !== "Z";
  } catch {
    return true; // no /proc: kill -0 is all there is
  }
}
