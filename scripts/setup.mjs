// Shared setup for `npm start` and `npm test`: installs whatever is missing on a fresh machine.
// Node built-ins only, because it runs before any dependency exists.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";

export const root = path.resolve(import.meta.dirname, "..");
export const PG_BIN = "/usr/lib/postgresql/15/bin";

export const quietEnv = {
  NEXT_TELEMETRY_DISABLED: "1",
  TURBO_TELEMETRY_DISABLED: "1",
  CHECKPOINT_DISABLE: "1",
  PRISMA_HIDE_UPDATE_MESSAGE: "1",
};
Object.assign(process.env, quietEnv);

export function step(text) {
  process.stdout.write(`\n==> ${text}\n`);
}

export function run(cmd, args, opts = {}) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env: process.env, ...opts });
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed with ${result.status ?? result.signal}`);
  }
}

const isRoot = process.getuid?.() === 0;

/** npm dependencies: (re)installed when node_modules is missing or the lock file changed. */
export function ensureNpmDependencies() {
  const lock = path.join(root, "package-lock.json");
  const stamp = path.join(root, "node_modules/.strata-lock-hash");
  const hash = createHash("sha256").update(readFileSync(lock)).digest("hex");
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === hash && existsSync(path.join(root, "node_modules/.bin/turbo"))) {
    if (!existsSync(path.join(root, "packages/api/generated/prisma/client.ts"))) run(process.execPath, ["scripts/prisma-schemas.mjs"]);
    return;
  }
  step("installing npm dependencies (npm ci)");
  run("npm", ["ci", "--no-audit", "--no-fund"]);
  writeFileSync(stamp, hash);
}

let aptUpdated = false;
function aptInstall(packages) {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  if (!aptUpdated) {
    run("apt-get", ["update", "-qq"], { env });
    aptUpdated = true;
  }
  run("apt-get", ["install", "-y", "-qq", "-o", "Dpkg::Options::=--force-confold", ...packages], { env });
}

/** PostgreSQL 15 server binaries (the WAL source, compute and test oracle). */
export function ensurePostgres() {
  if (existsSync(path.join(PG_BIN, "postgres")) && existsSync(path.join(PG_BIN, "initdb"))) return;
  if (!isRoot) {
    throw new Error(`PostgreSQL 15 server binaries are missing (${PG_BIN}). Install them with: sudo apt-get install postgresql-15`);
  }
  step("installing postgresql-15 (apt)");
  // Strata starts its own clusters; don't let the package create and start a default one.
  mkdirSync("/etc/postgresql-common", { recursive: true });
  const conf = "/etc/postgresql-common/createcluster.conf";
  if (!existsSync(conf)) writeFileSync(conf, "create_main_cluster = false\n");
  aptInstall(["postgresql-15", "postgresql-contrib"]);
}

/** Debian chromium for the browser end-to-end tests. */
export function ensureChromium() {
  if (existsSync("/usr/bin/chromium")) return;
  if (!isRoot) throw new Error("chromium is missing (/usr/bin/chromium). Install it with: sudo apt-get install chromium");
  step("installing chromium (apt)");
  aptInstall(["chromium"]);
}

export function commandExists(cmd) {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
