// Crashing a postgres the way a power cut would: the postmaster and all its children at once
// (the page cache, and so what postgres flushed to its files, survives).
import { readFileSync } from "node:fs";
import { isAlive } from "../compute/postgres.ts";

/** The postmaster's children right now (backends, walsenders, background processes). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** SIGKILL to a postmaster and every child it has, then waits until all of them are gone. */
export async function killPostgresTree(pid: number, timeoutMs = 10_000): Promise<void> {
  const pids = [pid, ...childrenOf(pid)];
  for (const p of pids) {
    try {
      process.kill(p, "SIGKILL");
    } catch (err) {
      // a child that exited meanwhile (a backend whose client just left)
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (pids.some((p) => isAlive(p))) {
    if (Date.now() > deadline) throw new Error(`postgres processes ${pids.filter((p) => isAlive(p)).join(", ")} did not exit after SIGKILL`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
