// Process and port helpers for the dashboard's browser e2e test: free loopback ports, spawned
// services (each in its own process group, so stopping one also stops anything it started),
// and waiting for an HTTP endpoint to answer.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, rmdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";

export const LOOPBACK = "127.0.0.1";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, LOOPBACK, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface Service {
  name: string;
  child: ChildProcess;
  /** the last lines it printed, for failure messages */
  output(): string;
  exited: Promise<number | null>;
}

export function startService(name: string, command: string, args: string[], opts: { cwd: string; env?: Record<string, string> }): Service {
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let log = "";
  const append = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { name, child, output: () => log, exited };
}

/** SIGTERM the service's process group, SIGKILL it if it has not exited after `graceMs`. */
export async function stopService(service: Service | undefined, graceMs = 10_000): Promise<void> {
  if (!service || service.child.pid === undefined || service.child.exitCode !== null || service.child.signalCode !== null) return;
  const pid = service.child.pid;
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  };
  signalGroup("SIGTERM");
  const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), graceMs).unref());
  if ((await Promise.race([service.exited, timer])) === "timeout") {
    signalGroup("SIGKILL");
    await service.exited;
  }
}

/** Polls `url` until it answers 2xx; fails early if the service exits. */
export async function waitForHttp(url: string, service: Service, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void service.exited.then(() => {
    exited = true;
  });
  let lastError = "";
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${service.name} exited before ${url} answered:\n${service.output()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      await res.arrayBuffer();
      if (res.ok) return;
      lastError = `HTTP ${res.status}`;
    } catch (err) {
      lastError = String(err);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${service.name}: ${url} did not answer within ${timeoutMs} ms (${lastError}):\n${service.output()}`);
}

export const WEB_DIR = path.resolve(import.meta.dirname, "..");
export const REPO_ROOT = path.resolve(WEB_DIR, "../..");

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/**
 * Builds the app when no build is there (the test script normally builds it first). The e2e
 * files run in parallel, so a lock directory keeps two `next build`s out of the same .next.
 */
export async function buildWebIfNeeded(): Promise<void> {
  const buildId = path.join(WEB_DIR, ".next", "BUILD_ID");
  if (existsSync(buildId)) return;
  const lock = path.join(WEB_DIR, ".e2e-build.lock");
  const deadline = Date.now() + 400_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`waited too long for ${lock} (remove it if no build is running)`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    if (existsSync(buildId)) return;
    const build = startService("next build", path.join(REPO_ROOT, "node_modules/.bin/next"), ["build"], {
      cwd: WEB_DIR,
      env: { NEXT_TELEMETRY_DISABLED: "1" },
    });
    const code = await build.exited;
    if (code !== 0) throw new Error(`next build failed (exit ${code}):\n${build.output()}`);
  } finally {
    rmdirSync(lock);
  }
}

/** A pageserver on a free loopback port, storing in `dataDir`; resolves once /healthz answers. */
export async function startPageserver(dataDir: string, env: Record<string, string> = {}): Promise<{ service: Service; url: string }> {
  const port = await freePort();
  const url = `http://${LOOPBACK}:${port}`;
  const service = startService(
    "pageserver",
    path.join(REPO_ROOT, "node_modules/.bin/strata"),
    ["pageserver", "--data", dataDir, "--pg-listen", `${LOOPBACK}:0`, "--http-listen", `${LOOPBACK}:${port}`],
    { cwd: REPO_ROOT, env },
  );
  try {
    await waitForHttp(`${url}/healthz`, service);
  } catch (err) {
    await stopService(service);
    throw err;
  }
  return { service, url };
}

/** `next start` on a free loopback port, proxying to the pageserver at `apiUrl`. */
export async function startWeb(apiUrl: string): Promise<{ service: Service; url: string }> {
  const port = await freePort();
  const url = `http://${LOOPBACK}:${port}`;
  const service = startService(
    "next start",
    path.join(REPO_ROOT, "node_modules/.bin/next"),
    ["start", "--hostname", LOOPBACK, "--port", String(port)],
    { cwd: WEB_DIR, env: { STRATA_API: apiUrl, NEXT_TELEMETRY_DISABLED: "1" } },
  );
  try {
    await waitForHttp(`${url}/icon.svg`, service);
  } catch (err) {
    await stopService(service);
    throw err;
  }
  return { service, url };
}
